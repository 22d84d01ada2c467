#include "codegen/KernelSpec.h"

#include "codegen/EnumNames.h"

#include <limits>
#include <sstream>

namespace slak::codegen {

namespace {
constexpr Named<ElementType> kElementTypes[] = {
    {"f32", ElementType::F32}, {"f16", ElementType::F16}, {"bf16", ElementType::BF16}};
} // namespace

std::string elementTypeChoices() { return nameList(kElementTypes); }

const char *elementTypeName(ElementType type) { return nameOf(kElementTypes, type); }

std::optional<ElementType> parseElementType(std::string_view name) {
  return valueOf(kElementTypes, name);
}

const char *dataLayoutName(DataLayout layout) {
  return layout == DataLayout::NHWC ? "nhwc" : "nchw";
}

int elementTypeBytes(ElementType type) { return type == ElementType::F32 ? 4 : 2; }

int64_t KernelSpec::outHeight(int64_t inH) const {
  const Branch &b = branches.front();
  return inH + 2 * b.padH - b.kernelH + 1;
}

int64_t KernelSpec::outWidth(int64_t inW) const {
  const Branch &b = branches.front();
  return inW + 2 * b.padW - b.kernelW + 1;
}

bool KernelSpec::anySparse() const {
  for (const Branch &b : branches)
    if (!b.dense)
      return true;
  return false;
}

std::string KernelSpec::validate() const {
  std::ostringstream err;
  if (channels <= 0)
    return "channels is " + std::to_string(channels) + ", expected a positive count";
  // The kernels take channels, height and width as 32-bit ints.
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
  if (channels > kMaxSize || height > kMaxSize || width > kMaxSize)
    return "channels " + std::to_string(channels) + ", height " + std::to_string(height) +
           " or width " + std::to_string(width) + " is too large, at most " +
           std::to_string(kMaxSize);
  if (branches.empty())
    return "a layer needs at least one branch, found none";
  if (perBranchOutputs && hasBias)
    return "a bias with per-branch outputs is ambiguous: fold it into the per-branch BatchNorm "
           "or use a summed output";
  for (size_t i = 0; i < branches.size(); ++i) {
    const Branch &b = branches[i];
    if (b.kernelH <= 0 || b.kernelW <= 0 || b.kernelH % 2 == 0 || b.kernelW % 2 == 0) {
      err << "branch " << i << " has kernel " << b.kernelH << "x" << b.kernelW
          << ", expected odd positive sizes";
      return err.str();
    }
    if (b.kernelH >= 65536 || b.kernelW >= 65536) {
      err << "branch " << i << " kernel " << b.kernelH << "x" << b.kernelW
          << " is too large for the tap encoding (< 65536)";
      return err.str();
    }
    if (b.padH < 0 || b.padW < 0 || b.padH >= b.kernelH || b.padW >= b.kernelW) {
      err << "branch " << i << " has padding " << b.padH << "x" << b.padW << " for kernel "
          << b.kernelH << "x" << b.kernelW << ", expected 0 <= pad < kernel";
      return err.str();
    }
    const Branch &f = branches.front();
    if (2 * b.padH - b.kernelH != 2 * f.padH - f.kernelH ||
        2 * b.padW - b.kernelW != 2 * f.padW - f.kernelW) {
      err << "branch " << i << " (kernel " << b.kernelH << "x" << b.kernelW << ", padding "
          << b.padH << "x" << b.padW << ") gives a different output size than branch 0";
      return err.str();
    }
  }
  if (height != -1 && height <= 0)
    return "height is " + std::to_string(height) + ", expected positive or -1 (dynamic)";
  if (width != -1 && width <= 0)
    return "width is " + std::to_string(width) + ", expected positive or -1 (dynamic)";
  if (height > 0 && outHeight(height) <= 0)
    return "output height would be " + std::to_string(outHeight(height));
  if (width > 0 && outWidth(width) <= 0)
    return "output width would be " + std::to_string(outWidth(width));
  return schedule.validate();
}

std::string KernelSpec::signature() const {
  std::ostringstream os;
  os << "lk_conv.v1 C=" << channels << " H=" << height << " W=" << width
     << " T=" << elementTypeName(elementType) << " out=" << (perBranchOutputs ? "branches" : "sum")
     << " bias=" << hasBias << " dwdense=" << denseWeightGrad;
  if (channelsLast())
    os << " layout=" << dataLayoutName(layout);
  for (const Branch &b : branches)
    os << " b=" << b.kernelH << "x" << b.kernelW << "p" << b.padH << "x" << b.padW
       << (b.dense ? "d" : "s");
  os << " " << schedule.str();
  return os.str();
}

} // namespace slak::codegen
