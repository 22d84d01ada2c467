// The schedule field tables (codegen/ScheduleFields.h): every field of the
// GPU and CPU schedules round-trips through the schedule text, and the
// validator refuses each out-of-range field naming the field, the value and
// the legal range. The package JSON and #slak.schedule round trips are in
// tests/codegen/KernelPackageReaderTest.cpp and tests/dialect.
#include <gtest/gtest.h>

#include <set>

#include "codegen/KernelSpec.h"
#include "codegen/halide/CpuSchedule.h"
#include "tests/spec/ScheduleVariants.h"

namespace slak::codegen {
namespace {

using cpu::CpuSchedule;
using testing::fieldVariants;
using testing::outOfRangeValues;

#define EXPECT_HAS(message, part)                                                                  \
  EXPECT_NE((message).find(part), std::string::npos) << "message: " << (message)

template <typename S> void expectTextRoundTrips(const ScheduleTable<S> &table) {
  const S base{};
  const std::vector<testing::FieldVariant<S>> variants = fieldVariants(table, base);
  // Every integer of every field, and every flag, has a legal variant.
  size_t components = 0;
  for (const ScheduleField<S> &f : table.fields)
    components += f.components();
  ASSERT_EQ(variants.size(), components);
  for (const testing::FieldVariant<S> &v : variants) {
    const std::string text = v.schedule.str();
    EXPECT_NE(text, base.str()) << v.what << " does not reach the text";
    S back;
    EXPECT_EQ(parseScheduleText(table, text, &back), "") << text;
    EXPECT_EQ(back.str(), text) << v.what;
    EXPECT_EQ(fieldValues(table, back), fieldValues(table, v.schedule)) << v.what;
  }
}

TEST(ScheduleFields, EveryGpuFieldRoundTripsThroughText) { expectTextRoundTrips(scheduleFields()); }

TEST(ScheduleFields, EveryCpuFieldRoundTripsThroughText) {
  expectTextRoundTrips(cpu::cpuScheduleFields());
}

TEST(ScheduleFields, StoredTextsStillRead) {
  // Texts as tuning databases hold them; a CPU text without tapBlock or
  // channelsLast reads as tapBlock 1 along the image width.
  const std::string gpu = "tile=16x32 block=4x32 stageInput=1 stageTaps=0 maskedWalk=1 "
                          "weightSplit=8 weightThreads=256 weightTile=8x32 weightRows=4";
  Schedule s;
  ASSERT_EQ(parseScheduleText(scheduleFields(), gpu, &s), "");
  EXPECT_FALSE(s.stageTaps);
  EXPECT_TRUE(s.maskedWalk);
  EXPECT_EQ(s.weightRowsPerThread, 4);
  EXPECT_EQ(s.str(), gpu);

  const std::string cpuText =
      "vec=16 tile=4x7 transposeWide=1 mergeTaps=0 alignLoads=1 wtaps=12 wvec=4";
  CpuSchedule c;
  ASSERT_EQ(parseScheduleText(cpu::cpuScheduleFields(), cpuText, &c), "");
  EXPECT_EQ(c.vectorWidth, 16);
  EXPECT_EQ(c.tapBlock, 1);
  EXPECT_FALSE(c.channelsLast);
  EXPECT_FALSE(c.mergeTaps);
  EXPECT_EQ(c.str(), cpuText);
  ASSERT_EQ(parseScheduleText(cpu::cpuScheduleFields(), cpuText + " tapBlock=4", &c), "");
  EXPECT_EQ(c.tapBlock, 4);
}

TEST(ScheduleFields, TextReaderRefusesWhatIsNotASchedule) {
  Schedule s;
  const ScheduleTable<Schedule> &t = scheduleFields();
  const std::string good = Schedule{}.str();
  EXPECT_HAS(parseScheduleText(t, "tile=16x32 block=4x32", &s), "has no field stageInput");
  EXPECT_HAS(parseScheduleText(t, good + " newField=3", &s), "unknown field newField");
  EXPECT_HAS(parseScheduleText(t, good + " tile=8x8", &s), "repeats tile");
  EXPECT_HAS(parseScheduleText(t, "tile=16 " + good.substr(good.find(' ') + 1), &s),
             "field tile=16 is not AxB");
  std::string flag = good;
  flag.replace(flag.find("stageInput=1"), 12, "stageInput=2");
  EXPECT_HAS(parseScheduleText(t, flag, &s), "field stageInput=2 is not 0 or 1");
  std::string wide = good;
  wide.replace(wide.find("weightSplit=8"), 13, "weightSplit=4294967304");
  EXPECT_HAS(parseScheduleText(t, wide, &s),
             "schedule weightSplit is 4294967304, expected 1..2147483647");
}

/// Each value just outside a field's range is refused, in both spellings,
/// by a message naming the field, the value and the range.
template <typename S> void expectRangesRefused(const ScheduleTable<S> &table) {
  const FieldValues base = fieldValues(table, S{});
  for (const auto &[index, value] : outOfRangeValues(table)) {
    FieldValues values = base;
    values[index] = value;
    size_t first = 0;
    const ScheduleField<S> *field = nullptr;
    int component = 0;
    for (const ScheduleField<S> &f : table.fields) {
      if (index < first + f.components()) {
        field = &f;
        component = static_cast<int>(index - first);
        break;
      }
      first += f.components();
    }
    ASSERT_NE(field, nullptr);
    const std::string range = field->ranges[component].str();

    const std::string structError = validateFields(table, values, FieldSpelling::Struct);
    EXPECT_EQ(structError, std::string(table.structName) + " " + field->memberNames[component] +
                               " is " + std::to_string(value) + ", expected " + range);
    if (*table.irName == '\0')
      continue;
    const std::string irError = validateFields(table, values, FieldSpelling::Ir);
    EXPECT_HAS(irError, std::string(table.irName) + " " + field->irKey + " is ");
    EXPECT_HAS(irError, std::to_string(value));
    EXPECT_HAS(irError, field->kind == FieldKind::Flag ? std::string("expected true or false")
                                                       : "expected " + range);
  }
}

TEST(ScheduleFields, GpuValidatorNamesFieldValueAndRange) {
  expectRangesRefused(scheduleFields());
  // Through the struct as well.
  Schedule s;
  s.weightRowsPerThread = 17;
  EXPECT_EQ(s.validate(), "schedule weightRowsPerThread is 17, expected 1..16");
  s = {};
  s.weightThreads = 96;
  EXPECT_EQ(s.validate(), "schedule weightThreads is 96, expected a power of two in 1..1024");
}

TEST(ScheduleFields, CpuValidatorNamesFieldValueAndRange) {
  expectRangesRefused(cpu::cpuScheduleFields());
  CpuSchedule s;
  s.vectorWidth = 12;
  EXPECT_EQ(s.validate(), "cpu schedule vectorWidth is 12, expected a power of two in 4..16");
  s = {};
  s.tileRows = 16;
  s.tileVectors = 8;
  EXPECT_EQ(s.validate(), "cpu schedule tile 16x8 holds 128 vectors, at most 64 are allowed (32 "
                          "registers on AVX-512)");
}

TEST(ScheduleFields, RulesBetweenFieldsUseEachSpelling) {
  const ScheduleTable<Schedule> &t = scheduleFields();
  Schedule s;
  s.tileW = 48;
  EXPECT_EQ(validateFields(t, fieldValues(t, s), FieldSpelling::Ir),
            "#slak.schedule tile [16, 48] is not a multiple of block [4, 32]; each thread "
            "computes tile/block outputs");
  EXPECT_EQ(s.validate(), "schedule tileW 48 is not a multiple of blockW 32; each thread "
                          "computes tile/block outputs");
  s = {};
  s.tileH = 64;
  s.blockH = 64;
  EXPECT_EQ(validateFields(t, fieldValues(t, s), FieldSpelling::Ir),
            "#slak.schedule block [64, 32] has 2048 threads, at most 1024 are allowed per block");
}

TEST(ScheduleFields, NamesAreUniqueInEveryEncoding) {
  std::set<std::string> text, ir;
  for (const ScheduleField<Schedule> &f : scheduleFields().fields) {
    EXPECT_TRUE(text.insert(f.textKey).second) << f.textKey;
    EXPECT_TRUE(ir.insert(f.irKey).second) << f.irKey;
    EXPECT_NE(std::string(f.doc), "");
  }
  EXPECT_EQ(ir.count("origin"), 0u) << "origin is the attribute's own key";
}

} // namespace
} // namespace slak::codegen
