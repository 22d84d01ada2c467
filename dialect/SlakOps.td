//===- SlakOps.td - slak operations ------------------------*- tablegen -*-===//
#ifndef SLAK_OPS_TD
#define SLAK_OPS_TD

include "dialect/SlakDialect.td"
include "dialect/SlakAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/CommonAttrConstraints.td"

// Element types are checked by the verifiers, with messages that say what is wrong.
def Slak_Tensor : RankedTensorOf<[AnyType]>;

def Slak_DwConv2dOp : Slak_Op<"dwconv2d", [Pure, AttrSizedOperandSegments]> {
  let summary = "Depthwise 2-D convolution on NCHW tensors";
  let description = [{
    `y[n,c,i,j] = bias[c] + sum_{u,v} w[c,0,u,v] * x[n,c,i+u-ph,j+v-pw]`,
    reads outside the image are zero. Input `tensor<N x C x H x W x T>` (T =
    f32, f16 or bf16; N, H, W may be dynamic), weight `tensor<C x 1 x KH x KW x T>`
    with odd KH, KW, an optional sparsity mask of the weight's shape with `i1`
    elements (true = live tap), optional bias `tensor<C x T>`. `padding` is per axis
    `[ph, pw]` and defaults to "same" (`[KH/2, KW/2]`). Only stride and
    dilation 1 are supported.

    ```mlir
    %y = slak.dwconv2d %x, %w mask(%m : tensor<124x1x51x5xi1>) bias(%b : tensor<124xf32>)
        {padding = array<i64: 25, 2>}
        : tensor<1x124x56x56xf32>, tensor<124x1x51x5xf32> -> tensor<1x124x56x56xf32>
    ```
  }];
  let arguments = (ins
    Slak_Tensor:$input,
    Slak_Tensor:$weight,
    Optional<Slak_Tensor>:$mask,
    Optional<Slak_Tensor>:$bias,
    OptionalAttr<DenseI64ArrayAttr>:$padding,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$stride,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$dilation);
  let results = (outs Slak_Tensor:$output);
  let assemblyFormat = [{
    $input `,` $weight (`mask` `(` $mask^ `:` type($mask) `)`)?
    (`bias` `(` $bias^ `:` type($bias) `)`)? attr-dict `:` type($input) `,` type($weight)
    `->` type($output)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Padding per axis, the "same" default when the attribute is absent.
    int64_t getPadH();
    int64_t getPadW();
    int64_t getKernelH();
    int64_t getKernelW();
  }];
}

def Slak_BatchNormOp : Slak_Op<"batch_norm", [Pure, AllTypesMatch<["input", "output"]>]> {
  let summary = "Inference-form batch norm over the channels of an NCHW tensor";
  let description = [{
    `y = (x - mean[c]) * scale[c] / sqrt(variance[c] + epsilon) + shift[c]`.
    Keeps a model's per-branch batch norms visible to the compiler, so that
    `--slak-fuse-lk=mode=infer` can fold them into the branch weights.

    ```mlir
    %y = slak.batch_norm %x, %mean, %var, %scale, %shift {epsilon = 1.0e-05 : f32}
        : tensor<1x124x56x56xf32>, tensor<124xf32>
    ```
  }];
  let arguments = (ins
    Slak_Tensor:$input,
    Slak_Tensor:$mean,
    Slak_Tensor:$variance,
    Slak_Tensor:$scale,
    Slak_Tensor:$shift,
    DefaultValuedAttr<F32Attr, "1.0e-5">:$epsilon);
  let results = (outs Slak_Tensor:$output);
  let assemblyFormat = [{
    $input `,` $mean `,` $variance `,` $scale `,` $shift attr-dict `:` type($input) `,`
    custom<ChannelParamTypes>(type($mean), type($variance), type($scale), type($shift))
  }];
  let hasVerifier = 1;
}

def Slak_LkConvOp : Slak_Op<"lk_conv", [Pure, AttrSizedOperandSegments]> {
  let summary = "Fused multi-branch, masked, large-kernel depthwise convolution";
  let description = [{
    The sum (or, with `per_branch_outputs`, the list) of B depthwise
    convolutions of one input, one per branch:
    `y[n,c,i,j] = bias[c] + sum_b sum_{(u,v) live} W_b[c,0,u,v] * x[n,c,i+u-ph_b,j+v-pw_b]`.
    Each branch has a weight `tensor<C x 1 x KH_b x KW_b x T>` and optionally
    a mask of the same shape with `i1` elements (live taps are true). All
    branches must give the same output size. `paddings` holds `[ph_b, pw_b]`
    for each branch (default "same"). With `per_branch_outputs` the op returns
    one result per branch (training with a batch norm per branch) and takes
    no bias; otherwise one summed result.

    `taps` (`#slak.taps`), `tap_table` and `schedule` (`#slak.schedule`) are
    attached by the sparsity and scheduling passes; `runtime_sparse` marks ops
    whose masks are only known at run time (the runtime builds their tables).
    `tap_table` is a 1-D i32 tensor (usually a `dense_resource` blob): first
    the B*C+1 CSR offsets (branch-major), then the taps, each `(u << 16) | v`.

    ```mlir
    %y = slak.lk_conv %x weights(%w0, %w1 : tensor<124x1x51x5xf32>, tensor<124x1x5x51xf32>)
        : tensor<1x124x56x56xf32> -> tensor<1x124x56x56xf32>
    ```
  }];
  let arguments = (ins
    Slak_Tensor:$input,
    Variadic<Slak_Tensor>:$weights,
    Variadic<Slak_Tensor>:$masks,
    Optional<Slak_Tensor>:$bias,
    OptionalAttr<DenseI64ArrayAttr>:$paddings,
    UnitAttr:$per_branch_outputs,
    UnitAttr:$runtime_sparse,
    OptionalAttr<Slak_TapsAttr>:$taps,
    OptionalAttr<ElementsAttr>:$tap_table,
    OptionalAttr<Slak_ScheduleAttr>:$schedule);
  let results = (outs Variadic<Slak_Tensor>:$outputs);
  let assemblyFormat = [{
    $input `weights` `(` $weights `:` type($weights) `)`
    (`masks` `(` $masks^ `:` type($masks) `)`)?
    (`bias` `(` $bias^ `:` type($bias) `)`)?
    attr-dict `:` type($input) `->` type($outputs)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumBranches() { return getWeights().size(); }
    /// Padding of branch `b` per axis, "same" when `paddings` is absent.
    int64_t getPadH(unsigned b);
    int64_t getPadW(unsigned b);
    int64_t getKernelH(unsigned b);
    int64_t getKernelW(unsigned b);
    /// The `paddings` attribute for these weights: null when every branch
    /// uses "same" padding (the default), so the IR stays short.
    static ::mlir::DenseI64ArrayAttr paddingsAttr(::mlir::Builder &builder,
                                                  ::mlir::ValueRange weights,
                                                  ::llvm::ArrayRef<int64_t> paddings);
    /// Checks the CSR structure of `tap_table` against the op.
    ::llvm::LogicalResult verifyTapTable();
  }];
}

#endif // SLAK_OPS_TD
