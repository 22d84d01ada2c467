"""slak.nn.ReparamLargeKernelConv against a module in the official SLaK
layout (written here from the facts in ../shared/ANCHORS.md: names, shapes,
per-axis padding), strict state-dict loading, train and eval outputs,
convert_, sparsify_, merge_kernel and torch.compile."""
import copy
import importlib.util
import io

import pytest
import torch
import torch.nn.functional as F

import slak
from slak.nn import ReparamLargeKernelConv


class OfficialConvBN(torch.nn.Sequential):
    def __init__(self, c, kh, kw, bn=True):
        super().__init__()
        self.add_module("conv", torch.nn.Conv2d(c, c, (kh, kw), padding=(kh // 2, kw // 2),
                                                groups=c, bias=False))
        if bn:
            self.add_module("bn", torch.nn.BatchNorm2d(c))


class OfficialLargeKernel(torch.nn.Module):
    """The official module's layout: LoRA1 (M x N), LoRA2 (N x M), small_conv
    (N x N), each conv + bn, summed; lkb_origin (M x M) without Decom."""

    def __init__(self, c, m, n, decom=True, bn=True):
        super().__init__()
        if decom:
            self.LoRA1 = OfficialConvBN(c, m, n, bn)
            self.LoRA2 = OfficialConvBN(c, n, m, bn)
        else:
            self.lkb_origin = OfficialConvBN(c, m, m, bn)
        self.small_conv = OfficialConvBN(c, n, n, bn)

    def forward(self, x):
        out = 0
        for child in self.children():
            out = out + child(x)
        return out


def randomize(module, zeros=0.4, seed=0):
    """Random weights with a fraction of exact zeros, random BN statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() == 4 else 0.5))
            if p.dim() == 4 and zeros:
                p.mul_(torch.rand(p.shape, generator=g) >= zeros)
            if name.endswith("bn.weight"):
                p.add_(1.0)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return module


def pair(c=6, m=9, n=3, decom=True, bn=True, seed=0):
    official = randomize(OfficialLargeKernel(c, m, n, decom, bn), seed=seed)
    ours = ReparamLargeKernelConv(c, c, m, groups=c, small_kernel=n, Decom=decom, bn=bn)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


@pytest.mark.parametrize("decom,bn", [(True, True), (False, True), (True, False)])
def test_state_dict_names_and_strict_load(decom, bn):
    official, ours = pair(decom=decom, bn=bn)
    assert list(official.state_dict()) == list(ours.state_dict())
    for key, value in official.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key


@pytest.mark.parametrize("decom,bn,sparse", [(True, True, False), (True, True, True),
                                             (False, True, True), (True, False, False)])
def test_train_and_eval_match_official(decom, bn, sparse):
    official, ours = pair(decom=decom, bn=bn)
    if sparse:
        assert slak.sparsify_(ours) == 1
        assert any(m is not None for m in ours.masks())
    x = torch.randn(2, 6, 11, 10, requires_grad=True)
    # Training: per-branch BatchNorm on batch statistics, gradients.
    official.train()
    ours.train()
    y0, y1 = official(x), ours(x)
    torch.testing.assert_close(y1, y0, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y0)
    p0 = [p for _, p in official.named_parameters()]
    p1 = [p for _, p in ours.named_parameters()]
    got = torch.autograd.grad(y1, [x, *p1], g)
    want = list(torch.autograd.grad(y0, [x, *p0], g))
    if sparse:
        # Masked taps get no gradient (they stay pruned); live taps match.
        masks = iter(ours.masks())
        for i, p in enumerate(p1):
            if p.dim() == 4:
                mask = next(masks)
                if mask is not None:
                    assert (got[1 + i][~mask] == 0).all()
                    want[1 + i] = want[1 + i] * mask
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    for (k, a), (_, b) in zip(official.named_buffers(), ours.named_buffers()):
        torch.testing.assert_close(b, a, msg=f"running statistic {k}")
    # Eval: folded and merged, cached, and refreshed when a weight changes.
    official.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), atol=1e-4, rtol=1e-4)
        first = ours.folded()
        assert ours.folded() is first, "the fold is cached"
        weight = ours.branch_weights()[0]
        weight.mul_(0.5)
        official.state_dict()  # same tensors scaled below
        for p in official.parameters():
            if p.shape == weight.shape:
                p.mul_(0.5)
                break
        assert ours.folded() is not first, "a weight change refreshes the fold"
        torch.testing.assert_close(ours(x), official(x), atol=1e-4, rtol=1e-4)


def eval_pair(sparse):
    """pair() in eval mode; ours sparsified (masks from zeros) when asked."""
    official, ours = pair()
    if sparse:
        ours.sparsify_()
    official.eval()
    ours.eval()
    return official, ours


def test_eval_under_inference_mode():
    official, ours = eval_pair(sparse=True)
    x = torch.randn(2, 6, 9, 8)
    with torch.inference_mode():
        got = ours(x)
        again = ours(x)
        want = official(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, got)
    weights, masks, _, _ = ours.folded()
    assert not any(m is not None and m.is_inference() for m in masks), \
        "cached masks are normal tensors, so the op keeps their taps"


def test_eval_merges_small_kernel_into_strip():
    _, ours = pair()
    ours.eval()
    weights, masks, bias, padding = ours.folded()
    assert [tuple(w.shape[2:]) for w in weights] == [(9, 3), (3, 9)]
    assert padding == [(4, 1), (1, 4)]
    assert bias.shape == (6,)


@pytest.mark.parametrize("sparse", [False, True])
def test_merge_kernel_for_the_decomposed_kernel(sparse):
    official, ours = eval_pair(sparse)
    x = torch.randn(2, 6, 12, 9)
    with torch.no_grad():
        before = official(x)
        ours.merge_kernel()
        torch.testing.assert_close(ours(x), before, atol=1e-4, rtol=1e-4)
    assert sorted(ours.state_dict()) == ["lkb_reparam.bias", "lkb_reparam.weight"]
    (live,) = ours.masks()
    assert live is not None and live[0, 0, 0, 0].item() is False, "corners of the cross are dead"
    merged = ReparamLargeKernelConv(6, 6, 9, groups=6, small_kernel=3, small_kernel_merged=True)
    merged.load_state_dict(ours.state_dict(), strict=True)
    merged.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x), before, atol=1e-4, rtol=1e-4)


def test_sparsify_masks_pruned_taps():
    _, ours = pair()
    ours.sparsify_()
    for w, m in zip(ours.branch_weights(), ours.masks()):
        assert m is not None and torch.equal(m, w.detach() != 0)
    ours.train()
    x = torch.randn(2, 6, 8, 8)
    ours(x).sum().backward()
    for w, m in zip(ours.branch_weights(), ours.masks()):
        assert (w.grad[~m] == 0).all()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.blocks = torch.nn.Sequential(OfficialLargeKernel(6, 9, 3), torch.nn.GELU(),
                                          OfficialLargeKernel(6, 7, 3, decom=False))
        self.head = torch.nn.Linear(6, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("sparsify", [False, True])
def test_convert_keeps_outputs(sparsify):
    net = randomize(Net(), seed=3)
    ref = copy.deepcopy(net)
    replaced = slak.convert_(net, sparsify=sparsify)
    assert replaced == ["blocks.0", "blocks.2"]
    assert isinstance(net.blocks[0], ReparamLargeKernelConv)
    assert isinstance(net.blocks[2], ReparamLargeKernelConv) and not net.blocks[2].Decom
    x = torch.randn(2, 3, 10, 10)
    for mode in ("train", "eval"):
        getattr(net, mode)()
        getattr(ref, mode)()
        torch.testing.assert_close(net(x), ref(x), atol=1e-4, rtol=1e-4)
    assert slak.convert_(net) == [], "already converted"


def test_convert_refuses_other_layouts():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3))
    assert slak.convert_(net) == []
    with pytest.raises(ValueError, match="official SLaK large-kernel layout"):
        slak.convert.from_module(net)


def test_constructor_errors_name_the_value():
    with pytest.raises(ValueError, match="stride is 2"):
        ReparamLargeKernelConv(4, 4, 9, stride=2, groups=4)
    with pytest.raises(ValueError, match="kernel_size is 8"):
        ReparamLargeKernelConv(4, 4, 8, groups=4)
    with pytest.raises(ValueError, match="depthwise"):
        ReparamLargeKernelConv(4, 8, 9, groups=4)
    with pytest.raises(ValueError, match="in_channels is 0, expected a positive"):
        ReparamLargeKernelConv(0, 0, 7)
    with pytest.raises(ValueError, match="small_kernel is 9, expected less than kernel_size 7"):
        ReparamLargeKernelConv(4, 4, 7, groups=4, small_kernel=9)


def test_torch_compile_training_step():
    torch._dynamo.reset()
    _, ours = pair()
    ours.train()
    opt = torch.optim.SGD(ours.parameters(), lr=0.01)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 6, 8, 8)
    ref = copy.deepcopy(ours)
    loss = compiled(x).square().mean()
    loss.backward()
    ref_loss = ref(x).square().mean()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-3, msg=name)
    opt.step()


def test_onnx_export_names_the_op_and_the_fix():
    net = randomize(Net(), seed=5).eval()
    slak.convert_(net)
    x = torch.randn(1, 3, 10, 10)
    with pytest.raises(Exception, match="slak::lk_conv has no ONNX form.*export_as_conv2d_"):
        torch.onnx.export(net, (x,), io.BytesIO(), dynamo=False)
    with torch.no_grad():
        before = net(x)
    assert slak.nn.export_as_conv2d_(net) == ["blocks.0", "blocks.2"]
    assert isinstance(net.blocks[0], torch.nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-4, rtol=1e-4)
    traced = torch.jit.trace(net, (x,))  # what the exporter records: standard layers only
    assert "slak" not in str(traced.graph)
    if importlib.util.find_spec("onnx") is not None:
        torch.onnx.export(net, (x,), io.BytesIO(), dynamo=False)


def test_torch_export_of_an_eval_module():
    _, ours = pair()
    ours.sparsify_()
    ours.eval()
    x = torch.randn(2, 6, 9, 9)
    exported = torch.export.export(ours, (x,))
    assert "slak.lk_conv" in str(exported.graph)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), ours(x))
