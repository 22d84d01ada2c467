// --slak-apply-schedules: #slak.schedule for each slak.lk_conv from the
// tuning database (or the cost model on a miss). The choice itself lives in
// autotune/ (IREE's habit: strategy apart from the pass that applies it).
#include "passes/Passes.h"

#include "autotune/Device.h"
#include "autotune/Lookup.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"
#include "dialect/SlakOps.h"
#include "passes/LkConvToSpec.h"

namespace mlir::slak {
#define GEN_PASS_DEF_SLAKAPPLYSCHEDULES
#include "passes/Passes.h.inc"
} // namespace mlir::slak

using namespace mlir;
using namespace mlir::slak;
namespace autotune = ::slak::autotune;

namespace {

/// Mean density of the op's table-form branches (-1 when all are dense).
double sparseDensity(LkConvOp op) {
  TapsAttr taps = op.getTapsAttr();
  if (!taps)
    return op.getMasks().empty() ? -1.0 : 0.6; // runtime masks: SLaK's default density
  double sum = 0;
  int count = 0;
  for (Attribute attr : taps.getBranches()) {
    auto branch = cast<BranchTapsAttr>(attr);
    if (branch.getTableForm()) {
      sum += branch.getDensity().convertToDouble();
      ++count;
    }
  }
  return count ? sum / count : -1.0;
}

struct ApplySchedulesPass : public ::mlir::slak::impl::SlakApplySchedulesBase<ApplySchedulesPass> {
  using SlakApplySchedulesBase::SlakApplySchedulesBase;

  void runOnOperation() override {
    // findGpu throws on unknown names and this pass has no exceptions:
    // check against the table (names are lower case keys).
    std::string key = StringRef(device).lower();
    if (!llvm::any_of(autotune::gpuTable(),
                      [&](const autotune::GpuDevice &gpu) { return gpu.name == key; })) {
      mlir::emitError(getOperation()->getLoc())
          << "slak-apply-schedules: device '" << device
          << "' is not a named GPU; known: " << autotune::knownGpuNames();
      return signalPassFailure();
    }
    const std::string path = db.empty() ? autotune::defaultDatabasePath() : std::string(db);
    WalkResult result = getOperation()->walk([&](LkConvOp op) {
      FailureOr<LkConvKernel> kernel = convertLkConv(op);
      if (failed(kernel))
        return WalkResult::interrupt();
      RankedTensorType input = op.getInput().getType();
      const int64_t batch = input.isDynamicDim(0) ? 8 : input.getDimSize(0);
      const double density = sparseDensity(op);
      autotune::Workload workload =
          autotune::defaultWorkload(kernel->spec, batch, density < 0 ? 1.0 : density);
      std::string error;
      autotune::ScheduleChoice choice =
          autotune::bestScheduleNoThrow(path, kernel->spec, device, workload, &error);
      if (!error.empty()) {
        op.emitError() << "slak-apply-schedules: " << error;
        return WalkResult::interrupt();
      }
      const ::slak::codegen::Schedule &s = choice.schedule;
      op.setScheduleAttr(
          ScheduleAttr::get(op.getContext(), s.tileH, s.tileW, s.blockH, s.blockW, s.stageInput,
                            s.stageTaps, s.maskedWalk, s.weightSplit, s.weightThreads,
                            s.weightTileH, s.weightTileW, s.weightRowsPerThread,
                            StringAttr::get(op.getContext(), autotune::originName(choice.origin))));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
