// EnumNames: the names of an enum's values as one table per enum, from which
// both directions come (value -> name for messages and files, name -> value
// for flags and files), so that a value's spelling is written once.
//
//   constexpr Named<Origin> kOrigins[] = {{"measured", Origin::Measured}, ...};
//   nameOf(kOrigins, origin);          // "measured"; "?" for a value not listed
//   valueOf(kOrigins, "model");        // std::optional<Origin>
//   nameList(kOrigins);                // "measured, model or default"
//
// A value may have several names (aliases accepted when parsing); its first
// is the one printed and listed.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slak::codegen {

template <typename E> struct Named {
  const char *name;
  E value;
};

template <typename E, size_t N> const char *nameOf(const Named<E> (&names)[N], E value) {
  for (const Named<E> &n : names)
    if (n.value == value)
      return n.name;
  return "?";
}

template <typename E, size_t N>
std::optional<E> valueOf(const Named<E> (&names)[N], std::string_view name) {
  for (const Named<E> &n : names)
    if (name == n.name)
      return n.value;
  return std::nullopt;
}

/// "a, b or c" (each value once, by its first name); `quote` around each.
template <typename E, size_t N>
std::string nameList(const Named<E> (&names)[N], const char *quote = "") {
  std::vector<const char *> listed; // each value's first name
  for (size_t i = 0; i < N; ++i)
    if (std::string_view(nameOf(names, names[i].value)) == names[i].name)
      listed.push_back(names[i].name);
  std::string out;
  for (size_t i = 0; i < listed.size(); ++i) {
    if (i > 0)
      out += i + 1 == listed.size() ? " or " : ", ";
    out += std::string(quote) + listed[i] + quote;
  }
  return out;
}

} // namespace slak::codegen
