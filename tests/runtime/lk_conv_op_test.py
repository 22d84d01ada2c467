"""torch.ops.slak.lk_conv from Python: load the runtime library, check the
forward and every gradient against conv2d(groups=C) branches, per-branch
outputs, and that a wrong argument raises an error naming it.

Usage: python lk_conv_op_test.py path/to/libslak_runtime.so
"""
import sys

import torch
import torch.nn.functional as F

torch.ops.load_library(sys.argv[1])
torch.manual_seed(0)

C = 5
x = torch.randn(2, C, 9, 10, requires_grad=True)
w = [torch.randn(C, 1, 7, 3, requires_grad=True), torch.randn(C, 1, 3, 7, requires_grad=True)]
mask = torch.rand(C, 1, 7, 3) > 0.5
bias = torch.randn(C, requires_grad=True)

y = torch.ops.slak.lk_conv(x, w, [mask, None], bias)
ref = (F.conv2d(x, w[0] * mask, padding=(3, 1), groups=C)
       + F.conv2d(x, w[1], padding=(1, 3), groups=C) + bias.view(1, C, 1, 1))
assert y.shape == ref.shape, (y.shape, ref.shape)
assert torch.allclose(y, ref, atol=1e-4, rtol=1e-4), (y - ref).abs().max()

g = torch.randn_like(y)
got = torch.autograd.grad(y, [x, *w, bias], g)
want = torch.autograd.grad(ref, [x, *w, bias], g)
for name, a, b in zip(["x", "w0", "w1", "bias"], got, want):
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), (name, (a - b).abs().max())
assert (got[1][~mask] == 0).all(), "masked taps must get zero gradient"

branches = torch.ops.slak.lk_conv(x, w, [mask, None], per_branch=True)
assert branches.shape == (2, 2, C, 9, 10), branches.shape
assert torch.allclose(branches.sum(0) + bias.view(1, C, 1, 1), y, atol=1e-4)

try:
    torch.ops.slak.lk_conv(x.double(), w, [])
    raise AssertionError("a double x was accepted")
except RuntimeError as e:
    assert "x has dtype Double, expected Float, Half or BFloat16" in str(e), str(e)

print("torch.ops.slak.lk_conv: OK")
