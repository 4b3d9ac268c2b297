"""Pyramids on disk (write_pyramid's region tasks): equal to in-memory pyramid() for any chunking,
sharding, memory target and scheduler; every input kind; kill -9 and --resume."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolkit
from poolkit.multiscale.plan import MemoryTooSmall
import poolkit.multiscale.levels
import poolkit.multiscale.ngff

zarr = pytest.importorskip("zarr")


def read_levels(path):
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs.asdict()
    ms = attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"]
    return [group[d["path"]][...] for d in ms[0]["datasets"]]


def assert_same(path, x, levels, **kw):
    got = read_levels(path)
    want = poolkit.pyramid(x, levels, **kw)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, k
        np.testing.assert_array_equal(g, w, err_msg=f"level {k}")


@st.composite
def disk_cases(draw):
    ndim = draw(st.integers(2, 3))
    shape = tuple(draw(st.lists(st.integers(3, 40 if ndim == 2 else 14), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    method = draw(st.sampled_from(poolkit.multiscale.levels.METHODS))
    dtype = draw(st.sampled_from(["uint8", "int16", "float32"] if method != "mode" else ["uint8", "int16"]))
    factor = draw(st.integers(2, 3))
    edge = draw(st.sampled_from(["partial", "trim"]))
    shards = draw(st.sampled_from(["auto", None, 2]))
    version = draw(st.sampled_from(["0.5", "0.4"])) if shards is None else "0.5"
    memory = draw(st.sampled_from([2**18, 2**20, 2**24]))
    scheduler = draw(st.sampled_from(["threads", "synchronous"]))
    source = draw(st.sampled_from(["numpy", "zarr", "zarr-other-chunks"]))
    seed = draw(st.integers(0, 2**16))
    return shape, chunks, method, dtype, factor, edge, shards, version, memory, scheduler, source, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(disk_cases())
def test_equals_in_memory_pyramid(tmp_path, case):
    shape, chunks, method, dtype, factor, edge, shards, version, memory, scheduler, source, seed = case
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 50).astype(dtype) if dtype == "float32" else \
        r.integers(-5 if dtype == "int16" else 0, 6, shape).astype(dtype)
    x[: shape[0] // 2] = 0                       # empty chunks: not stored, read back as zeros
    src = x
    if source != "numpy":
        in_chunks = chunks if source == "zarr" else tuple(max(1, c - 1) for c in chunks)
        z = zarr.create_array(str(tmp_path / f"in-{seed}.zarr"), shape=shape, chunks=in_chunks, dtype=dtype,
                              overwrite=True)
        z[...] = x
        src = z
    out = tmp_path / f"out-{seed}.ome.zarr"
    if shards == 2:
        shards = tuple(2 * c for c in chunks)    # two chunks per axis
    kw = dict(factor=factor, method=method, edge=edge, chunks=chunks, shards=shards, version=version,
              scheduler=scheduler, workers=2, overwrite=True)
    try:
        shapes = poolkit.write_pyramid(src, out, memory=memory, **kw)
    except MemoryTooSmall as e:
        # A target below one region's needs (a fixed overhead per task and worker) is refused;
        # the memory the error names must then work.
        assert e.smallest > memory
        shapes = poolkit.write_pyramid(src, out, memory=e.smallest, **kw)
    assert_same(out, x, len(shapes) - 1, factor=factor, method=method, edge=edge)


def test_processes_scheduler_and_per_level_factors(tmp_path):
    x = np.random.default_rng(2).integers(0, 1000, (9, 40, 36)).astype(np.uint16)
    np.save(tmp_path / "in.npy", x)
    from poolkit.multiscale.sources import open_input

    sched = [(1, 2, 2), (1, 2, 2), (3, 2, 2)]
    shapes = poolkit.write_pyramid(open_input(str(tmp_path / "in.npy")), tmp_path / "out.ome.zarr", factors=sched,
                                   chunks=(3, 8, 8), memory=2**20, scheduler="processes", workers=2)
    assert shapes[-1] == (3, 5, 5)
    assert_same(tmp_path / "out.ome.zarr", x, None, factors=sched)
    meta = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert meta["datasets"][3]["coordinateTransformations"][0]["scale"] == [3.0, 8.0, 8.0]
    assert meta["datasets"][3]["coordinateTransformations"][1]["translation"] == [1.0, 3.5, 3.5]


def test_inputs_zarr_v2_sharded_v3_ome_zarr_tiff_npy_dask(tmp_path, monkeypatch):
    monkey = monkeypatch
    tifffile = pytest.importorskip("tifffile")
    da = pytest.importorskip("dask.array")
    from poolkit.multiscale.sources import open_input

    x = np.random.default_rng(3).integers(0, 60000, (70, 90)).astype(np.uint16)
    v2 = zarr.create_array(str(tmp_path / "v2.zarr"), shape=x.shape, chunks=(16, 32), dtype=">u2", zarr_format=2)
    v2[...] = x
    v3 = zarr.create_array(str(tmp_path / "v3.zarr"), shape=x.shape, chunks=(16, 16), shards=(32, 48), dtype=x.dtype)
    v3[...] = x
    tifffile.imwrite(tmp_path / "big.tif", x, tile=(32, 32), compression="zlib", bigtiff=True)
    tifffile.imwrite(tmp_path / "flat.tif", x)
    np.save(tmp_path / "in.npy", x)
    poolkit.write_pyramid(x, tmp_path / "ome.ome.zarr", chunks=32, scale=(0.5, 0.25), axes_names="yx")
    inputs = {name: open_input(str(tmp_path / name)) for name in
              ["v2.zarr", "v3.zarr", "big.tif", "flat.tif", "in.npy", "ome.ome.zarr"]}
    assert inputs["big.tif"].chunks == (32, 32) and not inputs["big.tif"].mapped      # tile by tile
    assert inputs["flat.tif"].mapped
    assert inputs["ome.ome.zarr"].scale == (0.5, 0.25) and inputs["ome.ome.zarr"].axes_names == "yx"
    inputs["dask"] = da.from_array(x, chunks=(20, 30))

    def whole(*args, **kwargs):
        raise AssertionError("the whole TIFF image was read")

    for cls in (tifffile.TiffFile, tifffile.TiffPage, tifffile.TiffPageSeries):
        if hasattr(cls, "asarray"):
            monkey.setattr(cls, "asarray", whole)
    for name, src in inputs.items():
        out = tmp_path / f"out-{name}.ome.zarr"
        shapes = poolkit.write_pyramid(src, out, chunks=32, memory=2**20)
        assert_same(out, x, len(shapes) - 1)
    # The OME-Zarr input's scale carries over.
    meta = zarr.open_group(str(tmp_path / "out-ome.ome.zarr.ome.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert meta["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 0.5]


def test_level0_chunks_are_copied_when_codecs_match(tmp_path):
    x = np.random.default_rng(4).integers(0, 4000, (64, 64)).astype(np.uint16)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(16, 16), dtype=x.dtype)
    z[...] = x
    plan = poolkit.multiscale.ngff.plan_pyramid(z, memory=2**20)
    out = tmp_path / "out.ome.zarr"
    poolkit.write_pyramid(z, out, memory=2**20, shards=None, fsync=True)
    assert (out / "0" / "c" / "1" / "2").read_bytes() == (tmp_path / "in.zarr" / "c" / "1" / "2").read_bytes()
    assert_same(out, x, len(plan.steps))
    # Another codec: encoded again.
    poolkit.write_pyramid(z, out, memory=2**20, shards=None, codec="gzip", overwrite=True)
    assert (out / "0" / "c" / "1" / "2").read_bytes() != (tmp_path / "in.zarr" / "c" / "1" / "2").read_bytes()
    assert_same(out, x, len(plan.steps))


# --------------------------------------------------------------------------- #
# kill -9 at random points, then --resume
# --------------------------------------------------------------------------- #
def tree_digest(path):
    """Every file under ``path`` with its bytes' hash."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def cli(*args, **kw):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "poolkit.cli", "pyramid", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def journal_lines(out):
    try:
        with open(out / "poolkit-journal.txt", "rb") as f:
            return f.read().count(b"\n") - 1
    except FileNotFoundError:
        return -1


def test_kill_and_resume_is_bit_identical(tmp_path):
    x = np.random.default_rng(6).integers(0, 4096, (512, 384)).astype(np.uint16)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(16, 16), dtype=x.dtype)
    z[...] = x
    # Small regions (many tasks) and a codec other than the input's (every chunk encoded).
    opts = ["--memory", "300K", "--workers", "2", "--codec", "zstd:3"]
    ref = tmp_path / "ref.ome.zarr"
    p = cli(tmp_path / "in.zarr", ref, *opts)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    want = tree_digest(ref)
    n_tasks = int(p.stdout.read().decode().split(" tasks in ")[0].rsplit(" ", 1)[-1])
    rng = random.Random(7)
    resumed = 0
    for trial in range(3):
        out = tmp_path / f"run{trial}.ome.zarr"
        # Kill points: after a random number of finished tasks (-1: during start-up), ascending.
        points = sorted(rng.randint(-1, n_tasks - 1) for _ in range(3))
        for attempt in range(len(points) + 1):
            args = [tmp_path / "in.zarr", out, *opts] + (["--resume"] if attempt else [])
            p = cli(*args)
            if attempt < len(points):
                target = points[attempt]
                deadline = time.monotonic() + 120
                while p.poll() is None and time.monotonic() < deadline:
                    if (target < 0 and rng.random() < 0.02) or (target >= 0 and journal_lines(out) >= target):
                        time.sleep(rng.uniform(0, 0.02))        # between two journal lines, or inside a write
                        break
                    time.sleep(0.002)
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            rc = p.wait(timeout=300)
            assert rc in (0, -signal.SIGKILL), p.stderr.read()
            if rc == 0:
                resumed += "done before (resumed)" in p.stdout.read().decode()
                break
        if rc != 0:
            p = cli(tmp_path / "in.zarr", out, *opts, "--resume")
            assert p.wait(timeout=300) == 0, p.stderr.read()
        assert tree_digest(out) == want, f"trial {trial}, kills after {points} tasks"
    assert resumed >= 1                  # some kill fell after tasks had finished
    assert_same(ref, x, len(read_levels(ref)) - 1)


def test_any_zarr_store_through_zarr_python():
    # A store chunkio does not write (in memory): zarr-python writes the chunks, no journal.
    x = np.random.default_rng(9).integers(0, 255, (40, 50)).astype(np.uint8)
    store = zarr.storage.MemoryStore()
    shapes = poolkit.write_pyramid(x, store, chunks=16, memory=2**20, workers=2)
    g = zarr.open_group(store, mode="r")
    for k, w in enumerate(poolkit.pyramid(x, len(shapes) - 1)):
        np.testing.assert_array_equal(g[str(k)][...], w)
    assert "ome" in g.attrs.asdict()
