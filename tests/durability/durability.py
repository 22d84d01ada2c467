"""Shared helpers of the durability tests: start a writer, SIGKILL it at a
random moment (or when a file appears), and report what was killed.

Each test script prints one summary line per writer ("<writer>: N kills, ...")
that docs/durability.md quotes, and exits non-zero on the first violated rule.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


class Run:
    """One finished or killed process: rc, stdout, stderr, killed, seconds."""

    def __init__(self, rc, out, err, killed, seconds):
        self.rc, self.out, self.err = rc, out, err
        self.killed, self.seconds = killed, seconds

    def describe(self):
        return "rc %s%s\n--- stdout\n%s--- stderr\n%s" % (
            self.rc, " (killed)" if self.killed else "", self.out, self.err)


def arguments(tool, kills=None):
    """The script's command line: --<tool> (the binary under test), --work
    (emptied here) and, where `kills` is given, --kills with that default."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--" + tool, required=True)
    ap.add_argument("--work", required=True)
    if kills is not None:
        ap.add_argument("--kills", type=int, default=kills)
    a = ap.parse_args()
    fresh_dir(a.work)
    return a


def run(cmd, env=None, timeout=600):
    """Runs to completion."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr, False, time.monotonic() - t0)


def run_and_kill(cmd, delay, env=None, kill_when=None, poll=0.0005):
    """Starts `cmd` and SIGKILLs it after `delay` seconds, or as soon as
    `kill_when()` is true when that is given (polled every `poll` seconds, up
    to `delay`). Returns a Run whose `killed` says whether the kill came
    before the process exited on its own."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if kill_when is not None:
        deadline = t0 + delay
        while p.poll() is None and time.monotonic() < deadline and not kill_when():
            time.sleep(poll)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
    else:
        try:
            out, err = p.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            out, err = p.communicate()
    killed = p.returncode == -signal.SIGKILL
    return Run(p.returncode, out, err, killed, time.monotonic() - t0)


def rng_from_env(default_seed):
    """A seeded generator; SLAK_DURABILITY_SEED overrides the seed (printed,
    so a failing run can be repeated)."""
    seed = int(os.environ.get("SLAK_DURABILITY_SEED", default_seed))
    print("seed %d (SLAK_DURABILITY_SEED)" % seed)
    return random.Random(seed)


def main(body):
    """Runs body(); prints FAIL and exits 1 on a Failure."""
    try:
        body()
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
