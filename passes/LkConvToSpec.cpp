#include "passes/LkConvToSpec.h"

#include "dialect/ConstantData.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

using namespace mlir;
namespace codegen = ::slak::codegen;

namespace mlir::slak {

FailureOr<LkConvCodegenInput> convertLkConv(LkConvOp op) {
  LkConvCodegenInput kernel;
  codegen::KernelSpec &spec = kernel.spec;
  RankedTensorType input = op.getInput().getType();
  spec.channels = input.getDimSize(1);
  spec.height = input.isDynamicDim(2) ? -1 : input.getDimSize(2);
  spec.width = input.isDynamicDim(3) ? -1 : input.getDimSize(3);
  spec.perBranchOutputs = op.getPerBranchOutputs();
  spec.hasBias = static_cast<bool>(op.getBias());
  Type element = input.getElementType();
  spec.elementType = element.isF16()    ? codegen::ElementType::F16
                     : element.isBF16() ? codegen::ElementType::BF16
                                        : codegen::ElementType::F32;

  TapsAttr taps = op.getTapsAttr();
  for (unsigned b = 0; b < op.getNumBranches(); ++b) {
    // Without tap statistics a masked op is sparse (tables at run time).
    bool dense = op.getMasks().empty();
    if (taps)
      dense = !cast<BranchTapsAttr>(taps.getBranches()[b]).getTableForm();
    spec.branches.push_back(
        codegen::Branch{static_cast<int>(op.getKernelH(b)), static_cast<int>(op.getKernelW(b)),
                        static_cast<int>(op.getPadH(b)), static_cast<int>(op.getPadW(b)), dense});
  }

  // Without one the caller picks codegen::defaultSchedule(spec) (it may
  // throw, and this library is built without exceptions).
  if (ScheduleAttr schedule = op.getScheduleAttr())
    spec.schedule = schedule.getSchedule();
  else
    kernel.defaultSchedule = true;
  std::string invalid = spec.validate();
  if (!invalid.empty())
    return op.emitOpError() << "cannot be converted to a kernel: " << invalid;

  // The tap table: the op's own, else built from constant masks, else (no
  // masks) the dense table; none for runtime-sparse ops.
  if (ElementsAttr tableAttr = op.getTapTableAttr()) {
    std::optional<std::vector<int32_t>> flat = readInt32s(tableAttr);
    if (!flat)
      return op.emitOpError() << "tap_table cannot be read (an elided or external blob)";
    const size_t heads = op.getNumBranches() * spec.channels + 1;
    codegen::TapTable table;
    table.channels = spec.channels;
    table.numBranches = op.getNumBranches();
    table.offsets.assign(flat->begin(), flat->begin() + heads);
    table.taps.assign(flat->begin() + heads, flat->end());
    kernel.table = std::move(table);
  } else if (!op.getRuntimeSparse()) {
    std::vector<codegen::BranchMask> masks(op.getNumBranches());
    bool known = true;
    for (unsigned b = 0; b < op.getMasks().size(); ++b) {
      std::optional<std::vector<uint8_t>> mask = readBools(constantElements(op.getMasks()[b]));
      known &= mask.has_value();
      if (mask)
        masks[b] = std::move(*mask);
    }
    if (known)
      kernel.table = codegen::buildTapTable(spec, masks);
  }

  kernel.constantWeights = true;
  for (Value weight : op.getWeights()) {
    std::optional<std::vector<double>> values = readFloats(constantElements(weight));
    kernel.constantWeights &= values.has_value();
    kernel.weights.push_back(values ? std::move(*values) : std::vector<double>{});
  }
  if (Value bias = op.getBias()) {
    std::optional<std::vector<double>> values = readFloats(constantElements(bias));
    kernel.constantWeights &= values.has_value();
    if (values)
      kernel.bias = std::move(*values);
  }
  return kernel;
}

std::string lkConvName(LkConvOp op, unsigned index) {
  Location loc = op.getLoc();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(inner))
        return name.getName().str();
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  if (auto func = op->getParentOfType<func::FuncOp>()) {
    unsigned count = 0;
    func.walk([&](LkConvOp) { ++count; });
    if (count == 1)
      return func.getSymName().str();
  }
  return "lk_conv_" + std::to_string(index);
}

} // namespace mlir::slak
