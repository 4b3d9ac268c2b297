"""Dask arrays: lazy results identical, bit for bit, to the in-memory call, for any chunking.

Every comparison runs the same public call twice, on a NumPy array and on a Dask
array of it, and checks values, bits, dtypes, the declared chunks against the
computed blocks (``dask.array.utils.assert_eq``) and ``return_indices``.  Most
cases use the NumPy "img2col" backend (no kernel compiles); a few run the numba
kernels, whose fast paths see whole planes in memory and restricted blocks here.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import poolkit
from helpers import assert_identical, make_input

da = pytest.importorskip("dask.array")      # in the test extra; importorskip keeps the message clear
import dask  # noqa: E402
from dask.array.utils import assert_eq  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def same(lazy, expected):
    """``lazy`` (Dask, or a tuple of them) equals ``expected`` (NumPy) in values, bits, dtype and chunks."""
    lazy = lazy if isinstance(lazy, tuple) else (lazy,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(lazy) == len(expected)
    got = dask.compute(*lazy, scheduler="sync")
    for lz, g, e in zip(lazy, got, expected):
        assert isinstance(lz, da.Array), type(lz)
        assert lz.dtype == e.dtype                    # declared before computing
        # shapes, dtypes and every block against its declared chunk (values: bits below)
        assert_eq(lz, e, check_chunks=True, equal_nan=True, scheduler="sync")
        assert_identical(g, e, "dask vs numpy")


@st.composite
def chunking(draw, n):
    """Chunk sizes along an axis of length ``n``: ones, the whole, or cut at random places."""
    kind = draw(st.sampled_from(("ones", "whole", "random", "random")))
    if kind == "ones":
        return (1,) * n
    if kind == "whole":
        return (n,)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    edges = [0] + cuts + [n]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


@st.composite
def layouts(draw, rank):
    """``(shape, pooled axes, kwargs)``: channels first or last (N or no N), or pooled ``axes`` in any order."""
    spatial = [draw(st.integers(1, 9 if rank < 3 else 6)) for _ in range(rank)]
    kind = draw(st.sampled_from(("first", "last", "axes")))
    lead = list(draw(st.sampled_from([(2,), (1, 3), (2, 2)])))
    if kind == "first":
        shape = lead + spatial
        return tuple(shape), tuple(range(len(lead), len(shape))), {"data_format": "channels_first"}
    if kind == "last":
        shape = lead[:-1] + spatial + lead[-1:]
        return tuple(shape), tuple(range(len(lead) - 1, len(shape) - 1)), {"data_format": "channels_last"}
    ndim = rank + len(lead)
    axes = tuple(draw(st.permutations(range(ndim)))[:rank])       # pooled axes, in any order
    sizes, others = iter(spatial), iter(lead)
    shape = tuple(next(sizes) if i in axes else next(others) for i in range(ndim))
    return shape, axes, {"axes": axes}


def dask_of(draw, x):
    chunks = tuple(draw(chunking(n)) for n in x.shape)
    return da.from_array(x, chunks=chunks)


@st.composite
def windows(draw, rank, sizes, dilation=True):
    k = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    s = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    d = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if dilation else (1,) * rank
    mode = draw(st.sampled_from(("symmetric", "pairs", "same", "valid")))
    if mode == "symmetric":
        pad = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    elif mode == "pairs":
        pad = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(rank))
    else:
        pad = mode
    ceil = False if mode == "same" else draw(st.booleans())
    try:
        poolkit.output_shape(tuple(sizes), k, s, pad, d, ceil)
    except ValueError:
        assume(False)                                  # no window fits
    return {"kernel_size": k, "stride": s, "padding": pad, "ceil_mode": ceil, **({"dilation": d} if dilation else {})}


# --------------------------------------------------------------------------- #
# one axis split into blocks
# --------------------------------------------------------------------------- #
@SETTINGS
@given(data=st.data())
def test_blocks_restrict_windows_exactly(data):
    from poolkit.engine.lazy import _split_axis
    from poolkit.core.geometry import PoolSpec, adaptive_axis

    n = data.draw(st.integers(1, 30))
    if data.draw(st.booleans()):
        kw = data.draw(windows(1, [n]))
        axis, = PoolSpec.from_args(1, **kw).axes([n])
    else:
        axis = adaptive_axis(n, data.draw(st.integers(1, n + 3)))
    chunks = data.draw(chunking(n))
    bounds, blocks, halo = _split_axis(axis, chunks)
    assert bounds[0] == 0 and set(bounds) <= {0, *np.cumsum(chunks).tolist()}    # rechunked by merging only
    ends = bounds[1:] + [n]
    assert sum(b.axis.out for b in blocks) == axis.out
    o = 0
    for b, c0, c1 in zip(blocks, bounds, ends):
        assert 0 <= b.lo < b.hi <= min(c1 + halo, n) - c0          # inside the block and its halo
        assert b.origin == c0 + b.lo
        for i in range(b.axis.out):                                   # the same taps, shifted
            assert [q + b.origin for q in b.axis.positions(i)] == axis.positions(o + i)
            assert b.axis.padded[i] == axis.padded[o + i]
        if axis.regular:                                              # regular fields describe the same windows
            kernel, stride, pb2, pa2 = b.axis.window
            assert pb2 >= 0 and pa2 >= 0
            assert np.array_equal(b.axis.start, np.arange(b.axis.out) * stride - pb2)
            assert b.axis.size + pa2 - b.axis.start[-1] == axis.size + axis.pad_after - axis.start[o + b.axis.out - 1]
        o += b.axis.out


# --------------------------------------------------------------------------- #
# strided pooling
# --------------------------------------------------------------------------- #
@SETTINGS
@given(data=st.data(), rank=st.sampled_from((1, 2, 3)))
def test_max_pool_equals_numpy(data, rank):
    shape, pooled, where = data.draw(layouts(rank))
    kw = data.draw(windows(rank, [shape[a] for a in pooled]))
    dtype = data.draw(st.sampled_from((np.float32, np.float64, np.int16)))
    values = data.draw(st.sampled_from(("ties", "nan", "normal")))
    nan_policy = data.draw(st.sampled_from(("propagate", "ignore")))
    x = make_input(np.random.default_rng(data.draw(st.integers(0, 99))), shape, dtype, values)
    backend = data.draw(st.sampled_from(("img2col", "reference")))      # NumPy and the loops: no compiles
    call = dict(kw, return_indices=True, nan_policy=nan_policy, backend=backend, **where)
    same(poolkit.max_pool(dask_of(data.draw, x), **call), poolkit.max_pool(x, **call))


@SETTINGS
@given(data=st.data(), rank=st.sampled_from((1, 2, 3)))
def test_avg_pool_equals_numpy(data, rank):
    shape, pooled, where = data.draw(layouts(rank))
    kw = data.draw(windows(rank, [shape[a] for a in pooled], dilation=False))
    dtype = data.draw(st.sampled_from((np.float32, np.float64, np.float16)))
    values = data.draw(st.sampled_from(("nan", "normal")))
    call = dict(kw, count_include_pad=data.draw(st.booleans()),
                divisor_override=data.draw(st.sampled_from((None, 3, -2))),
                nan_policy=data.draw(st.sampled_from(("propagate", "ignore"))),
                backend=data.draw(st.sampled_from(("img2col", "reference"))), **where)
    x = make_input(np.random.default_rng(data.draw(st.integers(0, 99))), shape, dtype, values)
    same(poolkit.avg_pool(dask_of(data.draw, x), **call), poolkit.avg_pool(x, **call))


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("case", [
    dict(kernel_size=2),                                         # tiles exactly: the fast paths
    dict(kernel_size=3, stride=2, padding=1),                    # overlapping windows: halos
    dict(kernel_size=3, stride=2, padding=((0, 2), (1, 0)), ceil_mode=True),
    dict(kernel_size=2, stride=1, padding="same"),
])
@pytest.mark.parametrize("chunks", [(1, 2, 5, 4), (2, 1, 3, 7), (1, 1, 1, 1)])
def test_numba_kernels_equal_on_blocks(op, case, chunks):
    # The kernels' fast paths (exact tiling, virtual rows, interiors) see different geometry on a
    # block than on the whole plane; their sums and winners must not change. float32 only: the
    # kernels compile per dtype.
    x = make_input(np.random.default_rng(3), (2, 2, 11, 13), np.float32, "ties" if op == "max" else "normal")
    fn = poolkit.max_pool2d if op == "max" else poolkit.avg_pool2d
    extra = {"return_indices": True} if op == "max" else {}
    same(fn(da.from_array(x, chunks=chunks), backend="numba", **case, **extra),
         fn(x, backend="numba", **case, **extra))


@pytest.mark.parametrize("name, rank, fmt", [("max_pool1d", 1, "NLC"), ("max_pool2d", 2, "NHWC"),
                                             ("max_pool3d", 3, "NDHWC"), ("avg_pool1d", 1, "NCL"),
                                             ("avg_pool2d", 2, "NHWC"), ("avg_pool3d", 3, "NCDHW")])
def test_fixed_rank_functions(name, rank, fmt):
    shape = (2,) + (7, 6, 5)[:rank] + (3,) if fmt.endswith("C") else (2, 3) + (7, 6, 5)[:rank]
    x = make_input(np.random.default_rng(1), shape, np.float64, "ties")
    fn = getattr(poolkit, name)
    extra = {"return_indices": True} if name.startswith("max") else {}
    same(fn(da.from_array(x, chunks=2), 3, 2, 1, data_format=fmt, backend="img2col", **extra),
         fn(x, 3, 2, 1, data_format=fmt, backend="img2col", **extra))


def test_indices_are_whole_plane_positions():
    # A maximum in the last chunk: its index counts every element before it in the plane.
    x = np.zeros((1, 1, 6, 6), np.float32)
    x[0, 0, 5, 4] = 1
    y, idx = poolkit.max_pool2d(da.from_array(x, chunks=(1, 1, 2, 2)), 2, return_indices=True,
                                backend="img2col")
    assert idx.compute()[0, 0, 2, 2] == 5 * 6 + 4


def test_mask_is_blocked_like_x():
    # A NumPy mask through the public function, and a Dask one through the core (bit for bit).
    from poolkit.engine import eager as _core, lazy as _dask
    from poolkit.engine.prepare import prepare
    from poolkit.core.reductions import MAX
    from poolkit.core.windows import StridedWindows
    from poolkit.core.geometry import PoolSpec

    rng = np.random.default_rng(5)
    x = make_input(rng, (2, 3, 11, 9), np.float32, "normal")
    m = rng.random((1, 3, 11, 9)) > 0.3
    d = da.from_array(x, chunks=(1, 2, 3, 4))
    for fn in (poolkit.max_pool2d, poolkit.avg_pool2d):
        same(fn(d, 3, 2, 1, mask=m, backend="img2col"), fn(x, 3, 2, 1, mask=m, backend="img2col"))
    p = prepare(MAX, x, 2, StridedWindows(PoolSpec.from_args(2, 3, 2, 1), MAX, True),
                      data_format="NCHW", axes=None, backend="img2col")
    full = np.broadcast_to(m, x.shape)
    want = _core.run_forward(p, x, mask=full, return_indices=True, keep=False)
    got = _dask.run_forward(p, d, mask=da.from_array(m, chunks=(1, 1, 5, 5)), return_indices=True, keep=False)
    same(got[:2], want[:2])
    with pytest.raises(TypeError, match="`mask` must be a bool array"):
        _dask.run_forward(p, d, mask=da.zeros(x.shape, chunks=4), keep=False)


# --------------------------------------------------------------------------- #
# adaptive, global, unpooling, the other reductions
# --------------------------------------------------------------------------- #
@SETTINGS
@given(data=st.data(), rank=st.sampled_from((1, 2, 3)))
def test_adaptive_equals_numpy(data, rank):
    sizes = [data.draw(st.integers(1, 9 if rank < 3 else 6)) for _ in range(rank)]
    out = tuple(data.draw(st.one_of(st.none(), st.integers(1, n + 2))) for n in sizes)
    last = data.draw(st.booleans())
    shape = (2,) + tuple(sizes) + (3,) if last else (2, 3) + tuple(sizes)
    x = make_input(np.random.default_rng(data.draw(st.integers(0, 99))), shape, np.float32, "ties")
    d = dask_of(data.draw, x)
    fmax = getattr(poolkit, f"adaptive_max_pool{rank}d")
    favg = getattr(poolkit, f"adaptive_avg_pool{rank}d")
    name = {1: "NLC", 2: "NHWC", 3: "NDHWC"}[rank] if last else {1: "NCL", 2: "NCHW", 3: "NCDHW"}[rank]
    same(fmax(d, out, True, data_format=name, backend="img2col"), fmax(x, out, True, data_format=name,
                                                                          backend="img2col"))
    same(favg(d, out, data_format=name, backend="img2col"), favg(x, out, data_format=name, backend="img2col"))


@SETTINGS
@given(data=st.data())
def test_global_equals_numpy(data):
    ndim = data.draw(st.integers(2, 5))
    shape = tuple(data.draw(st.integers(1, 5)) for _ in range(ndim))
    axes = tuple(data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=min(ndim, 3), unique=True)))
    keep = data.draw(st.booleans())
    x = make_input(np.random.default_rng(data.draw(st.integers(0, 99))), shape, np.float64, "ties")
    d = dask_of(data.draw, x)
    same(poolkit.global_max_pool(d, axes=axes, keepdims=keep, return_indices=True, backend="img2col"),
         poolkit.global_max_pool(x, axes=axes, keepdims=keep, return_indices=True, backend="img2col"))
    same(poolkit.global_avg_pool(d, axes=axes, keepdims=keep, backend="img2col"),
         poolkit.global_avg_pool(x, axes=axes, keepdims=keep, backend="img2col"))


def test_global_keeps_other_chunks():
    d = da.zeros((4, 6, 10, 10), chunks=(1, 2, 3, 3))
    y = poolkit.global_avg_pool(d)
    assert y.chunks == ((1,) * 4, (2,) * 3)


@SETTINGS
@given(data=st.data(), rank=st.sampled_from((1, 2, 3)))
def test_max_unpool_equals_numpy(data, rank):
    sizes = tuple(data.draw(st.integers(2, 8 if rank < 3 else 5)) for _ in range(rank))
    k = data.draw(st.integers(2, 3))
    s = data.draw(st.integers(1, k))                   # stride < kernel: two windows may pick one element
    p = data.draw(st.integers(0, k // 2))
    assume(all(n + 2 * p >= k for n in sizes))
    x = make_input(np.random.default_rng(data.draw(st.integers(0, 99))), (2, 2) + sizes, np.float32, "ties")
    y, idx = getattr(poolkit, f"max_pool{rank}d")(x, k, s, p, return_indices=True, backend="img2col")
    unpool = getattr(poolkit, f"max_unpool{rank}d")
    which = data.draw(st.sampled_from(("x", "indices", "both")))
    yd = dask_of(data.draw, y) if which != "indices" else y
    idd = dask_of(data.draw, idx) if which != "x" else idx
    same(unpool(yd, idd, k, s, p, output_size=x.shape, backend="img2col"),
         unpool(y, idx, k, s, p, output_size=x.shape, backend="img2col"))


def test_max_unpool_index_errors_raise_on_compute():
    y = np.ones((1, 1, 2, 2), np.float32)
    bad = np.full((1, 1, 2, 2), 99, np.int64)
    lazy = poolkit.max_unpool2d(da.from_array(y, chunks=1), bad, 2)
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 16\)"):
        lazy.compute(scheduler="sync")


@pytest.mark.parametrize("name", ["min", "sum", "lp", "global_lp"])
def test_other_reductions_equal_numpy(name):
    x = make_input(np.random.default_rng(2), (2, 3, 9, 10), np.float64, "ties")
    call = {"min": lambda a: poolkit.min_pool2d(a, 3, 2, 1, return_indices=True, backend="img2col"),
            "sum": lambda a: poolkit.sum_pool2d(a, 3, 2, 1, backend="img2col"),
            "lp": lambda a: poolkit.lp_pool2d(a, 2.0, 3, 2, backend="img2col"),
            "global_lp": lambda a: poolkit.global_lp_pool(a, 3.0, backend="img2col")}[name]
    same(call(da.from_array(x, chunks=(1, 2, 4, 3))), call(x))


# --------------------------------------------------------------------------- #
# the graph: chunks, halos, task count, threads
# --------------------------------------------------------------------------- #
def test_aligned_chunks_are_kept_and_need_no_halo():
    d = da.zeros((2, 3, 64, 48), chunks=(1, 3, 16, 12), dtype=np.float32)
    y = poolkit.avg_pool2d(d, 2)
    assert y.chunks == ((1, 1), (3,), (8,) * 4, (6,) * 4)
    assert not any("overlap" in str(k) for k in y.__dask_graph__().layers)


def test_chunks_shorter_than_a_window_merge_along_pooled_axes_only():
    d = da.zeros((3, 4, 20), chunks=(1, 1, 1), dtype=np.float32)
    y = poolkit.max_pool1d(d, 5, 3, backend="img2col")
    assert y.chunks[:2] == d.chunks[:2]
    assert y.numblocks[2] > 1                      # still split, in blocks a window's reach long


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_task_count_is_proportional_to_chunk_count(kw):
    counts = []
    for n in (8, 16):                              # chunks per axis
        x = da.zeros((n * 32, n * 32), chunks=32, dtype=np.float32)
        y = poolkit.avg_pool(x, axes=(0, 1), **kw)
        counts.append((len(y.__dask_graph__()) - len(x.__dask_graph__())) / x.npartitions)
    # a few tasks per chunk (halos: the overlap's slices), the same per chunk at any size
    assert counts[1] <= counts[0] * 1.05 and counts[1] < 8, counts


def test_one_thread_per_task_unless_configured():
    from poolkit.engine import lazy as _dask

    seen = []
    original = _dask._pool_in_memory

    def spy(*args, **kwargs):
        seen.append(poolkit.get_num_threads())
        return original(*args, **kwargs)

    d = da.ones((2, 3, 8, 8), chunks=(1, 3, 4, 4), dtype=np.float32)
    _dask._pool_in_memory = spy
    try:
        poolkit.max_pool2d(d, 2, backend="img2col").compute(scheduler="threads")
        top = min(2, __import__("numba").config.NUMBA_NUM_THREADS)
        with dask.config.set({"poolkit.threads": top}):
            lazy = poolkit.max_pool2d(d, 2, backend="img2col")      # read when the graph is built
        lazy.compute(scheduler="threads")
    finally:
        _dask._pool_in_memory = original
    assert seen[:8] == [1] * 8 and seen[8:] == [top] * 8


def test_per_plane_work_follows_the_same_thread_policy():
    # Fractional and unpooling tasks (whole planes) run on the one lazy engine: one thread per task,
    # or dask.config's "poolkit.threads" (fractional pooling used to pin one thread whatever was set).
    from poolkit.engine import eager

    seen = []
    original = eager.window_argmax

    def spy(*args, **kwargs):
        seen.append(poolkit.get_num_threads())
        return original(*args, **kwargs)

    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    d = da.from_array(x, chunks=(1, 3, 4, 4))
    top = min(2, __import__("numba").config.NUMBA_NUM_THREADS)
    eager.window_argmax = spy
    try:
        poolkit.fractional_max_pool2d(d, 2, 3, rng=0, backend="img2col").compute(scheduler="threads")
        with dask.config.set({"poolkit.threads": top}):
            lazy = poolkit.fractional_max_pool2d(d, 2, 3, rng=0, backend="img2col")
        lazy.compute(scheduler="threads")
    finally:
        eager.window_argmax = original
    assert seen == [1, 1] + [top, top]                      # one task per batch chunk, each time
    with dask.config.set({"poolkit.threads": 0}):
        y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
        with pytest.raises(ValueError, match="`poolkit.threads` must be an int from 1 to"):
            poolkit.max_unpool2d(da.from_array(y, chunks=1), idx, 2)


def test_bad_thread_setting():
    d = da.ones((1, 1, 4, 4), chunks=2)
    with dask.config.set({"poolkit.threads": 0}):
        with pytest.raises(ValueError, match="`poolkit.threads` must be an int from 1 to"):
            poolkit.max_pool2d(d, 2)


# --------------------------------------------------------------------------- #
# what is not lazy
# --------------------------------------------------------------------------- #
X = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
Y, IDX = poolkit.max_pool2d(X, 2, return_indices=True)
G = np.ones_like(Y)
S = X.shape


def lazy(a):
    return da.from_array(a, chunks=2)


BACKWARD = {
    "max_pool_backward": [lambda: poolkit.max_pool_backward(lazy(G), IDX, S),
                          lambda: poolkit.max_pool_backward(G, lazy(IDX), S)],
    "max_pool1d_backward": [lambda: poolkit.max_pool1d_backward(lazy(G[0]), IDX[0], S[1:])],
    "max_pool2d_backward": [lambda: poolkit.max_pool2d_backward(lazy(G), IDX, S),
                            lambda: poolkit.max_pool2d_backward(G, lazy(IDX), S)],
    "max_pool3d_backward": [lambda: poolkit.max_pool3d_backward(lazy(G), IDX, S)],
    "avg_pool_backward": [lambda: poolkit.avg_pool_backward(lazy(G), S, 2),
                          lambda: poolkit.avg_pool_backward(G, S, 2, nan_policy="ignore", x=lazy(X))],
    "avg_pool1d_backward": [lambda: poolkit.avg_pool1d_backward(lazy(G[0]), S[1:], 2)],
    "avg_pool2d_backward": [lambda: poolkit.avg_pool2d_backward(lazy(G), S, 2)],
    "avg_pool3d_backward": [lambda: poolkit.avg_pool3d_backward(lazy(G), S, 2)],
    "adaptive_avg_pool_backward": [lambda: poolkit.adaptive_avg_pool_backward(lazy(G), S)],
    "adaptive_avg_pool1d_backward": [lambda: poolkit.adaptive_avg_pool1d_backward(lazy(G[0]), S[1:])],
    "adaptive_avg_pool2d_backward": [lambda: poolkit.adaptive_avg_pool2d_backward(lazy(G), S)],
    "adaptive_avg_pool3d_backward": [lambda: poolkit.adaptive_avg_pool3d_backward(lazy(G[None]), (1,) + S)],
    "global_avg_pool_backward": [lambda: poolkit.global_avg_pool_backward(lazy(G[..., 0, 0]), S)],
    "max_unpool_backward": [lambda: poolkit.max_unpool_backward(lazy(X), IDX),
                            lambda: poolkit.max_unpool_backward(X, lazy(IDX))],
    "min_pool_backward": [lambda: poolkit.min_pool_backward(lazy(G), IDX, S)],
    "sum_pool_backward": [lambda: poolkit.sum_pool_backward(lazy(G), S, 2)],
    "lp_pool_backward": [lambda: poolkit.lp_pool_backward(lazy(G), X, 2.0, 2),
                         lambda: poolkit.lp_pool_backward(G, lazy(X), 2.0, 2)],
    "fractional_max_pool2d_backward": [lambda: poolkit.fractional_max_pool2d_backward(lazy(G), IDX, S)],
    "fractional_max_pool3d_backward": [lambda: poolkit.fractional_max_pool3d_backward(lazy(G[None]), IDX[None],
                                                                                      (1,) + S)],
    "spatial_pyramid_pool2d_backward": [lambda: poolkit.spatial_pyramid_pool2d_backward(
        lazy(np.ones((2, 3 * 5))), S, (1, 2), "avg")],
    "global_lp_pool_backward": [lambda: poolkit.global_lp_pool_backward(lazy(G[..., 0, 0]), X),
                                lambda: poolkit.global_lp_pool_backward(G[..., 0, 0], lazy(X))],
}


def test_every_backward_function_is_checked():
    assert sorted(BACKWARD) == sorted(n for n in poolkit.__all__ if n.endswith("_backward"))


@pytest.mark.parametrize("call", [c for calls in BACKWARD.values() for c in calls],
                         ids=[f"{n}-{i}" for n, calls in BACKWARD.items() for i in range(len(calls))])
def test_backward_refuses_dask(call):
    with pytest.raises(TypeError, match=r"is a Dask array, but .* NumPy arrays only|in-memory state for a "
                                        r"backward pass"):
        call()


def test_layer_in_training_refuses_dask():
    from poolkit.engine import lazy as _dask

    from poolkit.engine.prepare import prepare
    from poolkit.core.geometry import PoolSpec
    from poolkit.core.reductions import MAX
    from poolkit.core.windows import StridedWindows

    with pytest.raises(TypeError, match="is a Dask array"):
        poolkit.MaxPool2d(2)(lazy(X))
    p = prepare(MAX, X, 2, StridedWindows(PoolSpec.from_args(2, 2), MAX, True),
                      data_format="NCHW", axes=None, backend="img2col")
    with pytest.raises(TypeError, match="keeps in-memory state for a backward pass"):
        _dask.run_forward(p, lazy(X), keep=True)


def test_unknown_chunk_sizes_are_refused():
    d = lazy(X)
    d = d[d[:, 0, 0, 0] >= 0]                      # boolean indexing: unknown chunk sizes
    with pytest.raises(ValueError, match=r"compute_chunk_sizes\(\)"):
        poolkit.max_pool2d(d, 2)


def test_non_native_byte_order():
    x = X.astype(">f8")
    same(poolkit.avg_pool2d(lazy(x), 3, 1, 1, backend="img2col"), poolkit.avg_pool2d(x, 3, 1, 1, backend="img2col"))


# --------------------------------------------------------------------------- #
# distributed
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def test_local_cluster_gives_identical_results(cluster_client):
    rng = np.random.default_rng(7)
    x = make_input(rng, (2, 3, 23, 19), np.float32, "ties")
    d = da.from_array(x, chunks=(1, 2, 5, 6))
    y, idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True)        # numba, compiled here first:
    want = [y, idx,                                                        # the workers load it from disk
            poolkit.avg_pool2d(x, 3, 2, ((0, 1), (1, 1)), ceil_mode=True, count_include_pad=False),
            poolkit.adaptive_avg_pool2d(x, (4, 3), backend="img2col"),
            poolkit.global_max_pool(x, backend="img2col"),
            poolkit.max_unpool2d(y, idx, 3, 2, 1, output_size=x.shape, backend="img2col")]
    yd, idd = poolkit.max_pool2d(d, 3, 2, 1, return_indices=True)
    lazy_ = [yd, idd,
             poolkit.avg_pool2d(d, 3, 2, ((0, 1), (1, 1)), ceil_mode=True, count_include_pad=False),
             poolkit.adaptive_avg_pool2d(d, (4, 3), backend="img2col"),
             poolkit.global_max_pool(d, backend="img2col"),
             poolkit.max_unpool2d(yd, idd, 3, 2, 1, output_size=x.shape, backend="img2col")]
    got = cluster_client.compute(lazy_, sync=True)
    assert len(cluster_client.scheduler_info()["workers"]) == 2
    for g, w in zip(got, want):
        assert_identical(g, w, "LocalCluster vs numpy")
    assert math.prod(yd.numblocks) > 2                  # work for both workers

    def probe():                                         # in each worker: was the kernel compiled there?
        from poolkit.backends.numba import fast as _fast
        poolkit.max_pool2d(x, 3, 2, 1, return_indices=True, backend="numba")
        body = _fast._KERNELS[(3, 3, 2)]["max_forward"].body
        return sum(body.stats.cache_hits.values()), sum(body.stats.cache_misses.values())

    for hits, misses in cluster_client.run(probe).values():
        assert misses == 0 and hits >= 1, "workers must load the kernels the main process compiled, not compile"


def test_fractional_and_spatial_pyramid_pooling_on_dask():
    x = np.random.default_rng(0).standard_normal((3, 4, 11, 9)).astype(np.float32)
    dx = da.from_array(x, chunks=(2, 3, 5, 4))
    u = np.random.default_rng(1).random((3, 4, 2))
    y, idx = poolkit.fractional_max_pool2d(dx, 2, output_size=(6, 5), samples=u, return_indices=True)
    want_y, want_idx = poolkit.fractional_max_pool2d(x, 2, output_size=(6, 5), samples=u, return_indices=True)
    assert isinstance(y, da.Array) and y.chunks[:2] == dx.chunks[:2]
    np.testing.assert_array_equal(y.compute(), want_y)
    np.testing.assert_array_equal(idx.compute(), want_idx)
    # unbatched (C, H, W) input with (C, 2) samples
    yu = poolkit.fractional_max_pool2d(da.from_array(x[0], chunks=(3, 5, 5)), 2, output_size=(6, 5), samples=u[0])
    np.testing.assert_array_equal(yu.compute(), poolkit.fractional_max_pool2d(x[0], 2, output_size=(6, 5),
                                                                              samples=u[0]))
    s, si = poolkit.spatial_pyramid_pool2d(dx, (1, 2, 3), return_indices=True)
    want_s, want_si = poolkit.spatial_pyramid_pool2d(x, (1, 2, 3), return_indices=True)
    assert isinstance(s, da.Array)
    np.testing.assert_array_equal(s.compute(), want_s)
    np.testing.assert_array_equal(si.compute(), want_si)


def test_fractional_and_spatial_pyramid_pooling_on_dask_with_axes_and_nan():
    # (H, C, W, N) pooled over axes (0, 2), NaN left out: each block gets its planes' samples
    x = np.random.default_rng(2).standard_normal((11, 4, 9, 3))
    x[np.random.default_rng(3).random(x.shape) < 0.3] = np.nan
    x[:, 1, :, 0] = np.nan
    dx = da.from_array(x, chunks=(4, 3, 5, 2))
    u = np.random.default_rng(4).random((4, 3, 2))
    kw = dict(samples=u, axes=(0, 2), nan_policy="ignore", return_indices=True)
    got = poolkit.fractional_max_pool2d(dx, 2, output_size=(6, 5), **kw)
    want = poolkit.fractional_max_pool2d(x, 2, output_size=(6, 5), **kw)
    for g, w in zip(got, want):
        assert isinstance(g, da.Array)
        assert_identical(g.compute(), w)
    for mode in ("max", "avg"):
        s = poolkit.spatial_pyramid_pool2d(dx, (1, 2, 3), mode, axes=(0, 2), nan_policy="ignore")
        assert isinstance(s, da.Array) and s.shape == (4, 3, 14)
        assert_identical(s.compute(), poolkit.spatial_pyramid_pool2d(x, (1, 2, 3), mode, axes=(0, 2),
                                                                     nan_policy="ignore"))
