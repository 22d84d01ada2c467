#include "tools/slak-export/ExportModule.h"

#include "dialect/SlakDialect.h"
#include "dialect/SlakOps.h"
#include "passes/ReferenceInterpreter.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <cctype>

using namespace mlir;
using ::slak::models::ExportedBranch;
using ::slak::models::ExportedLayer;

namespace slak::exporter {
namespace {

void registerDialects(MLIRContext &context) {
  DialectRegistry registry;
  registry.insert<mlir::slak::SlakDialect, func::FuncDialect, arith::ArithDialect,
                  tensor::TensorDialect>();
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();
}

/// Resource keys: the layer path with every character outside [A-Za-z0-9_]
/// replaced, plus what the blob holds ("stages_0_1_large_kernel_w0").
std::string resourceKey(const std::string &path, const std::string &what) {
  std::string key;
  for (char c : path)
    key += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return key + "_" + what;
}

class ModuleBuilder {
public:
  explicit ModuleBuilder(MLIRContext &context) : context_(context), builder_(&context) {}

  /// Builds the module, or fills `error` and returns null.
  OwningOpRef<ModuleOp> build(const std::vector<ExportedLayer> &layers, std::string &error) {
    OwningOpRef<ModuleOp> module = ModuleOp::create(builder_.getUnknownLoc());
    for (const ExportedLayer &layer : layers) {
      error = checkLayer(layer);
      if (!error.empty())
        return nullptr;
      builder_.setInsertionPointToEnd(module->getBody());
      buildLayer(layer);
    }
    std::string diagnostics;
    ScopedDiagnosticHandler handler(&context_, [&](Diagnostic &d) {
      diagnostics += d.str() + "\n";
      return success();
    });
    if (failed(verify(*module))) {
      error = "the exported module does not verify (an exporter bug): " + diagnostics;
      return nullptr;
    }
    return module;
  }

private:
  static std::string checkLayer(const ExportedLayer &l) {
    const std::string where = "large-kernel layer " + l.path + ": ";
    if (l.channels <= 0 || l.height <= 0 || l.width <= 0)
      return where +
             "channels and input size must be positive, got C=" + std::to_string(l.channels) + " " +
             std::to_string(l.height) + "x" + std::to_string(l.width);
    if (l.branches.empty())
      return where + "has no branches";
    const size_t c = static_cast<size_t>(l.channels);
    bool anyNorm = false;
    for (size_t b = 0; b < l.branches.size(); ++b) {
      const ExportedBranch &br = l.branches[b];
      const std::string branch = where + "branch " + std::to_string(b) + " ";
      if (br.kernelH <= 0 || br.kernelW <= 0 || br.kernelH % 2 == 0 || br.kernelW % 2 == 0)
        return branch + "has kernel " + std::to_string(br.kernelH) + "x" +
               std::to_string(br.kernelW) + "; slak.dwconv2d needs odd kernels";
      if (br.padH != br.kernelH / 2 || br.padW != br.kernelW / 2)
        return branch + "has padding [" + std::to_string(br.padH) + ", " + std::to_string(br.padW) +
               "]; large-kernel layers use \"same\" padding [" + std::to_string(br.kernelH / 2) +
               ", " + std::to_string(br.kernelW / 2) + "]";
      const size_t window = c * br.kernelH * br.kernelW;
      if (br.weight.size() != window)
        return branch + "has " + std::to_string(br.weight.size()) + " weights, expected " +
               std::to_string(window);
      if (!br.mask.empty() && br.mask.size() != window)
        return branch + "has a mask of " + std::to_string(br.mask.size()) + " elements, expected " +
               std::to_string(window);
      if (br.batchNorm && (br.mean.size() != c || br.variance.size() != c || br.scale.size() != c ||
                           br.shift.size() != c))
        return branch + "has BatchNorm parameters of the wrong length (expected " +
               std::to_string(c) + " each)";
      anyNorm |= br.batchNorm;
    }
    if (!l.bias.empty() && l.bias.size() != c)
      return where + "has a bias of " + std::to_string(l.bias.size()) + " elements, expected " +
             std::to_string(c);
    if (!l.bias.empty() && anyNorm)
      return where + "has a bias on the sum and BatchNorms per branch; the slak ops express a "
                     "bias before a branch's BatchNorm only (SLaK, RepLKNet and ConvNeXt "
                     "layers never have both)";
    return "";
  }

  /// A constant of `elementType` whose elements live in a resource blob
  /// under `key`.
  template <typename T>
  Value blobConstant(Location loc, ArrayRef<int64_t> shape, Type elementType,
                     const std::vector<T> &values, const std::string &key) {
    auto type = RankedTensorType::get(shape, elementType);
    auto attr = DenseResourceElementsAttr::get(
        type, key, HeapAsmResourceBlob::allocateAndCopyInferAlign(ArrayRef<T>(values)));
    return arith::ConstantOp::create(builder_, loc, attr);
  }

  Value floatConstant(Location loc, ArrayRef<int64_t> shape, const std::vector<float> &values,
                      const std::string &key) {
    return blobConstant(loc, shape, builder_.getF32Type(), values, key);
  }

  Value maskConstant(Location loc, ArrayRef<int64_t> shape, const std::vector<uint8_t> &values,
                     const std::string &key) {
    // i1 blobs hold one byte per element (dialect/ConstantData.h reads them so).
    return blobConstant(loc, shape, builder_.getI1Type(), values, key);
  }

  void buildLayer(const ExportedLayer &l) {
    Location loc = NameLoc::get(builder_.getStringAttr(l.path));
    auto type = RankedTensorType::get({ShapedType::kDynamic, l.channels, l.height, l.width},
                                      builder_.getF32Type());
    auto func =
        func::FuncOp::create(builder_, loc, l.path, builder_.getFunctionType({type}, {type}));
    Block *body = func.addEntryBlock();
    builder_.setInsertionPointToStart(body);
    Value x = body->getArgument(0);
    Value sum;
    for (size_t b = 0; b < l.branches.size(); ++b) {
      const ExportedBranch &br = l.branches[b];
      const std::string n = std::to_string(b);
      const SmallVector<int64_t> wshape = {l.channels, 1, br.kernelH, br.kernelW};
      Value w = floatConstant(loc, wshape, br.weight, resourceKey(l.path, "w" + n));
      Value mask = br.mask.empty()
                       ? Value()
                       : maskConstant(loc, wshape, br.mask, resourceKey(l.path, "mask" + n));
      Value bias = b == 0 && !l.bias.empty()
                       ? floatConstant(loc, {l.channels}, l.bias, resourceKey(l.path, "bias"))
                       : Value();
      Value y = mlir::slak::DwConv2dOp::create(builder_, loc, type, x, w, mask, bias, nullptr,
                                               nullptr, nullptr);
      if (br.batchNorm) {
        Value mean =
            floatConstant(loc, {l.channels}, br.mean, resourceKey(l.path, "bn" + n + "_mean"));
        Value var =
            floatConstant(loc, {l.channels}, br.variance, resourceKey(l.path, "bn" + n + "_var"));
        Value scale =
            floatConstant(loc, {l.channels}, br.scale, resourceKey(l.path, "bn" + n + "_scale"));
        Value shift =
            floatConstant(loc, {l.channels}, br.shift, resourceKey(l.path, "bn" + n + "_shift"));
        y = mlir::slak::BatchNormOp::create(builder_, loc, type, y, mean, var, scale, shift,
                                            builder_.getF32FloatAttr(br.epsilon));
      }
      sum = sum ? arith::AddFOp::create(builder_, loc, sum, y).getResult() : y;
    }
    func::ReturnOp::create(builder_, loc, sum);
  }

  MLIRContext &context_;
  OpBuilder builder_;
};

/// Builds the module of `layers` and hands it to `use`; returns the build's
/// error, else what `use` returns.
std::string withModule(const std::vector<models::ExportedLayer> &layers,
                       llvm::function_ref<std::string(ModuleOp)> use) {
  MLIRContext context;
  registerDialects(context);
  std::string error;
  OwningOpRef<ModuleOp> module = ModuleBuilder(context).build(layers, error);
  if (!module)
    return error;
  return use(*module);
}

} // namespace

std::string exportModuleText(const std::vector<models::ExportedLayer> &layers, std::string &text,
                             int64_t elideResourcesLargerThan) {
  return withModule(layers, [&](ModuleOp module) {
    // Locations carry the layer paths (the package's op names).
    OpPrintingFlags flags;
    flags.enableDebugInfo(/*enable=*/true, /*prettyForm=*/false);
    if (elideResourcesLargerThan > 0)
      flags.elideLargeResourceString(elideResourcesLargerThan);
    text.clear();
    llvm::raw_string_ostream os(text);
    module.print(os, flags);
    return std::string();
  });
}

std::string writeExportModule(const std::vector<models::ExportedLayer> &layers,
                              const std::string &path, bool bytecode) {
  return withModule(layers, [&](ModuleOp module) -> std::string {
    const std::string tmp = path + ".tmp";
    {
      std::error_code ec;
      llvm::raw_fd_ostream os(tmp, ec, bytecode ? llvm::sys::fs::OF_None : llvm::sys::fs::OF_Text);
      if (ec)
        return "cannot write " + tmp + ": " + ec.message();
      if (bytecode) {
        if (failed(writeBytecodeToFile(module, os)))
          return "cannot write MLIR bytecode to " + tmp;
      } else {
        // Locations carry the layer paths (the package's op names).
        module.print(os, OpPrintingFlags().enableDebugInfo(/*enable=*/true, /*prettyForm=*/false));
      }
      os.close();
      if (os.has_error()) {
        llvm::sys::fs::remove(tmp);
        return "cannot write " + tmp + ": " + os.error().message();
      }
    }
    if (std::error_code ec = llvm::sys::fs::rename(tmp, path)) {
      llvm::sys::fs::remove(tmp);
      return "cannot rename " + tmp + " to " + path + ": " + ec.message();
    }
    return "";
  });
}

std::string runExportedLayer(const std::string &path, const std::string &layer,
                             const std::vector<int64_t> &shape, const std::vector<float> &input,
                             std::vector<double> &output) {
  MLIRContext context;
  registerDialects(context);
  std::string diagnostics;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return success();
  });
  ParserConfig config(&context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(path, config);
  if (!module)
    return "cannot parse " + path + ": " + diagnostics;
  auto func = module->lookupSymbol<func::FuncOp>(layer);
  if (!func)
    return path + " has no function @\"" + layer + "\" (re-export the model?)";
  mlir::slak::RefTensor x{shape, std::vector<double>(input.begin(), input.end())};
  std::string error;
  FailureOr<std::vector<mlir::slak::RefTensor>> results = mlir::slak::interpret(func, {x}, error);
  if (failed(results) || results->size() != 1)
    return "the oracle cannot run @\"" + layer + "\": " + error;
  output = std::move(results->front().data);
  return "";
}

} // namespace slak::exporter
