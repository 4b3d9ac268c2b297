"""The backends agree with each other, and the backend you ask for is the one that runs.

Max pooling picks an input element and backward adds the same gradients in the
same (output) order, so the reference, img2col and numba backends must agree bit
for bit on max outputs, winning-tap offsets, indices and gradients.  Averages
may round differently (sums in another order) and are compared with a tight
tolerance.  Every combination comes from one table: dims x dtype x op.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import poolkit
from poolkit.core.reductions import MAX
from poolkit.engine import prepare as _core
from poolkit import backends as B
from poolkit.backends.numba import loops as numba_loops
from helpers import (BACKENDS, FIRST, INTS, KERNEL_BACKENDS, LAST, RANKS, assert_close, assert_identical,
                     make_input, naive_pool, sample_adaptive_case, sample_case, to_last)

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
TABLE = [(op, rank, dt) for op in ("max", "avg") for rank in RANKS for dt in FLOAT_DTYPES]
TABLE += [("max", rank, dt) for rank in RANKS for dt in INTS]
SEEDS = 4
THREADS = min(2, numba.config.NUMBA_NUM_THREADS)


def _id(row):
    op, rank, dt = row
    return f"{op}{rank}d-{np.dtype(dt).name}"


def _run_layer(case, x, g_first, backend):
    """Forward (with indices for max) and backward of ``case`` through a layer on ``backend``."""
    kw = dict(case.layer_kwargs(), backend=backend)
    if case.op == "max":
        layer = case.layer_cls()(**kw, return_indices=True)
        y, idx = layer(x)
    else:
        layer = case.layer_cls()(**kw)
        y, idx = layer(x), None
    g = case.to_user(g_first)
    return y, idx, layer.backward(g)


def _grad_dtype(dtype):
    return np.float64 if np.dtype(dtype).kind in "iu" else dtype


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("row", TABLE, ids=_id)
def test_strided_backends_agree(row, seed):
    op, rank, dtype = row
    rng = np.random.default_rng([7, TABLE.index(row), seed])
    values = ("distinct", "normal", "ties", "nan") if np.dtype(dtype).kind == "f" else ("ties", "distinct")
    case = sample_case(rng, op, rank, dtypes=(dtype,), values=values)
    x, x_first = case.make_x(rng)
    out_first = case.out_spatial()
    g_first = make_input(rng, x_first.shape[:-rank] + out_first, _grad_dtype(dtype), "normal")
    results = {b: _run_layer(case, x, g_first, b) for b in BACKENDS}
    ref_y, ref_idx, ref_gx = results["reference"]
    for b in ("img2col", "numba", "auto"):
        y, idx, gx = results[b]
        what = f"{b} vs reference: {case}"
        if op == "max":
            assert_identical(y, ref_y, what)
            assert_identical(idx, ref_idx, what + " indices")
            assert_identical(gx, ref_gx, what + " gradient")
        else:
            assert y.dtype == ref_y.dtype and gx.dtype == ref_gx.dtype
            assert_close(y, ref_y, what=what, scale=4)
            assert_close(gx, ref_gx, what=what + " gradient", scale=4)
    # img2col, numba and auto (whichever of the two serves it) give the same bits, also for averages
    for other in ("img2col", "auto"):
        for a, b in zip(results[other], results["numba"]):
            if a is not None:
                assert_identical(a, b, f"{other} vs numba: {case}")
    # and the reference itself is the textbook definition (integers and floats alike)
    if np.dtype(dtype) != np.float16:
        y_n, i_n = naive_pool(x_first, case)
        if op == "max":
            assert_identical(case.to_first(ref_y), y_n, f"reference vs brute force: {case}")
            assert np.array_equal(case.to_first(ref_idx), i_n)
        else:
            assert_close(case.to_first(ref_y), y_n, what=f"reference vs brute force: {case}", scale=4)


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("row", [r for r in TABLE if np.dtype(r[2]).kind == "f"], ids=_id)
def test_adaptive_backends_agree(row, seed):
    op, rank, dtype = row
    rng = np.random.default_rng([8, TABLE.index(row), seed])
    case = sample_adaptive_case(rng, op, rank, dtypes=(dtype,))
    x, x_first = case.make_x(rng)
    g_first = make_input(rng, x_first.shape[:-rank] + case.out_spatial, dtype, "normal")
    g = case.to_user(g_first)
    res = {}
    for b in BACKENDS:
        kw = dict(data_format=case.data_format, backend=b)
        layer = case.layer_cls()(case.output_size, **kw, **({"return_indices": True} if op == "max" else {}))
        out = layer(x)
        res[b] = (out if op == "max" else (out, None)) + (layer.backward(g),)
    for b in ("img2col", "numba", "auto"):
        for name, a, r in zip(("y", "indices", "gradient"), res[b], res["reference"]):
            if r is None:
                continue
            if op == "max" or name == "indices":
                assert_identical(a, r, f"{b} {name}")
            else:
                assert_close(a, r, what=f"{b} {name}", scale=4)
                # img2col, numba and auto give the same bits, also for averages
                assert_identical(a, res["numba"][("y", "indices", "gradient").index(name)], f"{b} vs numba {name}")


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
def test_backend_offsets_identical(rank, last):
    """The backend contract itself: ``max_forward`` returns the same values and offsets, sentinels included.

    Dilation and padding make some windows lie wholly in padding, so the sentinel is exercised.
    """
    rng = np.random.default_rng([9, rank, last])
    shape = (2, 3) + (1,) + (5,) * (rank - 1)            # size 1 first: empty windows there
    x = make_input(rng, shape, np.float64, "nan")
    if last:
        x = to_last(x, rank)
    fmt = LAST[rank] if last else FIRST[rank]
    spec = poolkit.core.geometry.PoolSpec.from_args(rank, 2, 1, 1, 2, True)
    outs = {}
    for b in KERNEL_BACKENDS:
        p = _core.prepare(MAX, x, rank, spec.axes, data_format=fmt, axes=None, backend=b)
        x5 = p.layout.to_canonical(x)
        out, off = p.backend.max_forward(x5, p.plan)
        assert off.dtype == p.plan.off_dtype
        outs[b] = (out, off, p.backend.max_backward(np.ones_like(out), off, p.plan))
    assert (outs["reference"][1] == p.plan.sentinel).any(), "the case must have empty windows"
    for b in ("img2col", "numba"):
        for a, r in zip(outs[b], outs["reference"]):
            assert_identical(a, r, f"{b} rank {rank}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpool_and_index_backward_agree(backend):
    """The scatter behind max_poolNd_backward (accumulate) and max_unpool (overwrite), per backend.

    Overlapping windows (stride 1) make several outputs share a winner: their gradients add.
    """
    rng = np.random.default_rng(10)
    for rank in RANKS:
        x = make_input(rng, (2, 3) + (5,) * rank, np.float32, "ties")
        y, idx = getattr(poolkit, f"max_pool{rank}d")(x, 2, 1, return_indices=True)
        g = make_input(rng, y.shape, np.float32, "normal")
        gx = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend=backend)
        ref = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend="reference")
        assert_identical(gx, ref, f"{backend} {rank}-D backward")
        # unpool with disjoint windows (no duplicate index)
        y2, i2 = getattr(poolkit, f"max_pool{rank}d")(x, 2, return_indices=True)
        u = getattr(poolkit, f"max_unpool{rank}d")(y2, i2, 2, output_size=x.shape, backend=backend)
        uref = getattr(poolkit, f"max_unpool{rank}d")(y2, i2, 2, output_size=x.shape, backend="reference")
        assert_identical(u, uref, f"{backend} {rank}-D unpool")
        assert np.count_nonzero(u) <= y2.size


# --------------------------------------------------------------------------- #
# threads
# --------------------------------------------------------------------------- #
# Inputs of >= 2**15 elements take the parallel kernels (numba_loops.PARALLEL_MIN_ELEMENTS).
THREAD_CASES = [
    # (name, op, data_format, shape, kwargs)
    ("max2d-2x2-first", "max", "NCHW", (4, 8, 32, 32), dict(kernel_size=2)),
    ("avg2d-3x3s2-first", "avg", "NCHW", (4, 8, 33, 33), dict(kernel_size=3, stride=2, padding=1)),
    ("max2d-3x3s1-last", "max", "NHWC", (2, 32, 32, 16), dict(kernel_size=3, stride=1, padding=1)),
    ("avg1d-overlap-last", "avg", "NLC", (8, 512, 16), dict(kernel_size=4, stride=3, ceil_mode=True,
                                                            count_include_pad=False)),
]


@pytest.mark.parametrize("name, op, fmt, shape, kw", THREAD_CASES, ids=[c[0] for c in THREAD_CASES])
def test_thread_count_does_not_change_results(name, op, fmt, shape, kw):
    assert int(np.prod(shape)) >= numba_loops.PARALLEL_MIN_ELEMENTS
    rng = np.random.default_rng(11)
    x = make_input(rng, shape, np.float32, "ties")
    rank = len(fmt) - 2
    cls = getattr(poolkit, f"{'Max' if op == 'max' else 'Avg'}Pool{rank}d")
    runs = {}
    for n_threads in (1, THREADS):
        with poolkit.threads(n_threads):
            assert poolkit.get_num_threads() == n_threads
            layer = cls(**kw, data_format=fmt, backend="numba")
            y = layer(x)
            g = make_input(np.random.default_rng(12), y.shape, np.float32, "normal")
            runs[n_threads] = (y, layer.backward(g))
    for a, b in zip(runs[1], runs[THREADS]):
        assert_identical(a, b, f"{name}: 1 vs {THREADS} threads")
    # and the parallel result is img2col's (bit for bit for max)
    layer = cls(**kw, data_format=fmt, backend="img2col")
    y = layer(x)
    gx = layer.backward(make_input(np.random.default_rng(12), y.shape, np.float32, "normal"))
    check = assert_identical if op == "max" else (lambda a, b, w: assert_close(a, b, what=w, scale=4))
    check(runs[THREADS][0], y, f"{name}: numba vs img2col")
    check(runs[THREADS][1], gx, f"{name}: numba vs img2col gradient")


def test_threads_context_restores_count():
    before = poolkit.get_num_threads()
    with poolkit.threads(1):
        assert poolkit.get_num_threads() == 1
    assert poolkit.get_num_threads() == before
    with pytest.raises(ValueError, match="n=0"):
        poolkit.set_num_threads(0)


# --------------------------------------------------------------------------- #
# the backend asked for is the one that runs
# --------------------------------------------------------------------------- #
_MODULES = {"reference": B.reference, "img2col": B.img2col, "numba": numba_loops}
_FUNCS = ("max_forward", "max_backward", "avg_forward", "avg_backward", "scatter")


@pytest.fixture
def calls(monkeypatch):
    """Wrap every backend function so that each call is recorded as (backend, function)."""
    log = []
    for bname, module in _MODULES.items():
        for fname in _FUNCS:
            orig = getattr(module, fname)

            def spy(*args, _orig=orig, _tag=(bname, fname)):
                log.append(_tag)
                return _orig(*args)
            monkeypatch.setattr(module, fname, spy)
    return log


@pytest.mark.parametrize("backend", BACKENDS)
def test_intended_backend_runs(backend, calls):
    expected = "numba" if backend == "auto" else backend
    x = make_input(np.random.default_rng(13), (2, 3, 6, 6), np.float64, "normal")

    y, idx = poolkit.max_pool2d(x, 2, return_indices=True, backend=backend)
    poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend=backend)
    poolkit.max_unpool2d(y, idx, 2, backend=backend)
    layer = poolkit.AvgPool2d(3, 2, 1, backend=backend)
    layer.backward(np.ones_like(layer(x)))
    pool = poolkit.AdaptiveMaxPool2d(4, backend=backend)
    pool.backward(np.ones_like(pool(x)))
    assert set(calls) == {(expected, f) for f in _FUNCS}, calls


def test_chapter_methods_use_their_backends(calls):
    layer = poolkit.PoolingLayer((3, 8, 8), (2, 2), 2, "MAX")
    x = make_input(np.random.default_rng(14), (2, 3, 8, 8), np.float64, "normal")
    layer.backward_numba(np.ones_like(layer.forward_numba(x)))
    assert calls == [("numba", "max_forward"), ("numba", "max_backward")]
    calls.clear()
    layer.backward_col2img(np.ones_like(layer.forward_img2col(x)))
    assert calls == [("img2col", "max_forward"), ("img2col", "max_backward")]
