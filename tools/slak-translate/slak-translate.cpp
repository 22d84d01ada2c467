// slak-translate: from a (fused, specialised, scheduled) slak module to
// deployable artefacts.
//
//   slak-translate --emit-kernel-package -o DIR model.mlir
//
// writes a kernel package (codegen/package/KernelPackage.h) holding the
// CUDA and OpenCL kernels, tap tables and constant weights of every
// slak.lk_conv in the module.
#include "codegen/package/KernelPackage.h"
#include "dialect/ResourceBlobs.h"
#include "dialect/SlakDialect.h"
#include "tools/slak-translate/PackageOps.h"

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
  // A blob MLIR's parser would abort on (dialect/ResourceBlobs.h).
  if (auto problem = mlir::slak::zeroAlignedResourceBlob(file->getBuffer())) {
    llvm::errs() << file->getBufferIdentifier() << ":" << problem->line << ":" << problem->column
                 << ": error: " << problem->message << "\n";
    return 1;
  }
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  sourceMgr->AddNewSourceBuffer(std::move(file), SMLoc());
  SourceMgrDiagnosticHandler diagnostics(*sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1;

  FailureOr<std::vector<codegen::PackagedOp>> packaged = mlir::slak::packageLkConvs(*module);
  if (failed(packaged))
    return 1;
  const std::vector<codegen::PackagedOp> &ops = *packaged;
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
