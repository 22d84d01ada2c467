// ErrorMessage: what a LibTorch tool prints for the exception that ends it.
// c10::Error::what() carries LibTorch's C++ stack trace ("Exception raised
// from ... frame #0: ..."), which is noise to a user who gave a bad file or
// flag: print the message alone, and the trace only with SLAK_LOG=debug.
#pragma once

#include "runtime/Log.h"

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace slak::tools {

inline std::string errorMessage(const std::exception &e) {
  if (const auto *c10 = dynamic_cast<const c10::Error *>(&e); c10 && !runtime::debugLogging())
    return c10->what_without_backtrace();
  return e.what();
}

} // namespace slak::tools
