// slak-translate: from a (fused, specialised, scheduled) slak module to
// deployable artefacts.
//
//   slak-translate --emit-kernel-package -o DIR model.mlir
//
// writes a kernel package (codegen/package/KernelPackage.h) holding the
// CUDA and OpenCL kernels, tap tables and constant weights of every
// slak.lk_conv in the module.
#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/package/KernelPackage.h"
#include "dialect/SlakDialect.h"
#include "dialect/SlakOps.h"
#include "passes/LkConvToSpec.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <stdexcept>

using namespace mlir;
namespace codegen = ::slak::codegen;

namespace {

llvm::cl::opt<std::string> inputFile(llvm::cl::Positional, llvm::cl::desc("<input .mlir>"),
                                     llvm::cl::init("-"));
llvm::cl::opt<bool> emitKernelPackage(
    "emit-kernel-package",
    llvm::cl::desc("Write a kernel package (manifest.json, kernels.cu, kernels.cl, data.bin)"));
llvm::cl::opt<std::string> outputDir("o", llvm::cl::desc("Output folder of the package"),
                                     llvm::cl::value_desc("dir"));

std::vector<float> toFloats(const std::vector<double> &values) {
  return std::vector<float>(values.begin(), values.end());
}

int run() {
  if (!emitKernelPackage) {
    llvm::errs() << "slak-translate: nothing to do; pass --emit-kernel-package -o DIR\n";
    return 1;
  }
  if (outputDir.empty()) {
    llvm::errs() << "slak-translate: --emit-kernel-package needs an output folder: -o DIR\n";
    return 1;
  }
  DialectRegistry registry;
  registry.insert<mlir::slak::SlakDialect, func::FuncDialect, arith::ArithDialect,
                  tensor::TensorDialect>();
  MLIRContext context(registry);
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> file = openInputFile(inputFile, &error);
  if (!file) {
    llvm::errs() << "slak-translate: " << error << "\n";
    return 1;
  }
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  sourceMgr->AddNewSourceBuffer(std::move(file), SMLoc());
  SourceMgrDiagnosticHandler diagnostics(*sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1;

  std::vector<codegen::PackagedOp> ops;
  unsigned index = 0;
  bool failedAny = false;
  module->walk([&](mlir::slak::LkConvOp op) {
    FailureOr<mlir::slak::LkConvKernel> kernel = mlir::slak::convertLkConv(op);
    if (failed(kernel)) {
      failedAny = true;
      return;
    }
    codegen::PackagedOp packaged;
    packaged.name = mlir::slak::lkConvName(op, index++);
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
    return 1;
  if (ops.empty())
    module->emitWarning() << "no slak.lk_conv in the module: the package has no ops "
                             "(run slak-opt --slak-pipeline first?)";
  try {
    codegen::writeKernelPackage(outputDir, ops, "slak-translate 0.1.0");
  } catch (const std::exception &e) {
    llvm::errs() << "slak-translate: " << e.what() << "\n";
    return 1;
  }
  llvm::errs() << "slak-translate: wrote " << ops.size() << " op(s) to " << outputDir << "\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  llvm::cl::ParseCommandLineOptions(argc, argv, "slak translator: kernel packages\n");
  return run();
}
