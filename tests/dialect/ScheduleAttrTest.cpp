// #slak.schedule against codegen's schedule field table: every field
// round-trips through the attribute (built from a Schedule, printed, parsed
// back), keys left out read as the struct's defaults, and the verifier
// refuses each out-of-range field naming the key, the value and the range.
#include "dialect/SlakAttrs.h"
#include "dialect/SlakDialect.h"
#include "tests/spec/ScheduleVariants.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace mlir;
using mlir::slak::ScheduleAttr;
using ::slak::codegen::FieldValues;
using ::slak::codegen::Schedule;
using ::slak::codegen::scheduleFields;

class ScheduleAttrTest : public ::testing::Test {
protected:
  ScheduleAttrTest() { context_.loadDialect<mlir::slak::SlakDialect>(); }

  std::string print(Attribute attr) {
    std::string text;
    llvm::raw_string_ostream os(text);
    attr.print(os);
    return text;
  }

  /// The attribute parsed from `text`, or null with `diagnostics_` set.
  ScheduleAttr parse(const std::string &text) {
    diagnostics_.clear();
    ScopedDiagnosticHandler handler(&context_, [&](Diagnostic &d) {
      diagnostics_ += d.str();
      return success();
    });
    return dyn_cast_or_null<ScheduleAttr>(parseAttribute(text, &context_));
  }

  MLIRContext context_;
  std::string diagnostics_;
};

TEST_F(ScheduleAttrTest, EveryFieldRoundTrips) {
  const auto variants = ::slak::codegen::testing::fieldVariants(scheduleFields(), Schedule{});
  ASSERT_EQ(variants.size(), scheduleFields().size());
  const std::string base = print(ScheduleAttr::get(&context_, Schedule{}, "default"));
  for (const auto &variant : variants) {
    ScheduleAttr attr = ScheduleAttr::get(&context_, variant.schedule, "measured");
    EXPECT_EQ(attr.getSchedule().str(), variant.schedule.str()) << variant.what;
    const std::string text = print(attr);
    EXPECT_NE(text, base) << variant.what << " does not reach the printed attribute";
    ScheduleAttr back = parse(text);
    ASSERT_TRUE(back) << text << ": " << diagnostics_;
    EXPECT_EQ(back, attr) << text;
    EXPECT_EQ(back.getSchedule().str(), variant.schedule.str()) << text;
    EXPECT_EQ(back.getOrigin().getValue(), "measured");
  }
}

TEST_F(ScheduleAttrTest, PrintsEveryKeyInTableOrder) {
  EXPECT_EQ(print(ScheduleAttr::get(&context_, Schedule{}, "default")),
            "#slak.schedule<tile = [16, 32], block = [4, 32], stage_input = true, stage_taps = "
            "true, masked_walk = false, weight_split = 8, weight_threads = 256, weight_tile = [8, "
            "32], weight_rows_per_thread = 8, origin = \"default\">");
}

TEST_F(ScheduleAttrTest, OmittedKeysAreTheStructDefaults) {
  ScheduleAttr attr = parse("#slak.schedule<block = [2, 32], tile = [8, 64]>");
  ASSERT_TRUE(attr) << diagnostics_;
  Schedule expected;
  expected.tileH = 8;
  expected.tileW = 64;
  expected.blockH = 2;
  EXPECT_EQ(attr.getSchedule().str(), expected.str());
  EXPECT_EQ(attr.getOrigin().getValue(), "default");
  EXPECT_FALSE(parse("#slak.schedule<tile = [8, 64]>"));
  EXPECT_NE(diagnostics_.find("#slak.schedule is missing the key 'block'"), std::string::npos)
      << diagnostics_;
}

TEST_F(ScheduleAttrTest, VerifierNamesKeyValueAndRange) {
  const auto &table = scheduleFields();
  const FieldValues base = fieldValues(table, Schedule{});
  for (const auto &[index, value] : ::slak::codegen::testing::outOfRangeValues(table)) {
    FieldValues values = base;
    values[index] = value;
    std::string message;
    auto emitError = [&]() { return mlir::emitError(UnknownLoc::get(&context_)); };
    ScopedDiagnosticHandler handler(&context_, [&](Diagnostic &d) {
      message = d.str();
      return success();
    });
    EXPECT_FALSE(ScheduleAttr::getChecked(emitError, &context_, ArrayRef<int64_t>(values),
                                          StringAttr::get(&context_, "default")));
    // The key of the field holding `index`.
    size_t first = 0;
    const char *key = nullptr;
    std::string range;
    for (const auto &f : table.fields) {
      if (index < first + f.components()) {
        key = f.irKey;
        range = f.kind == ::slak::codegen::FieldKind::Flag ? "true or false"
                                                           : f.ranges[index - first].str();
        break;
      }
      first += f.components();
    }
    ASSERT_NE(key, nullptr);
    EXPECT_NE(message.find(std::string("#slak.schedule ") + key + " is "), std::string::npos)
        << message;
    EXPECT_NE(message.find(std::to_string(value)), std::string::npos) << message;
    EXPECT_NE(message.find("expected " + range), std::string::npos) << message;
  }
}

} // namespace
