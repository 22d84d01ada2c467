"""Processes compiling lk_conv kernels into the on-disk kernel cache
($SLAK_CACHE_DIR, runtime/KernelCache), killed with SIGKILL at random times;
the OpenCL backend (pocl here) compiles each new layer shape and stores the
program binary. Rules:
  - every entry file in the cache is whole: header, length and checksum check
    out (entries are written to a temporary file and renamed);
  - the next process loads complete entries or recompiles, and every result
    matches conv2d; the runtime never reports an invalid entry;
  - a cut-short entry put in place by hand (a torn write of some other
    writer) is reported, removed and rebuilt, never served;
  - a last run over every shape rebuilds only what no run finished: the
    entries already there are not rewritten.
Prints [SKIP] and exits 0 where the runtime has no OpenCL backend.

Usage: kernel_cache_kill.py --library build/lib/libslak_runtime.so --work DIR [--kills 10]
"""
import argparse
import os
import struct
import sys
import time

MAGIC = b"SLAKKC\x00\x01"
HEADER = 64


def shapes(n):
    """n distinct layers: channels, height, width and two branch kernels."""
    out = []
    for i in range(n):
        c, h, w = 2 + i % 3, 6 + i % 4, 7 + (i // 4) % 3
        out.append((c, h, w, (3 + 2 * (i % 3), 1 + 2 * (i // 3 % 2)), (3, 3)))
    return out


def worker(library, count):
    """Runs shapes 0..count-1 through the OpenCL backend; 'ok i' after each."""
    import torch
    import torch.nn.functional as F
    torch.ops.load_library(library)
    for i, (c, h, w, k0, k1) in enumerate(shapes(count)):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(1, c, h, w, generator=g)
        ws = [torch.randn(c, 1, *k0, generator=g), torch.randn(c, 1, *k1, generator=g)]
        print("start %d" % i, flush=True)
        y = torch.ops.slak.lk_conv(x, ws, [None, None], backend="opencl")
        ref = sum(F.conv2d(x, wk, padding=(wk.shape[2] // 2, wk.shape[3] // 2), groups=c)
                  for wk in ws)
        err = (y - ref).abs().max().item()
        if not err < 1e-4:
            print("WRONG %d max error %g" % (i, err), flush=True)
            sys.exit(3)
        print("ok %d" % i, flush=True)


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def entry_problem(path):
    """None for a whole entry (runtime/KernelCache.h's format), else why not."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER:
        return "truncated header (%d bytes)" % len(data)
    if data[:8] != MAGIC:
        return "bad magic"
    length, checksum, header_sum = struct.unpack_from("<QQQ", data, 32)
    if header_sum != fnv1a64(data[:48]):
        return "header checksum"
    if len(data) - HEADER != length:
        return "payload %d bytes, header says %d" % (len(data) - HEADER, length)
    return None if fnv1a64(data[HEADER:]) == checksum else "payload checksum"


def cache_files(cache):
    folder = os.path.join(cache, "opencl")
    if not os.path.isdir(folder):
        return [], []
    names = sorted(os.listdir(folder))
    return ([os.path.join(folder, n) for n in names if n.endswith(".bin") and ".tmp." not in n],
            [os.path.join(folder, n) for n in names if ".tmp." in n])


def body(a):
    from durability import check, fresh_dir, rng_from_env, run, run_and_kill
    rng = rng_from_env(41)
    fresh_dir(a.work)
    cache = os.path.join(a.work, "cache")
    env = dict(os.environ, SLAK_CACHE_DIR=cache, POCL_KERNEL_CACHE="0", OMP_NUM_THREADS="1")
    me = [sys.executable, os.path.abspath(__file__), "--library", a.library, "--worker"]

    probe = run(me + ["--count", "1"], env=env)
    if probe.rc != 0 and "opencl" in probe.err.lower() and "backend" in probe.err.lower():
        print("[SKIP] no OpenCL backend in this runtime: " + probe.err.strip().splitlines()[-1])
        return
    check(probe.rc == 0, "one shape through the OpenCL backend failed: " + probe.describe())
    compile_seconds = probe.seconds
    print("first shape compiled and cached in %.2f s" % compile_seconds, flush=True)

    n = 64  # more shapes than the kills can get through
    kills = mid_compile = tmp_seen = at_store = 0
    seen_tmps = set()
    started = 0
    while kills < a.kills:
        delay = rng.uniform(0.3, 1.8) * compile_seconds
        if rng.random() < 0.5:
            # Aim at a store: kill as soon as a temporary entry file shows up.
            def storing():
                folder = os.path.join(cache, "opencl")
                return os.path.isdir(folder) and any(".tmp." in x for x in os.listdir(folder))

            r = run_and_kill(me + ["--count", str(n)], 3 * compile_seconds, env=env,
                             kill_when=storing, poll=0.0002)
            at_store += r.killed
        else:
            r = run_and_kill(me + ["--count", str(n)], delay, env=env)
        check(r.killed or r.rc == 0, "a worker that was not killed failed: " + r.describe())
        check("WRONG" not in r.out, "a wrong result: " + r.describe())
        check("invalid entry" not in r.err, "the runtime found an invalid entry after a kill: "
              + r.err)
        lines = r.out.split()
        starts = [int(x) for k, x in zip(lines, lines[1:]) if k == "start"]
        oks = [int(x) for k, x in zip(lines, lines[1:]) if k == "ok"]
        started = max([started] + [s + 1 for s in starts])
        kills += r.killed
        mid_compile += r.killed and bool(starts) and (not oks or starts[-1] > oks[-1])
        entries, tmps = cache_files(cache)
        tmp_seen += bool(set(tmps) - seen_tmps)  # this kill cut a store short
        seen_tmps |= set(tmps)
        for e in entries:
            problem = entry_problem(e)
            check(problem is None, "after kill %d, %s is not whole: %s" % (kills, e, problem))

    # A torn entry written over a good one by some other writer: refused, rebuilt.
    entries, _ = cache_files(cache)
    check(entries, "no cache entries after %d kills" % kills)
    victim = entries[0]
    with open(victim, "rb") as f:
        whole = f.read()
    with open(victim, "wb") as f:
        f.write(whole[:len(whole) // 3])
    r = run(me + ["--count", str(started)], env=env)
    check(r.rc == 0, "after a torn entry: " + r.describe())
    check("ignoring and removing invalid entry " + victim in r.err,
          "the torn entry was not reported: " + r.describe())
    check(entry_problem(victim) is None, "the torn entry was not rebuilt whole")

    # A last run over every shape started so far rewrites nothing that was whole.
    entries, _ = cache_files(cache)
    before = {e: os.stat(e).st_mtime_ns for e in entries}
    last_start = time.time()
    r = run(me + ["--count", str(started)], env=env)
    check(r.rc == 0 and "ok %d" % (started - 1) in r.out, "the last run failed: " + r.describe())
    check("invalid entry" not in r.err, "invalid entry in the last run: " + r.err)
    after, tmps = cache_files(cache)
    rewritten = [e for e in before if os.stat(e).st_mtime_ns != before[e]]
    check(not rewritten, "whole entries were rebuilt: %s" % rewritten)
    # Killed writers' temporary files: the sweep removes those over 10 s old.
    stale = [t for t in tmps if os.stat(t).st_mtime < last_start - 11]
    check(not stale, "temporary files of killed writers were not swept: %s" % stale)
    print("kernel cache: %d kills (%d aimed at a store, %d inside a shape's compile-and-store; %d cut a "
          "store short, leaving a temporary file), %d shapes run, %d whole entries and no invalid "
          "one after any kill; a torn entry was reported and rebuilt; the last run loaded all %d, "
          "rebuilt none, and %d temporary files were swept (%d younger than 10 s kept)"
          % (kills, at_store, mid_compile, tmp_seen, started, len(after), len(before),
             len(seen_tmps) - len(tmps), len(tmps)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--work")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    if a.worker:
        worker(a.library, a.count)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from durability import main as run_main
    run_main(lambda: body(a))


if __name__ == "__main__":
    main()
