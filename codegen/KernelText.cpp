#include "codegen/KernelText.h"

#include <vector>

#include "codegen/KernelArguments.h"
#include "codegen/KernelEmitter.h"

namespace slak::codegen {

std::string entryPointName(const std::string &base, KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return base + "_fwd";
  case KernelKind::BackwardData:
    return base + "_bwd_data";
  case KernelKind::BackwardWeight:
    return base + "_bwd_weight";
  case KernelKind::BackwardWeightReduce:
    return base + "_bwd_weight_reduce";
  }
  return base;
}

KernelText::KernelText(const KernelPlan &plan)
    : plan_(plan), spec_(plan.spec), s_(plan.spec.schedule), base_(kernelBaseName(plan.spec)),
      t_(preludeTypeSuffix(plan.spec.elementType)) {}

std::string KernelText::ld(const std::string &ptr, const std::string &index) const {
  return cat("slak_ld_", t_, "(", ptr, ", ", index, ")");
}

std::string KernelText::ld2(const std::string &ptr, const std::string &base, const std::string &y,
                            const std::string &x, const std::string &h,
                            const std::string &w) const {
  return cat("slak_ld2_", t_, "(", ptr, ", ", base, ", ", y, ", ", x, ", ", h, ", ", w, ")");
}

std::string KernelText::ldNhwc(const std::string &ptr, const std::string &base,
                               const std::string &y, const std::string &x, const std::string &ch,
                               const std::string &h, const std::string &w) const {
  return cat("((", y, ") >= 0 && (", y, ") < ", h, " && (", x, ") >= 0 && (", x, ") < ", w, " ? ",
             ld(ptr, cat(base, " + ((slak_i64)(", y, ") * ", w, " + (", x, ")) * ", spec_.channels,
                         " + (", ch, ")")),
             " : 0.0f)");
}

std::string KernelText::st(const std::string &ptr, const std::string &index,
                           const std::string &value) const {
  return cat("slak_st_", t_, "(", ptr, ", ", index, ", ", value, ");");
}

void KernelText::signature(Code &c, KernelKind kind) const {
  using Type = KernelParameter::Type;
  const std::string element = cat("slak_", t_, "_t");
  std::vector<std::string> params;
  for (const KernelParameter &p : kernelParameters(kind)) {
    std::string type;
    switch (p.type) {
    case Type::ConstElements:
      type = "SLAK_GLOBAL const " + element + " *SLAK_RESTRICT";
      break;
    case Type::Elements:
      type = "SLAK_GLOBAL " + element + " *SLAK_RESTRICT";
      break;
    case Type::ConstInts:
      type = "SLAK_GLOBAL const int *SLAK_RESTRICT";
      break;
    case Type::ConstFloats:
      type = "SLAK_GLOBAL const float *SLAK_RESTRICT";
      break;
    case Type::Floats:
      type = "SLAK_GLOBAL float *SLAK_RESTRICT";
      break;
    case Type::Int:
      type = "int";
      break;
    }
    params.push_back(type + " " + p.name);
  }
  const int threads = plan_.threads[static_cast<int>(kind)];
  c("SLAK_KERNEL(", threads, ", ", launchMinBlocks(threads), ")");
  // Two parameters on the first line, two (the tap table) on the next, the
  // rest on the last.
  std::string line = entryName(kind) + "(";
  for (size_t i = 0; i < params.size(); ++i) {
    line += params[i];
    if (i + 1 == params.size()) {
      c(line, ")");
    } else if (i == 1 || i == 3) {
      c(line, ",");
      line = "    ";
    } else {
      line += ", ";
    }
  }
}

void KernelText::sizes(Code &c) const {
  const Branch &first = spec_.branches[0];
  c("const int H = ", spec_.height > 0 ? std::to_string(spec_.height) : "height", ";");
  c("const int W = ", spec_.width > 0 ? std::to_string(spec_.width) : "width", ";");
  c("const int HO = H + (", 2 * first.padH - first.kernelH + 1, ");");
  c("const int WO = W + (", 2 * first.padW - first.kernelW + 1, ");");
}

} // namespace slak::codegen
