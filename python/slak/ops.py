"""The op: slak.ops.lk_conv over torch.ops.slak.lk_conv."""
import torch


def lk_conv(x, weights, masks=None, bias=None, per_branch=False, padding=None,
            dense_weight_grad=False, backend="auto"):
    """Sum of parallel stride-1 depthwise convolutions (SLaK's large kernel).

    x: [N, C, H, W] (NCHW or channels_last; the result keeps x's layout).
    weights: one [C, 1, KH_b, KW_b] tensor per branch (odd sizes).
    masks: None, or one per branch: None (dense) or a tensor of the weight's
        shape, non-zero = live tap. Dead taps cost nothing and get zero
        gradient (unless dense_weight_grad).
    bias: optional [C], added to the sum.
    per_branch: return [B, N, C, Ho, Wo], one output per branch (for a
        BatchNorm per branch), instead of their sum.
    padding: None for "same" ((KH_b // 2, KW_b // 2) per branch), or one
        (pad_h, pad_w) pair per branch.
    backend: "auto" (the device of x), "cpu", "reference", "opencl", "cuda".
    """
    flat = []
    if padding is not None:
        for b, pair in enumerate(padding):
            if len(pair) != 2:
                raise ValueError(f"slak.ops.lk_conv: padding[{b}] is {tuple(pair)!r}, expected "
                                 "a (pad_h, pad_w) pair per branch")
            ph, pw = pair
            flat += [int(ph), int(pw)]
    return torch.ops.slak.lk_conv(x, list(weights), list(masks) if masks is not None else [],
                                  bias, per_branch, dense_weight_grad, flat, backend)


def reparameterize(weights, masks=None, bns=None, bias=None, eps=None):
    """Folds a BatchNorm per branch and the sum's bias into the weights and
    merges nested windows (the small kernel into M x N), as the runtime's eval
    mode and `slak-opt --slak-fuse-lk=mode=infer` do (runtime/Reparam.h).

    bns: None or one torch.nn.BatchNorm2d per branch (their running stats);
        eps defaults to the first BatchNorm's (else 1e-5).
    Returns (weights, masks, bias, padding) for lk_conv: masks entries None
    where dense, padding as (pad_h, pad_w) pairs.
    """
    masks = list(masks) if masks is not None else []
    gamma, beta, mean, var = [], [], [], []
    if eps is None:
        eps = bns[0].eps if bns else 1e-5
    if bns is not None:
        for bn in bns:
            gamma.append(bn.weight)
            beta.append(bn.bias)
            mean.append(bn.running_mean)
            var.append(bn.running_var)
    w, m, b, pad = torch.ops.slak.reparameterize(list(weights), masks, gamma, beta, mean, var,
                                                 float(eps), bias)
    m = [None if t.numel() == 0 else t for t in m]
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    return list(w), m, b, pairs
