#include "tools/slak-translate/PackageOps.h"

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "dialect/SlakOps.h"
#include "passes/LkConvToSpec.h"

#include "llvm/Support/JSON.h"

#include <stdexcept>

namespace codegen = ::slak::codegen;

namespace {

std::vector<float> toFloats(const std::vector<double> &values) {
  return std::vector<float>(values.begin(), values.end());
}

} // namespace

mlir::FailureOr<std::vector<codegen::PackagedOp>> mlir::slak::packageLkConvs(ModuleOp module) {
  std::vector<codegen::PackagedOp> ops;
  unsigned index = 0;
  bool failedAny = false;
  module->walk([&](LkConvOp op) {
    FailureOr<LkConvCodegenInput> kernel = convertLkConv(op);
    if (failed(kernel)) {
      failedAny = true;
      return;
    }
    codegen::PackagedOp packaged;
    packaged.name = lkConvName(op, index++);
    if (size_t offset = 0; !llvm::json::isUTF8(packaged.name, &offset)) {
      emitError(op.getLoc()) << "the layer name \"" << llvm::json::fixUTF8(packaged.name)
                             << "\" (from the op's location or its function) is not UTF-8 text "
                                "(bad byte at offset "
                             << offset
                             << "); a kernel package stores layer names as JSON text: "
                                "name the location in UTF-8";
      failedAny = true;
      return;
    }
    try {
      if (kernel->defaultSchedule) {
        kernel->spec.schedule = codegen::defaultSchedule(kernel->spec);
        packaged.scheduleOrigin = "default";
        emitRemark(op.getLoc()) << "no #slak.schedule: using the default schedule ("
                                << kernel->spec.schedule.str() << ")";
      } else {
        packaged.scheduleOrigin = op.getScheduleAttr().getOrigin().getValue().str();
      }
      packaged.kernels = codegen::emitKernels(kernel->spec);
    } catch (const std::exception &e) {
      emitError(op.getLoc()) << "cannot generate kernels: " << e.what();
      failedAny = true;
      return;
    }
    packaged.table = kernel->table;
    if (kernel->constantWeights) {
      for (const std::vector<double> &w : kernel->weights)
        packaged.weights.push_back(toFloats(w));
      packaged.bias = toFloats(kernel->bias);
    }
    ops.push_back(std::move(packaged));
  });
  if (failedAny)
    return failure();
  return ops;
}
