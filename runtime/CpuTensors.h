// CpuTensors: f32 views of the tensors the CPU backends (Halide and the
// reference oracle) compute on. Both compute in f32: f16/bf16 tensors are
// widened on the way in and rounded once on the way out, like the GPU
// kernels' stores.
#pragma once

#include <ATen/ATen.h>

namespace slak::runtime::cpu {

/// `t` as a contiguous f32 CPU tensor (itself when it already is one).
inline at::Tensor asFloat(const at::Tensor &t) { return t.to(at::kFloat).contiguous(); }

/// A contiguous f32 tensor to compute `out` into: `out` itself when it is one.
inline at::Tensor floatTarget(const at::Tensor &out) {
  return out.scalar_type() == at::kFloat && out.is_contiguous()
             ? out
             : at::empty(out.sizes(), out.options().dtype(at::kFloat));
}

/// Whether an image tensor, 4-D [N, C, H, W] or per-branch 5-D
/// [B, N, C, H, W], is laid out channels-last: NHWC in memory (per branch).
/// Where both layouts give the same memory (one channel, 1x1 images) it
/// counts as NCHW.
inline bool channelsLastMemory(const at::Tensor &t) {
  if (t.dim() == 5)
    return !t.is_contiguous() && t.permute({0, 1, 3, 4, 2}).is_contiguous();
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

/// An uninitialised tensor of `sizes` in NCHW or channels-last memory.
inline at::Tensor emptyIn(at::IntArrayRef sizes, const at::TensorOptions &options,
                          bool channelsLast) {
  if (!channelsLast)
    return at::empty(sizes, options);
  if (sizes.size() == 5)
    return at::empty({sizes[0], sizes[1], sizes[3], sizes[4], sizes[2]}, options)
        .permute({0, 1, 4, 2, 3});
  return at::empty(sizes, options.memory_format(at::MemoryFormat::ChannelsLast));
}

/// `t` as f32 in NCHW or channels-last memory (itself when it already is).
inline at::Tensor asFloatIn(const at::Tensor &t, bool channelsLast) {
  const at::Tensor f = t.to(at::kFloat);
  if (!channelsLast)
    return f.contiguous();
  if (channelsLastMemory(f))
    return f;
  at::Tensor out = emptyIn(f.sizes(), f.options(), true);
  out.copy_(f);
  return out;
}

/// A f32 tensor in the given memory layout to compute `out` into: `out`
/// itself when it is one.
inline at::Tensor floatTargetIn(const at::Tensor &out, bool channelsLast) {
  if (!channelsLast)
    return floatTarget(out);
  if (out.scalar_type() == at::kFloat && channelsLastMemory(out))
    return out;
  return emptyIn(out.sizes(), out.options().dtype(at::kFloat), true);
}

/// Copies (and rounds, and lays out) what was computed into `out` unless it
/// was computed there.
inline void finish(at::Tensor &out, const at::Tensor &computed) {
  if (!computed.is_same(out))
    out.copy_(computed);
}

} // namespace slak::runtime::cpu
