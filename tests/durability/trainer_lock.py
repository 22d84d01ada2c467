"""Two slak-train runs on one output directory: the second is refused at once
with one line naming the directory and the first one's pid; the same when
only --checkpoint points into the busy directory; a lock file left by a
killed trainer does not block the next one, which resumes its checkpoint.

Usage: trainer_lock.py --train build/bin/slak-train --work DIR
"""
import os
import re
import signal
import subprocess
import time

import torch

from durability import arguments, check, main, run

ARGS = ["--model", "slak_nano", "--width-factor", "0.25", "--dataset", "synthetic",
        "--synthetic-train", "64", "--synthetic-test", "16", "--batch-size", "8",
        "--sparse-init", "uniform", "--threads", "1", "--no-progress", "--final-eval-only",
        "--lk-backend", "torch", "--checkpoint-every", "1"]


def wait_for_lock(path, pid, timeout=60):
    """Until the lock file names `pid` (the trainer holds the lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if "pid %d\n" % pid in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError("%s never named pid %d" % (path, pid))


def one_error_line(r):
    lines = r.err.strip().splitlines()
    check(r.rc == 1 and len(lines) == 1, "expected exit 1 and one line: " + r.describe())
    return lines[0]


def body():
    a = arguments("train")
    busy = os.path.join(a.work, "busy")
    lock = os.path.join(busy, "slak-train.lock")

    # A long first run holds the directory.
    first = subprocess.Popen([a.train] + ARGS + ["--epochs", "400", "--out-dir", busy],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_lock(lock, first.pid)
        t0 = time.monotonic()
        second = run([a.train] + ARGS + ["--epochs", "1", "--out-dir", busy])
        line = one_error_line(second)
        want = ("slak-train: error: output directory %s is in use by another slak-train "
                "(pid %d, lock %s): wait for it to finish or stop it, or pass another --out-dir"
                % (busy, first.pid, lock))
        check(line == want, "the second trainer said\n  %s\nexpected\n  %s" % (line, want))
        print("second trainer refused in %.2f s: %s" % (time.monotonic() - t0, line))

        # Another --out-dir, but the checkpoint in the busy directory.
        other = os.path.join(a.work, "other")
        third = run([a.train] + ARGS + ["--epochs", "1", "--out-dir", other, "--checkpoint",
                                        os.path.join(busy, "checkpoint.pt")])
        line = one_error_line(third)
        check(("output directory %s is in use" % busy) in line and ("pid %d" % first.pid) in line,
              "a --checkpoint into the busy directory was not refused: " + third.describe())
        check(not os.path.exists(os.path.join(other, "log.jsonl")),
              "the refused trainer wrote its log")
        check(first.poll() is None, "the first trainer stopped early (rc %s)" % first.returncode)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # The killed trainer's lock file is still there, naming a dead process.
    with open(lock) as f:
        check("pid %d\n" % first.pid in f.read(), "the lock file lost the dead trainer's pid")
    check(os.path.exists(os.path.join(busy, "checkpoint.pt")), "the first run left no checkpoint")
    # Resume for two more steps (--max-steps just past the checkpoint).
    step = int(torch.jit.load(os.path.join(busy, "checkpoint.pt")).state_dict()["meta.step"])
    resumed = run([a.train] + ARGS + ["--epochs", "400", "--max-steps", str(step + 2),
                                      "--out-dir", busy, "--resume",
                                      os.path.join(busy, "checkpoint.pt")])
    check(resumed.rc == 0, "a stale lock blocked the next trainer: " + resumed.describe())
    check(re.search(r"slak_nano: %d steps" % (step + 2), resumed.out),
          "the resumed run did not continue from step %d: %s" % (step, resumed.describe()))
    print("stale lock of killed pid %d: the next trainer ran and resumed step %d -> %d"
          % (first.pid, step, step + 2))
    print("slak-train locking: 2 refusals (same --out-dir, --checkpoint into it), 1 stale lock "
          "ignored")


if __name__ == "__main__":
    main(body)
