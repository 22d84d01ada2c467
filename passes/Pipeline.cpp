// Registration of the slak passes, their short aliases and the named
// pipeline `slak-pipeline` (fuse, canonicalise, specialise).
#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

namespace mlir::slak {
#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"
} // namespace mlir::slak

using namespace mlir;
using namespace mlir::slak;

namespace {

struct FuseOptions : public PassPipelineOptions<FuseOptions> {
  Option<std::string> mode{*this, "mode", llvm::cl::desc("train or infer"),
                           llvm::cl::init("train")};
};

struct SpecializeOptions : public PassPipelineOptions<SpecializeOptions> {
  Option<double> densityThreshold{*this, "density-threshold",
                                  llvm::cl::desc("branches at least this dense use the dense form"),
                                  llvm::cl::init(kDefaultDensityThreshold)};
  Option<bool> trim{*this, "trim", llvm::cl::desc("trim all-zero border rows and columns"),
                    llvm::cl::init(true)};
};

struct SlakPipelineOptions : public PassPipelineOptions<SlakPipelineOptions> {
  Option<std::string> mode{*this, "mode", llvm::cl::desc("train or infer"),
                           llvm::cl::init("train")};
  Option<std::string> device{
      *this, "device", llvm::cl::desc("attach tuned schedules for this GPU (a100, h100, ...)"),
      llvm::cl::init("")};
  Option<std::string> db{*this, "db", llvm::cl::desc("tuning database for device"),
                         llvm::cl::init("")};
  Option<double> densityThreshold{*this, "density-threshold",
                                  llvm::cl::desc("branches at least this dense use the dense form"),
                                  llvm::cl::init(kDefaultDensityThreshold)};
};

} // namespace

void mlir::slak::buildSlakPipeline(OpPassManager &pm, const PipelineOptions &options) {
  pm.addPass(createSlakFuseLk(SlakFuseLkOptions{options.mode}));
  pm.addPass(createCanonicalizerPass());
  SlakSpecializeSparsityOptions specialize;
  specialize.densityThreshold = options.densityThreshold;
  pm.addPass(createSlakSpecializeSparsity(specialize));
  if (!options.device.empty())
    pm.addPass(createSlakApplySchedules(SlakApplySchedulesOptions{options.db, options.device}));
}

void mlir::slak::registerAllSlakPasses() {
  registerSlakFuseLk();
  registerSlakSpecializeSparsity();
  registerSlakApplySchedules();
  PassPipelineRegistration<FuseOptions>("fuse-lk", "Alias of slak-fuse-lk",
                                        [](OpPassManager &pm, const FuseOptions &o) {
                                          pm.addPass(createSlakFuseLk(SlakFuseLkOptions{o.mode}));
                                        });
  PassPipelineRegistration<SpecializeOptions>("specialize-sparsity",
                                              "Alias of slak-specialize-sparsity",
                                              [](OpPassManager &pm, const SpecializeOptions &o) {
                                                SlakSpecializeSparsityOptions options;
                                                options.densityThreshold = o.densityThreshold;
                                                options.trim = o.trim;
                                                pm.addPass(createSlakSpecializeSparsity(options));
                                              });
  PassPipelineRegistration<SlakPipelineOptions>(
      "slak-pipeline", "Fuse, canonicalise and specialise slak large-kernel convolutions",
      [](OpPassManager &pm, const SlakPipelineOptions &o) {
        buildSlakPipeline(pm, PipelineOptions{o.mode, o.densityThreshold, o.device, o.db});
      });
}
