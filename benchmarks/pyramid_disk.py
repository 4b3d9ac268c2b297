"""Pyramids on disk: Zarr in, OME-Zarr out, as a user runs them (``benchmarks/pyramid.py --on-disk``).

Usage::

    python benchmarks/pyramid.py --on-disk                 # the issue's sizes (8 GiB, 1 GiB): ~20-40 min
    python benchmarks/pyramid.py --on-disk --size medium   # 1 GiB and 128 MiB
    python benchmarks/pyramid.py --on-disk --quick         # 32 MiB and 16 MiB: a smoke run
    python benchmarks/pyramid.py --on-disk --cases 2d-uint16-mean --contenders poolkit floor copy
    python benchmarks/pyramid.py --on-disk --io-layers --size medium   # CPU time per I/O layer

Cases (``--size full`` / ``medium`` / ``quick``):

* ``2d-uint16-mean``: 65536**2 / 32768x16384 / 4096**2 uint16 (12-bit noise, 0..4095) in 1024**2
  chunks (512**2 quick), mean, 6 / 5 / 3 levels;
* ``3d-labels-mode``: 1024**3 / 512**3 / 256**3 uint8 labels (blobs of 3**3 voxels, 20 labels)
  in 128**3 chunks (64**3 quick), mode, 3 / 2 / 2 levels;
* ``3d-uint16-mean``, only when named in ``--cases``: 1024x4096x4096 (32 GiB, larger than the
  project machine's RAM) / 256x2048x1024 / 64x256x256 uint16 noise in 128**3 chunks (32**3 quick),
  mean, 5 / 3 / 2 levels.

The input is written chunk by chunk as a Zarr v3 array with zarr's defaults (zstd), never whole
in memory, into ``--workdir`` (default: a temporary folder on the same disk as /tmp), and
removed at the end (``--keep`` keeps it).

Contenders, each in its own process (``python benchmarks/pyramid_disk.py --_run ...``), the peak
RSS of its process tree sampled every 50 ms (psutil):

* ``poolkit``: ``poolkit pyramid IN OUT --method M --levels L`` with the defaults (threads,
  NGFF 0.5, sharded, zstd, 256 MiB memory target); ``poolkit-processes``: ``--scheduler processes``;
* ``ngff-zarr``: ``to_multiscales`` (bin shrink / dask-image mode) + ``to_ngff_zarr``;
* ``ome-zarr-py``: ``write_image`` with ``Methods.LOCAL_MEAN`` (labels: ``write_labels``,
  nearest: it has no mode);
* ``dask.coarsen``: ``dask.array.coarsen`` per level (mean / scipy mode), all levels in one
  ``dask.compute`` of ``to_zarr``;
* ``xarray-multiscale``: ``multiscale(..., windowed_mean / windowed_mode, 2)``, to Zarr;
* ``copy``: ``da.to_zarr(da.from_zarr(IN))``, a Dask read-and-write copy.

``floor``, in this process on all cores (a thread per core): decode every input chunk once,
encode every output chunk once (the levels poolkit wrote, in zarr's default codec) and write
the bytes to files with poolkit's writer (``O_DIRECT`` where it works); the time of decoding poolkit's levels is measured apart and subtracted.

Each result is compared with poolkit's output level by level (in slabs): "equal", or the share
of values that differ. The report goes to ``results/pyramid-disk.md`` (``--quick``:
``bench-out/pyramid-disk-quick.md``) with the machine's load during the run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # name: {size: (shape, chunk, levels)}, dtype, method
    "2d-uint16-mean": ({"full": ((65536, 65536), 1024, 6), "medium": ((32768, 16384), 1024, 5),
                        "quick": ((4096, 4096), 512, 3)}, "uint16", "mean"),
    "3d-labels-mode": ({"full": ((1024,) * 3, 128, 3), "medium": ((512,) * 3, 128, 2),
                        "quick": ((256,) * 3, 64, 2)}, "uint8", "mode"),
    # Larger than this machine's 23 GiB of RAM (32 GiB); not run by default (--cases 3d-uint16-mean).
    "3d-uint16-mean": ({"full": ((1024, 4096, 4096), 128, 5), "medium": ((256, 2048, 1024), 128, 3),
                        "quick": ((64, 256, 256), 32, 2)}, "uint16", "mean"),
}
DEFAULT_CASES = ["2d-uint16-mean", "3d-labels-mode"]
CONTENDERS = ["poolkit", "poolkit-processes", "ngff-zarr", "ome-zarr-py", "dask.coarsen", "xarray-multiscale", "copy"]
DEFAULT_CONTENDERS = ["copy", "poolkit", "ngff-zarr", "ome-zarr-py", "dask.coarsen", "xarray-multiscale", "floor"]


# --------------------------------------------------------------------------- #
# inputs, chunk by chunk
# --------------------------------------------------------------------------- #
def case_params(case: str, size: str):
    sizes, dtype, method = CASES[case]
    shape, chunk, levels = sizes[size]
    return tuple(shape), (chunk,) * len(shape), levels, dtype, method


def chunk_data(case: str, box) -> np.ndarray:
    """The values of ``box`` of the case's input, computed from the box alone (any order, any box)."""
    _, dtype, method = CASES[case]
    if method == "mode":
        # Blobs of 3**3 voxels with one of 20 labels, from a hash of the blob's coordinates.
        idx = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.int64) // 3 for s in box], indexing="ij")
        h = idx[0] * 73856093 ^ idx[1] * 19349663 ^ idx[2] * 83492791
        return ((h >> 7) % 20).astype(np.uint8)
    seed = [int(s.start) for s in box]
    return np.random.default_rng(seed).integers(0, 4096, tuple(s.stop - s.start for s in box), dtype=np.uint16)


def make_input(case: str, size: str, path: str) -> None:
    import zarr

    shape, chunks, _, dtype, _ = case_params(case, size)
    z = zarr.create_array(path, shape=shape, chunks=chunks, dtype=dtype, overwrite=True)
    # A slab of chunk rows at a time: memory holds one slab, never the input.
    slab = [chunks[0]] + list(shape[1:])
    while int(np.prod(slab)) * np.dtype(dtype).itemsize > 2**28 and len(slab) > 1 and slab[1] > chunks[1]:
        slab[1] //= 2
    grid = [range(0, n, s) for n, s in zip(shape, slab)]
    import itertools

    for start in itertools.product(*grid):
        box = tuple(slice(a, min(a + s, n)) for a, s, n in zip(start, slab, shape))
        z[box] = chunk_data(case, box)


# --------------------------------------------------------------------------- #
# contenders (each runs in its own process)
# --------------------------------------------------------------------------- #
def run_contender(name: str, case: str, size: str, src: str, dst: str, threads: int) -> dict:
    import dask

    shape, chunks, levels, dtype, method = case_params(case, size)
    dims = ["z", "y", "x"][-len(shape):]
    t0 = time.perf_counter()
    if name.startswith("poolkit"):
        cmd = [sys.executable, "-m", "poolkit.cli", "pyramid", src, dst, "--method", method, "--levels", str(levels),
               "--quiet"] + (["--scheduler", "processes"] if name == "poolkit-processes" else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1])
        return {"seconds": time.perf_counter() - t0}
    import dask.array as da

    dask.config.set(scheduler="threads", num_workers=threads)
    x = da.from_zarr(src)
    if name == "copy":
        da.to_zarr(x, dst, overwrite=True)
    elif name == "ngff-zarr":
        import ngff_zarr as nz

        m = nz.Methods.DASK_IMAGE_MODE if method == "mode" else nz.Methods.DASK_BIN_SHRINK
        image = nz.to_ngff_image(x, dims=dims)
        ms = nz.to_multiscales(image, scale_factors=[2 ** k for k in range(1, levels + 1)], method=m,
                               chunks=chunks[0])
        nz.to_ngff_zarr(dst, ms)
    elif name == "ome-zarr-py":
        import zarr
        from ome_zarr.scale import Methods
        from ome_zarr.writer import write_image, write_labels

        root = zarr.open_group(dst, mode="w")
        # Dicts, so that z is pooled too (integer factors leave it alone).
        factors = [{d: 2 ** k for d in dims} for k in range(1, levels + 1)] if len(dims) == 3 else \
            [2 ** k for k in range(1, levels + 1)]
        if method == "mode":
            # scaler=None: its default Scaler() would replace scale_factors by y, x ones.
            write_labels(x, root, name="labels", scaler=None, scale_factors=factors, method=Methods.NEAREST,
                         axes="".join(dims))
        else:
            write_image(x, root, scale_factors=factors, method=Methods.LOCAL_MEAN, axes="".join(dims),
                        storage_options={"chunks": chunks})
    elif name in ("dask.coarsen", "xarray-multiscale"):
        import zarr

        out = []
        if name == "dask.coarsen":
            a = x
            for _ in range(levels):
                a = da.coarsen(_reducer(method), a, {i: 2 for i in range(x.ndim)}, trim_excess=True).astype(x.dtype)
                out.append(a)
        else:
            from xarray_multiscale import multiscale, reducers

            red = reducers.windowed_mean if method == "mean" else reducers.windowed_mode
            out = [p.data for p in multiscale(x, red, 2, preserve_dtype=True, chained=True)[1:levels + 1]]
        root = zarr.open_group(dst, mode="w")
        stores = [da.to_zarr(x, root.store, component="0", compute=False)]
        stores += [da.to_zarr(a.rechunk(chunks), root.store, component=str(k), compute=False)
                   for k, a in enumerate(out, 1)]
        dask.compute(*stores)
    else:
        raise KeyError(name)
    return {"seconds": time.perf_counter() - t0}


def _reducer(method: str):
    if method == "mean":
        return lambda a, axis=None: np.round(np.mean(a, axis=axis))

    def mode(a, axis=None):
        from scipy import stats

        if axis is None:
            return a
        axis = tuple(ax % a.ndim for ax in axis)
        keep = [ax for ax in range(a.ndim) if ax not in axis]
        moved = np.transpose(a, keep + list(axis))
        return stats.mode(moved.reshape(moved.shape[:len(keep)] + (-1,)), axis=-1, keepdims=False).mode
    return mode


def output_levels(name: str, dst: str) -> List[str]:
    """Paths of the level arrays a contender wrote (level 0 first)."""
    import zarr

    if name == "copy":
        return [dst]
    g = zarr.open_group(dst, mode="r")
    if name == "ome-zarr-py" and "labels" in g:
        g = g["labels"]["labels"]
    attrs = g.attrs.asdict()
    ms = (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")
    if ms:
        base = os.path.join(dst, *(["labels", "labels"] if g.path.startswith("labels") else []))
        return [os.path.join(base, d["path"]) for d in ms[0]["datasets"]]
    return [os.path.join(dst, k) for k in sorted(g.array_keys(), key=int)]


def compare(a_path: str, b_path: str) -> str:
    """Whether two arrays are equal, read in slabs: "equal", or the share that differs."""
    import zarr

    a, b = zarr.open_array(a_path, mode="r"), zarr.open_array(b_path, mode="r")
    if a.shape != b.shape:
        return f"shape {b.shape}"
    step = max(1, 2**26 // max(1, int(np.prod(a.shape[1:]))))
    diff = 0
    for i in range(0, a.shape[0], step):
        x, y = a[i:i + step], b[i:i + step]
        diff += int(np.count_nonzero(x != y))
    return "equal" if diff == 0 else f"{diff / int(np.prod(a.shape)):.2%} differ"


# --------------------------------------------------------------------------- #
# the floor: decode every input chunk, encode every output chunk, on all cores
# --------------------------------------------------------------------------- #
def measure_floor(src: str, levels: List[str], scratch: str, threads: int) -> dict:
    import zarr

    from poolkit.multiscale.chunkio import FileSink, chunk_boxes, layout_of

    def chunk_files(path):
        arr = zarr.open_array(path, mode="r")
        lay = layout_of(arr)
        if lay is None:
            raise RuntimeError(f"{path}: not a layout the floor can read")
        return arr, lay

    def run(tasks):
        t0 = time.perf_counter()
        c0 = os.times()
        with ThreadPoolExecutor(threads) as ex:
            nbytes = sum(ex.map(lambda t: t(), tasks))
        c1 = os.times()
        return time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system), nbytes

    import numcodecs

    zstd = numcodecs.Zstd(level=0)            # zarr's default codec: what every contender writes
    os.makedirs(scratch, exist_ok=True)
    counter = [0]
    lock = threading.Lock()

    def writer(data: np.ndarray) -> int:
        blob = zstd.encode(np.ascontiguousarray(data))
        with lock:
            counter[0] += 1
            n = counter[0]
        sink = FileSink(os.path.join(scratch, str(n)))     # poolkit's writer: O_DIRECT where it works
        sink.write(blob)
        sink.close()
        return data.nbytes

    def decode_tasks(path, encode):
        arr, lay = chunk_files(path)
        from poolkit.multiscale.chunkio import FastReader

        reader = FastReader(lay, path)
        full = tuple(slice(0, n) for n in arr.shape)
        tasks = []
        for coords, part in chunk_boxes(full, lay.chunks):
            def task(part=part):
                data = reader.read(part)
                return writer(data) if encode else data.nbytes
            tasks.append(task)
        return tasks

    t_in, cpu_in, n_in = run(decode_tasks(src, True))           # input: decode, encode as level 0, write
    t_dec, cpu_dec, _ = run([t for p in levels[1:] for t in decode_tasks(p, False)])
    t_both, cpu_both, n_out = run([t for p in levels[1:] for t in decode_tasks(p, True)])
    shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": t_in + max(0.0, t_both - t_dec), "cpu_seconds": cpu_in + max(0.0, cpu_both - cpu_dec),
            "detail": f"input decode+level-0 encode {t_in:.1f} s, levels 1+ encode {t_both - t_dec:.1f} s"}


# --------------------------------------------------------------------------- #
# I/O layers: CPU time of region reads and writes (--io-layers)
# --------------------------------------------------------------------------- #
def io_layers(src: str, work: str, threads: int) -> List[dict]:
    """CPU seconds per GiB to read the input region by region, and to write it region by region into
    a new array (zstd, unsharded and sharded), through zarr-python (its defaults, and with
    write_empty_chunks=True), zarrs and tensorstore (when installed) and poolkit's chunkio.

    CPU time, not wall time: it is what the layer costs, and a shared machine disturbs it least.
    """
    import zarr

    from poolkit.multiscale.chunkio import FastReader, FastWriter, layout_of

    arr = zarr.open_array(src, mode="r")
    chunk = arr.chunks
    region = tuple(min(n, 4 * c) for n, c in zip(arr.shape, chunk))
    boxes = [tuple(slice(a, min(a + r, n)) for a, r, n in zip(start, region, arr.shape))
             for start in np.ndindex(*[-(-n // r) for n, r in zip(arr.shape, region)])]
    boxes = [tuple(slice(i * r, min((i + 1) * r, n)) for i, r, n in zip(b_, region, arr.shape)) for b_ in
             [tuple(s.start for s in b) for b in boxes]]
    nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
    out = []

    def timed(name, fn, record=True):
        c0 = os.times()
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(fn, boxes))
        c1 = os.times()
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        if record:
            out.append({"layer": name, "cpu_s_per_gib": cpu / (nbytes / 2**30)})
            print(f"{name}: {cpu / (nbytes / 2**30):.2f} CPU s per GiB", file=sys.stderr)
        return cpu

    readers = {"poolkit chunkio": (lambda r=FastReader(layout_of(arr), src): (lambda b: r.read(b)))(),
               "zarr-python": lambda b: arr[b]}
    try:
        import zarrs  # noqa: F401

        with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
            za = zarr.open_array(src, mode="r")
        readers["zarrs"] = lambda b: za[b]
    except ImportError:
        pass
    try:
        import tensorstore as ts

        tsa = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": src}}).result()
        readers["tensorstore"] = lambda b: tsa[b].read().result()
    except ImportError:
        pass
    timed("warm-up", readers["poolkit chunkio"], record=False)      # the input in the page cache
    best: Dict[str, float] = {}
    for _ in range(2):                      # interleaved rounds, the least CPU time of each
        for name, fn in readers.items():
            best[name] = min(best.get(name, float("inf")), timed(name, fn, record=False))
    for name, cpu in best.items():
        out.append({"layer": "read: " + name, "cpu_s_per_gib": cpu / (nbytes / 2**30)})
        print(f"read: {name}: {cpu / (nbytes / 2**30):.2f} CPU s per GiB", file=sys.stderr)
    data = {}
    for b in boxes[:1]:
        data["block"] = np.asarray(arr[b])

    def block_for(b):
        blk = data["block"]
        return blk[tuple(slice(0, s.stop - s.start) for s in b)]

    for sharded in (False, True):
        kw = {"shards": region} if sharded else {}
        tag = " (sharded)" if sharded else ""
        for name in ("poolkit chunkio", "zarr-python", "zarr-python write_empty_chunks", "zarrs", "tensorstore"):
            dst = os.path.join(work, "io-layer.zarr")
            shutil.rmtree(dst, ignore_errors=True)
            if name == "zarrs":
                try:
                    import zarrs  # noqa: F401
                except ImportError:
                    continue
            if name == "tensorstore":
                try:
                    import tensorstore as ts
                except ImportError:
                    continue
            cfg = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"} if name == "zarrs" else {}
            if name.endswith("write_empty_chunks"):
                cfg["array.write_empty_chunks"] = True
            with zarr.config.set(cfg):
                z = zarr.create_array(dst, shape=arr.shape, chunks=chunk, dtype=arr.dtype, **kw)
                if name == "poolkit chunkio":
                    w = FastWriter(layout_of(z))
                    timed("write: " + name + tag, lambda b: w.write(b, block_for(b)))
                elif name == "tensorstore":
                    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": dst}}).result()
                    timed("write: " + name + tag, lambda b: t[b].write(block_for(b)).result())
                else:
                    def put(b, z=z):
                        z[b] = block_for(b)
                    timed("write: " + name + tag, put)
            shutil.rmtree(dst, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- #
# the driver
# --------------------------------------------------------------------------- #
class TreeRSS:
    """Peak RSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def cpu_busy() -> float:
    with open("/proc/stat") as f:
        parts = [float(v) for v in f.readline().split()[1:]]
    return sum(parts) - parts[3] - parts[4], sum(parts)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def table(records: List[dict], args) -> str:
    import platform

    cmd = f"python benchmarks/pyramid.py --on-disk --size {args.size}"
    if args.cases != DEFAULT_CASES:
        cmd += " --cases " + " ".join(args.cases)
    if args.contenders != DEFAULT_CONTENDERS:
        cmd += " --contenders " + " ".join(args.contenders)
    lines = [f"# Pyramids on disk ({args.size})", "",
             f"`{cmd}`, {platform.machine()}, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Generated: do not edit.", ""]
    for case in dict.fromkeys(r["case"] for r in records):
        rows = [r for r in records if r["case"] == case]
        shape, chunks, levels, dtype, method = case_params(case, args.size)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        lines += [f"## {case}: {'x'.join(map(str, shape))} {dtype} in {'x'.join(map(str, chunks))} chunks, "
                  f"{method}, {levels} levels ({human(nbytes)})", "",
                  "| tool | wall time | vs poolkit | peak RSS (process tree) | CPU busy (whole machine) | result |",
                  "|---|---:|---:|---:|---:|---|"]
        ref = next((r for r in rows if r["contender"] == "poolkit" and "seconds" in r), None)
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['contender']} | failed: {r['error'][:100]} | | | | |")
                continue
            ratio = f"{r['seconds'] / ref['seconds']:.2f}x" if ref else ""
            rss = human(r["peak_rss"]) if r.get("peak_rss") else "–"
            lines.append(f"| {r['contender']} | {r['seconds']:.1f} s | {ratio} | {rss} | "
                         f"{r.get('busy', 0):.0%} | {r.get('equal', r.get('detail', ''))} |")
        lines.append("")
    lines += ["`vs poolkit` > 1: poolkit is faster. `floor`: decode every input chunk once and encode every "
              "output chunk once (zstd), on all cores, in one process (no pooling, no scheduling). `CPU busy`: "
              "the machine's CPU use during the run (all processes); on a quiet machine a 2-core run near "
              "100% is using both cores. `result`: compared with poolkit's levels.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="= --size quick")
    parser.add_argument("--size", choices=["full", "medium", "quick"], default="full")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS + ["floor"], default=DEFAULT_CONTENDERS)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("--out", default=None)
    parser.add_argument("--io-layers", action="store_true",
                        help="only measure the CPU time of region reads and writes per I/O layer, on the first case")
    parser.add_argument("--_run", nargs=5, metavar=("CONTENDER", "CASE", "SIZE", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "quick"
    if args._run:
        name, case, size, src, dst = args._run
        print(json.dumps(run_contender(name, case, size, src, dst, args.threads)))
        return 0
    import psutil  # noqa: F401  (fail early: the RSS sampler needs it)

    work = args.workdir or tempfile.mkdtemp(prefix="pyramid-disk-")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, POOLKIT_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    records: List[dict] = []
    if args.io_layers:
        case = args.cases[0]
        src = os.path.join(work, f"{case}-{args.size}.zarr")
        try:
            if not os.path.exists(os.path.join(src, "zarr.json")):
                make_input(case, args.size, src)
            result = io_layers(src, work, args.threads)
        finally:
            if not args.keep:
                shutil.rmtree(src, ignore_errors=True)
            if not args.keep and args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result, indent=1))
        return 0
    try:
        for case in args.cases:
            shape, chunks, levels, dtype, method = case_params(case, args.size)
            src = os.path.join(work, f"{case}-{args.size}.zarr")
            if not os.path.exists(os.path.join(src, "zarr.json")):
                t0 = time.perf_counter()
                make_input(case, args.size, src)
                print(f"{case}: input written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            ref_levels: Optional[List[str]] = None
            order = [c for c in args.contenders if c != "floor"]
            if "floor" in args.contenders and "poolkit" not in order:
                order.insert(0, "poolkit")
            if "poolkit" in order:                      # first: the others are compared with it
                order.remove("poolkit")
                order.insert(0, "poolkit")
            for name in order:
                dst = os.path.join(work, f"out-{name}.zarr")
                shutil.rmtree(dst, ignore_errors=True)
                cmd = [sys.executable, os.path.abspath(__file__), "--_run", name, case, args.size, src, dst,
                       "--threads", str(args.threads)]
                b0 = cpu_busy()
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                rss = TreeRSS(proc.pid)
                out, err = proc.communicate()
                peak = rss.stop()
                b1 = cpu_busy()
                rec: Dict = {"case": case, "contender": name}
                if proc.returncode:
                    rec["error"] = (err.strip().splitlines() or ["?"])[-1]
                else:
                    rec.update(json.loads(out.strip().splitlines()[-1]))
                    rec["peak_rss"] = peak
                    rec["busy"] = (b1[0] - b0[0]) / max(1e-9, b1[1] - b0[1])
                    if name == "poolkit":
                        ref_levels = output_levels(name, dst)
                    elif ref_levels is not None:
                        got = output_levels(name, dst)
                        rec["equal"] = "; ".join(compare(a, b) for a, b in zip(ref_levels, got)) if name != "copy" \
                            else compare(src, dst)
                records.append(rec)
                shown = f"{rec['seconds']:.1f} s, peak {human(rec['peak_rss'])}" if "seconds" in rec else rec["error"]
                print(f"{case} {name}: {shown} {rec.get('equal', '')}", file=sys.stderr)
                if name != "poolkit":
                    shutil.rmtree(dst, ignore_errors=True)
            if "floor" in args.contenders and ref_levels is not None:
                b0 = cpu_busy()
                rec = {"case": case, "contender": "floor"}
                rec.update(measure_floor(src, ref_levels, os.path.join(work, "floor-scratch"), args.threads))
                b1 = cpu_busy()
                rec["busy"] = (b1[0] - b0[0]) / max(1e-9, b1[1] - b0[1])
                records.append(rec)
                print(f"{case} floor: {rec['seconds']:.1f} s ({rec['detail']})", file=sys.stderr)
            shutil.rmtree(os.path.join(work, "out-poolkit.zarr"), ignore_errors=True)
            if not args.keep:
                shutil.rmtree(src, ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = table(records, args)
    out = args.out or (os.path.join(os.path.dirname(HERE), "bench-out", f"pyramid-disk-{args.size}.md")
                       if args.size != "full" else os.path.join(HERE, "results", "pyramid-disk.md"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
