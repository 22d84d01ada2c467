// Progress: a one-line progress bar with an ETA for long tuning runs. On a
// terminal it redraws in place ("\r"); otherwise (logs, CI) it prints a line
// at every tenth of the work so logs stay short. A null stream disables it.
#pragma once

#include <chrono>
#include <cstddef>
#include <ostream>
#include <string>

namespace slak::autotune {

class ProgressBar {
public:
  ProgressBar(std::ostream *out, std::string label, size_t total);
  ~ProgressBar();
  /// `done` of total finished; `note` names the current item.
  void update(size_t done, const std::string &note = {});
  /// Prints a message on its own line (e.g. a failed candidate).
  void message(const std::string &text);
  void finish();

  /// "1:05", "12:00:03": for ETAs.
  static std::string formatSeconds(double seconds);

private:
  void draw(bool force);
  std::ostream *out_;
  std::string label_, note_;
  size_t total_, done_ = 0;
  int lastDecile_ = -1;
  bool tty_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, lastDraw_;
};

} // namespace slak::autotune
