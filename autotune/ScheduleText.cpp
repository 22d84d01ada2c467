#include "autotune/ScheduleText.h"

#include <stdexcept>

namespace slak::autotune {
namespace {

template <typename S>
S parseOrThrow(const codegen::ScheduleTable<S> &table, const std::string &text) {
  S s;
  if (std::string err = codegen::parseScheduleText(table, text, &s); !err.empty())
    throw std::invalid_argument(err);
  return s;
}

} // namespace

codegen::Schedule parseSchedule(const std::string &text) {
  return parseOrThrow(codegen::scheduleFields(), text);
}

codegen::cpu::CpuSchedule parseCpuSchedule(const std::string &text) {
  return parseOrThrow(codegen::cpu::cpuScheduleFields(), text);
}

} // namespace slak::autotune
