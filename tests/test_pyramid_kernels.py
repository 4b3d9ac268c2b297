"""The pyramid's one-pass kernels (multiscale/reduce.py over backends/numba/pyramid.py).

* label modes against a brute-force oracle (``np.unique`` per window, ties to the smallest);
* integer means exact against ``fractions.Fraction``, up to each accumulator's limit;
* several levels in one pass bit for bit the one-level-at-a-time NumPy path, any thread count,
  layout (C, Fortran, unpooled axes between pooled ones, read-only) and edge rule;
* an in-memory pyramid's scratch: its traced allocations stay within the outputs and a slack.
"""
import itertools
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolkit
from poolkit.multiscale import reduce as R
from poolkit.multiscale.spec import Spec, normalize

INTS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
DTYPES = ["bool"] + INTS


# --------------------------------------------------------------------------- #
# oracles
# --------------------------------------------------------------------------- #
def oracle_level(a, factors, method, edge):
    if edge == "trim":
        a = a[tuple(slice(0, n // f * f) for n, f in zip(a.shape, factors))]
    shape = tuple(-(-n // f) for n, f in zip(a.shape, factors))
    out = np.empty(shape, dtype=a.dtype)
    for idx in np.ndindex(*shape):
        w = a[tuple(slice(i * f, (i + 1) * f) for i, f in zip(idx, factors))].ravel()
        if method == "mode":
            u, n = np.unique(w, return_counts=True)
            out[idx] = u[np.argmax(n)]                     # sorted: the first maximum is the smallest
        else:
            out[idx] = round(Fraction(sum(int(v) for v in w), w.size))   # nearest, ties to even
    return out


def oracle(x, factors, method, edge, levels):
    out, a = [], x
    for _ in range(levels):
        a = oracle_level(a, factors, method, edge)
        out.append(a)
    return out


@st.composite
def images(draw, dtypes=DTYPES, max_side=9):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    factors = tuple(draw(st.sampled_from([1, 2, 2, 3])) for _ in range(ndim))
    if all(f == 1 for f in factors):
        factors = (2,) + factors[1:]
    n = int(np.prod(shape))
    if dtype == np.bool_:
        x = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    else:
        info = np.iinfo(dtype)
        pool = sorted({int(info.min), int(info.max), int(info.max) - 1, 0, 1, 2,
                       -1 if dtype.kind == "i" else 3})
        x = np.array([pool[i] for i in draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))],
                     dtype=dtype)
    return x.reshape(shape), factors, draw(st.sampled_from(["partial", "trim"]))


def levels_of(x, factors, method, edge, threads=1):
    spec = normalize(x.shape, x.dtype, factors, method, None, edge)
    k = 0
    while k < 3 and all(spec.next_length(x.shape[a], a, k + 1) > 0 for a in spec.axes):
        k += 1
    return spec, k, R.reduce_levels(x, (spec,) * k, threads=threads)


# --------------------------------------------------------------------------- #
# modes and integer means against their oracles
# --------------------------------------------------------------------------- #
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_mode_is_the_oracle(case):
    x, factors, edge = case
    spec, k, got = levels_of(x, factors, "mode", edge)
    want = oracle(x, spec.factors, "mode", edge, k)
    assert len(got) == k
    for g, w in zip(got, want):
        assert g.dtype == x.dtype and g.tobytes() == w.tobytes() and g.shape == w.shape


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(dtypes=INTS))
def test_integer_means_are_exact(case):
    x, factors, edge = case
    spec, k, got = levels_of(x, factors, "mean", edge)
    for g, w in zip(got, oracle(x, spec.factors, "mean", edge, k)):
        assert g.dtype == x.dtype and g.tobytes() == w.tobytes() and g.shape == w.shape


def test_mode_fast_paths_on_every_tie_pattern():
    # every 2x2 and 2x2x2 window over three labels, side by side along the last axis
    for ndim in (2, 3):
        c = np.array(list(itertools.product([-1, 0, 1], repeat=2 ** ndim)), dtype=np.int8)
        c = c.reshape((-1,) + (2,) * ndim)                                   # (N, 2, 2[, 2])
        x = np.ascontiguousarray(np.moveaxis(c, 0, -2)).reshape((2,) * (ndim - 1) + (-1,))
        spec = Spec((2,) * ndim, "mode", "partial")
        (got,) = R.reduce_levels(x, [spec])
        assert got.size == len(c)
        np.testing.assert_array_equal(got, oracle_level(x, spec.factors, "mode", "partial"))


# --------------------------------------------------------------------------- #
# accumulators at their limits
# --------------------------------------------------------------------------- #
def exact_mean(window_values):
    return round(Fraction(sum(int(v) for v in window_values), len(window_values)))


# (dtype, the window's shape, the accumulator it gets): the largest window of each accumulator
# and one past it. The kernels sum unsigned views (signed values with the sign bit flipped,
# v + 2**(b-1)), so both signednesses share the limits. 32-bit sums need 64 bits at any window
# of up to 2**29 elements (the limit of pyramid factors, 2 GiB of input to test); their cases
# cross 2**52 instead, where the rounding moves from float64 division to integer division.
LIMITS = [(dt, shape, acc) for u, s in (("uint8", "int8"), ("uint16", "int16"), ("uint32", "int32"))
          for dt in (u, s)
          for shape, acc in {"uint8": [((1, 257), "uint16"), ((2, 129), "uint32"),
                                       ((257, 65537), "uint32"), ((257, 65538), "uint64")],
                             "uint16": [((1, 65537), "uint32"), ((2, 32769), "uint64")],
                             "uint32": [((1024, 1024), "uint64"), ((1024, 1025), "uint64")]}[u]]


@pytest.mark.parametrize("dtype,shape,acc", LIMITS)
def test_accumulator_limits(dtype, shape, acc):
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    n = shape[0] * shape[1]
    assert R._accumulator(dt, n) == np.dtype(acc)
    if dt.itemsize == 4:
        assert R._use_float(dt, n) == (n <= 2**20)
    alternate = np.arange(n) % 2 == 0
    cases = {"max": np.full(n, info.max, dt),
             # at the top: half max, half max - 1, a tie when n is even (to the even one)
             "top": np.where(alternate, info.max, info.max - 1).astype(dt)}
    if dt.kind == "i":
        cases["min"] = np.full(n, info.min, dt)
        cases["bottom"] = np.where(alternate, info.min, info.min + 1).astype(dt)
    for name, v in cases.items():
        (got,) = R.reduce_levels(v.reshape(shape), [Spec(shape, "mean", "partial")])
        u, c = np.unique(v, return_counts=True)
        want = round(Fraction(sum(int(a) * int(b) for a, b in zip(u, c)), n))
        assert got.shape == (1, 1) and int(got[0, 0]) == want, name


@pytest.mark.parametrize("dtype", ["uint64", "int64"])
def test_64_bit_means_stay_exact(dtype):
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    rng = np.random.default_rng(5)
    # near the extremes, where a float64 or an int64 sum would lose them
    x = np.concatenate([np.full(3000, info.max, dt), np.full(3000, info.max - 1, dt),
                        rng.integers(info.min, info.max, 3000, dtype=dt, endpoint=True),
                        np.full(3000, info.min, dt)]).reshape(12, 1000)
    for factors in [(3, 5), (12, 1000), (4, 8), (2, 2)]:
        (got,) = R.reduce_levels(x, [Spec(factors, "mean", "partial")])
        want = oracle_level(x, factors, "mean", "partial")
        assert got.dtype == dt and got.tobytes() == want.tobytes(), factors


# --------------------------------------------------------------------------- #
# several levels per pass == one level at a time
# --------------------------------------------------------------------------- #
METHODS = ["mean", "max", "min", "mode", "nearest"]


def numpy_levels(x, spec, k):
    return R._numpy_levels(x, [spec] * k)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(max_side=13),
       st.sampled_from(METHODS), st.integers(1, 2))
def test_one_pass_is_one_level_at_a_time(case, method, threads):
    x, factors, edge = case
    spec, k, got = levels_of(x, factors, method, edge, threads)
    want = numpy_levels(x, spec, k)
    one = []
    a = x
    for _ in range(k):
        (a,) = R.reduce_levels(a, [spec])
        one.append(a)
    for g, w, o in zip(got, want, one):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes() == o.tobytes()


FLOATS = {"float32": np.float32, "float64": np.float64}


@pytest.mark.parametrize("dtype", list(FLOATS))
@pytest.mark.parametrize("method", ["mean", "max", "min"])
def test_floats_keep_the_bits_of_the_pooling_functions(dtype, method):
    # NaN, -0.0 and sums in scan order: the bits of avg_pool / max_pool / min_pool level by level
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 21, 19, 2)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.2] = -0.0
    for factors, axes in [((2, 2), (1, 2)), ((2, 3, 2), (0, 1, 2)), ((2, 2, 1, 2), None), ((3,), (2,))]:
        spec = normalize(x.shape, x.dtype, factors, method, axes, "partial")
        got = R.reduce_levels(x, [spec] * 3)
        want = numpy_levels(x, spec, 3)
        for g, w in zip(got, want):
            assert g.tobytes() == w.tobytes(), (factors, axes)


@pytest.mark.parametrize("method", METHODS)
def test_layouts_threads_and_large_inputs(method):
    # Past the parallel threshold on 1 and 2 threads; Fortran order (pooled through the transpose),
    # an unpooled axis between pooled ones, a channel axis last, read-only input, bool.
    rng = np.random.default_rng(11)
    base = rng.integers(0, 5, (37, 3, 301, 2)).astype(np.uint16)
    variants = {
        "C": (base, (2, 1, 2, 1)),
        "F": (np.asfortranarray(base), (2, 1, 3, 1)),
        "readonly": (base, (2, 1, 2, 1)),
        "between": (base, (2, 1, 2, 2)),
        "bool": (base > 2, (2, 1, 2, 1)),
        "int8-3d": (base.astype(np.int8) - 2, (2, 3, 2, 1)),
    }
    for name, (x, factors) in variants.items():
        if name == "readonly":
            x = x.view()
            x.setflags(write=False)
        spec = Spec(factors, method, "partial")
        want = numpy_levels(x, spec, 3)
        for threads in (1, 2):
            got = R.reduce_levels(x, [spec] * 3, threads=threads)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape
                assert np.ascontiguousarray(g).tobytes() == np.ascontiguousarray(w).tobytes(), (name, threads)


def test_levels_of_different_factors_and_methods_in_one_call():
    x = np.random.default_rng(2).integers(0, 9, (30, 41)).astype(np.int32)
    steps = [Spec((2, 2), "mean", "partial"), Spec((1, 3), "mean", "partial"), Spec((2, 2), "mode", "trim"),
             Spec((3, 1), "max", "partial")]
    got = R.reduce_levels(x, steps)
    a = x
    for g, s in zip(got, steps):
        (a,) = R._numpy_levels(a, [s])
        assert g.tobytes() == a.tobytes() and g.shape == a.shape


def test_the_numpy_path_in_slabs(monkeypatch):
    # While a kernel compiles, the NumPy path serves, in slabs of SLAB_BYTES: same bits.
    monkeypatch.setattr(R, "SLAB_BYTES", 1000)
    x = np.random.default_rng(4).integers(0, 255, (3, 50, 33)).astype(np.uint8)
    for method in ("mean", "mode", "max"):
        spec = Spec((1, 2, 3), method, "partial")
        monkeypatch.setattr(R, "SLAB_BYTES", 4 * 2**20)
        whole = R._numpy_levels(x, [spec] * 3)
        monkeypatch.setattr(R, "SLAB_BYTES", 1000)
        for g, w in zip(R._numpy_levels(x, [spec] * 3), whole):
            assert g.tobytes() == w.tobytes()
        for g, w in zip(R.reduce_levels(x, [spec] * 3), whole):
            assert g.tobytes() == w.tobytes()


# --------------------------------------------------------------------------- #
# memory (item 5): outputs + a bounded scratch
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype,method,shape", [("uint16", "mean", (1024, 1536)), ("uint8", "mode", (96, 96, 96)),
                                                ("float32", "mean", (1024, 1024)), ("uint64", "mean", (512, 512))])
def test_an_in_memory_pyramid_allocates_its_outputs_and_little_else(dtype, method, shape):
    x = np.random.default_rng(0).integers(0, 200, shape).astype(dtype)
    poolkit.pyramid(x, method=method)          # kernels and their threaded drivers compiled or loaded
    tracemalloc.start()
    try:
        out = poolkit.pyramid(x, method=method)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = sum(a.nbytes for a in out[1:])
    # NumPy's allocations are traced (Numba's kernel scratch is a few rows, not traced)
    assert peak <= outputs + 2**20, (peak, outputs)


def test_served_by_numpy_while_its_kernel_compiles(monkeypatch):
    # A kernel not compiled yet (NotCompiled, the "auto" backend in the background mode): the
    # NumPy path serves the call, counted in the backend's fallbacks, with the same bits.
    from poolkit.backends import get_backend
    from poolkit.backends.numba import jit as _jit
    from poolkit.backends.numba.pyramid import KERNELS, MODE

    x = np.random.default_rng(1).integers(-3, 4, (40, 37)).astype(np.int16)
    spec = Spec((2, 2), "mode", "partial")
    compiled = R.reduce_levels(x, [spec] * 3)

    def not_compiled(*args):
        raise _jit.NotCompiled(KERNELS[MODE].body, ())

    monkeypatch.setattr(R, "_canonical_levels", not_compiled)
    auto = get_backend("auto")
    before = auto.fallbacks
    served = R.reduce_levels(x, [spec] * 3)
    assert auto.fallbacks == before + 1
    assert [a.tobytes() for a in served] == [a.tobytes() for a in compiled]
