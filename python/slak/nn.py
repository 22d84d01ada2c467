"""Drop-in modules with the official SLaK names.

ReparamLargeKernelConv has the children, parameter and buffer names of the
official SLaK large-kernel module (LoRA1 / LoRA2 / small_conv, each a `conv`
and a `bn`; lkb_origin without decomposition; lkb_reparam once merged), so an
official state dict loads with strict=True, but computes with the fused
slak::lk_conv op:

- training: one lk_conv with an output per branch, a BatchNorm per branch,
  the sum;
- eval: BatchNorm folded and the small kernel merged into the M x N strip
  (runtime/Reparam.h, the same function the C++ runtime uses), one summed
  lk_conv; the folded weights are cached until a parameter, a statistic or
  the masks change.

Masks follow the official convention: pruned weights are exact zeros and no
mask is stored. sparsify_() derives masks from the zeros so that the
kernels skip dead taps; without it every tap is computed.
"""
import torch

from . import ops

_BRANCH_ORDER = ("LoRA1", "LoRA2", "lkb_origin", "small_conv")


class ConvBN(torch.nn.Sequential):
    """The official `conv_bn` child: a bias-free depthwise `conv` and, with
    bn, its BatchNorm `bn`. Padding is per axis (kh // 2, kw // 2)."""

    def __init__(self, channels, kernel_size, bn=True):
        super().__init__()
        kh, kw = kernel_size
        self.add_module("conv", torch.nn.Conv2d(channels, channels, (kh, kw), stride=1,
                                                padding=(kh // 2, kw // 2), groups=channels,
                                                bias=False))
        if bn:
            self.add_module("bn", torch.nn.BatchNorm2d(channels))


def _odd(name, value):
    if not isinstance(value, int) or value <= 0 or value % 2 == 0:
        raise ValueError(f"slak.nn.ReparamLargeKernelConv: {name} is {value!r}, expected an odd "
                         "positive int (SLaK: kernel_size 51/49/47/13, small_kernel 5)")


class ReparamLargeKernelConv(torch.nn.Module):
    """SLaK's large-kernel depthwise block on the fused op.

    Arguments as the official module: kernel_size is M (the long side),
    small_kernel is N (the short side of the strips and the small square
    kernel; None for none). Decom=True gives M x N + N x M (+ N x N);
    Decom=False gives M x M (+ N x N). Only depthwise, stride-1 layers exist
    in SLaK: in_channels, out_channels and groups must agree and stride be 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=None,
                 small_kernel=5, small_kernel_merged=False, Decom=True, bn=True):
        super().__init__()
        groups = in_channels if groups is None else groups
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"slak.nn.ReparamLargeKernelConv: in_channels is {in_channels!r}, "
                             "expected a positive channel count")
        if not (in_channels == out_channels == groups):
            raise ValueError(
                "slak.nn.ReparamLargeKernelConv: in_channels, out_channels and groups are "
                f"{in_channels}, {out_channels}, {groups}; the fused op is depthwise: pass the "
                "same channel count for all three")
        if stride != 1:
            raise ValueError(f"slak.nn.ReparamLargeKernelConv: stride is {stride}; SLaK's large "
                             "kernels are stride 1 and the fused op computes stride 1 only")
        _odd("kernel_size", kernel_size)
        if small_kernel is not None:
            _odd("small_kernel", small_kernel)
        if small_kernel is not None and small_kernel >= kernel_size and Decom:
            raise ValueError(
                f"slak.nn.ReparamLargeKernelConv: small_kernel is {small_kernel}, expected less "
                f"than kernel_size {kernel_size} (the strips are kernel_size x small_kernel)")
        if Decom and small_kernel is None:
            raise ValueError("slak.nn.ReparamLargeKernelConv: Decom=True needs small_kernel "
                             "(the short side N of the M x N strips)")
        self.channels = in_channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.Decom = Decom
        self.bn = bn
        if small_kernel_merged:
            self.lkb_reparam = torch.nn.Conv2d(in_channels, in_channels, kernel_size,
                                               padding=kernel_size // 2, groups=in_channels,
                                               bias=True)
        else:
            if Decom:
                self.LoRA1 = ConvBN(in_channels, (kernel_size, small_kernel), bn)
                self.LoRA2 = ConvBN(in_channels, (small_kernel, kernel_size), bn)
            else:
                self.lkb_origin = ConvBN(in_channels, (kernel_size, kernel_size), bn)
            if small_kernel is not None and small_kernel < kernel_size:
                self.small_conv = ConvBN(in_channels, (small_kernel, small_kernel), bn)
        self._masks = {}
        self._mask_generation = 0
        self._folded = None
        self._folded_key = None

    # -------------------------------------------------------------- branches
    def branch_names(self):
        """The computing children in op order: LoRA1, LoRA2, small_conv (or
        lkb_origin, small_conv; or lkb_reparam)."""
        if hasattr(self, "lkb_reparam"):
            return ["lkb_reparam"]
        return [n for n in _BRANCH_ORDER if hasattr(self, n)]

    def _conv(self, name):
        child = getattr(self, name)
        return child if isinstance(child, torch.nn.Conv2d) else child.conv

    def branch_weights(self):
        return [self._conv(n).weight for n in self.branch_names()]

    # ----------------------------------------------------------------- masks
    def set_masks(self, masks):
        """One mask per branch (branch_names() order), each None (dense) or a
        tensor of the weight's shape, non-zero = live; None clears them all."""
        names = self.branch_names()
        masks = [None] * len(names) if masks is None else list(masks)
        if len(masks) != len(names):
            raise ValueError(f"slak.nn.ReparamLargeKernelConv.set_masks: {len(masks)} masks, "
                             f"expected {len(names)} ({', '.join(names)})")
        stored = {}
        with torch.inference_mode(False):
            self._store_masks(names, masks, stored)
        self._masks = stored
        self._mask_generation += 1
        self._folded = None

    def _store_masks(self, names, masks, stored):
        for name, mask in zip(names, masks):
            if mask is None:
                continue
            weight = self._conv(name).weight
            if tuple(mask.shape) != tuple(weight.shape):
                raise ValueError(f"slak.nn.ReparamLargeKernelConv.set_masks: mask for {name} has "
                                 f"shape {tuple(mask.shape)}, expected {tuple(weight.shape)}")
            mask = mask.detach().ne(0).to("cpu").clone()
            if not bool(mask.all()):
                stored[name] = mask

    def masks(self):
        """The current masks in branch order (None = dense)."""
        return [self._masks.get(n) for n in self.branch_names()]

    def sparsify_(self):
        """Masks from the weights' exact zeros (the official checkpoints'
        convention); branches without zeros stay dense. Returns self."""
        self.set_masks([self._conv(n).weight.detach() for n in self.branch_names()])
        return self

    # ------------------------------------------------------------- reparam
    def _norms(self):
        names = self.branch_names()
        if names == ["lkb_reparam"]:
            return None
        norms = [getattr(getattr(self, n), "bn", None) for n in names]
        if all(isinstance(b, torch.nn.BatchNorm2d) for b in norms):
            return norms
        if any(isinstance(b, torch.nn.BatchNorm2d) for b in norms):
            raise ValueError("slak.nn.ReparamLargeKernelConv: some branches have a BatchNorm "
                             "and some do not; the fold needs all or none")
        return None

    def _reparameterized(self):
        bias = self.lkb_reparam.bias if hasattr(self, "lkb_reparam") else None
        return ops.reparameterize(self.branch_weights(), self.masks(), self._norms(), bias)

    def _state_key(self):
        key = [self._mask_generation]
        for t in list(self.parameters()) + list(self.buffers()):
            key += [t.data_ptr(), t._version, t.dtype, t.device]
        return tuple(key)

    def folded(self):
        """(weights, masks, bias, padding) of the eval-mode layer: BatchNorm
        folded, nested windows merged; cached until the state changes (not
        cached while autograd needs the weights)."""
        if torch.compiler.is_compiling():
            return self._reparameterized()
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if needs_grad:
            return self._reparameterized()
        key = self._state_key()
        if self._folded is None or self._folded_key != key:
            # Normal tensors even under torch.inference_mode(): the op keeps
            # the taps of a mask tensor by its version counter, which
            # inference tensors lack.
            with torch.inference_mode(False), torch.no_grad():
                self._folded = self._reparameterized()
            self._folded_key = key
        return self._folded

    def get_equivalent_kernel_bias(self):
        """The single M x M depthwise kernel and bias that compute this layer
        in eval mode (official name), and the live-tap mask of that kernel
        (None when every tap is live)."""
        weights, masks, bias, _ = self._reparameterized()
        m = self.kernel_size
        c = self.channels
        kernel = weights[0].new_zeros((c, 1, m, m))
        live = torch.zeros((c, 1, m, m), dtype=torch.bool)
        for w, mask in zip(weights, masks):
            kh, kw = w.shape[2], w.shape[3]
            oh, ow = (m - kh) // 2, (m - kw) // 2
            kernel[:, :, oh:oh + kh, ow:ow + kw] += w
            live[:, :, oh:oh + kh, ow:ow + kw] |= (mask.bool() if mask is not None else True)
        return kernel, bias, (None if bool(live.all()) else live)

    def merge_kernel(self):
        """Replaces the branches by one M x M kernel `lkb_reparam` with bias
        (official names), for the decomposed kernel too. The merged kernel's
        dead taps (the corners outside the cross of the strips, pruned taps)
        become its mask, so it runs as fast as the branches."""
        if hasattr(self, "lkb_reparam"):
            return self
        with torch.no_grad():
            kernel, bias, live = self.get_equivalent_kernel_bias()
        conv = torch.nn.Conv2d(self.channels, self.channels, self.kernel_size,
                               padding=self.kernel_size // 2, groups=self.channels, bias=True)
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        with torch.no_grad():
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
        for name in _BRANCH_ORDER:
            if hasattr(self, name):
                delattr(self, name)
        self.lkb_reparam = conv
        self.set_masks([live])
        return self

    # --------------------------------------------------------------- forward
    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError(
                "slak::lk_conv has no ONNX form: call slak.nn.export_as_conv2d_(model) before "
                "torch.onnx.export (it swaps each slak large-kernel module for the equivalent "
                "dense nn.Conv2d)")
        names = self.branch_names()
        if names == ["lkb_reparam"]:
            return ops.lk_conv(x, [self.lkb_reparam.weight], self.masks(),
                               bias=self.lkb_reparam.bias)
        if not self.training:
            weights, masks, bias, padding = self.folded()
            return ops.lk_conv(x, weights, masks, bias=bias, padding=padding)
        weights = self.branch_weights()
        norms = self._norms()
        if norms is None:
            return ops.lk_conv(x, weights, self.masks())
        y = ops.lk_conv(x, weights, self.masks(), per_branch=True)
        out = norms[0](y[0])
        for b in range(1, len(norms)):
            out = out + norms[b](y[b])
        return out

    def extra_repr(self):
        kinds = "+".join("x".join(str(s) for s in self._conv(n).weight.shape[2:])
                         for n in self.branch_names())
        sparse = sum(1 for m in self.masks() if m is not None)
        return f"channels={self.channels}, kernels={kinds}, sparse_branches={sparse}"


def sparsify_(module):
    """Masks from exact zeros for every ReparamLargeKernelConv in `module`
    (itself included), as the official resume path rebuilds masks. Returns
    the number of layers that got at least one sparse branch."""
    count = 0
    for m in module.modules():
        if isinstance(m, ReparamLargeKernelConv):
            m.sparsify_()
            count += any(mask is not None for mask in m.masks())
    return count


def as_conv2d(module):
    """The plain torch.nn.Conv2d (depthwise M x M, with bias) that computes a
    ReparamLargeKernelConv in eval mode: BatchNorm folded, all branches
    merged, dense. For exporters that know only standard layers (ONNX,
    TensorRT); it runs at dense M x M cost."""
    with torch.no_grad():
        kernel, bias, _ = module.get_equivalent_kernel_bias()
    m = module.kernel_size
    conv = torch.nn.Conv2d(module.channels, module.channels, m, padding=m // 2,
                           groups=module.channels, bias=True)
    conv = conv.to(device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv.train(module.training)


def export_as_conv2d_(model):
    """Replaces every ReparamLargeKernelConv inside `model` by as_conv2d(),
    so that torch.onnx.export (and other exporters without slak's op) see
    standard layers. Returns the qualified names replaced."""
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or not isinstance(module, ReparamLargeKernelConv):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, as_conv2d(module))
        replaced.append(name)
    return replaced
