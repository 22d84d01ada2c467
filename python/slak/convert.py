"""convert_: swap official SLaK large-kernel modules for slak's, in place.

A module is recognised by its layout, not by its class (the official code
need not be importable): children LoRA1 + LoRA2 (or the older Decom1 +
Decom2), or lkb_origin, each a `conv` depthwise Conv2d with an optional `bn`
BatchNorm2d, plus an optional `small_conv` of the same kind; or a merged
`lkb_reparam` depthwise Conv2d with bias. Anything else is left alone.
"""
import torch

from .nn import ReparamLargeKernelConv

_RENAMES = {"Decom1": "LoRA1", "Decom2": "LoRA2"}


def _depthwise(conv):
    return (isinstance(conv, torch.nn.Conv2d) and conv.in_channels == conv.out_channels
            == conv.groups and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.kernel_size[0] % 2 == 1 and conv.kernel_size[1] % 2 == 1)


def _conv_bn(child):
    """(conv, has_bn) of an official conv_bn child, or None."""
    conv = getattr(child, "conv", None)
    if not _depthwise(conv) or conv.bias is not None:
        return None
    bn = getattr(child, "bn", None)
    names = {n for n, _ in child.named_children()}
    if not names <= {"conv", "bn"}:
        return None
    if bn is not None and not isinstance(bn, (torch.nn.BatchNorm2d, torch.nn.Identity)):
        return None
    return conv, isinstance(bn, torch.nn.BatchNorm2d)


def official_layout(module):
    """The ReparamLargeKernelConv arguments that reproduce `module`, or None
    when it does not have the official large-kernel layout."""
    if isinstance(module, ReparamLargeKernelConv):
        return None
    children = dict(module.named_children())
    if not children:
        return None
    if set(children) == {"lkb_reparam"}:
        conv = children["lkb_reparam"]
        kh, kw = conv.kernel_size
        if _depthwise(conv) and conv.bias is not None and kh == kw:
            return dict(in_channels=conv.in_channels, out_channels=conv.in_channels,
                        kernel_size=kh, groups=conv.in_channels, small_kernel=None,
                        small_kernel_merged=True, Decom=False, bn=True)
        return None
    names = {_RENAMES.get(n, n) for n in children}
    if names not in ({"LoRA1", "LoRA2"}, {"LoRA1", "LoRA2", "small_conv"}, {"lkb_origin"},
                     {"lkb_origin", "small_conv"}):
        return None
    parts = {}
    for name, child in children.items():
        found = _conv_bn(child)
        if found is None:
            return None
        parts[_RENAMES.get(name, name)] = found
    bns = {has_bn for _, has_bn in parts.values()}
    if len(bns) != 1:
        return None
    channels = next(iter(parts.values()))[0].in_channels
    if any(conv.in_channels != channels for conv, _ in parts.values()):
        return None
    small = parts.get("small_conv")
    if small is not None and small[0].kernel_size[0] != small[0].kernel_size[1]:
        return None
    if "LoRA1" in parts:
        m, n = parts["LoRA1"][0].kernel_size
        if tuple(parts["LoRA2"][0].kernel_size) != (n, m) or (
                small is not None and tuple(small[0].kernel_size) != (n, n)):
            return None
        decom = True
    else:
        m, m2 = parts["lkb_origin"][0].kernel_size
        if m != m2:
            return None
        n = small[0].kernel_size[0] if small is not None else None
        decom = False
    return dict(in_channels=channels, out_channels=channels, kernel_size=m, groups=channels,
                small_kernel=n, small_kernel_merged=False, Decom=decom, bn=bns.pop())


def from_module(module, sparsify=False):
    """A ReparamLargeKernelConv computing what `module` (official layout)
    computes, with its weights, statistics, device, dtype and mode."""
    layout = official_layout(module)
    if layout is None:
        raise ValueError(f"slak.convert: {type(module).__name__} does not have the official "
                         "SLaK large-kernel layout (LoRA1/LoRA2[/small_conv], "
                         "lkb_origin[/small_conv] or lkb_reparam)")
    new = ReparamLargeKernelConv(**layout)
    state = {}
    for key, value in module.state_dict().items():
        head, _, rest = key.partition(".")
        state[f"{_RENAMES.get(head, head)}.{rest}" if rest else head] = value
    some = next(iter(state.values()))
    new = new.to(device=some.device, dtype=some.dtype if some.is_floating_point() else None)
    new.load_state_dict(state, strict=True)
    new.train(module.training)
    if sparsify:
        new.sparsify_()
    return new


def convert_(model, sparsify=False):
    """Replaces, inside `model`, every module with the official SLaK
    large-kernel layout by slak.nn.ReparamLargeKernelConv (weights, BatchNorm
    statistics, device, dtype and train/eval mode kept). Returns the
    qualified names of the replaced modules.

    sparsify=True derives masks from the weights' exact zeros, so pruned taps
    cost nothing. Leave it off while an external sparse trainer (the official
    Masking) may regrow pruned weights: a masked tap gets no gradient.
    """
    if official_layout(model) is not None:
        raise ValueError("slak.convert_: the model itself is a large-kernel module; use "
                         "slak.convert.from_module(model) to get its replacement")
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or official_layout(module) is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if getattr(parent, child, None) is not module:
            continue  # inside a module replaced already
        setattr(parent, child, from_module(module, sparsify=sparsify))
        replaced.append(name)
    return replaced
