// ScheduleText: schedules as the text the database stores. A GPU schedule is
// codegen::Schedule::str() ("tile=16x32 block=4x32 stageInput=1 ..."); the
// CPU schedule's text and parser live in CpuTuning.h. Parsing is strict: an
// unknown or missing field is an error, so a database written by another
// code generator is never half-read.
#pragma once

#include <map>
#include <string>

#include "codegen/KernelSpec.h"

namespace slak::autotune {

/// key=value pairs separated by spaces. Throws std::invalid_argument on a
/// token without '=' or a repeated key.
std::map<std::string, std::string> parseFields(const std::string &text);

/// The integer / 0-or-1 value of field `key`; throws std::invalid_argument
/// "<what> field key=value is not ..." (`what`: "schedule", "CPU schedule").
int parseIntField(const char *what, const std::string &key, const std::string &value);
bool parseBoolField(const char *what, const std::string &key, const std::string &value);

/// Inverse of codegen::Schedule::str(). Throws std::invalid_argument naming
/// the bad field; the result is validated (Schedule::validate()).
codegen::Schedule parseSchedule(const std::string &text);

} // namespace slak::autotune
