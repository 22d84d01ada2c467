"""Fake (meta) kernels of the C++ ops, for torch.compile, torch.export,
AOTAutograd and meta tensors.

The C++ library defines the schemas, the CPU/CUDA kernels and the autograd
kernel (which calls both ops through the dispatcher). PyTorch 2.11 recommends
`torch.library.register_fake` in Python for C++ ops: it also serves the Meta
dispatch key, and it sees symbolic shapes without a C++ SymInt port of the
shape rules. The rules match runtime/LkConvOp.cpp: output size from the first
branch's window and padding; the result and dx in the memory format of x.
"""
import torch


def _channels_last(x):
    # runtime/LkConvOp.cpp channelsLast(): NHWC in memory and not also NCHW.
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)


def _check(x, weights, masks, bias, per_branch, padding):
    torch._check(x.dim() == 4, lambda: f"slak::lk_conv: x has rank {x.dim()}, expected 4 (NCHW)")
    torch._check(x.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"slak::lk_conv: x has dtype {x.dtype}, expected Float, Half or BFloat16")
    torch._check(len(weights) > 0, lambda: "slak::lk_conv: weights is empty")
    channels = x.shape[1]
    for b, w in enumerate(weights):
        torch._check(w.dim() == 4 and w.shape[1] == 1,
                     lambda: f"slak::lk_conv: weights[{b}] has shape {tuple(w.shape)}, "
                     "expected [C, 1, KH, KW]")
        torch._check(w.shape[0] == channels,
                     lambda: f"slak::lk_conv: weights[{b}] has {w.shape[0]} channels, "
                     f"expected {channels}")
        torch._check(w.dtype == x.dtype, lambda: f"slak::lk_conv: weights[{b}] has dtype "
                     f"{w.dtype}, expected {x.dtype}")
    torch._check(len(masks) in (0, len(weights)),
                 lambda: f"slak::lk_conv: masks has {len(masks)} entries, expected "
                 f"{len(weights)} or none")
    torch._check(len(padding) in (0, 2 * len(weights)),
                 lambda: f"slak::lk_conv: padding has {len(padding)} values, expected "
                 f"{2 * len(weights)} or none")
    torch._check(bias is None or not per_branch,
                 lambda: "slak::lk_conv: a bias with per_branch outputs is ambiguous")


def _out_size(x, weights, padding):
    w = weights[0]
    kh, kw = w.shape[2], w.shape[3]
    ph, pw = (padding[0], padding[1]) if padding else (kh // 2, kw // 2)
    return x.shape[2] + 2 * ph - kh + 1, x.shape[3] + 2 * pw - kw + 1


def _like_x(x, shape):
    """An empty [.., C, H, W] tensor in x's memory format (runtime inLayoutOf)."""
    if not _channels_last(x):
        return x.new_empty(shape)
    if len(shape) == 4:
        return x.new_empty(shape).contiguous(memory_format=torch.channels_last)
    b, n, c, h, w = shape
    return x.new_empty((b, n, h, w, c)).permute(0, 1, 4, 2, 3)


@torch.library.register_fake("slak::lk_conv")
def _lk_conv_fake(x, weights, masks, bias=None, per_branch=False, dense_weight_grad=False,
                  padding=(), backend="auto"):
    _check(x, weights, masks, bias, per_branch, padding)
    ho, wo = _out_size(x, weights, padding)
    shape = (x.shape[0], x.shape[1], ho, wo)
    if per_branch:
        shape = (len(weights),) + shape
    return _like_x(x, shape)


@torch.library.register_fake("slak::lk_conv_backward")
def _lk_conv_backward_fake(grad, x, weights, masks, has_bias, per_branch, dense_weight_grad,
                           padding, backend, output_mask):
    _check(x, weights, masks, None, per_branch, padding)
    dx = _like_x(x, tuple(x.shape)) if output_mask[0] else x.new_empty((0,))
    dweights = [w.new_empty(w.shape) for w in weights] if output_mask[1] else []
    return dx, dweights
