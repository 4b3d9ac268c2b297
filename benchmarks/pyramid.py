"""Multiscale pyramids: poolkit against tinybrain, dask.array.coarsen, xarray, scikit-image, xarray-multiscale, ngff-zarr.

Usage::

    python benchmarks/pyramid.py                  # full sizes; writes benchmarks/results/pyramid.md
    python benchmarks/pyramid.py --quick          # small sizes, a smoke run; writes bench-out/pyramid-quick.md
    python benchmarks/pyramid.py --threads 1 --repeat 3 --out my.md
    python benchmarks/pyramid.py --on-disk [--quick]   # Zarr -> OME-Zarr on disk: see pyramid_disk.py
    python benchmarks/pyramid.py --side-by-side   # issue 22: the pyramid kernels against tinybrain

Cases: a 2-D 16384 x 16384 uint16 and float32 image (mean pyramid) and a 3-D
512**3 uint8 label volume (mode pyramid); ``--quick``: 2048**2 and 64**3. Each
pyramid has the same levels for every contender (2-D: down to 256, 3-D: 3
levels), each level computed from the previous one and cast back to the input
dtype (integer means rounded half to even), so the sizes, all powers of two,
leave no edge windows and every contender computes the same thing. Results
are checked against poolkit's: "equal" is exact equality, or for float32 the
largest relative difference when it is not 0.

``--side-by-side``: issue 22's cases (KERNEL_CASES: 8192**2 uint8/uint16/float32 means, 512**3
uint16 mean, 8192**2 uint8 and 512**3 uint8/uint64 label modes), poolkit at 1 thread and at
``--threads`` against tinybrain, interleaved round by round in one process, and each one's peak
memory in a fresh process; writes benchmarks/results/pyramid-kernels.md.

Settings, each timed in a fresh subprocess (so peak RSS is that run's):

* ``memory``: NumPy input in memory, every level computed into memory.
* ``dask``: a Dask array (chunks 1024**2 / 128**3; quick: 256**2 / 32**3),
  all levels computed at once with the threaded scheduler.
* ``zarr``: Zarr on disk to Zarr on disk (the input written first, untimed);
  ``copy`` reads the input and writes it once, the goal's yardstick.

Columns: seconds (best of ``--repeat``), GB/s of input, peak RSS of the
process (``ru_maxrss`` after the timed runs: the interpreter, the imports and
the input array, which every setting first makes in memory, included), and
the Dask graph's task count (beyond the input's own tasks).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # name: (shape, quick shape, dtype, method, chunk side, quick chunk side)
    "2d-uint16": ((16384, 16384), (2048, 2048), "uint16", "mean", 1024, 256),
    "2d-float32": ((16384, 16384), (2048, 2048), "float32", "mean", 1024, 256),
    "3d-labels-uint8": ((512, 512, 512), (64, 64, 64), "uint8", "mode", 128, 32),
}
# Issue 22's cases (in memory only; tinybrain's home ground): poolkit's kernels against tinybrain.
KERNEL_CASES = {
    "8k-uint8-mean": ((8192, 8192), (1024, 1024), "uint8", "mean", 1024, 256),
    "8k-uint16-mean": ((8192, 8192), (1024, 1024), "uint16", "mean", 1024, 256),
    "8k-float32-mean": ((8192, 8192), (1024, 1024), "float32", "mean", 1024, 256),
    "512-uint16-mean": ((512, 512, 512), (64, 64, 64), "uint16", "mean", 128, 32),
    "8k-uint8-mode": ((8192, 8192), (1024, 1024), "uint8", "mode", 1024, 256),
    "512-uint8-mode": ((512, 512, 512), (64, 64, 64), "uint8", "mode", 128, 32),
    "512-uint64-mode": ((512, 512, 512), (64, 64, 64), "uint64", "mode", 128, 32),
}
CASES.update(KERNEL_CASES)
CONTENDERS = {
    "memory": ["poolkit", "tinybrain", "skimage.block_reduce", "xarray.coarsen", "xarray-multiscale"],
    "dask": ["poolkit", "dask.coarsen", "ngff-zarr"],
    "zarr": ["copy", "poolkit", "dask.coarsen"],
}


# --------------------------------------------------------------------------- #
# inputs and the shared semantics
# --------------------------------------------------------------------------- #
def make_input(case: str, quick: bool) -> np.ndarray:
    """The case's input, filled slab by slab (no temporary the size of the input)."""
    shape, qshape, dtype, method, _, _ = CASES[case]
    shape = qshape if quick else shape
    rng = np.random.default_rng(0)
    x = np.empty(shape, dtype=dtype)
    if method == "mode":
        # Labels in blobs of 3 per axis, so windows hold few labels and ties happen at the blob
        # borders; 20 labels (uint64: 20 random 40-bit ids, as segmentations have).
        coarse = rng.integers(0, 20, tuple(-(-n // 3) for n in shape), dtype=np.uint8)
        ids = rng.integers(0, 2**40, 20) if np.dtype(dtype).itemsize == 8 else np.arange(20)
        coarse = ids.astype(dtype)[coarse]
        rest = np.ix_(*[np.arange(n) // 3 for n in shape[1:]])
        for i in range(shape[0]):
            x[i] = coarse[(i // 3,) + rest]
        return x
    step = max(1, 2**20 // int(np.prod(shape[1:])))
    for i in range(0, shape[0], step):
        part = x[i:i + step]
        if dtype == "float32":
            part[...] = rng.standard_normal(part.shape, dtype=np.float32)
        else:
            part[...] = rng.integers(0, 256 if dtype == "uint8" else 4096, part.shape)
    return x


def n_levels(shape) -> int:
    return 3 if len(shape) == 3 else int(np.log2(shape[0] // 256))


def cast_mean(m: np.ndarray, dtype) -> np.ndarray:
    """A float mean in the input's dtype: integers rounded half to even (poolkit's rule)."""
    dtype = np.dtype(dtype)
    return np.round(m).astype(dtype) if dtype.kind in "iu" else m.astype(dtype)


def mode_lastaxis(a: np.ndarray) -> np.ndarray:
    """Most frequent value along the last axis, ties to the smallest (scipy.stats.mode's rule)."""
    from scipy import stats

    return stats.mode(a, axis=-1, keepdims=False).mode.astype(a.dtype)


def reducer(method: str, dtype) -> Callable:
    """``f(a, axis=tuple)`` for block_reduce and coarsen."""
    if method == "mean":
        return lambda a, axis=None: cast_mean(np.mean(a, axis=axis), dtype)

    def mode(a, axis=None):
        if axis is None:                 # dask's meta probe
            return a
        axis = tuple(ax % a.ndim for ax in axis)
        keep = [ax for ax in range(a.ndim) if ax not in axis]
        moved = np.transpose(a, keep + list(axis))         # window axes last
        return mode_lastaxis(moved.reshape(moved.shape[:len(keep)] + (-1,)))
    return mode


# --------------------------------------------------------------------------- #
# contenders: each returns the list of levels 1.. (NumPy) and a task count
# --------------------------------------------------------------------------- #
def run_memory(name: str, x: np.ndarray, method: str, levels: int):
    d = x.ndim
    if name == "poolkit":
        import poolkit

        return poolkit.pyramid(x, levels, method=method)[1:], None
    if name == "skimage.block_reduce":
        from skimage.measure import block_reduce

        f = reducer(method, x.dtype)
        out, a = [], x
        for _ in range(levels):
            a = block_reduce(a, (2,) * d, func=f)
            out.append(a)
        return out, None
    if name == "xarray.coarsen":
        import xarray as xr

        a = xr.DataArray(x, dims=[f"d{i}" for i in range(d)])
        out = []
        for _ in range(levels):
            c = a.coarsen({dim: 2 for dim in a.dims}, boundary="trim")
            a = c.reduce(reducer(method, x.dtype)) if method == "mode" else c.mean()
            a = a.copy(data=cast_mean(a.values, x.dtype)) if method == "mean" else a
            out.append(a.values)
        return out, None
    if name in ("tinybrain", "tinybrain-c"):
        return tinybrain_levels(x, method, levels, name == "tinybrain-c"), None
    if name == "xarray-multiscale":
        from xarray_multiscale import multiscale, reducers

        red = reducers.windowed_mean if method == "mean" else reducers.windowed_mode
        pyr = multiscale(x, red, 2, preserve_dtype=True, chained=True)
        return [np.asarray(p.data) for p in pyr[1:levels + 1]], None
    raise KeyError(name)


def tinybrain_levels(x: np.ndarray, method: str, levels: int, c_order: bool = False) -> list:
    """tinybrain's k mips at once: means (2x2, 2x2x2 accumulation) or modes (2x2 COUNTLESS, 2x2x2 counting).

    tinybrain works in Fortran order (x fastest). It gets ``x.T``, a Fortran-ordered view of the
    same memory (no copy) whose windows are the same, and its levels come back transposed to
    ours; with ``c_order`` it gets ``x`` itself, which it copies to Fortran order first (what a
    call on a C-ordered image costs). Its rules differ from poolkit's, so its results differ in
    places (see KERNEL_NOTES): the work, one read of the input and the same outputs, is the same.
    """
    import tinybrain

    a, f = (x if c_order else x.T), (2,) * x.ndim
    if method == "mode":
        out = tinybrain.downsample_segmentation(a, f, num_mips=levels)
    else:
        out = tinybrain.downsample_with_averaging(a, f, num_mips=levels)
    return [o if c_order else o.T for o in out[-levels:]]


KERNEL_NOTES = """tinybrain's rules, read in its source (seung-lab/tinybrain, tinybrain/accelerated.hpp):
means of several mips come from one accumulation of the input in a wider type (u8 -> u16,
u16 -> u32), rendered by a right shift (rounding down), not from the previous level's rounded
values; an odd edge is counted twice, not once; its 2x2 mode is COUNTLESS (a == b -> a, a == c
-> a, b == c -> b, else d: a tie or four distinct labels give a position, not the smallest), its
2x2x2 mode takes a uniform top or bottom quad at once, then the first value counted 4 times or
the first of the largest counts. poolkit: each level is the previous one's exact mean rounded
half to even, partial edge windows over their valid elements, modes with ties to the smallest.
So "equal" shows the share of outputs that agree; the work (one read of the input, the same
outputs) is the same."""


def dask_levels(name: str, xd, method: str, levels: int):
    import dask.array as da

    if name == "poolkit":
        import poolkit

        return poolkit.pyramid(xd, levels, method=method)[1:]
    if name == "dask.coarsen":
        f = reducer(method, xd.dtype)
        out, a = [], xd
        for _ in range(levels):
            a = da.coarsen(f, a, {i: 2 for i in range(xd.ndim)}, trim_excess=True)
            out.append(a)
        return out
    if name == "ngff-zarr":
        import ngff_zarr as nz

        dims = ["z", "y", "x"][-xd.ndim:]
        m = nz.Methods.DASK_IMAGE_MODE if method == "mode" else nz.Methods.DASK_BIN_SHRINK
        image = nz.to_ngff_image(xd, dims=dims)
        ms = nz.to_multiscales(image, scale_factors=[2 ** k for k in range(1, levels + 1)], method=m,
                               chunks=xd.chunksize[0])
        return [im.data for im in ms.images[1:]]
    raise KeyError(name)


def task_count(arrays) -> int:
    import dask

    return len(dict(dask.base.collections_to_expr(arrays, optimize_graph=False).__dask_graph__()))


def run_one(setting: str, name: str, case: str, quick: bool, threads: int, repeat: int) -> dict:
    """One (setting, contender, case) in this process: the record printed as JSON."""
    import dask
    import dask.array as da

    shape, qshape, dtype, method, chunk, qchunk = CASES[case]
    x = make_input(case, quick)
    levels = n_levels(x.shape)
    chunk = qchunk if quick else chunk
    tmp = tempfile.mkdtemp(prefix="pyramid-bench-")
    record = {"setting": setting, "contender": name, "case": case, "shape": list(x.shape), "dtype": dtype,
              "method": method, "levels": levels, "input_bytes": int(x.nbytes), "tasks": None}
    try:
        src = os.path.join(tmp, "in.zarr")
        if setting == "zarr":
            import zarr

            z = zarr.create_array(src, shape=x.shape, chunks=(chunk,) * x.ndim, dtype=x.dtype)
            z[...] = x
        best, out = float("inf"), None
        # One untimed run first, for every contender: poolkit compiles its kernels (then waits for the
        # background compiles), and all pay their first-touch costs outside the clock.
        for attempt in range(repeat + 1):
            dst = os.path.join(tmp, "out.zarr")
            shutil.rmtree(dst, ignore_errors=True)
            with dask.config.set(scheduler="threads", num_workers=threads):
                t0 = time.perf_counter()
                if setting == "memory":
                    out, _ = run_memory(name, x, method, levels)
                elif setting == "dask":
                    lv = dask_levels(name, da.from_array(x, chunks=chunk), method, levels)
                    record["tasks"] = task_count(lv) - task_count([da.from_array(x, chunks=chunk)])
                    out = list(da.compute(*lv))
                else:
                    out = run_zarr(name, src, dst, method, levels)
                    record["tasks"] = out.pop()
                if attempt:
                    best = min(best, time.perf_counter() - t0)
            if "poolkit" in sys.modules:
                sys.modules["poolkit"].wait_for_kernels()
        record["seconds"] = best
        # Before the check below, which builds poolkit's pyramid in memory for comparison.
        record["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if name != "copy":
            record["equal"] = compare(out, x, method, levels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def run_zarr(name: str, src: str, dst: str, method: str, levels: int) -> list:
    import dask.array as da
    import zarr

    xd = da.from_zarr(src)
    if name == "copy":
        arr = da.to_zarr(xd, dst, compute=False)
        n = task_count([arr])
        arr.compute()
        return [n]
    if name == "poolkit":
        import poolkit

        poolkit.write_pyramid(xd, dst, levels=levels, method=method, axes_names="zyx"[-xd.ndim:],
                              chunks=xd.chunksize)
        g = zarr.open_group(dst, mode="r")
        lv = poolkit.pyramid(xd, levels, method=method)
        return [g[str(k)][...] for k in range(1, levels + 1)] + [task_count(lv[1:]) - task_count([xd])]
    lv = dask_levels(name, xd, method, levels)
    g = zarr.open_group(dst, mode="w")
    stores = [da.to_zarr(xd, g.store, component="0", compute=False)]
    stores += [da.to_zarr(a.rechunk(xd.chunksize), g.store, component=str(k), compute=False)
               for k, a in enumerate(lv, 1)]
    n = task_count(stores) - task_count([xd])
    da.compute(*stores)
    return [zarr.open_array(dst + f"/{k}", mode="r")[...] for k in range(1, levels + 1)] + [n]


def compare(out, x: np.ndarray, method: str, levels: int):
    import poolkit

    want = poolkit.pyramid(x, levels, method=method)[1:]
    if len(out) != len(want) or any(np.shape(o) != w.shape for o, w in zip(out, want)):
        return "shapes differ"
    worst = 0.0
    for o, w in zip(out, want):
        o = np.asarray(o)
        if o.dtype != w.dtype:
            return f"dtype {o.dtype}"
        if np.array_equal(o, w):
            continue
        if w.dtype.kind != "f":
            return f"{np.mean(o != w):.2%} differ"
        # Float sums in another order: the largest difference relative to the level's scale.
        worst = max(worst, float(np.max(np.abs(o - w)) / np.max(np.abs(w))))
    return True if worst == 0 else f"~ ({worst:.0e})"


# --------------------------------------------------------------------------- #
# issue 22: poolkit's pyramid kernels against tinybrain, side by side in one process
# --------------------------------------------------------------------------- #
SIDE = ["poolkit-1", "poolkit-n", "tinybrain", "tinybrain-c"]


def side_levels(name: str, x: np.ndarray, method: str, levels: int, threads: int) -> list:
    import poolkit

    if name.startswith("poolkit"):
        with poolkit.threads(1 if name == "poolkit-1" else threads):
            return poolkit.pyramid(x, levels, method=method)[1:]
    return tinybrain_levels(x, method, levels, name == "tinybrain-c")


def side_by_side(case: str, quick: bool, threads: int, rounds: int) -> dict:
    """Seconds of each of SIDE on one case, interleaved round by round in this process."""
    import poolkit

    x = make_input(case, quick)
    method = CASES[case][3]
    levels = n_levels(x.shape)
    names = [n for n in SIDE if n.startswith("poolkit") or importable("tinybrain")]
    times: Dict[str, List[float]] = {n: [] for n in names}
    equal = {}
    for name in names:                                # untimed: compiles, first touches
        out = side_levels(name, x, method, levels, threads)
        poolkit.wait_for_kernels()
        if name.startswith("tinybrain"):
            want = poolkit.pyramid(x, levels, method=method)[1:]
            equal[name] = [float(np.mean(np.asarray(o) == w)) for o, w in zip(out, want)]
        del out
    for _ in range(rounds):
        for name in names:
            t0 = time.perf_counter()
            out = side_levels(name, x, method, levels, threads)
            times[name].append(time.perf_counter() - t0)
            del out
    return {"case": case, "shape": list(x.shape), "dtype": str(x.dtype), "method": method, "levels": levels,
            "input_bytes": int(x.nbytes), "times": times, "equal": equal}


def _status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc/self/status (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its RSS now (Linux >= 4.0): True if it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(name: str, case: str, quick: bool, threads: int) -> dict:
    """In this (fresh) process: the peak RSS of one pyramid over the RSS before its input was made."""
    import poolkit

    shape, qshape, dtype, method, _, _ = CASES[case]
    levels = n_levels(qshape if quick else shape)
    # kernels (and their threaded drivers) compiled or loaded on a small input first
    small = np.zeros(tuple(max(2**levels, n // 8) for n in (qshape if quick else shape)), dtype=dtype)
    side_levels(name, small, method, levels, threads)
    poolkit.wait_for_kernels()
    del small
    x = make_input(case, quick)
    # Neither the imports and compiles nor making the input count: reset the peak once the
    # input is there (without the reset, ru_maxrss keeps the larger earlier peaks).
    reset = _reset_peak()
    base = _status_bytes("VmRSS")
    out = side_levels(name, x, method, levels, threads)
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # reported as the input plus the pyramid's own growth, the terms of the bound
    return {"contender": name, "case": case, "peak_over_baseline": int(x.nbytes) + peak - base,
            "input_bytes": int(x.nbytes), "output_bytes": int(sum(np.asarray(o).nbytes for o in out)),
            "reset": reset}


def kernel_table(records: List[dict], mem: Dict[Tuple[str, str], dict], args) -> str:
    import platform

    n = args.threads
    lines = ["# Pyramid kernels against tinybrain (issue 22)" + (" (--quick)" if args.quick else ""), "",
             f"`python benchmarks/pyramid.py --side-by-side{' --quick' if args.quick else ''} --threads {n} "
             f"--repeat {args.repeat or 5}`, {platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. In memory; "
             f"the contenders interleaved round by round in one process; milliseconds, best of the rounds "
             f"(median in brackets). Generated: do not edit.", "",
             f"| case | poolkit, 1 thread | poolkit, {n} threads | tinybrain | tinybrain / poolkit (1 thread) "
             f"| tinybrain, C-ordered input | equal to poolkit | poolkit peak memory | bound: input + outputs + 64 MiB "
             f"| tinybrain peak memory |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]

    def ms(ts):
        def one(t):
            return f"{1e3 * t:,.0f}" if t >= 0.1 else f"{1e3 * t:.3g}"
        return f"{one(min(ts))} ({one(float(np.median(ts)))})" if ts else "–"

    for r in records:
        t = r["times"]
        ratio = f"{min(t['tinybrain']) / min(t['poolkit-1']):.2f}x" if t.get("tinybrain") else "–"
        eq = ", ".join(f"{e:.0%}" for e in r["equal"].get("tinybrain", [])) or "–"
        pm, tm = mem.get(("poolkit-n", r["case"])), mem.get(("tinybrain", r["case"]))
        bound = (pm["input_bytes"] + pm["output_bytes"] + 64 * 2**20) if pm else None
        lines.append(f"| {r['case']}: {'x'.join(map(str, r['shape']))} {r['dtype']} {r['method']}, {r['levels']} levels "
                     f"| {ms(t['poolkit-1'])} | {ms(t['poolkit-n'])} | {ms(t.get('tinybrain', []))} | {ratio} "
                     f"| {ms(t.get('tinybrain-c', []))} | {eq} "
                     f"| {fmt_bytes(pm['peak_over_baseline']) if pm else '–'} | {fmt_bytes(bound) if bound else '–'} "
                     f"| {fmt_bytes(tm['peak_over_baseline']) if tm else '–'} |")
    lines += ["", "`tinybrain`: called on `x.T`, a Fortran-ordered view of the same memory (tinybrain works in "
              "Fortran order; no copy, the same windows); `tinybrain, C-ordered input`: called on `x` itself, "
              "which it first copies to Fortran order. Peak memory: the input plus the growth of a fresh "
              f"process's RSS over one pyramid ({n} threads): its peak RSS (reset once the input is made) "
              "less its RSS then. "
              "`equal to poolkit`: share of equal outputs per level.", "", KERNEL_NOTES, ""]
    return "\n".join(lines)


def run_side_by_side(args) -> int:
    cases = [c for c in args.cases if c in KERNEL_CASES] or list(KERNEL_CASES)
    env = dict(os.environ, POOLKIT_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    records, mem = [], {}
    for case in cases:
        rec = side_by_side(case, args.quick, args.threads, args.repeat or 5)
        records.append(rec)
        print(f"{case}: " + ", ".join(f"{k} {1e3 * min(v):.0f} ms" for k, v in rec["times"].items()), file=sys.stderr)
        for name in ("poolkit-n", "tinybrain"):
            if name == "tinybrain" and not importable("tinybrain"):
                continue
            cmd = [sys.executable, __file__, "--_mem", name, case, "--threads", str(args.threads)] + \
                (["--quick"] if args.quick else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode == 0:
                mem[(name, case)] = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                print(f"{case} {name} memory: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
    text = kernel_table(records, mem, args)
    out = args.out or (os.path.join(HERE, "results", "pyramid-kernels.md") if not args.quick else
                       os.path.join(os.path.dirname(HERE), "bench-out", "pyramid-kernels-quick.md"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- #
# the driver
# --------------------------------------------------------------------------- #
def importable(name: str) -> bool:
    module = {"skimage.block_reduce": "skimage", "xarray.coarsen": "xarray", "xarray-multiscale": "xarray_multiscale",
              "ngff-zarr": "ngff_zarr", "tinybrain": "tinybrain", "tinybrain-c": "tinybrain"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except Exception:
        return False


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(records: List[dict], args) -> str:
    import platform

    lines = [f"# Pyramid benchmark{' (--quick)' if args.quick else ''}", "",
             f"`python benchmarks/pyramid.py{' --quick' if args.quick else ''} --threads {args.threads}`, "
             f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Generated: do not edit.", ""]
    for case in dict.fromkeys(r["case"] for r in records):
        rows = [r for r in records if r["case"] == case]
        r0 = rows[0]
        lines += [f"## {case}: {'x'.join(map(str, r0['shape']))} {r0['dtype']}, {r0['method']}, "
                  f"{r0['levels']} levels ({fmt_bytes(r0['input_bytes'])})", "",
                  "| setting | contender | seconds | GB/s of input | vs poolkit | peak RSS | tasks | equal |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['setting']} | {r['contender']} | failed: {r['error']} | | | | | |")
                continue
            ref = next((p for p in rows if p["setting"] == r["setting"] and p["contender"] == "poolkit"
                        and "seconds" in p), None)
            ratio = f"{r['seconds'] / ref['seconds']:.1f}x" if ref else ""
            lines.append(f"| {r['setting']} | {r['contender']} | {r['seconds']:.3f} | "
                         f"{r['input_bytes'] / r['seconds'] / 1e9:.2f} | {ratio} | {fmt_bytes(r['peak_rss'])} | "
                         f"{r['tasks'] if r['tasks'] is not None else ''} | {r.get('equal', '')} |")
        lines.append("")
    lines += ["`vs poolkit`: the contender's time over poolkit's in the same setting (> 1: poolkit faster). "
              "`zarr`/`copy`: read the input and write it once, the yardstick of the disk-to-disk goal. "
              "`equal`: True, `~ (e)` for float sums in another order (largest difference over the level's "
              "largest magnitude), or the share of integers that differ: xarray-multiscale casts integer means "
              "by truncation and breaks mode ties its own way; ngff-zarr's bin shrink rounds its own way; "
              "tinybrain rounds means down from one accumulation of the input and breaks mode ties by "
              "position (`--side-by-side` has the details).", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--on-disk" in argv:             # Zarr in, OME-Zarr out, in separate processes: pyramid_disk.py
        sys.path.insert(0, HERE)
        import pyramid_disk

        return pyramid_disk.main([a for a in argv if a != "--on-disk"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per contender")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per contender, best kept")
    parser.add_argument("--cases", nargs="+", choices=list(CASES),
                        default=[c for c in CASES if c not in KERNEL_CASES])
    parser.add_argument("--side-by-side", action="store_true",
                        help="issue 22's cases: poolkit's kernels (1 and --threads threads) against tinybrain, "
                             "interleaved in one process, and peak memory; writes results/pyramid-kernels.md")
    parser.add_argument("--settings", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument("--out", default=None, help="Markdown file (default: results/pyramid.md, "
                                                    "or bench-out/pyramid-quick.md with --quick)")
    parser.add_argument("--_one", nargs=3, metavar=("SETTING", "CONTENDER", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--_mem", nargs=2, metavar=("CONTENDER", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    if args._one:
        print(json.dumps(run_one(*args._one, quick=args.quick, threads=args.threads, repeat=repeat)))
        return 0
    if args._mem:
        print(json.dumps(peak_memory(*args._mem, quick=args.quick, threads=args.threads)))
        return 0
    if args.side_by_side:
        return run_side_by_side(args)
    env = dict(os.environ, POOLKIT_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    records = []
    for case in args.cases:
        for setting in args.settings:
            if case in KERNEL_CASES and setting != "memory":
                continue                          # issue 22's cases are in-memory ones
            for name in CONTENDERS[setting]:
                if not importable(name):
                    print(f"{case} {setting} {name}: not installed, skipped", file=sys.stderr)
                    continue
                cmd = [sys.executable, __file__, "--_one", setting, name, case, "--threads", str(args.threads),
                       "--repeat", str(repeat)] + (["--quick"] if args.quick else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    rec = {"setting": setting, "contender": name, "case": case, "error": last[:120]}
                    r0 = next((r for r in records if r["case"] == case and "shape" in r), None)
                    rec.update({k: r0[k] for k in ("shape", "dtype", "method", "levels", "input_bytes")} if r0 else {})
                else:
                    rec = json.loads(proc.stdout.strip().splitlines()[-1])
                records.append(rec)
                shown = f"{rec['seconds']:.3f} s, equal={rec.get('equal')}" if "seconds" in rec else rec["error"]
                print(f"{case} {setting} {name}: {shown}", file=sys.stderr)
    text = table([r for r in records if "shape" in r], args)
    out = args.out or os.path.join(HERE, "results", "pyramid.md") if not args.quick else \
        (args.out or os.path.join(os.path.dirname(HERE), "bench-out", "pyramid-quick.md"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
