// Test helpers over a schedule field table: for each field (each integer of
// a pair), a legal schedule that differs from a base schedule in that field
// only, and values just outside each field's legal range.
#pragma once

#include "codegen/ScheduleFields.h"

#include <string>
#include <vector>

namespace slak::codegen::testing {

template <typename S> struct FieldVariant {
  std::string what; // "tileW", "stageInput"
  S schedule;
};

/// One variant per field component whose value is changed to a legal
/// value; validate() accepts every variant. Small changes first, so that
/// the variants still fit the kernels of a small layer.
template <typename S>
std::vector<FieldVariant<S>> fieldVariants(const ScheduleTable<S> &table, const S &base) {
  std::vector<FieldVariant<S>> out;
  for (const ScheduleField<S> &f : table.fields) {
    if (f.kind == FieldKind::Flag) {
      S s = base;
      s.*f.flag = !(base.*f.flag);
      if (validateFields(table, fieldValues(table, s), FieldSpelling::Struct).empty())
        out.push_back({f.memberNames[0], s});
      continue;
    }
    for (int c = 0; c < f.components(); ++c) {
      const int64_t v = base.*f.ints[c];
      for (int64_t candidate : {v / 2, v * 2, v - 1, v + 1, f.ranges[c].min, f.ranges[c].max}) {
        if (candidate == v || !f.ranges[c].contains(candidate))
          continue;
        S s = base;
        s.*f.ints[c] = static_cast<int>(candidate);
        if (validateFields(table, fieldValues(table, s), FieldSpelling::Struct).empty()) {
          out.push_back({f.memberNames[c], s});
          break;
        }
      }
    }
  }
  return out;
}

/// For each field component: (index in FieldValues, an illegal value).
/// Below the minimum, above the maximum, and a non-power of two where
/// powers of two are asked for.
template <typename S>
std::vector<std::pair<size_t, int64_t>> outOfRangeValues(const ScheduleTable<S> &table) {
  std::vector<std::pair<size_t, int64_t>> out;
  size_t i = 0;
  for (const ScheduleField<S> &f : table.fields) {
    for (int c = 0; c < f.components(); ++c, ++i) {
      const FieldRange &r = f.ranges[c];
      out.push_back({i, r.min - 1});
      out.push_back({i, r.max + 1});
      if (r.powerOfTwo && r.max - r.min >= 2)
        out.push_back({i, r.min + (r.min == 1 ? 2 : 1)}); // 3, or the minimum plus one
    }
  }
  return out;
}

} // namespace slak::codegen::testing
