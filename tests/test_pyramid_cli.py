"""`poolkit pyramid`: .npy, TIFF and Zarr inputs in a subprocess; the errors exit 2 with one line."""
import os
import subprocess
import sys

import numpy as np
import pytest

import poolkit
from poolkit.cli import main

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

rng = np.random.default_rng(5)


def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "poolkit.cli", "pyramid", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def read_levels(path):
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs.asdict()
    ms = attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"]
    return [group[d["path"]][...] for d in ms[0]["datasets"]]


def test_npy_input(tmp_path):
    x = rng.standard_normal((70, 90)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    proc = run_cli("in.npy", "out.ome.zarr", "--chunks", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    levels = read_levels(tmp_path / "out.ome.zarr")
    want = poolkit.pyramid(x, 2)                              # 70x90 -> 35x45 -> 18x23 <= 32
    assert len(levels) == len(want)
    for got, w in zip(levels, want):
        np.testing.assert_array_equal(got, w)
    # The summary: levels, shapes, bytes, time and throughput.
    assert "2 pooled levels, method=mean, dtype=float32" in proc.stdout
    assert "level 1:" in proc.stdout and "35x45" in proc.stdout
    assert "of input" in proc.stdout and " s: " in proc.stdout
    assert "peak memory" in proc.stdout and "tasks in" in proc.stdout
    assert "pyramid: 100%" in proc.stderr and "B/s" in proc.stderr         # the progress bar: throughput


def test_plan_prints_and_writes_nothing(tmp_path):
    np.save(tmp_path / "in.npy", np.zeros((300, 200), np.uint16))
    proc = run_cli("in.npy", "out.ome.zarr", "--chunks", "32", "--memory", "2M", "--workers", "2", "--plan",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("plan: 300x200 uint16 (117.2 KiB), 4 pooled levels, 2 workers, memory target 2.0 MiB")
    assert "stage 1: reads level 0 in " in out and "per task" in out
    assert "tasks: " in out and "expected peak: " in out
    assert "level 0: 300x200, chunks 32x32" in out
    assert not (tmp_path / "out.ome.zarr").exists()


@pytest.mark.parametrize("compressed", [False, True])
def test_tiff_input(tmp_path, compressed):
    labels = rng.integers(0, 6, (20, 33, 41)).astype(np.uint16)
    kw = dict(compression="zlib", tile=(16, 16)) if compressed else {}
    tifffile.imwrite(tmp_path / "in.tif", labels, **kw)
    proc = run_cli("in.tif", "out.ome.zarr", "--method", "mode", "--levels", "2", "--chunks", "8,16,16",
                   "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    for got, w in zip(read_levels(tmp_path / "out.ome.zarr"), poolkit.pyramid(labels, 2, method="mode")):
        np.testing.assert_array_equal(got, w)


def test_zarr_input_processes_scheduler_and_overwrite(tmp_path):
    x = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(1, 16, 16), dtype=x.dtype)
    src[...] = x
    (tmp_path / "out.ome.zarr").mkdir()
    (tmp_path / "out.ome.zarr" / "old").write_text("")
    proc = run_cli("in.zarr", "out.ome.zarr", "--axes", "cyx", "--method", "max", "--scheduler", "processes",
                   "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    levels = read_levels(tmp_path / "out.ome.zarr")
    assert zarr.open_array(str(tmp_path / "out.ome.zarr" / "0"), mode="r").chunks == (1, 16, 16)
    for got, w in zip(levels, poolkit.pyramid(x, len(levels) - 1, method="max", axes=(1, 2))):
        np.testing.assert_array_equal(got, w)
    assert levels[-1].shape == (3, 10, 13)                    # the first level that fits a 16x16 chunk


def test_no_direct_io_writes_the_same_files(tmp_path):
    """O_DIRECT (the default where it works) and the page cache (--no-direct-io): the same bytes, file by file."""
    x = rng.integers(0, 4000, (100, 130)).astype(np.uint16)
    np.save(tmp_path / "in.npy", x)
    for out, extra in (("direct.ome.zarr", ()), ("cached.ome.zarr", ("--no-direct-io",))):
        proc = run_cli("in.npy", out, "--chunks", "16", "--shards", "32", *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr

    def files(root):
        return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
                for d, _, names in os.walk(root) for f in names if f != "zarr.json"}

    a, b = files(tmp_path / "direct.ome.zarr"), files(tmp_path / "cached.ome.zarr")
    assert len(a) > 10 and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a if "journal" not in k)


def test_error_exits_2_with_one_line(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an npy file")
    proc = run_cli("bad.npy", "out.ome.zarr", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("poolkit pyramid: error: cannot read INPUT bad.npy:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.ome.zarr").exists()


def errors_setup(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((8, 8), np.uint8))
    (tmp_path / "text.tif").write_text("not a tiff")
    (tmp_path / "done.ome.zarr").mkdir()
    (tmp_path / "done.ome.zarr" / "x").write_text("")
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("0", shape=(4, 4), dtype="u1")
    part = zarr.open_group(str(tmp_path / "part.ome.zarr"), mode="w")
    part.attrs.put({"poolkit_incomplete": {"key": "x"}})


ERRORS = [
    (["missing.npy", "o"], "cannot read INPUT missing.npy: no such file or directory"),
    (["ok.npy", "o", "--memory", "lots"], "--memory must be a size such as 512M, 2G or a number of bytes"),
    (["ok.npy", "o", "--memory", "1K", "--chunks", "2", "--workers", "2"], "--memory=1024 (1.0 KiB) is too small for one region of "
                                                        "level 0 (the input) with 2 workers"),
    (["ok.npy", "o", "--codec", "lzw"], "`codec` must be one of"),
    (["ok.npy", "o", "--shards", "3", "--chunks", "2"], "`shards` must be multiples of the chunks (2, 2)"),
    (["ok.npy", "o", "--factors", "2,x"], "--factors must be 'auto' or levels separated by ':'"),
    (["ok.npy", "o", "--scale", "a"], "--scale must be a number or comma-separated numbers, but got 'a'"),
    (["ok.npy", "o", "--pool", "zq"], "--pool must name axes of 'yx', each once, but got 'zq'"),
    (["ok.npy", "o", "--workers", "0"], "--workers must be >= 1, but got 0"),
    (["ok.npy", "o", "--resume", "--overwrite"], "--overwrite and --resume exclude each other"),
    (["ok.npy", "part.ome.zarr"], "OUTPUT part.ome.zarr holds an interrupted run; pass --resume to finish it"),
    (["text.tif", "o"], "cannot read INPUT text.tif: "),
    (["ok.npy", "done.ome.zarr"], "OUTPUT done.ome.zarr exists; pass --overwrite to replace it"),
    (["group.zarr", "o"], "is a Zarr group, not an array or an OME-Zarr image; name one of its arrays, e.g. group.zarr/0"),
    (["ok.npy", "o", "--scheduler", "mpi"], "--scheduler must be one of threads, processes, synchronous or tcp"),
    (["ok.npy", "o", "--chunks", "4,x"], "--chunks must be an int or comma-separated ints, but got '4,x'"),
    (["ok.npy", "o", "--levels", "-2"], "--levels must be >= 0, but got -2"),
    (["ok.npy", "o", "--levels", "9", "--edge", "trim"], "`levels`=9 with edge='trim' would leave axis 0"),
    (["ok.npy", "o", "--axes", "zyx"], "`axes_names` must name the 2 axes"),
    (["ok.npy", "ok.npy"], "OUTPUT must differ from INPUT"),
    (["ok.npy", "o", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
]


@pytest.mark.parametrize("args,message", ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_errors(tmp_path, monkeypatch, capsys, args, message):
    errors_setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["pyramid", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poolkit pyramid: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert "poolkit_incomplete" in zarr.open_group(str(tmp_path / "part.ome.zarr")).attrs   # left alone


@pytest.mark.parametrize("direct", [True, False])
def test_corrupt_chunk_is_named_and_leaves_no_image(tmp_path, direct):
    from zarr.codecs import TransposeCodec

    x = rng.integers(0, 255, (64, 48)).astype(np.uint8)
    # Direct chunk I/O, or through zarr-python (a transpose filter chunkio leaves to zarr).
    kw = {} if direct else dict(filters=[TransposeCodec(order=(1, 0))])
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(16, 16), dtype=x.dtype, **kw)
    src[...] = x
    (tmp_path / "in.zarr" / "c" / "2" / "1").write_bytes(b"\x28\xb5\x2f\xfd broken")
    proc = run_cli("in.zarr", "out.ome.zarr", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    named = "chunk c/2/1 of in.zarr" if direct else "chunk (2, 1) of in.zarr"
    assert lines[0].startswith("poolkit pyramid: error: cannot read " + named), lines[0]
    assert "--resume" in lines[0]
    attrs = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r").attrs.asdict()
    assert "ome" not in attrs and "poolkit_incomplete" in attrs          # not a complete-looking image
