// slak-fuzz-ir: arbitrary bytes -> the MLIR parser with slak-opt's dialects
// -> the verifier -> the slak passes and pipelines -> the kernel-package
// writer and reader. See docs/fuzzing.md.
//
// Besides crashes and sanitizer reports, the target aborts on these bugs:
//   - a module that parsed and verified does not read back from its own
//     printed form (a printer/parser mismatch);
//   - a pass succeeds but leaves IR that does not verify;
//   - a pass pipeline fails without emitting an error (the user would get
//     no message);
//   - a kernel spec converted from a slak.lk_conv describes another layer
//     than the op (a size or schedule value that did not survive the
//     conversion);
//   - a package that slak-translate's writer wrote is refused by the
//     runtime's reader.
// Every other diagnostic is user input being refused, which is fine.
#include "codegen/package/KernelPackage.h"
#include "dialect/ResourceBlobs.h"
#include "dialect/SlakDialect.h"
#include "dialect/SlakOps.h"
#include "passes/Passes.h"
#include "tools/slak-translate/PackageOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

#include "tests/fuzz/FuzzSupport.h"

using namespace mlir;
namespace fs = std::filesystem;

namespace {

/// Everything the passes said, for the report when a check fails.
struct Diagnostics {
  std::string text;
  int errors = 0;
};

[[noreturn]] void bug(const std::string &what, const Diagnostics &diags, const std::string &ir) {
  std::fprintf(stderr, "slak-fuzz-ir: BUG: %s\n--- diagnostics ---\n%s--- IR ---\n%s\n",
               what.c_str(), diags.text.c_str(), ir.c_str());
  std::abort();
}

std::string print(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os, OpPrintingFlags().printGenericOpForm(false));
  return text;
}

/// Verifies the IR after every pass that succeeded: a pass that leaves
/// invalid IR behind is a compiler bug, not an input error.
class VerifyAfterEachPass : public PassInstrumentation {
public:
  explicit VerifyAfterEachPass(const Diagnostics &diags) : diags_(diags) {}
  void runAfterPass(Pass *pass, Operation *op) override {
    if (failed(verify(op)))
      bug("pass " + pass->getArgument().str() + " produced IR that does not verify", diags_,
          print(op));
  }

private:
  const Diagnostics &diags_;
};

/// Layers big enough to run the fuzzer out of memory: the passes read every
/// element of constant tensors and build tap tables of C x KH x KW entries
/// (a dense 2^31-channel layer needs an 8 GB table). A real model's largest
/// is below 2^20 elements (SLaK-B stage 1: 166 channels x 51x5).
bool hasHugeLayer(ModuleOp module) {
  constexpr int64_t kMaxElements = int64_t(1) << 22;
  auto huge = [&](Type type) {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape())
      return false;
    int64_t elements = 1; // getNumElements() could overflow
    for (int64_t d : tensor.getShape())
      if (d != 0 &&
          (elements = elements > kMaxElements / d ? kMaxElements + 1 : elements * d) > kMaxElements)
        return true;
    return false;
  };
  bool found = false;
  module->walk([&](Operation *op) {
    if (isa<arith::ConstantOp>(op))
      found |= llvm::any_of(op->getResultTypes(), huge);
    if (isa<mlir::slak::SlakDialect>(op->getDialect()))
      found |= llvm::any_of(op->getOperandTypes(), [&](Type type) {
        auto tensor = dyn_cast<RankedTensorType>(type);
        // weights and masks (rank 4, dim 1 == 1)
        return tensor && tensor.getRank() == 4 && tensor.getDimSize(1) == 1 && huge(type);
      });
  });
  return found;
}

struct PipelineRun {
  const char *name;
  void (*build)(OpPassManager &pm, const std::string &tmp);
};

const PipelineRun kRuns[] = {
    {"slak-pipeline{mode=train}",
     [](OpPassManager &pm, const std::string &) {
       mlir::slak::buildSlakPipeline(pm, mlir::slak::PipelineOptions{"train"});
     }},
    // The cost model on a miss: a per-process database, so nothing outside
    // the temporary folder is read or written.
    {"slak-pipeline{mode=infer device=a100}",
     [](OpPassManager &pm, const std::string &tmp) {
       mlir::slak::PipelineOptions options;
       options.mode = "infer";
       options.device = "a100";
       options.db = tmp + "/tuning.db";
       mlir::slak::buildSlakPipeline(pm, options);
     }},
    // The passes on their own, on whatever the input holds (lk_conv ops
    // with taps, tables and schedules written by hand).
    {"fuse-lk{mode=infer},specialize-sparsity{trim=false density-threshold=0}",
     [](OpPassManager &pm, const std::string &) {
       pm.addPass(mlir::slak::createSlakFuseLk(mlir::slak::SlakFuseLkOptions{"infer"}));
       mlir::slak::SlakSpecializeSparsityOptions specialize;
       specialize.trim = false;
       specialize.densityThreshold = 0;
       pm.addPass(mlir::slak::createSlakSpecializeSparsity(specialize));
     }},
};

/// Empty when `spec` is the layer `op` describes, else the first difference.
std::string specMismatch(mlir::slak::LkConvOp op, const ::slak::codegen::KernelSpec &spec) {
  std::string diff;
  auto check = [&](const std::string &what, int64_t inSpec, int64_t inOp) {
    if (diff.empty() && inSpec != inOp)
      diff = what + " is " + std::to_string(inSpec) + " in the spec, " + std::to_string(inOp) +
             " in the op";
  };
  RankedTensorType input = op.getInput().getType();
  check("channels", spec.channels, input.getDimSize(1));
  check("height", spec.height, input.isDynamicDim(2) ? -1 : input.getDimSize(2));
  check("width", spec.width, input.isDynamicDim(3) ? -1 : input.getDimSize(3));
  check("branches", spec.branches.size(), op.getNumBranches());
  for (unsigned b = 0; b < op.getNumBranches() && diff.empty(); ++b) {
    const std::string name = "branch " + std::to_string(b);
    check(name + " kernel height", spec.branches[b].kernelH, op.getKernelH(b));
    check(name + " kernel width", spec.branches[b].kernelW, op.getKernelW(b));
    check(name + " padding height", spec.branches[b].padH, op.getPadH(b));
    check(name + " padding width", spec.branches[b].padW, op.getPadW(b));
  }
  if (mlir::slak::ScheduleAttr s = op.getScheduleAttr()) {
    // Every field of the table, flags included.
    const auto &table = ::slak::codegen::scheduleFields();
    const ::slak::codegen::FieldValues inSpec = fieldValues(table, spec.schedule);
    const llvm::ArrayRef<int64_t> inOp = s.getValues();
    size_t i = 0;
    for (const auto &field : table.fields)
      for (int c = 0; c < field.components(); ++c, ++i)
        check(std::string("schedule ") + field.irKey +
                  (field.components() == 2 ? (c == 0 ? " height" : " width") : ""),
              inSpec[i], inOp[i]);
  }
  return diff;
}

/// The files under `dir` with their sizes, for a report.
std::string listFiles(const std::string &dir) {
  std::string text;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    text += it->path().string();
    if (it->is_regular_file(ec))
      text += " (" + std::to_string(it->file_size(ec)) + " bytes)";
    text += "\n";
  }
  return text;
}

/// slak-translate --emit-kernel-package into a temporary folder, then the
/// runtime's reader on what was written.
void emitAndReadPackage(ModuleOp module, const std::string &tmp, const Diagnostics &diags) {
  FailureOr<std::vector<::slak::codegen::PackagedOp>> ops = mlir::slak::packageLkConvs(module);
  if (failed(ops))
    return;
  size_t index = 0;
  module->walk([&](mlir::slak::LkConvOp op) {
    const ::slak::codegen::KernelSpec &spec = (*ops)[index++].kernels.spec;
    if (std::string diff = specMismatch(op, spec); !diff.empty())
      bug("the kernel spec of slak.lk_conv #" + std::to_string(index - 1) +
              " is not the op's layer: " + diff,
          diags, print(module));
  });
  const std::string dir = tmp + "/package";
  try {
    ::slak::codegen::writeKernelPackage(dir, *ops, "slak-fuzz-ir");
  } catch (const std::invalid_argument &) {
    return; // a layer the kernels cannot launch (too many blocks), said in the message
  } catch (const std::exception &e) {
    bug(std::string("writing the kernel package failed: ") + e.what(), diags, print(module));
  }
  try {
    ::slak::codegen::KernelPackage package = ::slak::codegen::readKernelPackage(dir);
    if (package.ops.size() != ops->size())
      bug("the package reader found " + std::to_string(package.ops.size()) + " ops, " +
              std::to_string(ops->size()) + " were written",
          diags, print(module));
  } catch (const std::exception &e) {
    bug(std::string("the reader refuses the package slak-translate wrote: ") + e.what() +
            "\n--- files ---\n" + listFiles(tmp),
        diags, print(module));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

const DialectRegistry &registry() {
  static DialectRegistry *r = [] {
    auto *registry = new DialectRegistry;
    registry->insert<mlir::slak::SlakDialect, func::FuncDialect, arith::ArithDialect,
                     tensor::TensorDialect>();
    return registry;
  }();
  return *r;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // As slak-opt: the pass registry is global.
  registerTransformsPasses();
  mlir::slak::registerAllSlakPasses();
  ::slak::fuzz::processTempDir("slak-fuzz-ir");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string &tmp = ::slak::fuzz::processTempDir("slak-fuzz-ir");
  MLIRContext context(registry(), MLIRContext::Threading::DISABLED);
  Diagnostics diags;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error)
      ++diags.errors;
    diags.text += diag.str() + "\n";
    return success();
  });

  // MLIR's lexer reads the terminating NUL that every file buffer has (the
  // tools read files through llvm::MemoryBuffer); fuzz input has none.
  const std::string source(reinterpret_cast<const char *>(data), size);
  // What the tools refuse before parsing (MLIR's parser aborts on it).
  if (mlir::slak::zeroAlignedResourceBlob(source))
    return 0;
  ParserConfig config(&context, /*verifyAfterParse=*/true);
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, config);
  // With SLAK_FUZZ_VERBOSE=1, what the parser, verifier and passes said.
  auto report = llvm::make_scope_exit([&] {
    if (::slak::fuzz::verbose())
      std::fprintf(stderr, "slak-fuzz-ir: diagnostics:\n%s", diags.text.c_str());
  });
  if (!module)
    return 0;

  // What the printer writes must read back.
  const std::string printed = print(*module);
  if (!parseSourceString<ModuleOp>(printed, config))
    bug("the printed module does not parse or verify", diags, printed);

  if (hasHugeLayer(*module))
    return 0;
  for (const PipelineRun &run : kRuns) {
    OwningOpRef<ModuleOp> copy = module->clone();
    PassManager pm(&context);
    pm.enableVerifier(false); // VerifyAfterEachPass tells a bad pass from bad input
    pm.addInstrumentation(std::make_unique<VerifyAfterEachPass>(diags));
    run.build(pm, tmp);
    const int errorsBefore = diags.errors;
    if (failed(pm.run(*copy))) {
      if (diags.errors == errorsBefore)
        bug(std::string(run.name) + " failed without an error message", diags, print(*module));
      continue;
    }
    const std::string result = print(*copy);
    if (!parseSourceString<ModuleOp>(result, config))
      bug(std::string("the output of ") + run.name + " does not parse or verify", diags, result);
    emitAndReadPackage(*copy, tmp, diags);
  }
  return 0;
}
