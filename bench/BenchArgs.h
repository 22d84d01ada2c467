// BenchArgs: what the benchmark programs' command lines share: walking argv
// flag by flag and splitting comma-separated lists. A bad command line ends
// in the program's own usage function (message, usage text, exit 2).
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace slak::bench {

/// argv after the program name, one argument at a time.
class ArgWalker {
public:
  using Fail = std::function<void(const std::string &)>; // must not return
  ArgWalker(int argc, char **argv, Fail fail) : argc_(argc), argv_(argv), fail_(std::move(fail)) {}
  bool done() const { return next_ >= argc_; }
  /// The next flag.
  std::string next() { return flag_ = argv_[next_++]; }
  /// The argument after the current flag; fail(flag + " needs a value") when none.
  std::string value() {
    if (next_ >= argc_)
      fail_(flag_ + " needs a value");
    return argv_[next_++];
  }

private:
  int argc_;
  char **argv_;
  Fail fail_;
  int next_ = 1;
  std::string flag_;
};

/// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> splitCommas(const std::string &text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty())
      out.push_back(item);
  return out;
}

} // namespace slak::bench
