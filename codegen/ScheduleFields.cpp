#include "codegen/ScheduleFields.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace slak::codegen {

bool FieldRange::contains(int64_t value) const {
  if (value < min || value > max)
    return false;
  return !powerOfTwo || (value > 0 && (value & (value - 1)) == 0);
}

std::string FieldRange::str() const {
  const std::string span = std::to_string(min) + ".." + std::to_string(max);
  return powerOfTwo ? "a power of two in " + span : span;
}

std::string splitTextFields(const char *what, const std::string &text,
                            std::map<std::string, std::string> &fields) {
  std::istringstream in(text);
  for (std::string token; in >> token;) {
    const size_t eq = token.find('=');
    if (eq == std::string::npos || eq == 0)
      return std::string(what) + " '" + text + "': '" + token + "' is not key=value";
    if (!fields.emplace(token.substr(0, eq), token.substr(eq + 1)).second)
      return std::string(what) + " '" + text + "' repeats " + token.substr(0, eq);
  }
  return {};
}

bool parseTextInt(const std::string &text, int64_t &value) {
  if (text.empty() || !(text[0] == '-' || text[0] == '+' || (text[0] >= '0' && text[0] <= '9')))
    return false;
  errno = 0;
  char *end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size())
    return false;
  value = v;
  return true;
}

std::string pairText(int64_t first, int64_t second, FieldSpelling spelling) {
  if (spelling == FieldSpelling::Ir)
    return "[" + std::to_string(first) + ", " + std::to_string(second) + "]";
  return std::to_string(first) + "x" + std::to_string(second);
}

} // namespace slak::codegen
