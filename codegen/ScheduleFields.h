// ScheduleFields: a schedule struct described as a table of fields. Each row
// names one field in every encoding (the struct member, the schedule text of
// logs and the tuning database, the #slak.schedule attribute and the kernel
// package's JSON), says where it lives in the struct, its legal range and
// what it means. Text, JSON, the attribute and the validator all walk the
// table, so a new field is a struct member plus one row.
//
// The table works on a schedule's values: one int64_t per component, in table
// order (a flag is 0 or 1, a pair such as tile=16x32 gives two). The IR keeps
// int64_t values, so out-of-range values are refused by name, not cut to int.
//
// MLIR-free and exception-free: the dialect (built with -fno-exceptions)
// parses, prints and verifies #slak.schedule through it.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace slak::codegen {

/// How a field is written: one integer, a flag, or two integers (height or
/// rows first, then width).
enum class FieldKind { Int, Flag, Pair };

/// Whose names a message uses: the struct's members and text keys
/// ("schedule tileW 30 is not a multiple of blockW 32"), or the attribute's
/// and package's keys ("#slak.schedule tile [16, 30] ...").
enum class FieldSpelling { Struct, Ir };

/// The legal values of an integer (each side of a pair).
struct FieldRange {
  int64_t min = 1;
  int64_t max = std::numeric_limits<int32_t>::max();
  bool powerOfTwo = false;

  bool contains(int64_t value) const;
  /// "1..16" or "a power of two in 1..1024".
  std::string str() const;
};

enum FieldFlag : unsigned {
  /// #slak.schedule must name it (the other keys default to the struct's).
  kRequiredInIr = 1u << 0,
  /// Packages written before the field existed lack it: absent reads as the
  /// default, and the package reader cannot recheck the recorded signature.
  kOptionalInPackage = 1u << 1,
  /// The text carries it only when it is not the default; absent reads as
  /// the default (so texts written before the field existed still read).
  kTextOmitsDefault = 1u << 2,
};

/// One field of schedule struct S. Its default is the member's initializer
/// (what S{} holds), so the struct stays the one place for defaults.
template <typename S> struct ScheduleField {
  const char *textKey; // in the schedule text: "tile", "weightRows"
  const char *irKey;   // in #slak.schedule and package JSON: "weight_rows_per_thread"
  FieldKind kind;
  int S::*ints[2];            // Int: ints[0]; Pair: both
  bool S::*flag;              // Flag
  const char *memberNames[2]; // "tileH", "tileW": messages in FieldSpelling::Struct
  FieldRange ranges[2];       // of each integer; unused for flags
  unsigned flags;
  const char *doc;

  int components() const { return kind == FieldKind::Pair ? 2 : 1; }
  bool has(FieldFlag f) const { return (flags & f) != 0; }
};

template <typename S>
ScheduleField<S> intField(const char *textKey, const char *irKey, int S::*member,
                          const char *memberName, FieldRange range, const char *doc,
                          unsigned flags = 0) {
  return {textKey,           irKey,   FieldKind::Int,
          {member, nullptr}, nullptr, {memberName, nullptr},
          {range, range},    flags,   doc};
}

/// `range` holds for both integers, or `secondRange` (when given) for the
/// second.
template <typename S>
ScheduleField<S> pairField(const char *textKey, const char *irKey, int S::*first,
                           const char *firstName, int S::*second, const char *secondName,
                           FieldRange range, const char *doc, unsigned flags = 0,
                           const FieldRange *secondRange = nullptr) {
  return {textKey,
          irKey,
          FieldKind::Pair,
          {first, second},
          nullptr,
          {firstName, secondName},
          {range, secondRange ? *secondRange : range},
          flags,
          doc};
}

template <typename S>
ScheduleField<S> flagField(const char *textKey, const char *irKey, bool S::*member,
                           const char *memberName, const char *doc, unsigned flags = 0) {
  return {textKey,
          irKey,
          FieldKind::Flag,
          {nullptr, nullptr},
          member,
          {memberName, nullptr},
          {FieldRange{0, 1}, FieldRange{0, 1}},
          flags,
          doc};
}

using FieldValues = std::vector<int64_t>;

template <typename S> struct ScheduleTable {
  const char *structName; // "schedule": messages in FieldSpelling::Struct
  const char *textName;   // "GPU schedule": messages about a schedule text
  const char *irName;     // "#slak.schedule": messages in FieldSpelling::Ir
  std::vector<ScheduleField<S>> fields;
  /// Rules between fields, run on a schedule whose fields are each in range;
  /// the message names the fields in `spelling`. Empty when legal.
  std::string (*crossCheck)(const ScheduleTable &table, const S &schedule, FieldSpelling spelling);

  /// Components of all fields: the length of a FieldValues.
  size_t size() const {
    size_t n = 0;
    for (const ScheduleField<S> &f : fields)
      n += f.components();
    return n;
  }
  const ScheduleField<S> *find(const std::string &textKey) const {
    for (const ScheduleField<S> &f : fields)
      if (textKey == f.textKey)
        return &f;
    return nullptr;
  }
};

// ---------------------------------------------------------------------------
// Helpers shared by every table (ScheduleFields.cpp).

/// Splits "key=value key=value" into a map; empty and the message (naming
/// `what` and the text) on a token without '=' or a repeated key.
std::string splitTextFields(const char *what, const std::string &text,
                            std::map<std::string, std::string> &fields);
/// A decimal int64_t, the whole of `text`; false otherwise.
bool parseTextInt(const std::string &text, int64_t &value);
/// "[16, 32]" (Ir) or "16x32" (Struct).
std::string pairText(int64_t first, int64_t second, FieldSpelling spelling);

// ---------------------------------------------------------------------------
// The encodings, for any table.

template <typename S> FieldValues fieldValues(const ScheduleTable<S> &table, const S &s) {
  FieldValues values;
  values.reserve(table.size());
  for (const ScheduleField<S> &f : table.fields) {
    if (f.kind == FieldKind::Flag)
      values.push_back(s.*f.flag ? 1 : 0);
    else
      for (int c = 0; c < f.components(); ++c)
        values.push_back(s.*f.ints[c]);
  }
  return values;
}

/// The struct of `values`, which validateFields() accepted (each fits its
/// member).
template <typename S>
S scheduleFromValues(const ScheduleTable<S> &table, const FieldValues &values) {
  S s;
  size_t i = 0;
  for (const ScheduleField<S> &f : table.fields) {
    if (f.kind == FieldKind::Flag)
      s.*f.flag = values[i++] != 0;
    else
      for (int c = 0; c < f.components(); ++c)
        s.*f.ints[c] = static_cast<int>(values[i++]);
  }
  return s;
}

/// A field as messages show it: "tileW 30" (Struct, one component),
/// "block 64x32" (Struct, the whole pair), "tile [16, 30]" (Ir).
template <typename S>
std::string fieldText(const ScheduleField<S> &f, const S &s, FieldSpelling spelling,
                      int component = -1) {
  if (f.kind == FieldKind::Flag) {
    const bool v = s.*f.flag;
    return std::string(spelling == FieldSpelling::Ir ? f.irKey : f.memberNames[0]) + " " +
           (spelling == FieldSpelling::Ir ? (v ? "true" : "false") : (v ? "1" : "0"));
  }
  if (f.kind == FieldKind::Int)
    return std::string(spelling == FieldSpelling::Ir ? f.irKey : f.memberNames[0]) + " " +
           std::to_string(s.*f.ints[0]);
  if (spelling == FieldSpelling::Struct && component >= 0)
    return std::string(f.memberNames[component]) + " " + std::to_string(s.*f.ints[component]);
  return std::string(spelling == FieldSpelling::Ir ? f.irKey : f.textKey) + " " +
         pairText(s.*f.ints[0], s.*f.ints[1], spelling);
}

template <typename S> bool sameValue(const ScheduleField<S> &f, const S &a, const S &b) {
  if (f.kind == FieldKind::Flag)
    return a.*f.flag == b.*f.flag;
  for (int c = 0; c < f.components(); ++c)
    if (a.*f.ints[c] != b.*f.ints[c])
      return false;
  return true;
}

/// Empty when every field of `values` is in its range and the table's rules
/// between fields hold; otherwise a message naming the field (in
/// `spelling`), its value and the legal range.
template <typename S>
std::string validateFields(const ScheduleTable<S> &table, const FieldValues &values,
                           FieldSpelling spelling) {
  const bool ir = spelling == FieldSpelling::Ir;
  const std::string prefix = ir ? table.irName : table.structName;
  if (values.size() != table.size())
    return prefix + " has " + std::to_string(values.size()) + " values, expected " +
           std::to_string(table.size());
  size_t i = 0;
  for (const ScheduleField<S> &f : table.fields) {
    const int n = f.components();
    for (int c = 0; c < n; ++c) {
      const int64_t v = values[i + c];
      if (f.ranges[c].contains(v))
        continue;
      if (!ir)
        return prefix + " " + f.memberNames[c] + " is " + std::to_string(v) + ", expected " +
               f.ranges[c].str();
      if (f.kind == FieldKind::Flag)
        return prefix + " " + f.irKey + " is " + std::to_string(v) + ", expected true or false";
      if (n == 1)
        return prefix + " " + f.irKey + " is " + std::to_string(v) + ", expected " +
               f.ranges[0].str();
      const std::string first = f.ranges[0].str(), second = f.ranges[1].str();
      return prefix + " " + f.irKey + " is " + pairText(values[i], values[i + 1], spelling) +
             ", expected " +
             (first == second ? first + " per side" : "[" + first + ", " + second + "]");
    }
    i += n;
  }
  return table.crossCheck ? table.crossCheck(table, scheduleFromValues(table, values), spelling)
                          : std::string();
}

/// validateFields() of a struct: messages in FieldSpelling::Struct.
template <typename S> std::string validateSchedule(const ScheduleTable<S> &table, const S &s) {
  return validateFields(table, fieldValues(table, s), FieldSpelling::Struct);
}

/// The schedule text: "key=value" per field in table order, flags as 0/1,
/// pairs as AxB.
template <typename S> std::string scheduleText(const ScheduleTable<S> &table, const S &s) {
  std::string text;
  const S defaults{};
  for (const ScheduleField<S> &f : table.fields) {
    std::string value;
    if (f.kind == FieldKind::Flag)
      value = s.*f.flag ? "1" : "0";
    else if (f.kind == FieldKind::Int)
      value = std::to_string(s.*f.ints[0]);
    else
      value = pairText(s.*f.ints[0], s.*f.ints[1], FieldSpelling::Struct);
    if (f.has(kTextOmitsDefault) && sameValue(f, s, defaults))
      continue;
    text += (text.empty() ? "" : " ") + std::string(f.textKey) + "=" + value;
  }
  return text;
}

/// Reads scheduleText()'s form into `*out`, validated. Strict: an unknown or
/// missing field is an error, so a text written by another code generator is
/// never half-read. Returns empty, or the message.
template <typename S>
std::string parseScheduleText(const ScheduleTable<S> &table, const std::string &text, S *out) {
  std::map<std::string, std::string> fields;
  if (std::string err = splitTextFields(table.textName, text, fields); !err.empty())
    return err;
  const std::string what = table.textName;
  FieldValues values = fieldValues(table, S{});
  size_t i = 0;
  for (const ScheduleField<S> &f : table.fields) {
    const int n = f.components();
    auto it = fields.find(f.textKey);
    if (it == fields.end()) {
      if (!f.has(kTextOmitsDefault))
        return what + " '" + text + "' has no field " + f.textKey;
      i += n;
      continue;
    }
    const std::string &value = it->second;
    const std::string shown = what + " field " + f.textKey + "=" + value;
    if (f.kind == FieldKind::Flag) {
      if (value != "0" && value != "1")
        return shown + " is not 0 or 1";
      values[i] = value == "1";
    } else if (f.kind == FieldKind::Int) {
      if (!parseTextInt(value, values[i]))
        return shown + " is not an integer";
    } else {
      const size_t x = value.find('x');
      if (x == std::string::npos || !parseTextInt(value.substr(0, x), values[i]) ||
          !parseTextInt(value.substr(x + 1), values[i + 1]))
        return shown + " is not AxB (two integers)";
    }
    fields.erase(it);
    i += n;
  }
  if (!fields.empty())
    return what + " '" + text + "' has unknown field " + fields.begin()->first +
           " (written by a newer code generator?)";
  if (std::string err = validateFields(table, values, FieldSpelling::Struct); !err.empty())
    return what + " '" + text + "': " + err;
  *out = scheduleFromValues(table, values);
  return {};
}

} // namespace slak::codegen
