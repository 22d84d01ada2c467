// What --slak-apply-schedules and slak-autotune's model form agree on: the
// workload a slak.lk_conv is tuned for.
#pragma once

#include "autotune/Workload.h"
#include "dialect/SlakOps.h"

namespace mlir::slak {

/// The op's batch (8 when dynamic), the spec's image size (56x56 when
/// dynamic) and the mean density of its table-form branches (runtime masks:
/// SLaK's 0.6; all dense: 1).
::slak::autotune::Workload lkConvWorkload(LkConvOp op, const ::slak::codegen::KernelSpec &spec);

} // namespace mlir::slak
