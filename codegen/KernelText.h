// KernelText: what the conv-pass and weight-gradient emitters share when
// they write kernel text: an indenting line builder, loads and stores of the
// spec's element type, entry-point names and signatures (parameters from
// codegen/KernelArguments.h, launch bounds from codegen/KernelPlan.h) and
// the size prologue. Internal to codegen.
#pragma once

#include <sstream>
#include <string>

#include "codegen/KernelPlan.h"

namespace slak::codegen {

template <typename... Args> std::string cat(const Args &...args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// Indented text builder for the kernel body.
class Code {
public:
  template <typename... Args> void operator()(const Args &...args) {
    text_.append(2 * indent_, ' ');
    text_ += cat(args...);
    text_ += '\n';
  }
  template <typename... Args> void open(const Args &...args) {
    if (sizeof...(args) == 1 && cat(args...).empty())
      (*this)("{");
    else
      (*this)(args..., " {");
    ++indent_;
  }
  void close() {
    --indent_;
    (*this)("}");
  }
  void closeOpenElse() {
    --indent_;
    (*this)("} else {");
    ++indent_;
  }
  const std::string &str() const { return text_; }

private:
  std::string text_;
  int indent_ = 0;
};

/// "<base>_fwd", "<base>_bwd_data", "<base>_bwd_weight", "<base>_bwd_weight_reduce".
std::string entryPointName(const std::string &base, KernelKind kind);

/// Text helpers bound to one plan.
class KernelText {
public:
  explicit KernelText(const KernelPlan &plan);

  /// Element `index` of `ptr` as f32.
  std::string ld(const std::string &ptr, const std::string &index) const;
  /// Element (y, x) of the h x w plane at `base`, 0 outside it.
  std::string ld2(const std::string &ptr, const std::string &base, const std::string &y,
                  const std::string &x, const std::string &h, const std::string &w) const;
  /// Element (y, x, ch) of the h x w x C channels-last image at `base`, 0
  /// outside the image (ch must be a channel of it).
  std::string ldNhwc(const std::string &ptr, const std::string &base, const std::string &y,
                     const std::string &x, const std::string &ch, const std::string &h,
                     const std::string &w) const;
  /// Stores f32 `value` as element `index` of `ptr`.
  std::string st(const std::string &ptr, const std::string &index, const std::string &value) const;
  std::string entryName(KernelKind kind) const { return entryPointName(base_, kind); }
  /// The launch bounds and the parameter list of entry point `kind`; the
  /// body follows.
  void signature(Code &c, KernelKind kind) const;
  /// H, W (static or from the arguments), HO and WO.
  void sizes(Code &c) const;

protected:
  const KernelPlan &plan_;
  const KernelSpec &spec_;
  const Schedule &s_;
  std::string base_;
  std::string t_; // element type suffix of the prelude's helpers
};

} // namespace slak::codegen
