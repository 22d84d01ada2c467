#include "autotune/Progress.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace slak::autotune {

ProgressBar::ProgressBar(std::ostream *out, std::string label, size_t total)
    : out_(out), label_(std::move(label)), total_(total) {
  start_ = lastDraw_ = std::chrono::steady_clock::now();
  tty_ = out_ == &std::cerr && isatty(STDERR_FILENO);
  if (out_ && total_ > 0)
    draw(true);
}

ProgressBar::~ProgressBar() { finish(); }

std::string ProgressBar::formatSeconds(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7)
    return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600)
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
  return buffer;
}

void ProgressBar::update(size_t done, const std::string &note) {
  done_ = std::min(done, total_);
  note_ = note;
  draw(false);
}

void ProgressBar::message(const std::string &text) {
  if (!out_)
    return;
  if (tty_)
    *out_ << "\r\033[K";
  *out_ << text << "\n";
  if (tty_)
    draw(true);
  out_->flush();
}

void ProgressBar::draw(bool force) {
  if (!out_ || total_ == 0 || finished_)
    return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int decile = static_cast<int>(10 * done_ / total_);
  if (!force) {
    if (tty_ && std::chrono::duration<double>(now - lastDraw_).count() < 0.1 && done_ < total_)
      return;
    if (!tty_ && decile == lastDecile_)
      return;
  }
  lastDraw_ = now;
  lastDecile_ = decile;
  constexpr int width = 24;
  const int filled = static_cast<int>(width * done_ / total_);
  std::ostringstream line;
  line << label_ << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
       << done_ << "/" << total_;
  if (done_ > 0 && done_ < total_)
    line << " ETA " << formatSeconds(elapsed / done_ * (total_ - done_));
  else
    line << " " << formatSeconds(elapsed);
  if (!note_.empty())
    line << "  " << note_;
  std::string text = line.str();
  if (tty_) {
    if (text.size() > 110)
      text = text.substr(0, 107) + "...";
    *out_ << "\r\033[K" << text;
  } else {
    *out_ << text << "\n";
  }
  out_->flush();
}

void ProgressBar::finish() {
  if (finished_ || !out_ || total_ == 0) {
    finished_ = true;
    return;
  }
  const bool drawn = done_ == total_ && lastDecile_ == 10;
  done_ = total_;
  note_.clear();
  if (!drawn || tty_)
    draw(true);
  if (tty_)
    *out_ << "\n";
  out_->flush();
  finished_ = true;
}

} // namespace slak::autotune
