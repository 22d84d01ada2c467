"""slak-autotune writing the SQLite tuning database, killed with SIGKILL at
random times (one database through all kills, so kills land in schema
creation, between layers and inside a layer's transaction), and several
tuners writing one database at once. Rules:
  - after every kill the database opens, passes PRAGMA integrity_check, and
    holds every row the tool reported ("stored in ... (N records)") and every
    row a concurrent reader saw before the kill;
  - no partial transaction: each layer's rows land together (per signature and
    device the row count is a multiple of one tuning's), and each tuned layer
    has its choice;
  - concurrent tuners (WAL + busy timeout) all succeed, and each one's rows
    are one unbroken block of ids per layer (no interleaving).

Usage: autotune_kill.py --autotune build/bin/slak-autotune --work DIR [--kills 20]
"""
import os
import re
import sqlite3
import subprocess
import threading
import time

from durability import arguments, check, main, rng_from_env, run, run_and_kill

STORED = re.compile(r"^stored in .* \((\d+) records\)$", re.M)


def tune(autotune, db, gpu="a100"):
    return [autotune, "--gpu", gpu, "--slak-t", "--db", db, "--quiet"]


def connect(db):
    con = sqlite3.connect(db, timeout=30)
    con.execute("PRAGMA busy_timeout=30000")
    return con


def per_key_counts(db):
    con = connect(db)
    try:
        rows = con.execute("SELECT signature, device, count(*) FROM measurements "
                           "GROUP BY signature, device").fetchall()
    finally:
        con.close()
    return {(s, d): n for s, d, n in rows}


def check_database(db, per_layer, what):
    """Opens, integrity, whole transactions, a choice per tuned layer; returns
    the number of measurement rows."""
    con = connect(db)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchall()
        check(ok == [("ok",)], "%s: integrity_check says %s" % (what, ok))
        app = con.execute("PRAGMA application_id").fetchone()[0]
        if app == 0:  # killed before the schema was created: an empty database
            check(con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0,
                  "%s: tables without the application id (half-created schema)" % what)
            return 0
        check(app == 0x534c4b54, "%s: application id %x" % (what, app))
        counts = con.execute("SELECT signature, device, count(*) FROM measurements "
                             "GROUP BY signature, device").fetchall()
        for sig, dev, n in counts:
            want = per_layer[(sig, dev)]
            check(n % want == 0, "%s: %d rows for %s on %s, not a multiple of one tuning's %d "
                  "(a partial transaction)" % (what, n, sig[:40], dev, want))
            has_choice = con.execute("SELECT count(*) FROM choices WHERE signature=? AND "
                                     "device=?", (sig, dev)).fetchone()[0]
            check(has_choice == 1, "%s: %s on %s has rows but no choice" % (what, sig[:40], dev))
        return con.execute("SELECT count(*) FROM measurements").fetchone()[0]
    finally:
        con.close()


class Reader(threading.Thread):
    """Polls count(*) from another connection while the tuner runs."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db, self.max_seen, self.stop = db, 0, False

    def run(self):
        con = None
        while not self.stop:
            try:
                if con is None and os.path.exists(self.db):
                    con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=30)
                if con is not None:
                    n = con.execute("SELECT count(*) FROM measurements").fetchone()[0]
                    self.max_seen = max(self.max_seen, n)
            except sqlite3.Error:
                pass  # no table yet
            time.sleep(0.005)
        if con is not None:
            con.close()


def reported_rows(out):
    return sum(int(n) for n in STORED.findall(out))


def body():
    a = arguments("autotune", kills=20)
    rng = rng_from_env(29)

    # One uninterrupted tuning per GPU: rows per layer.
    per_layer, full, ref_rows = {}, 0.0, {}
    for gpu in ("a100", "h100"):
        db = os.path.join(a.work, "reference-%s.db" % gpu)
        r = run(tune(a.autotune, db, gpu))
        check(r.rc == 0 and len(STORED.findall(r.out)) == 4, "reference run: " + r.describe())
        per_layer.update(per_key_counts(db))
        ref_rows[gpu] = reported_rows(r.out)
        if gpu == "a100":
            full = r.seconds
    print("uninterrupted: a100 %d rows, h100 %d rows in 4 layers each (a100 run %.2f s)"
          % (ref_rows["a100"], ref_rows["h100"], full), flush=True)

    # Kills: most on one growing database, some on fresh ones (schema creation).
    db = os.path.join(a.work, "killed.db")
    kills = fresh_kills = unreported = 0
    reported_total = rows = 0
    outcomes = {"before any commit": 0, "between or inside layers": 0, "after the last commit": 0}
    i = -1
    while kills < a.kills:
        i += 1
        check(i < 4 * a.kills, "the tuner keeps finishing before the kill")
        fresh = i % 5 == 4
        target = os.path.join(a.work, "fresh-%d.db" % i) if fresh else db
        before = 0 if fresh else rows
        reader = Reader(target)
        reader.start()
        delay = rng.uniform(0, 0.15) if fresh else rng.uniform(0.4, 1.1) * full
        r = run_and_kill(tune(a.autotune, target), delay)
        reader.stop = True
        reader.join()
        if not r.killed:
            check(r.rc == 0, "a tuner that was not killed failed: " + r.describe())
        kills += r.killed
        fresh_kills += r.killed and fresh
        said = reported_rows(r.out)
        layers_said = len(STORED.findall(r.out))
        now = check_database(target, per_layer, "after kill %d" % (i + 1)) \
            if os.path.exists(target) else 0
        check(now - before >= said, "kill %d: the tool reported %d rows, the database gained %d"
              % (i + 1, said, now - before))
        check(now >= reader.max_seen, "kill %d: a reader saw %d rows, %d are left"
              % (i + 1, reader.max_seen, now))
        extra = now - before - said  # committed but killed before the line was printed
        check(extra == 0 or extra in per_layer.values(),
              "kill %d: %d rows beyond the reported ones, not one layer's" % (i + 1, extra))
        unreported += extra > 0
        if not fresh:
            reported_total += said
            rows = now
        committed = layers_said + (extra > 0)
        if r.killed:
            outcomes["before any commit" if committed == 0 else "after the last commit"
                     if committed == 4 else "between or inside layers"] += 1
    # The database still works for the tool itself.
    r = run(tune(a.autotune, db))
    check(r.rc == 0 and len(STORED.findall(r.out)) == 4, "tuning after the kills: " + r.describe())
    check(check_database(db, per_layer, "after the kills") == rows + reported_rows(r.out),
          "the last run's rows are not all there")
    print("slak-autotune: %d kills in %d runs (%d on fresh databases): %s; every database opened "
          "and passed integrity_check; %d reported rows and every row a reader saw were kept; %d "
          "kills came after a commit but before its line was printed" % (
              kills, i + 1, fresh_kills, ", ".join("%d %s" % (n, k) for k, n in outcomes.items()),
              reported_total, unreported), flush=True)

    # Three tuners on one database at once.
    db = os.path.join(a.work, "shared.db")
    gpus = ["a100", "h100", "a100"]
    procs = [subprocess.Popen(tune(a.autotune, db, g), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for g in gpus]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for (out, err, rc), g in zip(results, gpus):
        check(rc == 0 and len(STORED.findall(out)) == 4,
              "concurrent tuner (%s) failed: rc %d\n%s%s" % (g, rc, out, err))
    total = check_database(db, per_layer, "after three concurrent tuners")
    check(total == 2 * ref_rows["a100"] + ref_rows["h100"],
          "three tuners left %d rows, expected %d" % (total, 2 * ref_rows["a100"] + ref_rows["h100"]))
    con = connect(db)
    ids = con.execute("SELECT signature, device FROM measurements ORDER BY id").fetchall()
    con.close()
    blocks, i = 0, 0
    while i < len(ids):
        n = per_layer[ids[i]]
        check(all(k == ids[i] for k in ids[i:i + n]),
              "rows of two tuners interleave at id %d" % (i + 1))
        i += n
        blocks += 1
    print("slak-autotune concurrency: 3 tuners on one database, all succeeded, %d rows in %d "
          "unbroken per-layer blocks" % (total, blocks))


if __name__ == "__main__":
    main(body)
