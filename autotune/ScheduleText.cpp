#include "autotune/ScheduleText.h"

#include <sstream>
#include <stdexcept>

namespace slak::autotune {
namespace {

int toInt(const std::string &key, const std::string &value) {
  return parseIntField("schedule", key, value);
}

bool toBool(const std::string &key, const std::string &value) {
  return parseBoolField("schedule", key, value);
}

void toPair(const std::string &key, const std::string &value, int &a, int &b) {
  const size_t x = value.find('x');
  if (x == std::string::npos)
    throw std::invalid_argument("schedule field " + key + "=" + value + " is not AxB");
  a = toInt(key, value.substr(0, x));
  b = toInt(key, value.substr(x + 1));
}

} // namespace

std::map<std::string, std::string> parseFields(const std::string &text) {
  std::map<std::string, std::string> fields;
  std::istringstream in(text);
  for (std::string token; in >> token;) {
    const size_t eq = token.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument("schedule text '" + text + "': '" + token + "' is not key=value");
    if (!fields.emplace(token.substr(0, eq), token.substr(eq + 1)).second)
      throw std::invalid_argument("schedule text '" + text + "' repeats " + token.substr(0, eq));
  }
  return fields;
}

codegen::Schedule parseSchedule(const std::string &text) {
  auto fields = parseFields(text);
  codegen::Schedule s;
  auto take = [&](const char *key) {
    auto it = fields.find(key);
    if (it == fields.end())
      throw std::invalid_argument("GPU schedule '" + text + "' has no field " + key);
    std::string value = it->second;
    fields.erase(it);
    return value;
  };
  toPair("tile", take("tile"), s.tileH, s.tileW);
  toPair("block", take("block"), s.blockH, s.blockW);
  s.stageInput = toBool("stageInput", take("stageInput"));
  s.stageTaps = toBool("stageTaps", take("stageTaps"));
  s.maskedWalk = toBool("maskedWalk", take("maskedWalk"));
  s.weightSplit = toInt("weightSplit", take("weightSplit"));
  s.weightThreads = toInt("weightThreads", take("weightThreads"));
  toPair("weightTile", take("weightTile"), s.weightTileH, s.weightTileW);
  s.weightRowsPerThread = toInt("weightRows", take("weightRows"));
  if (!fields.empty())
    throw std::invalid_argument("GPU schedule '" + text + "' has unknown field " +
                                fields.begin()->first + " (written by a newer code generator?)");
  if (std::string err = s.validate(); !err.empty())
    throw std::invalid_argument("GPU schedule '" + text + "': " + err);
  return s;
}

int parseIntField(const char *what, const std::string &key, const std::string &value) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(value, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != value.size())
    throw std::invalid_argument(std::string(what) + " field " + key + "=" + value +
                                " is not an integer");
  return v;
}

bool parseBoolField(const char *what, const std::string &key, const std::string &value) {
  if (value != "0" && value != "1")
    throw std::invalid_argument(std::string(what) + " field " + key + "=" + value +
                                " is not 0 or 1");
  return value == "1";
}

} // namespace slak::autotune
