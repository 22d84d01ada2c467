// ModelFile's MLIR side. Built -fno-exceptions with the other MLIR targets;
// every failure is a message through the diagnostic handler or `*error`.
#include "tools/slak-autotune/ModelFile.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include "codegen/FileKind.h"
#include "dialect/ResourceBlobs.h"
#include "dialect/SlakDialect.h"
#include "dialect/SlakOps.h"
#include "passes/ApplySchedules.h"
#include "passes/LkConvToSpec.h"
#include "passes/Passes.h"

#include <sstream>

namespace slak::autotune {

using namespace mlir;

struct ModelFile::Impl {
  MLIRContext context;
  llvm::SourceMgr sourceMgr;
  OwningOpRef<ModuleOp> module;
  std::string path;

  Impl() {
    DialectRegistry registry;
    registry.insert<mlir::slak::SlakDialect, func::FuncDialect, arith::ArithDialect,
                    tensor::TensorDialect>();
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  /// Runs `pm` on the module; diagnostics land in `*error`.
  bool run(PassManager &pm, std::string *error) {
    std::string text;
    llvm::raw_string_ostream os(text);
    SourceMgrDiagnosticHandler handler(sourceMgr, &context, os);
    const bool ok = succeeded(pm.run(*module));
    if (!ok && error)
      *error = text.empty() ? std::string("the pass pipeline failed") : text;
    return ok;
  }
};

ModelFile::ModelFile() : impl_(std::make_unique<Impl>()) {}
ModelFile::~ModelFile() = default;

std::unique_ptr<ModelFile> ModelFile::load(const std::string &path, std::string *error) {
  std::unique_ptr<ModelFile> file(new ModelFile());
  Impl &im = *file->impl_;
  im.path = path;
  if (std::string wrongKind = ::slak::codegen::notMlirInput(path); !wrongKind.empty()) {
    if (error)
      *error = wrongKind;
    return nullptr;
  }
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> buffer =
      llvm::MemoryBuffer::getFileOrSTDIN(path);
  if (!buffer) {
    if (error)
      *error = "cannot read " + path + ": " + buffer.getError().message();
    return nullptr;
  }
  // A blob MLIR's parser would abort on (dialect/ResourceBlobs.h).
  if (auto problem = mlir::slak::zeroAlignedResourceBlob((*buffer)->getBuffer())) {
    if (error)
      *error = (*buffer)->getBufferIdentifier().str() + ":" + std::to_string(problem->line) + ":" +
               std::to_string(problem->column) + ": error: " + problem->message;
    return nullptr;
  }
  im.sourceMgr.AddNewSourceBuffer(std::move(*buffer), llvm::SMLoc());
  std::string text;
  llvm::raw_string_ostream os(text);
  SourceMgrDiagnosticHandler handler(im.sourceMgr, &im.context, os);
  im.module = parseSourceFile<ModuleOp>(im.sourceMgr, &im.context);
  if (!im.module) {
    if (error)
      *error = text.empty() ? "cannot parse " + path : text;
    return nullptr;
  }
  return file;
}

int ModelFile::unfusedOps() const {
  int count = 0;
  impl_->module->walk([&](Operation *op) {
    const StringRef name = op->getName().getStringRef();
    if (name == "slak.dwconv2d" || name == "slak.batch_norm")
      ++count;
  });
  return count;
}

int ModelFile::lkConvOps() const {
  int count = 0;
  impl_->module->walk([&](mlir::slak::LkConvOp) { ++count; });
  return count;
}

bool ModelFile::prepare(const std::string &mode, std::string *error) {
  if (mode != "train" && mode != "infer") {
    if (error)
      *error = "mode is '" + mode + "', expected train or infer";
    return false;
  }
  PassManager pm(&impl_->context);
  mlir::slak::PipelineOptions options;
  options.mode = mode;
  mlir::slak::buildSlakPipeline(pm, options);
  return impl_->run(pm, error);
}

namespace {

std::string describe(const codegen::KernelSpec &spec, const Workload &w) {
  std::ostringstream os;
  os << "C=" << spec.channels << " " << w.height << "x" << w.width << " ";
  for (size_t b = 0; b < spec.branches.size(); ++b)
    os << (b ? "+" : "") << spec.branches[b].kernelH << "x" << spec.branches[b].kernelW
       << (spec.branches[b].dense ? "" : "(table)");
  os.precision(3);
  os << " density=" << w.density << " N=" << w.batch
     << (spec.perBranchOutputs ? " outputs=branches" : " outputs=sum");
  return os.str();
}

} // namespace

bool ModelFile::layers(std::vector<ModelLayer> &out, std::string *error) {
  Impl &im = *impl_;
  std::string text;
  llvm::raw_string_ostream os(text);
  SourceMgrDiagnosticHandler handler(im.sourceMgr, &im.context, os);
  unsigned index = 0;
  bool ok = true;
  im.module->walk([&](mlir::slak::LkConvOp op) {
    FailureOr<mlir::slak::LkConvCodegenInput> kernel = mlir::slak::convertLkConv(op);
    if (failed(kernel)) {
      ok = false;
      return WalkResult::interrupt();
    }
    ModelLayer layer;
    layer.name = mlir::slak::lkConvName(op, index++);
    layer.spec = kernel->spec;
    layer.workload = mlir::slak::lkConvWorkload(op, kernel->spec);
    layer.perBranch = kernel->spec.perBranchOutputs;
    layer.description = describe(layer.spec, layer.workload);
    out.push_back(std::move(layer));
    return WalkResult::advance();
  });
  if (!ok && error)
    *error = text.empty() ? std::string("a slak.lk_conv cannot be converted") : text;
  return ok;
}

bool ModelFile::applySchedules(const std::string &device, const std::string &dbPath,
                               std::string *error) {
  PassManager pm(&impl_->context);
  pm.addPass(
      mlir::slak::createSlakApplySchedules(mlir::slak::SlakApplySchedulesOptions{dbPath, device}));
  return impl_->run(pm, error);
}

std::vector<std::string> ModelFile::attachedSchedules() const {
  std::vector<std::string> out;
  impl_->module->walk([&](mlir::slak::LkConvOp op) {
    std::string text;
    llvm::raw_string_ostream os(text);
    if (mlir::slak::ScheduleAttr s = op.getScheduleAttr()) {
      os << s.getOrigin().getValue() << " " << Attribute(s);
    } else {
      os << "none";
    }
    out.push_back(os.str());
  });
  return out;
}

bool ModelFile::write(const std::string &path, std::string *error) const {
  llvm::Error e = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
    impl_->module->print(os);
    os << "\n";
    return llvm::Error::success();
  });
  if (e) {
    if (error)
      *error = "cannot write " + path + ": " + llvm::toString(std::move(e));
    return false;
  }
  return true;
}

} // namespace slak::autotune
