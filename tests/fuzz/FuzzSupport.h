// Shared by the fuzz targets: one temporary folder per process for the
// files the code under test reads and writes.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace slak::fuzz {

/// $TMPDIR/<name>-XXXXXX, made on first use and removed at exit (a crash
/// leaves it behind; scripts/fuzz.sh points TMPDIR into the build tree).
inline const std::string &processTempDir(const char *name) {
  // Never destroyed: the exit handler runs after static destructors would.
  static const std::string *dir = [name] {
    const char *base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/" + name + "-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      std::perror(("cannot create a temporary folder " + pattern).c_str());
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(processTempDir(""), ec);
    });
    return new std::string(pattern);
  }();
  return *dir;
}

/// SLAK_FUZZ_VERBOSE=1: the targets print why an input was refused (to see
/// what a seed or a reproducer exercises).
inline bool verbose() {
  static const bool on = [] {
    const char *v = std::getenv("SLAK_FUZZ_VERBOSE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

} // namespace slak::fuzz
