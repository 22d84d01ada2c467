"""The speed a PyTorch user gets from slak.convert_: one SLaK-T-sized
large-kernel layer in the official layout (F.conv2d per branch, BatchNorm
per branch), before and after convert_, in the same process; NCHW and
channels_last inputs; eval forward and train forward + backward; medians
over alternating runs.

    .venv/bin/python bench/python/convert_bench.py --stages 1,2,3,4 --batch 8 --threads 2
"""
import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python"))
import slak  # noqa: E402

STAGES = {1: (124, 56, 51), 2: (249, 28, 49), 3: (499, 14, 47), 4: (998, 7, 13)}


class ConvBN(torch.nn.Sequential):
    def __init__(self, c, kh, kw):
        super().__init__()
        self.add_module("conv", torch.nn.Conv2d(c, c, (kh, kw), padding=(kh // 2, kw // 2),
                                                groups=c, bias=False))
        self.add_module("bn", torch.nn.BatchNorm2d(c))


class Official(torch.nn.Module):
    """The official layout computed with nn.Conv2d (per-axis padding)."""

    def __init__(self, c, m, n=5):
        super().__init__()
        self.LoRA1 = ConvBN(c, m, n)
        self.LoRA2 = ConvBN(c, n, m)
        self.small_conv = ConvBN(c, n, n)

    def forward(self, x):
        return self.LoRA1(x) + self.LoRA2(x) + self.small_conv(x)


def timed(fn, repeats):
    fn()  # warm-up (JIT compile, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="1,2,3,4")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sparsity", type=float, default=0.4,
                    help="fraction of exact zeros in the kernels (masks from zeros)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"sparsity {args.sparsity}, median of {args.repeats} (ms)")
    print("| stage | layout | mode | official (F.conv2d) | slak.convert_ | speedup |")
    print("|---|---|---|---|---|---|")
    for stage in [int(s) for s in args.stages.split(",")]:
        c, size, m = STAGES[stage]
        official = Official(c, m)
        with torch.no_grad():
            for p in official.parameters():
                if p.dim() == 4:
                    p.mul_(torch.rand(p.shape) >= args.sparsity)
        holder = torch.nn.Sequential(copy.deepcopy(official))
        slak.convert_(holder, sparsify=args.sparsity > 0)
        ours = holder[0]
        for layout in ("nchw", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = torch.randn(args.batch, c, size, size).contiguous(memory_format=fmt)
            for mode in ("eval fwd", "train fwd+bwd"):
                results = {}
                for name, module in (("official", official), ("slak", ours)):
                    if mode == "eval fwd":
                        module.eval()

                        def run(module=module):
                            with torch.no_grad():
                                module(x)
                    else:
                        module.train()
                        xg = x.detach().requires_grad_()

                        def run(module=module, xg=xg):
                            module(xg).sum().backward()
                    results[name] = run
                t_off, t_ours = [], []
                for _ in range(args.repeats):  # alternate the two
                    t_off += timed(results["official"], 1)
                    t_ours += timed(results["slak"], 1)
                a, b = statistics.median(t_off) * 1e3, statistics.median(t_ours) * 1e3
                print(f"| {stage} ({c} ch, {size}px, {m}x5) | {layout} | {mode} | {a:.1f} | "
                      f"{b:.1f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
