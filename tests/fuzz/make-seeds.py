#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into OUT/ir and OUT/readers.

  make-seeds.py SOURCE_DIR OUT_DIR [--translate BUILD/bin/slak-translate]

ir:      every tests/lit/**/*.mlir split at `// -----`, a small version of
         examples/slak_t_stage1.mlir (the generator with 4 channels, 8x8,
         7x3 + 3x7 + 3x3) and tests/fuzz/corpus/ir (committed reproducers).
readers: tests/fuzz/corpus/readers (committed: hand-written seeds and
         reproducers), kernel packages
         slak-translate writes for the ir seeds, kernel-cache entries and a
         tuning database file. The first byte of a readers seed picks the
         reader (tests/fuzz/FuzzReaders.cpp: kReaders, index = byte % 8).

Idempotent: OUT is rewritten. Only the standard library.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import tempfile

SEPARATOR = b"\n--8<--\n"  # FuzzReaders.cpp: kSeparator
PACKAGE, CACHE_ENTRY, DATABASE_FILE = b"0", b"3", b"6"


def write_seed(directory, data):
    """Content-named, like libFuzzer's own corpus files."""
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)
    return name


def ir_seeds(src, out):
    seeds = []
    for root, _, files in os.walk(os.path.join(src, "tests", "lit")):
        for name in sorted(files):
            if not name.endswith(".mlir"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                text = f.read()
            for part in re.split(rb"^// -----\s*$", text, flags=re.M):
                if part.strip():
                    seeds.append(part)
    # The example model, small: the generator's globals patched.
    spec = importlib.util.spec_from_file_location(
        "gen", os.path.join(src, "examples", "gen_slak_t_stage1.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.C, gen.H, gen.W, gen.BATCH = 4, 8, 8, 1
    gen.BRANCHES = [("m_n", 7, 3), ("n_m", 3, 7), ("small", 3, 3)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "small.mlir")
        gen.main(path)
        with open(path, "rb") as f:
            seeds.append(f.read())
    for seed in seeds:
        write_seed(out, seed)
    return seeds


def package_seeds(seeds, translate, out, limit=8, max_bytes=16384):
    """'0' + manifest.json, data.bin and, for some, kernels.cu/.cl holding
    only the entry-point names (the reader looks for `name(`); packages
    of up to max_bytes (manifest + data) only, small ones first. Half of
    them without the manifest's file checksums."""
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(sorted(seeds, key=len)):
            if count >= limit:
                break
            src, pkg = os.path.join(tmp, "%d.mlir" % i), os.path.join(tmp, "pkg%d" % i)
            with open(src, "wb") as f:
                f.write(seed)
            run = subprocess.run([translate, "--emit-kernel-package", "-o", pkg, src],
                                 capture_output=True)
            manifest = os.path.join(pkg, "manifest.json")
            if run.returncode != 0 or not os.path.exists(manifest):
                continue
            with open(manifest, "rb") as f:
                doc = json.load(f)
            with open(os.path.join(pkg, "data.bin"), "rb") as f:
                data = f.read()
            stubs = []
            if count % 2 == 0:
                # Without "checksums" (as older packages): mutated data.bin
                # reaches the range and size checks behind them; the
                # sources hold only the entry-point names.
                doc.pop("checksums", None)
                with open(os.path.join(pkg, "kernels.cu"), "rb") as f:
                    names = re.findall(rb"\b(slak_lk_\w+)\(", f.read())
                stub = b"".join(b"void %s();\n" % n for n in sorted(set(names)))
                stubs = [stub, stub]
            else:
                # The checksum of data.bin only (the sources are left out).
                doc["checksums"] = {k: v for k, v in doc.get("checksums", {}).items()
                                    if k == "data.bin"}
            parts = [json.dumps(doc, indent=2).encode() + b"\n", data] + stubs
            if len(parts[0]) + len(parts[1]) > max_bytes:
                continue
            write_seed(out, PACKAGE + SEPARATOR.join(parts))
            count += 1
    return count


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def cache_entry(payload, key=(0x0123456789ABCDEF, 0xFEDCBA9876543210)):
    """runtime/KernelCache.cpp's entry format, checksums included."""
    header = b"SLAKKC\x00\x01" + struct.pack("<IIQQQQ", 1, 64, key[0], key[1], len(payload),
                                             fnv1a64(payload))
    header += struct.pack("<Q", fnv1a64(header)) + bytes(8)
    return header + payload


def cache_seeds(out):
    # Mode byte 0: checksums as written; 3: the target repairs both.
    for mode, payload in ((0, b""), (0, b"// PTX\n.version 8.0\n"), (3, bytes(range(64)))):
        write_seed(out, CACHE_ENTRY + bytes([mode]) + cache_entry(payload))


def database_seed(src, out):
    """A slak tuning database (schema from autotune/TuningDatabase.cpp) with
    one choice and one measurement, in rollback-journal mode."""
    code = ""
    for name in ("TuningDatabase.cpp", "TuningDatabase.h"):
        with open(os.path.join(src, "autotune", name)) as f:
            code += f.read()
    schema = re.search(r'kSchemaV1 = R"sql\((.*?)\)sql"', code, re.S).group(1)
    app_id = int(re.search(r"kApplicationId = (0x[0-9a-fA-F]+)", code).group(1), 16)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tuning.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA page_size=512")  # a small seed
        db.executescript(schema)
        db.execute("PRAGMA application_id=%d" % app_id)
        db.execute("INSERT INTO choices(signature, device, compiler, backend, schedule, origin, "
                   "kinds, workload) VALUES ('lk_conv.v1 C=4', 'a100', 'nvrtc', 'cuda', "
                   "'tile=8x8 block=4x8 stageInput=1 stageTaps=1 maskedWalk=0 weightSplit=8 "
                   "weightThreads=256 weightTile=8x32 weightRows=8', 'model', 'forward', "
                   "'N=8 H=8 W=8 density=0.5')")
        db.execute("INSERT INTO measurements(signature, device, compiler, backend, kind, "
                   "schedule, workload, samples) VALUES ('lk_conv.v1 C=4', 'a100', 'nvrtc', "
                   "'cuda', 'forward', 'tile=8x8', 'N=8', '0.1,0.2')")
        db.commit()
        db.close()
        with open(path, "rb") as f:
            write_seed(out, DATABASE_FILE + f.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--translate", help="slak-translate, for kernel-package seeds")
    args = parser.parse_args()
    ir_dir, readers_dir = os.path.join(args.out, "ir"), os.path.join(args.out, "readers")
    for d in (ir_dir, readers_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    seeds = ir_seeds(args.source, ir_dir)
    # Committed seeds: hand-written ones and the reproducers of fixed bugs.
    for target, directory in (("ir", ir_dir), ("readers", readers_dir)):
        committed = os.path.join(args.source, "tests", "fuzz", "corpus", target)
        for name in sorted(os.listdir(committed)):
            shutil.copy(os.path.join(committed, name), directory)
    packages = 0
    if args.translate and os.path.exists(args.translate):
        packages = package_seeds(seeds, args.translate, readers_dir)
    cache_seeds(readers_dir)
    database_seed(args.source, readers_dir)
    print("seeds: %d ir, %d readers (%d kernel packages) in %s"
          % (len(os.listdir(ir_dir)), len(os.listdir(readers_dir)), packages, args.out))


if __name__ == "__main__":
    main()
