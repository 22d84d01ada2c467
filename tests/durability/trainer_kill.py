"""slak-train killed with SIGKILL while it trains and checkpoints after every
step (--checkpoint-every 1), then resumed from whatever checkpoint.pt it left,
again and again until a run completes. Rules:
  - checkpoint.pt left by a kill always loads and its step never goes back;
  - every line of log.jsonl is a whole JSON record;
  - the completed run's final checkpoint is bit-identical (every tensor:
    weights, EMA, optimizer moments, masks, generator states, epoch sums) to
    an uninterrupted run's, and it prints the same losses and accuracies.
Half of the kills come at random times, half while a checkpoint is being
written (as soon as this run (re)creates checkpoint.pt.tmp, at a random one of
its writes).

Usage: trainer_kill.py --train build/bin/slak-train --work DIR [--kills 20]
"""
import json
import os
import re

import torch

from durability import arguments, Failure, check, fresh_dir, main, rng_from_env, run, run_and_kill

ARGS = ["--model", "slak_nano", "--width-factor", "0.25", "--dataset", "synthetic",
        "--synthetic-train", "64", "--synthetic-test", "16", "--epochs", "2",
        "--batch-size", "8", "--ema-decay", "0.5", "--sparse-init", "uniform",
        "--update-frequency", "3", "--threads", "1", "--no-progress", "--final-eval-only",
        "--checkpoint-every", "1", "--lk-backend", "torch", "--seed", "3"]
STEPS = 16  # 64 images / batch 8 x 2 epochs
# Differs between two identical runs: the epoch's wall-clock seconds.
WALL_CLOCK = {"meta.epoch_train_seconds"}


def load_state(path):
    try:
        return torch.jit.load(path).state_dict()
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        raise Failure("%s does not load: %s" % (path, str(e).splitlines()[0]))


def step_of(path):
    return int(load_state(path)["meta.step"])


def summary(out):
    lines = [l for l in out.splitlines() if l.startswith("slak_nano:")]
    check(lines, "no summary line in:\n" + out)
    return re.sub(r", [0-9.]+ images/s, [0-9.]+ s training", "", lines[-1])


def check_log(path):
    """Every line parses; returns the records."""
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            check(line.endswith("\n"), "%s line %d is cut short: %r" % (path, n, line[-80:]))
            try:
                records.append(json.loads(line))
            except ValueError:
                raise Failure("%s line %d is not JSON: %r" % (path, n, line[:80]))
    return records


def tmp_signature(path):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None


def body():
    a = arguments("train", kills=20)
    rng = rng_from_env(17)

    ref_dir = os.path.join(a.work, "uninterrupted")
    ref = run([a.train] + ARGS + ["--out-dir", ref_dir])
    check(ref.rc == 0, "the uninterrupted run failed: " + ref.describe())
    ref_state = load_state(os.path.join(ref_dir, "checkpoint.pt"))
    check(int(ref_state["meta.step"]) == STEPS, "the uninterrupted run did not take %d steps" % STEPS)
    ref_summary = summary(ref.out)
    full = ref.seconds
    print("uninterrupted: %s (%.2f s)" % (ref_summary, full), flush=True)

    kills = at_write = at_time = before_first = tmp_left = episodes = resumed = 0
    resume_steps = []
    while kills < a.kills:
        episodes += 1
        d = fresh_dir(os.path.join(a.work, "run%d" % episodes))
        ckpt, log = os.path.join(d, "checkpoint.pt"), os.path.join(d, "log.jsonl")
        last_step = -1
        runs_in_episode = resumes_in_episode = 0
        while True:
            runs_in_episode += 1
            check(runs_in_episode < 60, "episode %d makes no progress" % episodes)
            cmd = [a.train] + ARGS + ["--out-dir", d]
            resuming = os.path.exists(ckpt)
            if resuming:
                cmd += ["--resume", ckpt]
                resumed += 1
                resumes_in_episode += 1
                resume_steps.append(last_step)
            if kills < a.kills and last_step < STEPS and rng.random() < 0.5:
                # At the k-th checkpoint write this process starts.
                target = rng.randint(1, STEPS - max(last_step, 0))
                seen = {"count": 0, "last": tmp_signature(ckpt + ".tmp")}

                def writing():
                    sig = tmp_signature(ckpt + ".tmp")
                    if sig is not None and sig != seen["last"]:
                        seen["count"] += 1
                        seen["last"] = sig
                    return seen["count"] >= target

                r = run_and_kill(cmd, 4 * full + 10, kill_when=writing)
                mode = "write"
            elif kills < a.kills:
                r = run_and_kill(cmd, rng.uniform(0.0, 1.1 * full))
                mode = "time"
            else:
                r = run(cmd)
                mode = None
            if not r.killed:
                check(r.rc == 0, "a run that was not killed failed: " + r.describe())
                break
            kills += 1
            at_write += mode == "write"
            at_time += mode == "time"
            tmp_left += os.path.exists(ckpt + ".tmp")
            if os.path.exists(ckpt):
                step = step_of(ckpt)
                check(step >= last_step, "the checkpoint went back from step %d to %d"
                      % (last_step, step))
                last_step = step
            else:
                check(last_step < 0, "checkpoint.pt disappeared after step %d" % last_step)
                before_first += 1
            if os.path.exists(log):
                check_log(log)

        final = load_state(ckpt)
        check(set(final) == set(ref_state), "episode %d: the checkpoint's entries differ" % episodes)
        differ = [k for k in ref_state if k not in WALL_CLOCK and not torch.equal(final[k],
                                                                                   ref_state[k])]
        check(not differ, "episode %d: after kills and resumes %d tensors differ from the "
              "uninterrupted run, e.g. %s" % (episodes, len(differ), differ[:3]))
        check(summary(r.out) == ref_summary, "episode %d prints\n  %s\nthe uninterrupted run\n  %s"
              % (episodes, summary(r.out), ref_summary))
        records = check_log(log)
        # A resumed run killed while loading logs nothing; the last one must.
        logged = sum(x["event"] == "resume" for x in records)
        check(logged <= resumes_in_episode and (logged >= 1 or not resuming),
              "episode %d: %d resume records in the log for %d resumes"
              % (episodes, logged, resumes_in_episode))

    print("slak-train: %d kills (%d at random times, %d during a checkpoint write; %d before the "
          "first checkpoint; %d left checkpoint.pt.tmp), %d resumes from steps %s, %d completed "
          "runs bit-identical to the uninterrupted run" % (
              kills, at_time, at_write, before_first, tmp_left, resumed,
              sorted(set(resume_steps)), episodes))


if __name__ == "__main__":
    main(body)
