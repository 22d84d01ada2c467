"""Bad input at the LibTorch tools' entry points, end to end (docs/bad-input.md).

Each case gives slak-infer, slak-export or slak-erf a damaged or wrong-kind
file, a bad flag or a bad environment variable, and checks that the tool
exits non-zero with one line that names the file, what is wrong and the fix,
and never prints a LibTorch C++ stack trace ("frame #0") unless SLAK_LOG=debug
asks for it. The IR tools' cases are lit tests (tests/lit/tools/bad-input.mlir).

The build directory comes from SLAK_BUILD_DIR (default /work/main/build).
"""

import gzip
import os
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

BUILD = Path(os.environ.get("SLAK_BUILD_DIR", "/work/main/build"))
BIN = BUILD / "bin"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
MLIR_TEXT = "func.func @f(%x: tensor<1xf32>) -> tensor<1xf32> {\n  return %x : tensor<1xf32>\n}\n"
# The LibTorch large-kernel layers: no JIT compiles, so each run takes ~1 s.
TORCH = ["--lk-backend", "torch"]
SYNTHETIC = ["--dataset", "synthetic", "--images", "2", *TORCH]

pytestmark = pytest.mark.skipif(not (BIN / "slak-infer").exists(),
                                reason=f"{BIN / 'slak-infer'} is not built")


def run(tool, *args, env=None, timeout=300):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                          errors="backslashreplace", env=full_env, timeout=timeout)


def infer_one_image(env):
    """slak-infer on one synthetic image with the runtime backend."""
    return run("slak-infer", "--dataset", "synthetic", "--images", "1", "--lk-backend", "runtime",
               env=env)


def one_error(result, tool):
    """The single error line of a failed run ([slak] log lines aside)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "frame #" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("[slak]")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{tool}: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-input")
    r = run("slak-train", "--model", "slak_nano", "--dataset", "synthetic", "--synthetic-train",
            "32", "--synthetic-test", "16", "--batch-size", "16", "--max-steps", "1",
            "--threads", "1", "--no-progress", "--out-dir", d / "run", *TORCH)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def checkpoint(work):
    return work / "run" / "checkpoint.pt"


def damaged_copy(checkpoint, path):
    """`checkpoint` with one byte flipped inside its largest tensor record."""
    with zipfile.ZipFile(checkpoint) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(checkpoint.read_bytes())
    # The record's bytes follow its 30-byte local header, name and extra field.
    start = info.header_offset + 30 + int.from_bytes(
        data[info.header_offset + 26:info.header_offset + 28], "little") + int.from_bytes(
        data[info.header_offset + 28:info.header_offset + 30], "little")
    data[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    return info.filename.split("/", 1)[1]


# ------------------------------------------------------------ checkpoints

def test_intact_checkpoint_loads(checkpoint):
    r = run("slak-infer", "--checkpoint", checkpoint, *SYNTHETIC)
    assert r.returncode == 0, r.stderr
    assert "accuracy:" in r.stdout


def test_truncated_checkpoint(work, checkpoint):
    path = work / "truncated.pt"
    path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    line = one_error(run("slak-infer", "--checkpoint", path, *SYNTHETIC), "slak-infer")
    assert "truncated.pt is not a readable PyTorch zip archive (truncated or corrupt?)" in line
    assert "write or copy it again" in line
    assert "internal miniz error" not in line


@pytest.mark.parametrize("tool", ["slak-infer", "slak-export", "slak-erf"])
def test_damaged_checkpoint_is_refused_not_loaded(work, checkpoint, tool):
    # LibTorch reads zip records without their CRC-32: before the check this
    # loaded wrong weights and exited 0.
    path = work / "damaged.pt"
    record = damaged_copy(checkpoint, path)
    extra = {"slak-infer": SYNTHETIC,
             "slak-export": ["-o", work / "never.mlir", *TORCH],
             "slak-erf": ["-o", work / "never.png", "--data", "random", "--images", "1",
                          "--size", "32", *TORCH]}[tool]
    line = one_error(run(tool, "--checkpoint", path, *extra), tool)
    assert f"damaged.pt is corrupt: record {record} " in line
    assert "the file was damaged after it was written" in line


def test_damaged_checkpoint_is_refused_by_resume(work, checkpoint):
    path = work / "damaged-resume.pt"
    record = damaged_copy(checkpoint, path)
    line = one_error(run("slak-train", "--model", "slak_nano", "--dataset", "synthetic",
                         "--synthetic-train", "32", "--synthetic-test", "16", "--batch-size",
                         "16", "--max-steps", "2", "--threads", "1", "--no-progress",
                         "--out-dir", work / "resumed", "--resume", path, *TORCH), "slak-train")
    assert f"--resume {path} is not an intact checkpoint: record {record} " in line
    assert "the file was damaged after it was written" in line
    assert "start afresh without --resume" in line


@pytest.mark.parametrize("kind,expected", [
    ("png", "is a PNG image, not a checkpoint"),
    ("sqlite", "is an SQLite database (e.g. a tuning database), not a checkpoint"),
    ("mlir", "is MLIR text, not a checkpoint"),
    ("package", "is a folder (a kernel package?), not a checkpoint"),
    ("empty", "is an empty file, not a checkpoint"),
])
def test_wrong_kind_of_file_as_checkpoint(work, kind, expected):
    path = work / f"wrong-{kind}"
    if kind == "png":
        path.write_bytes(PNG_BYTES)
    elif kind == "sqlite":
        with sqlite3.connect(path) as db:
            db.execute("create table t (x)")
    elif kind == "mlir":
        path.write_text(MLIR_TEXT)
    elif kind == "package":
        path.mkdir(exist_ok=True)
        (path / "manifest.json").write_text("{}\n")
    else:
        path.write_bytes(b"")
    line = one_error(run("slak-infer", "--checkpoint", path, *SYNTHETIC), "slak-infer")
    assert expected in line
    assert "slak-train writes <out-dir>/checkpoint.pt" in line


# ------------------------------------------------------------ data sets

@pytest.fixture(scope="module")
def data_dirs(work):
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"{FASHION_MNIST} is missing (dataset-fashion-mnist)")
    images = "t10k-images-idx3-ubyte.gz"
    labels = "t10k-labels-idx1-ubyte.gz"

    def make(name, write_images):
        d = work / "data" / name
        d.mkdir(parents=True)
        shutil.copy(FASHION_MNIST / labels, d / labels)
        write_images(d / images)
        return d

    original = (FASHION_MNIST / images).read_bytes()
    return {
        "truncated": make("truncated", lambda p: p.write_bytes(original[:100000])),
        "corrupt": make("corrupt", lambda p: p.write_bytes(
            original[:50000] + bytes(100) + original[50100:])),
        "png": make("png", lambda p: p.write_bytes(PNG_BYTES)),
        "labels": make("labels", lambda p: shutil.copy(FASHION_MNIST / labels, p)),
        "short": make("short", lambda p: p.write_bytes(
            gzip.compress(gzip.decompress(original)[:1000000]))),
        "folder": make("folder", lambda p: p.mkdir()),
    }


@pytest.mark.parametrize("name,expected", [
    ("truncated", "t10k-images-idx3-ubyte.gz is truncated (zlib: unexpected end of file"),
    ("corrupt", "t10k-images-idx3-ubyte.gz is corrupt (zlib: "),
    ("png", "t10k-images-idx3-ubyte.gz is a PNG image, not a gzip-compressed IDX file"),
    ("labels", "t10k-images-idx3-ubyte.gz: IDX rank 1, expected 3 (images)"),
    ("short", "999984 data bytes, the header promises 7840000"),
    ("folder", "t10k-images-idx3-ubyte.gz is a folder, not a gzip-compressed IDX file"),
])
def test_damaged_or_wrong_data_set_file(data_dirs, name, expected):
    line = one_error(run("slak-infer", "--data-dir", data_dirs[name], "--images", "1", *TORCH),
                     "slak-infer")
    assert expected in line
    assert "apt-get install --reinstall dataset-fashion-mnist" in line


# ------------------------------------------------------------ kernel packages

@pytest.fixture(scope="module")
def package(work):
    """A package of slak_nano's random weights (seed 0), as slak-infer builds them."""
    for tool in ("slak-export", "slak-opt", "slak-translate"):
        if not (BIN / tool).exists():
            pytest.skip(f"{tool} is not built (MLIR)")
    model = work / "model.mlir"
    r = run("slak-export", "-o", model, *TORCH)
    assert r.returncode == 0, r.stderr
    r = run("slak-opt", model, "--slak-pipeline=mode=infer", "-o", work / "model.opt.mlir")
    assert r.returncode == 0, r.stderr
    r = run("slak-translate", "--emit-kernel-package", "-o", work / "pkg", work / "model.opt.mlir")
    assert r.returncode == 0, r.stderr
    r = run("slak-infer", "--kernels", work / "pkg", "--kernel-backend", "reference", *SYNTHETIC)
    assert r.returncode == 0, r.stderr
    return work / "pkg"


def package_copy(package, work, name):
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(package, d)
    return d


def test_checkpoint_given_as_package(package, checkpoint, work):
    line = one_error(run("slak-infer", "--kernels", checkpoint, *SYNTHETIC), "slak-infer")
    assert ("checkpoint.pt is a zip archive (e.g. a PyTorch checkpoint), not a kernel package "
            "folder (slak-translate --emit-kernel-package -o DIR writes one)") in line
    line = one_error(run("slak-infer", "--kernels", work, *SYNTHETIC), "slak-infer")
    assert "manifest.json: no such file" in line


@pytest.mark.parametrize("damage,expected", [
    # Named by its kind, not by the JSON parser's quote of its first byte.
    ("png-manifest", "manifest.json is a PNG image, not the JSON manifest of a kernel package"),
    ("truncated-manifest", "manifest.json is not valid JSON"),
    ("truncated-data", "data.bin"),
])
def test_damaged_package(package, work, damage, expected):
    d = package_copy(package, work, damage)
    manifest = d / "manifest.json"
    if damage == "png-manifest":
        manifest.write_bytes(PNG_BYTES)
    elif damage == "truncated-manifest":
        manifest.write_text(manifest.read_text()[:300])
    else:
        (d / "data.bin").write_bytes((d / "data.bin").read_bytes()[:100])
    line = one_error(run("slak-infer", "--kernels", d, *SYNTHETIC), "slak-infer")
    assert expected in line


def test_package_error_at_run_time_has_no_stack_trace(package):
    # An error raised by the runtime while serving the package (a c10::Error)
    # reaches the user as one line, without LibTorch's C++ stack trace.
    env = {"SLAK_OPENCL_DEVICE": "no-such-device"}
    args = ["--kernels", package, "--kernel-backend", "opencl", *SYNTHETIC]
    line = one_error(run("slak-infer", *args, env=env), "slak-infer")
    assert "cannot prepare the opencl kernels" in line
    debug = run("slak-infer", *args, env={**env, "SLAK_LOG": "debug"})
    assert debug.returncode == 1
    assert "Exception raised from" in debug.stderr, debug.stderr


# ------------------------------------------------------------ --input and flags

def test_input_images_the_model_cannot_take(work):
    path = work / "tiny.pt"
    torch.save(torch.randn(2, 1, 1, 1), path)
    line = one_error(run("slak-infer", "--input", path, *TORCH), "slak-infer")
    assert "--input " in line and "tiny.pt (shape [2, 1, 1, 1]) cannot go through slak_nano" in line


def test_wrong_kind_of_file_as_input(work):
    path = work / "input.mlir"
    path.write_text(MLIR_TEXT)
    line = one_error(run("slak-infer", "--input", path, *TORCH), "slak-infer")
    assert "input.mlir is MLIR text, not a tensor file" in line
    assert "torch.save(x, FILE)" in line


@pytest.mark.parametrize("args,expected", [
    # Each was accepted before: a hang (--batch-size 0), a wrong message
    # (--images 0) or silently ignored (the negative values).
    (["--batch-size", "0"], "--batch-size: '0' is not a positive number"),
    (["--images", "0"], "--images: '0' is not a positive number"),
    (["--width-factor", "-1"], "--width-factor: '-1' is not a positive number"),
    (["--classes", "-2"], "--classes: '-2' is not a positive number"),
    (["--sparsity", "-0.5"], "--sparsity: '-0.5' is negative or not a number"),
    (["--threads", "-3"], "--threads: '-3' is negative or not a number (0 = LibTorch's default)"),
    (["--kernel-backend", "tpu"], "--kernel-backend: tpu not in {auto,opencl,cpu,reference,cuda}"),
])
def test_bad_flag_values(args, expected):
    r = run("slak-infer", "--dataset", "synthetic", *TORCH, *args, timeout=60)
    assert r.returncode != 0
    assert expected in r.stderr, r.stderr


def test_in_channels_that_do_not_fit_the_data():
    line = one_error(run("slak-infer", *SYNTHETIC, "--in-channels", "3"), "slak-infer")
    assert "the synthetic images (--synthetic-size): 1 channel(s) per image, the model takes 3" \
        in line


# ------------------------------------------------------------ environment

def test_unknown_log_level_is_warned_about():
    r = infer_one_image(env={"SLAK_LOG": "verbose"})
    assert r.returncode == 0, r.stderr
    assert "[slak] warning: SLAK_LOG=verbose is not a level" in r.stderr
    assert r.stderr.count("SLAK_LOG=verbose") == 1


def test_broken_halide_plugin_is_named(work):
    plugin = work / "plugin.so"
    plugin.write_bytes(PNG_BYTES)
    r = infer_one_image(env={"SLAK_HALIDE_PLUGIN": str(plugin)})
    assert r.returncode == 0, r.stderr
    assert ("CPU backend: the reference oracle (slow), because it cannot load the Halide plugin "
            f"{plugin}") in r.stderr
    assert "(SLAK_HALIDE_PLUGIN; unset it" in r.stderr
    assert "because there is cannot" not in r.stderr


def test_wrong_kind_of_file_as_tuning_database(work):
    db = work / "tuning.mlir"
    db.write_text(MLIR_TEXT)
    r = infer_one_image(env={"SLAK_TUNING_DB": str(db)})
    assert r.returncode == 0, r.stderr
    if "CPU backend: Halide" not in r.stderr:
        pytest.skip("the reference CPU backend reads no tuning database")
    assert r.stderr.count("warning: cannot use the tuning database") == 1, r.stderr
    assert "is not an SQLite file" in r.stderr
    assert db.read_text() == MLIR_TEXT  # left untouched
