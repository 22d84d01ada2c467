// Log: the runtime's one-line messages on stderr ("[slak] ..."), e.g. which
// CPU backend runs, or that a cache entry was corrupt. SLAK_LOG=0 silences
// them; SLAK_LOG=debug (or 2) adds debug messages; 1 or unset is the default,
// and any other value is warned about once. MLIR- and LibTorch-free.
#pragma once

#include <string>

namespace slak::runtime {

/// Prints "[slak] <message>" unless SLAK_LOG=0.
void logMessage(const std::string &message);
/// Prints the message only the first time `key` is seen in this process.
void logOnce(const std::string &key, const std::string &message);
/// Debug level: printed only with SLAK_LOG=debug (or 2), e.g. which
/// schedule (tuned or default) each kernel was built with.
bool debugLogging();
void logDebug(const std::string &message);

} // namespace slak::runtime
