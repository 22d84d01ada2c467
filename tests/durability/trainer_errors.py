"""slak-train --resume of a damaged checkpoint: one error line naming the file
and the fix, never LibTorch's C++ stack trace (that only with SLAK_LOG=debug).
Damage: cut at 0, 100 bytes, half, all but the last 22 bytes (the zip's end
record), a text file, and a torch.save'd tensor (a zip, but no checkpoint).

Usage: trainer_errors.py --train build/bin/slak-train --work DIR
"""
import os

import torch

from durability import arguments, check, main, run

ARGS = ["--model", "slak_nano", "--width-factor", "0.25", "--dataset", "synthetic",
        "--synthetic-train", "32", "--synthetic-test", "16", "--batch-size", "16",
        "--epochs", "1", "--sparse-init", "uniform", "--threads", "1", "--no-progress",
        "--final-eval-only", "--lk-backend", "torch"]
TRACE_MARKS = ("frame #", "Exception raised from", "c10::Error")


def body():
    a = arguments("train")
    good_dir = os.path.join(a.work, "good")
    r = run([a.train] + ARGS + ["--out-dir", good_dir])
    check(r.rc == 0, "the run that writes the checkpoint failed: " + r.describe())
    with open(os.path.join(good_dir, "checkpoint.pt"), "rb") as f:
        good = f.read()

    damaged = {"empty": b"", "100-bytes": good[:100], "half": good[:len(good) // 2],
               "no-end-record": good[:-22], "text": b"not a checkpoint\n"}
    for name, data in damaged.items():
        with open(os.path.join(a.work, name + ".pt"), "wb") as f:
            f.write(data)
    torch.save(torch.zeros(3), os.path.join(a.work, "tensor.pt"))
    damaged["tensor"] = None

    for name in damaged:
        path = os.path.join(a.work, name + ".pt")
        out = os.path.join(a.work, "resume-" + name)
        r = run([a.train] + ARGS + ["--out-dir", out, "--resume", path])
        lines = r.err.strip().splitlines()
        check(r.rc == 1, "%s: expected exit 1: %s" % (name, r.describe()))
        check(len(lines) == 1, "%s: expected one line on stderr, got %d: %s"
              % (name, len(lines), r.describe()))
        line = lines[0]
        check(line.startswith("slak-train: error: --resume %s " % path),
              "%s: the line does not name the file first: %s" % (name, line))
        check("resume from an intact checkpoint" in line and "without --resume" in line,
              "%s: the line names no fix: %s" % (name, line))
        check(not any(m in line for m in TRACE_MARKS), "%s: a stack trace: %s" % (name, line))
        print("%-14s %s" % (name, line))
    # SLAK_LOG=debug keeps LibTorch's trace for the developer (an intact zip
    # that LibTorch then fails to read as a checkpoint).
    debug = run([a.train] + ARGS + ["--out-dir", os.path.join(a.work, "debug"), "--resume",
                                    os.path.join(a.work, "tensor.pt")],
                env=dict(os.environ, SLAK_LOG="debug"))
    check(debug.rc == 1 and any(m in debug.err for m in TRACE_MARKS),
          "SLAK_LOG=debug dropped the trace: " + debug.describe())
    print("slak-train --resume: %d damaged checkpoints, each refused with one line and no trace "
          "(SLAK_LOG=debug: %d lines with the trace)"
          % (len(damaged), len(debug.err.strip().splitlines())))


if __name__ == "__main__":
    main(body)
