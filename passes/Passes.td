//===- Passes.td - slak passes -----------------------------*- tablegen -*-===//
#ifndef SLAK_PASSES_TD
#define SLAK_PASSES_TD

include "mlir/Pass/PassBase.td"

def SlakFuseLk : Pass<"slak-fuse-lk"> {
  let summary = "Fuse parallel depthwise branches of one input into slak.lk_conv";
  let description = [{
    Finds sums (`arith.addf` trees, any order and association) of
    `slak.dwconv2d` results that read the same input, each optionally followed
    by its own `slak.batch_norm`, and replaces them with one `slak.lk_conv`.
    Terms of the sum that are not such branches stay as they are; a conv or
    batch norm whose result has other uses is left alone (no duplicated work).

    `mode=train`: with per-branch batch norms the fused op produces one output
    per branch and the batch norms stay; without them the sum (and the conv
    biases) is fused.

    `mode=infer` (structural re-parameterisation): with constant weights,
    masks, biases and batch-norm statistics, folds each batch norm into its
    branch (W' = W * g / sqrt(v + eps), b' = beta - mean * g / sqrt(v + eps)),
    applies the masks, and merges every branch whose window nests inside
    another's (the 5x5 into the 51x5) by zero-padding and adding. Where
    something is not a constant it fuses as in train mode and emits a remark
    that says what stopped the folding.
  }];
  let options = [
    Option<"mode", "mode", "std::string", /*default=*/"\"train\"",
           "train: keep per-branch batch norms; infer: fold and merge">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::slak::SlakDialect"];
}

def SlakSpecializeSparsity : Pass<"slak-specialize-sparsity"> {
  let summary = "Build tap tables and tap statistics for each slak.lk_conv";
  let description = [{
    From constant masks (or, without masks, the zeros of constant weights)
    builds per-branch, per-channel tap tables (`tap_table`, a dense_resource
    blob), trims all-zero border rows and columns of each branch symmetrically
    (a smaller window and halo, same output), drops branches without a live
    tap from summed ops, chooses per branch between the dense form (loop over
    the whole window) and the tap-table form by `density-threshold`, and
    orders channels by live-tap count (`channel_order`). Attaches `#slak.taps`.
    Ops whose masks are not constants are marked `runtime_sparse`: the runtime
    builds their tables from the live masks.
  }];
  let options = [
    Option<"densityThreshold", "density-threshold", "double", /*default=*/"::mlir::slak::kDefaultDensityThreshold",
           "branches at least this dense use the dense form">,
    Option<"trim", "trim", "bool", /*default=*/"true",
           "trim all-zero border rows and columns">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect",
                           "::mlir::slak::SlakDialect"];
}

def SlakApplySchedules : Pass<"slak-apply-schedules"> {
  let summary = "Attach #slak.schedule to each slak.lk_conv from the tuning database";
  let description = [{
    For each `slak.lk_conv` looks up the tuned schedule for `device` in the
    SQLite tuning database (`db`; empty means `$SLAK_TUNING_DB` or
    `~/.cache/slak/tuning.db`). On a miss for a named GPU the analytic cost
    model tunes the layer and the pick is recorded; `origin` in the attribute
    says `measured`, `model` or `default`. The workload is the op's batch
    (8 when dynamic) and the density of its sparse branches. CPU (Halide)
    schedules are not attached: they belong to the host that runs the
    model (its CPU and thread count), whose runtime reads them from its
    tuning database; `device=cpu` is refused with that explanation.
  }];
  let options = [
    Option<"db", "db", "std::string", /*default=*/"\"\"", "tuning database file">,
    Option<"device", "device", "std::string", /*default=*/"\"a100\"",
           "a named GPU (a100, h100, ...; see slak-autotune --list-gpus)">
  ];
  let dependentDialects = ["::mlir::slak::SlakDialect"];
}

#endif // SLAK_PASSES_TD
