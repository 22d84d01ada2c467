// slak-opt: the MLIR optimiser driver with the slak dialect and its passes.
#include "codegen/FileKind.h"
#include "dialect/ResourceBlobs.h"
#include "dialect/SlakDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "passes/Passes.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

int main(int argc, char **argv) {
  mlir::registerTransformsPasses(); // canonicalize, cse, ...
  mlir::slak::registerAllSlakPasses();
  mlir::DialectRegistry registry;
  registry.insert<mlir::slak::SlakDialect, mlir::func::FuncDialect, mlir::arith::ArithDialect,
                  mlir::tensor::TensorDialect>();
  auto [input, output] = mlir::registerAndParseCLIOptions(
      argc, argv, "slak optimizer: sparse large-kernel convolutions\n", registry);
  // A checkpoint, image or database given as IR: say what it is, not what
  // the parser thinks of its first byte.
  if (std::string error = slak::codegen::notMlirInput(input); !error.empty()) {
    llvm::errs() << "slak-opt: " << error << "\n";
    return 1;
  }
  // A blob MLIR's parser would abort on (dialect/ResourceBlobs.h); standard
  // input is read by MlirOptMain itself and not checked.
  if (input != "-")
    if (auto file = llvm::MemoryBuffer::getFile(input))
      if (auto problem = mlir::slak::zeroAlignedResourceBlob((*file)->getBuffer())) {
        llvm::errs() << input << ":" << problem->line << ":" << problem->column
                     << ": error: " << problem->message << "\n";
        return 1;
      }
  return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, input, output, registry));
}
