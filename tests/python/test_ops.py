"""slak.ops.lk_conv / torch.ops.slak.lk_conv: torch.library.opcheck, values
and gradients against F.conv2d branches, channels-last, meta tensors,
torch.compile (fullgraph, forward and backward) and torch.export."""
import pytest
import torch
import torch.nn.functional as F

import slak
from slak import ops


def reference(x, weights, masks=None, bias=None, padding=None, per_branch=False):
    """The op written with LibTorch's depthwise conv2d, one call per branch."""
    outs = []
    c = x.shape[1]
    for b, w in enumerate(weights):
        if masks is not None and masks[b] is not None:
            w = w * masks[b].to(w.dtype)
        pad = padding[b] if padding is not None else (w.shape[2] // 2, w.shape[3] // 2)
        outs.append(F.conv2d(x, w, padding=pad, groups=c))
    if per_branch:
        return torch.stack(outs)
    y = sum(outs)
    return y + bias.view(1, -1, 1, 1) if bias is not None else y


def make(c, h, w, windows, n=2, density=None, seed=0, bias=False, grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).requires_grad_(grad)
    weights = [torch.randn(c, 1, kh, kw, generator=g).mul_(0.2).requires_grad_(grad)
               for kh, kw in windows]
    masks = None
    if density is not None:
        masks = [torch.rand(c, 1, kh, kw, generator=g) < density for kh, kw in windows]
    b = torch.randn(c, generator=g).requires_grad_(grad) if bias else None
    return x, weights, masks, b


# (channels, height, width, branch windows, mask density): odd channel counts,
# kernels larger than the image, non-square images, batch shapes.
CASES = [
    (5, 9, 10, [(7, 3), (3, 7)], None),
    (5, 9, 10, [(7, 3), (3, 7), (3, 3)], 0.5),
    (7, 6, 5, [(11, 3), (3, 11), (5, 5)], 0.6),   # kernel larger than the image
    (3, 13, 8, [(9, 9), (5, 5)], 0.4),            # RepLKNet-style square + small
    (4, 7, 7, [(7, 7)], None),                    # ConvNeXt-style single kernel
]


@pytest.mark.parametrize("c,h,w,windows,density", CASES)
def test_forward_and_gradients_match_conv2d(c, h, w, windows, density):
    x, weights, masks, bias = make(c, h, w, windows, density=density, bias=True)
    y = ops.lk_conv(x, weights, masks, bias=bias)
    ref = reference(x, weights, masks, bias)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *weights, bias], g)
    want = torch.autograd.grad(ref, [x, *weights, bias], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    if masks is not None:
        for dw, m in zip(got[1:-1], masks):
            assert (dw[~m] == 0).all(), "masked taps get no gradient"


def test_per_branch_outputs():
    x, weights, masks, _ = make(6, 8, 9, [(5, 3), (3, 5), (3, 3)], density=0.5)
    y = ops.lk_conv(x, weights, masks, per_branch=True)
    torch.testing.assert_close(y, reference(x, weights, masks, per_branch=True),
                               atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *weights], g)
    want = torch.autograd.grad(reference(x, weights, masks, per_branch=True), [x, *weights], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_explicit_padding():
    x, weights, _, _ = make(4, 10, 11, [(5, 3), (3, 1)])
    padding = [(2, 1), (1, 0)]
    y = ops.lk_conv(x, weights, padding=padding)
    torch.testing.assert_close(y, reference(x, weights, padding=padding), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("per_branch", [False, True])
def test_channels_last_keeps_layout(per_branch):
    x, weights, masks, _ = make(6, 8, 9, [(7, 3), (3, 7), (3, 3)], density=0.6)
    xl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = ops.lk_conv(xl, weights, masks, per_branch=per_branch)
    ref = reference(x, weights, masks, per_branch=per_branch)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    if per_branch:
        assert all(y[b].is_contiguous(memory_format=torch.channels_last) for b in range(3))
    else:
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    g = torch.randn_like(ref)
    (dx,) = torch.autograd.grad(y, [xl], g)
    assert dx.is_contiguous(memory_format=torch.channels_last), "dx keeps x's layout"
    torch.testing.assert_close(dx, torch.autograd.grad(ref, [x], g)[0], atol=1e-3, rtol=1e-4)
    nchw = ops.lk_conv(x, weights, masks)
    assert nchw.is_contiguous(), "NCHW in, NCHW out"


def test_meta_tensors_give_shapes():
    x = torch.empty(3, 8, 20, 17, device="meta")
    weights = [torch.empty(8, 1, 9, 3, device="meta"), torch.empty(8, 1, 3, 9, device="meta")]
    assert torch.ops.slak.lk_conv(x, weights, []).shape == (3, 8, 20, 17)
    assert torch.ops.slak.lk_conv(x, weights, [], per_branch=True).shape == (2, 3, 8, 20, 17)
    y = ops.lk_conv(x, weights, padding=[(0, 0), (0, 0)])
    assert y.shape == (3, 8, 12, 15) and y.device.type == "meta"
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.ops.slak.lk_conv(xl, weights, []).is_contiguous(
        memory_format=torch.channels_last)


def opcheck_samples():
    samples = []
    x, w, m, b = make(5, 9, 10, [(7, 3), (3, 7), (3, 3)], density=0.5, bias=True)
    samples.append(((x, w, m, b), {}))
    x, w, m, _ = make(4, 6, 7, [(5, 3), (3, 5)], density=0.6)
    samples.append(((x, w, m), {"per_branch": True}))
    x, w, _, _ = make(3, 8, 8, [(5, 5)])
    samples.append(((x.detach().contiguous(memory_format=torch.channels_last)
                     .requires_grad_(), w, []), {}))
    x, w, _, b = make(3, 8, 9, [(5, 3), (3, 1)], bias=True, grad=False)
    samples.append(((x, w, [None, None], b), {"padding": [2, 1, 1, 0]}))
    return samples


@pytest.mark.parametrize("index", range(4))
def test_opcheck(index):
    args, kwargs = opcheck_samples()[index]
    result = torch.library.opcheck(torch.ops.slak.lk_conv.default, args, kwargs)
    failed = {k: v for k, v in result.items() if v != "SUCCESS"}
    assert not failed, failed


def test_opcheck_backward_op():
    x, w, m, _ = make(4, 6, 7, [(5, 3), (3, 5)], density=0.6, grad=False)
    grad = torch.randn(2, 4, 6, 7)
    args = (grad, x, w, m, False, False, False, [], "auto", [True, True])
    result = torch.library.opcheck(torch.ops.slak.lk_conv_backward.default, args,
                                   test_utils=("test_schema", "test_faketensor"))
    assert all(v == "SUCCESS" for v in result.values()), result


def _compiled_step(backend, dynamic):
    def step(x, w0, w1, m0):
        y = ops.lk_conv(x, [w0, w1], [m0, None])
        return (y * y).sum()

    return torch.compile(step, backend=backend, fullgraph=True, dynamic=dynamic)


@pytest.mark.parametrize("backend,dynamic", [("aot_eager", True), ("inductor", False)])
def test_torch_compile_fullgraph_forward_backward(backend, dynamic):
    torch._dynamo.reset()
    step = _compiled_step(backend, dynamic)
    for shape in ([2, 5, 9, 10], [3, 5, 7, 12]):
        x, (w0, w1), masks, _ = make(shape[1], shape[2], shape[3], [(7, 3), (3, 7)], n=shape[0],
                                     density=0.5)
        loss = step(x, w0, w1, masks[0])
        got = torch.autograd.grad(loss, [x, w0, w1])
        ref = (reference(x, [w0, w1], [masks[0], None]) ** 2).sum()
        want = torch.autograd.grad(ref, [x, w0, w1])
        torch.testing.assert_close(loss, ref, atol=1e-3, rtol=1e-4)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_torch_export():
    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 1, 5, 3))

        def forward(self, x):
            return ops.lk_conv(x, [self.w]).relu()

    layer = Layer()
    x = torch.randn(2, 4, 8, 8)
    exported = torch.export.export(layer, (x,))
    assert "slak.lk_conv" in str(exported.graph)
    torch.testing.assert_close(exported.module()(x), layer(x))


def test_bad_arguments_name_the_argument():
    x, weights, _, _ = make(5, 9, 10, [(7, 3)], grad=False)
    with pytest.raises(RuntimeError, match="x has dtype Double, expected Float, Half or BFloat16"):
        ops.lk_conv(x.double(), weights)
    with pytest.raises(RuntimeError, match=r"weights\[0\] has 5 channels .* expected 4"):
        ops.lk_conv(x[:, :4], weights)
    with pytest.raises(RuntimeError, match=r"masks\[0\] has shape"):
        ops.lk_conv(x, weights, [torch.ones(5, 1, 3, 7)])
    with pytest.raises(ValueError, match=r"padding\[0\] is \(1, 2, 3\), expected a \(pad_h, pad_w\)"):
        ops.lk_conv(x, weights, padding=[(1, 2, 3)])


def test_a_library_that_does_not_load_names_the_variable(tmp_path):
    import subprocess
    import sys
    bogus = tmp_path / "libslak_runtime.so"
    bogus.write_text("not a library")
    env = dict(__import__("os").environ, SLAK_RUNTIME_LIBRARY=str(bogus))
    r = subprocess.run([sys.executable, "-c", "import slak"], env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert f"cannot load {bogus} (from $SLAK_RUNTIME_LIBRARY)" in r.stderr
    assert "Point SLAK_RUNTIME_LIBRARY" in r.stderr


def test_library_path_is_this_build():
    assert slak.library_path().endswith("libslak_runtime.so")
