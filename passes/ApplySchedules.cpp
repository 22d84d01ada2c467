// --slak-apply-schedules: #slak.schedule for each slak.lk_conv from the
// tuning database (or the cost model on a miss). The choice itself lives in
// autotune/ (IREE's habit: strategy apart from the pass that applies it).
// CPU (Halide) schedules stay out of the IR: they are keyed by the CPU model
// and thread count of the host that runs the layer, so the runtime looks
// them up in that host's tuning database when it builds the kernel.
#include "passes/ApplySchedules.h"
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

} // namespace

autotune::Workload mlir::slak::lkConvWorkload(LkConvOp op,
                                              const ::slak::codegen::KernelSpec &spec) {
  RankedTensorType input = op.getInput().getType();
  const int64_t batch = input.isDynamicDim(0) ? 8 : input.getDimSize(0);
  const double density = sparseDensity(op);
  return autotune::defaultWorkload(spec, batch, density < 0 ? 1.0 : density);
}

namespace {

struct ApplySchedulesPass : public ::mlir::slak::impl::SlakApplySchedulesBase<ApplySchedulesPass> {
  using SlakApplySchedulesBase::SlakApplySchedulesBase;

  void runOnOperation() override {
    const std::string path = db.empty() ? autotune::defaultDatabasePath() : std::string(db);
    if (StringRef(device) == "cpu" || StringRef(device).starts_with("cpu:")) {
      mlir::emitError(getOperation()->getLoc())
          << "slak-apply-schedules: device '" << device
          << "': CPU (Halide) schedules are not attached to the IR; the runtime reads them from "
             "the tuning database of the host that runs the model (slak-autotune --cpu stores "
             "them there); name a GPU: "
          << autotune::knownGpuNames();
      return signalPassFailure();
    }
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
    WalkResult result = getOperation()->walk([&](LkConvOp op) {
      FailureOr<LkConvCodegenInput> kernel = convertLkConv(op);
      if (failed(kernel))
        return WalkResult::interrupt();
      const autotune::Workload workload = lkConvWorkload(op, kernel->spec);
      std::string error;
      autotune::ScheduleChoice choice =
          autotune::bestScheduleNoThrow(path, kernel->spec, device, workload, &error);
      if (!error.empty()) {
        // A database problem, not the op's: at the module, without the op.
        mlir::emitError(getOperation()->getLoc()) << "slak-apply-schedules: " << error;
        return WalkResult::interrupt();
      }
      op.setScheduleAttr(
          ScheduleAttr::get(op.getContext(), choice.schedule, autotune::originName(choice.origin)));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
