//===- SlakAttrs.td - slak attributes ----------------------*- tablegen -*-===//
#ifndef SLAK_ATTRS_TD
#define SLAK_ATTRS_TD

include "dialect/SlakDialect.td"
include "mlir/IR/AttrTypeBase.td"

class Slak_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Slak_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Slak_BranchTapsAttr : Slak_Attr<"BranchTaps", "branch_taps"> {
  let summary = "Live-tap statistics of one branch of an lk_conv";
  let description = [{
    `kernel`: the branch window (KH x KW). `nnz`: live taps per channel
    (min, max) and `mean`; `density`: live / (C * KH * KW). `window`: the
    smallest [row_begin, row_end) x [col_begin, col_end) holding every live
    tap (all-zero borders trimmed). `form`: `dense` (the kernel loops over the
    window) or `table` (the kernel walks the channel's tap table).

    ```mlir
    #slak.branch_taps<kernel = [51, 5], nnz = [120, 170], mean = 153.0,
                      density = 0.6, window = [0, 51, 0, 5], form = table>
    ```
  }];
  let parameters = (ins
    "int64_t":$kernelH, "int64_t":$kernelW,
    "int64_t":$nnzMin, "int64_t":$nnzMax,
    APFloatParameter<"live taps per channel, mean">:$nnzMean,
    APFloatParameter<"live / (C * KH * KW)">:$density,
    "int64_t":$rowBegin, "int64_t":$rowEnd,
    "int64_t":$colBegin, "int64_t":$colEnd,
    "bool":$tableForm);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

def Slak_TapsAttr : Slak_Attr<"Taps", "taps"> {
  let summary = "Per-branch tap statistics and the tap table of an lk_conv";
  let description = [{
    Attached by `--slak-specialize-sparsity`. `branches` holds one
    `#slak.branch_taps` per branch, in operand order; `table` names the tap
    table (the op's `tap_table` blob, or a kernel-package file); empty when the
    runtime builds it from live masks. `channel_order` (optional) lists the
    channels in launch order: channels with similar live-tap counts together,
    heaviest first, so that blocks of a wave do similar work.

    ```mlir
    #slak.taps<branches = [#slak.branch_taps<...>, ...], table = "layer0.taps",
               channel_order = [3, 0, 2, 1]>
    ```
  }];
  let parameters = (ins "::mlir::ArrayAttr":$branches, "::mlir::StringAttr":$table,
                        "::mlir::DenseI32ArrayAttr":$channelOrder);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

def Slak_ScheduleAttr : Slak_Attr<"Schedule", "schedule"> {
  let summary = "Tile schedule of an lk_conv's kernels";
  let description = [{
    A `codegen::Schedule`, one key per row of its field table
    (codegen/Schedule.cpp): the output tile of one block (`tile`), its
    threads (`block`, each thread computing tile/block outputs in registers),
    whether the input tile and the taps are staged in shared memory, whether
    sparse branches walk their whole window with zeros at dead taps
    (`masked_walk`), and the backward-weight reduction: its split, threads,
    dy tile and taps per thread. `origin` says where it came from: `default`,
    `model` (a cost model's pick for a named device) or `measured`. Keys
    other than `tile` and `block` may be omitted (codegen's defaults).

    ```mlir
    #slak.schedule<tile = [16, 32], block = [4, 32], stage_input = true,
                   stage_taps = true, masked_walk = false, weight_split = 8,
                   weight_threads = 256, weight_tile = [8, 32],
                   weight_rows_per_thread = 8, origin = "default">
    ```

    The values are held in the table's order, one integer per component
    (flags 0 or 1, pairs two), so that a new table row needs no change here.
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t", "field values in codegen::scheduleFields() order">:$values,
    "::mlir::StringAttr":$origin);
  let builders = [
    AttrBuilder<(ins "const ::slak::codegen::Schedule &":$schedule,
                     "::llvm::StringRef":$origin)>
  ];
  let extraClassDeclaration = [{
    /// The schedule; only for a verified attribute (every value fits).
    ::slak::codegen::Schedule getSchedule() const;
  }];
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

#endif // SLAK_ATTRS_TD
