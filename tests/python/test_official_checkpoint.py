"""Official SLaK checkpoints through our C++ tools, end to end.

An official-layout SLaK model is written here in plain PyTorch from the facts
in ANCHORS.md ("SLaK model", "Official checkpoints"): the official module and
tensor names, per-axis padding (kh//2, kw//2), channels-first LayerNorm, the
Block and the head. At slak_nano's size (depths 2,2,2, dims int(32,64,128 x
1.3), kernels 13,13,7 with N = 5, a 2x2/2 stem, 1 x 28 x 28 inputs, 10 classes)
it gets random weights with ~40% exact zeros (the pruned weights of sparse
training) and random BatchNorm statistics, and is saved as the official code
does: torch.save({"model": state_dict, "epoch", "args": Namespace, "optimizer",
"scaler"}). slak-infer must then give the logits of the PyTorch model on both
large-kernel backends, and refuse a file of another model with one message
that names the tensor and the flags that fit.

The build directory comes from SLAK_BUILD_DIR (default /work/main/build).
"""

import argparse
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

BUILD = Path(os.environ.get("SLAK_BUILD_DIR", "/work/main/build"))
INFER = BUILD / "bin" / "slak-infer"
TRAIN = BUILD / "bin" / "slak-train"

NANO = dict(depths=[2, 2, 2], dims=[41, 83, 166], kernels=[13, 13, 7], small=5,
            stem=2, in_chans=1, classes=10)

pytestmark = pytest.mark.skipif(not INFER.exists(), reason=f"{INFER} is not built")


# ------------------------------------------------ the official model layout

class LayerNorm(nn.Module):
    """The official LayerNorm: channels_last (F.layer_norm) or channels_first."""

    def __init__(self, dim, eps=1e-6, channels_first=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps, self.channels_first, self.dim = eps, channels_first, dim

    def forward(self, x):
        if not self.channels_first:
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def conv_bn(channels, kh, kw, bn=True):
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2),
                                     groups=channels, bias=False))
    if bn:
        seq.add_module("bn", nn.BatchNorm2d(channels))
    return seq


class ReparamLargeKernelConv(nn.Module):
    def __init__(self, channels, m, n, decom=True, bn=True):
        super().__init__()
        self.decom = decom
        if decom:
            self.LoRA1 = conv_bn(channels, m, n, bn)
            self.LoRA2 = conv_bn(channels, n, m, bn)
        else:
            self.lkb_origin = conv_bn(channels, m, m, bn)
        if n < m:
            self.small_conv = conv_bn(channels, n, n, bn)

    def forward(self, x):
        out = self.LoRA1(x) + self.LoRA2(x) if self.decom else self.lkb_origin(x)
        if hasattr(self, "small_conv"):
            out = out + self.small_conv(x)
        return out


class Block(nn.Module):
    def __init__(self, dim, m, n, decom=True, layer_scale=1e-6):
        super().__init__()
        self.large_kernel = ReparamLargeKernelConv(dim, m, n, decom)
        self.norm = LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        y = self.large_kernel(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class SLaK(nn.Module):
    def __init__(self, depths, dims, kernels, small, stem, in_chans, classes, decom=True):
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_chans, dims[0], stem, stride=stem),
            LayerNorm(dims[0], channels_first=True))])
        for i in range(len(dims) - 1):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i], channels_first=True),
                nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)))
        self.stages = nn.ModuleList([
            nn.Sequential(*[Block(dims[i], kernels[i], small, decom) for _ in range(depths[i])])
            for i in range(len(dims))])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean([-2, -1])))


def randomize(model, seed, zeros=0.4):
    """Random weights (not the init: gamma ~ 0.5 so every block matters), ~40%
    exact zeros in the large kernels and the pointwise linears (as sparse
    training leaves them), random BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("conv.weight") and p.dim() == 4:  # large-kernel branches
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
                p.mul_((torch.rand(p.shape, generator=g) >= zeros).float())
            elif "pwconv" in name and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
                p.mul_((torch.rand(p.shape, generator=g) >= zeros).float())
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("weight"):  # norms
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1234)
    return model.eval()


def official_file(path, model, kernel_size, ema_model=None, epoch=3, rename=None):
    """Saves `model` as the official code does (utils.save_model)."""
    sd = model.state_dict()
    if rename:
        sd = type(sd)((rename(k), v) for k, v in sd.items())
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    payload = {
        "model": sd,
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "args": argparse.Namespace(model="SLaK_nano", kernel_size=kernel_size,
                                   width_factor=1.3, Decom=True, bn=True, sparse=True,
                                   sparsity=0.4, nb_classes=10, drop_path=0.0),
    }
    if ema_model is not None:
        payload["model_ema"] = ema_model.state_dict()
    torch.save(payload, path)
    return path


def run(tool, *args):
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def infer(ckpt, x_path, out_path, *flags):
    return run(INFER, "--model", "slak_nano", "--checkpoint", ckpt, "--input", x_path,
               "--logits-out", out_path, "--threads", "2", *flags)


def backends():
    return ["torch", "runtime"]


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    model = randomize(SLaK(**NANO), seed=1)
    ema = randomize(SLaK(**NANO), seed=2)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    torch.save(x, d / "x.pt")
    ckpt = official_file(d / "official.pth", model, [13, 13, 7, 5], ema_model=ema)
    with torch.no_grad():
        return dict(dir=d, model=model, ema=ema, x=x, ckpt=ckpt, ref=model(x), ref_ema=ema(x))


def check_logits(result, out_path, reference):
    assert result.returncode == 0, result.stdout + result.stderr
    logits = torch.load(out_path)
    assert logits.shape == reference.shape
    scale = reference.abs().max().item()
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4 * scale)
    return logits


def skip_without_runtime(result, backend):
    if backend == "runtime" and "no slak::LKConv2d" in result.stderr:
        pytest.skip("this build has no runtime large-kernel backend")


# ------------------------------------------------------------------- tests

def test_file_is_what_the_official_code_writes(nano):
    with zipfile.ZipFile(nano["ckpt"]) as z:
        assert any(n.endswith("data.pkl") for n in z.namelist())
    loaded = torch.load(nano["ckpt"], weights_only=False)
    assert isinstance(loaded["args"], argparse.Namespace)
    sd = loaded["model"]
    assert "stages.0.0.large_kernel.LoRA1.conv.weight" in sd
    assert sd["stages.0.0.large_kernel.LoRA1.conv.weight"].shape == (41, 1, 13, 5)
    assert sd["stages.2.1.large_kernel.small_conv.bn.running_var"].shape == (166,)
    zero = (sd["stages.0.0.large_kernel.LoRA1.conv.weight"] == 0).float().mean().item()
    assert 0.3 < zero < 0.5


@pytest.mark.parametrize("backend", backends())
def test_logits_match_pytorch(nano, backend):
    out = nano["dir"] / f"logits-{backend}.pt"
    r = infer(nano["ckpt"], nano["dir"] / "x.pt", out, "--lk-backend", backend)
    skip_without_runtime(r, backend)
    logits = check_logits(r, out, nano["ref"])
    assert f"official SLaK checkpoint {nano['ckpt']} (epoch 3)" in r.stdout
    # One line per image with the predicted class index, no accuracy line.
    predicted = logits.argmax(1).tolist()
    for i, p in enumerate(predicted):
        assert f"{i:6d}  predicted {p}\n" in r.stdout
    assert "accuracy" not in r.stdout


@pytest.mark.parametrize("backend", backends())
def test_ema_weights(nano, backend):
    out = nano["dir"] / f"logits-ema-{backend}.pt"
    r = infer(nano["ckpt"], nano["dir"] / "x.pt", out, "--lk-backend", backend, "--ema")
    skip_without_runtime(r, backend)
    check_logits(r, out, nano["ref_ema"])
    assert "(EMA)" in r.stdout


def test_older_decom_names(nano):
    d = nano["dir"]
    ckpt = official_file(d / "decom.pth", nano["model"], [13, 13, 7, 5],
                         rename=lambda k: k.replace("LoRA1", "Decom1").replace("LoRA2", "Decom2"))
    r = infer(ckpt, d / "x.pt", d / "logits-decom.pt", "--lk-backend", "torch")
    check_logits(r, d / "logits-decom.pt", nano["ref"])


@pytest.mark.parametrize("backend", backends())
def test_kernel_size_mismatch_is_refused(nano, backend):
    # Trained with other kernels (SLaK #16: 31 evaluated as 51 gave 0% silently).
    d = nano["dir"]
    other = dict(NANO, kernels=[11, 9, 7])
    ckpt = official_file(d / "k11.pth", randomize(SLaK(**other), seed=4), [11, 9, 7, 5])
    out = d / f"never-{backend}.pt"
    r = infer(ckpt, d / "x.pt", out, "--lk-backend", backend)
    skip_without_runtime(r, backend)
    assert r.returncode != 0
    assert not out.exists()
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "stages.0.0.large_kernel.LoRA1.conv.weight has shape [41, 1, 11, 5] in the file, " \
           "[41, 1, 13, 5] in the model" in err
    assert "--kernel-sizes 11,9,7" in err
    assert "kernel_size 11 9 7 5" in err  # what args says


def test_depth_mismatch_names_the_extra_tensors(nano):
    d = nano["dir"]
    deeper = dict(NANO, depths=[2, 2, 3])
    ckpt = official_file(d / "deeper.pth", randomize(SLaK(**deeper), seed=5), [13, 13, 7, 5])
    r = infer(ckpt, d / "x.pt", d / "never.pt", "--lk-backend", "torch")
    assert r.returncode != 0
    assert "tensor(s) the model does not (stages.2.2." in r.stderr
    assert "no registry model has" in r.stderr


def test_classes_mismatch_names_the_flag(nano):
    d = nano["dir"]
    wide = dict(NANO, classes=7)
    ckpt = official_file(d / "c7.pth", randomize(SLaK(**wide), seed=6), [13, 13, 7, 5])
    r = infer(ckpt, d / "x.pt", d / "never.pt", "--lk-backend", "torch")
    assert r.returncode != 0
    assert "head.weight has shape [7, 166] in the file, [10, 166] in the model" in r.stderr
    assert "--classes 7" in r.stderr
    r = infer(ckpt, d / "x.pt", d / "c7-logits.pt", "--lk-backend", "torch", "--classes", "7")
    assert r.returncode == 0, r.stderr
    assert torch.load(d / "c7-logits.pt").shape == (5, 7)


def test_truncated_file_is_refused(nano):
    d = nano["dir"]
    data = Path(nano["ckpt"]).read_bytes()
    (d / "truncated.pth").write_bytes(data[: len(data) // 2])
    r = infer(d / "truncated.pth", d / "x.pt", d / "never.pt", "--lk-backend", "torch")
    assert r.returncode != 0
    assert "truncated or corrupt" in r.stderr


def test_bad_input_file(nano):
    d = nano["dir"]
    torch.save(torch.zeros(28, 28), d / "flat.pt")
    r = infer(nano["ckpt"], d / "flat.pt", d / "never.pt", "--lk-backend", "torch")
    assert r.returncode != 0
    assert "--input" in r.stderr and "expected 4 dims (N, C, H, W)" in r.stderr
    r = infer(nano["ckpt"], d / "missing.pt", d / "never.pt", "--lk-backend", "torch")
    assert r.returncode != 0 and "no such file" in r.stderr


@pytest.mark.skipif(not TRAIN.exists(), reason="slak-train is not built")
def test_slak_train_eval_only(nano):
    r = run(TRAIN, "--model", "slak_nano", "--eval-only", "--checkpoint", nano["ckpt"],
            "--dataset", "synthetic", "--synthetic-test", "16", "--lk-backend", "torch",
            "--threads", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "official SLaK checkpoint" in r.stdout and "test acc" in r.stdout
