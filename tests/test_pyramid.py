"""poolkit.pyramid: every method against a slow per-window reference; Dask equal to NumPy bit for bit."""
from collections import Counter
import importlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolkit
from poolkit.multiscale.levels import level_shapes

da = pytest.importorskip("dask.array")   # in the test extra; importorskip keeps the message clear


# --------------------------------------------------------------------------- #
# the reference: one window at a time, in Python numbers
# --------------------------------------------------------------------------- #
def ref_window(values: np.ndarray, method: str, dtype: np.dtype):
    flat = values.ravel()
    if method == "nearest":
        return flat[0]                                    # ravel is row-major: the window's first element
    if method == "max":
        return np.nan if np.isnan(flat.astype(float)).any() else flat.max()
    if method == "min":
        return np.nan if np.isnan(flat.astype(float)).any() else flat.min()
    if method == "mode":
        counts = Counter(int(v) for v in flat)
        top = max(counts.values())
        return min(v for v, c in counts.items() if c == top)
    if dtype.kind in "iub":
        # Python's round() of a Fraction: nearest, ties to even.
        return round(Fraction(sum(int(v) for v in flat), flat.size))
    return np.mean(flat.astype(np.float64))


def ref_level(a: np.ndarray, factors, method: str, edge: str) -> np.ndarray:
    if edge == "trim":
        a = a[tuple(slice(0, n // f * f) for n, f in zip(a.shape, factors))]
    out_shape = tuple(-(-n // f) for n, f in zip(a.shape, factors))
    out = np.empty(out_shape, dtype=a.dtype)
    for idx in np.ndindex(*out_shape):
        window = a[tuple(slice(i * f, (i + 1) * f) for i, f in zip(idx, factors))]
        out[idx] = ref_window(window, method, a.dtype)
    return out


def ref_pyramid(x, levels, factors, method, edge="partial"):
    out = [x]
    for _ in range(levels):
        out.append(ref_level(out[-1], factors, method, edge))
    return out


def assert_levels_equal(got, want, exact=True):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype, k
        assert g.shape == w.shape, k
        if exact:
            np.testing.assert_array_equal(g, w, err_msg=f"level {k}")
        else:
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=0, err_msg=f"level {k}")


rng = np.random.default_rng(12)
IMAGES = {
    "float32-2d": rng.standard_normal((13, 11)).astype(np.float32),
    "uint8-3d": rng.integers(0, 256, (5, 7, 9)).astype(np.uint8),
    "int16-2d": rng.integers(-300, 300, (9, 15)).astype(np.int16),
    "labels-2d": rng.integers(0, 4, (11, 13)).astype(np.int32),
}
CASES = [(name, m) for name in IMAGES for m in poolkit.multiscale.levels.METHODS
         if not (m == "mode" and name.startswith("float"))]


@pytest.mark.parametrize("edge", ["partial", "trim"])
@pytest.mark.parametrize("name,method", CASES)
def test_numpy_matches_reference(name, method, edge):
    x = IMAGES[name]
    got = poolkit.pyramid(x, method=method, edge=edge)
    want_shapes = level_shapes(x.shape, edge=edge)
    assert [g.shape for g in got] == want_shapes
    want = ref_pyramid(x, len(want_shapes) - 1, (2,) * x.ndim, method, edge)
    assert_levels_equal(got, want, exact=not (method == "mean" and x.dtype.kind == "f"))
    assert got[0] is x


def test_partial_windows_use_only_valid_elements():
    # No padding bias: the last column's windows hold 2 elements, the corner 1.
    x = np.array([[1., 2., 10.], [3., 4., 20.], [5., 6., 40.]], dtype=np.float32)
    np.testing.assert_array_equal(poolkit.pyramid(x, 1)[1], [[2.5, 15.], [5.5, 40.]])
    np.testing.assert_array_equal(poolkit.pyramid(x, 1, method="min")[1], [[1., 10.], [5., 40.]])
    np.testing.assert_array_equal(poolkit.pyramid(x, 1, edge="trim")[1], [[2.5]])


def test_integer_mean_rounds_half_to_even():
    x = np.array([[1, 2, 2, 3, 0, 0, 5, 6, 7, 8]], dtype=np.uint8)
    # windows (1,2) -> 1.5 -> 2; (2,3) -> 2.5 -> 2; (0,0) -> 0; (5,6) -> 5.5 -> 6; (7,8) -> 7.5 -> 8
    np.testing.assert_array_equal(poolkit.pyramid(x, 1, axes=1)[1], [[2, 2, 0, 6, 8]])
    neg = np.array([-3, -2, -1, -2], dtype=np.int8)      # -2.5 -> -2, -1.5 -> -2
    np.testing.assert_array_equal(poolkit.pyramid(neg, 1)[1], [-2, -2])


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_integer_means_are_exact(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.max, info.max - 1, info.max, info.max, info.min, info.min + 1, 7, 8, 9], dtype=dtype)
    got = poolkit.pyramid(x, 2)
    want = ref_pyramid(x, 2, (2,), "mean")
    assert_levels_equal(got, want)


def test_mode_ties_go_to_the_smallest_and_padding_never_counts():
    labels = np.array([[7, 3, 5, 5, 9],
                       [3, 7, 5, 1, 9]], dtype=np.uint16)
    # windows: {7,3,3,7} tie -> 3; {5,5,5,1} -> 5; partial {9,9} -> 9 (the pad value 65535 never wins)
    np.testing.assert_array_equal(poolkit.pyramid(labels, 1, method="mode")[1], [[3, 5, 9]])
    top = np.full((3, 3), np.iinfo(np.uint8).max, dtype=np.uint8)
    top[2, 2] = 4
    np.testing.assert_array_equal(poolkit.pyramid(top, 1, method="mode")[1], [[255, 255], [255, 4]])


def test_bool_images():
    x = rng.integers(0, 2, (7, 5)).astype(bool)
    for method in ("max", "min", "mode", "nearest"):
        got = poolkit.pyramid(x, 2, method=method)
        assert all(g.dtype == np.bool_ for g in got)
        assert_levels_equal(got, [x] + [w.astype(bool) for w in
                                       ref_pyramid(x.astype(np.uint8), 2, (2, 2), method)[1:]])


def test_per_axis_factor_and_axes_leave_channels_alone():
    x = rng.integers(0, 1000, (3, 10, 9)).astype(np.uint16)       # (C, Y, X)
    got = poolkit.pyramid(x, 2, factor=(2, 3), axes=(1, 2))
    assert [g.shape for g in got] == [(3, 10, 9), (3, 5, 3), (3, 3, 1)]
    assert_levels_equal(got, ref_pyramid(x, 2, (1, 2, 3), "mean"))
    # negative axes, and a factor of 1 leaves an axis alone
    assert_levels_equal(poolkit.pyramid(x, 2, factor=(1, 2, 3), axes=(0, -2, -1)), got)


def test_float_nan_propagates():
    x = np.ones((4, 4), np.float32)
    x[0, 0] = np.nan
    for method in ("mean", "max", "min"):
        y = poolkit.pyramid(x, 1, method=method)[1]
        assert np.isnan(y[0, 0]) and not np.isnan(y[1:, 1:]).any(), method


def test_levels_none_rule_and_explicit_levels():
    x = np.zeros((5, 17), np.float32)
    assert [g.shape for g in poolkit.pyramid(x)] == [(5, 17), (3, 9), (2, 5), (1, 3), (1, 2), (1, 1)]
    assert [g.shape for g in poolkit.pyramid(x, edge="trim")] == [(5, 17), (2, 8), (1, 4)]
    assert len(poolkit.pyramid(x, 0)) == 1
    # Explicit levels may go on at length 1 (the partial window is the whole axis).
    assert poolkit.pyramid(x, 7)[-1].shape == (1, 1)
    d = da.from_array(x, chunks=(5, 4))
    assert [g.shape for g in poolkit.pyramid(d)] == [(5, 17), (3, 9), (2, 5), (1, 3)]   # 3 <= chunk 4
    assert level_shapes((5, 17), chunks=(5, 4)) == [(5, 17), (3, 9), (2, 5), (1, 3)]


# --------------------------------------------------------------------------- #
# Dask
# --------------------------------------------------------------------------- #
@st.composite
def dask_cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 19), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    method = draw(st.sampled_from(poolkit.multiscale.levels.METHODS))
    dtype = draw(st.sampled_from(["float32", "uint8", "int16"] if method != "mode" else ["uint8", "int16"]))
    factor = draw(st.integers(2, 3))
    edge = draw(st.sampled_from(["partial", "trim"]))
    budget = draw(st.sampled_from([1, 64, 2**20]))          # 1: one level per stage; 2**20: all in one
    seed = draw(st.integers(0, 2**16))
    return shape, chunks, method, dtype, factor, edge, budget, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dask_cases())
def test_dask_equals_numpy_bit_for_bit(case):
    shape, chunks, method, dtype, factor, edge, budget, seed = case
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 50).astype(dtype) if dtype == "float32" else \
        r.integers(-5 if dtype == "int16" else 0, 6, shape).astype(dtype)
    want = poolkit.pyramid(x, factor=factor, method=method, edge=edge)
    levels = len(want) - 1
    got = poolkit.pyramid(da.from_array(x, chunks=chunks), levels, factor=factor, method=method, edge=edge,
                          max_block_bytes=budget)
    assert all(isinstance(g, da.Array) for g in got)
    computed = da.compute(*got)
    assert_levels_equal(computed, want)
    for g, c in zip(got, computed):          # the declared chunks are what the tasks return
        assert g.shape == c.shape


def test_dask_irregular_chunks_and_channels():
    x = rng.integers(0, 9, (2, 23, 18)).astype(np.int32)
    d = da.from_array(x, chunks=((1, 1), (5, 11, 7), (3, 15)))
    for method in ("mean", "mode"):
        assert_levels_equal(da.compute(*poolkit.pyramid(d, 3, method=method, axes=(1, 2), max_block_bytes=200)),
                            poolkit.pyramid(x, 3, method=method, axes=(1, 2)))


def test_big_endian_input():
    x = rng.integers(0, 3000, (9, 10)).astype(">u2")
    want = poolkit.pyramid(x.astype(np.uint16), 2)
    assert_levels_equal(poolkit.pyramid(x, 2)[1:], want[1:])
    assert_levels_equal(da.compute(*poolkit.pyramid(da.from_array(x, chunks=4), 2))[1:], want[1:])


def _task_count(arrays) -> int:
    import dask

    return len(dict(dask.base.collections_to_expr(arrays, optimize_graph=False).__dask_graph__()))


def test_task_count_is_of_the_order_of_the_chunk_count():
    # The figures of pyramid's docstring. 16384**2 uint16 in 1024**2 chunks (N = 256): two stages of
    # two levels (4096**2 blocks, 32 MiB): 16 merges + 16 tasks + 32 lookups, then 1 + 1 + 2.
    x = da.zeros((16384, 16384), dtype=np.uint16, chunks=1024)
    n_input = _task_count([x])
    levels = poolkit.pyramid(x)
    assert len(levels) == 5
    assert _task_count(levels) - n_input == 68
    # One level per stage (the smallest budget) stays linear in the chunk count: 255 for N = 256.
    small = da.zeros((256, 256), dtype=np.float32, chunks=16)
    one_per_stage = poolkit.pyramid(small, max_block_bytes=1)
    assert len(one_per_stage) == 5
    assert _task_count(one_per_stage) - _task_count([small]) == 255
    # dask.array.coarsen level by level, for comparison: one task per chunk per level.
    by_level = [small]
    for _ in range(4):
        by_level.append(da.coarsen(np.mean, by_level[-1], {0: 2, 1: 2}))
    assert _task_count(by_level) - _task_count([small]) == 4 * small.npartitions


# --------------------------------------------------------------------------- #
# argument errors: one test per path
# --------------------------------------------------------------------------- #
X = np.zeros((4, 6), np.float32)
ERRORS = [
    (dict(x=np.zeros(())), ValueError, r"`x` must have at least one axis"),
    (dict(x=np.zeros((0, 3))), ValueError, r"`x` must not be empty, but got shape=\(0, 3\)"),
    (dict(x=np.zeros(4, complex)), TypeError, r"`x` must hold booleans, integers or floats, but got dtype=complex128"),
    (dict(x=X, method="median"), ValueError, r"`method` must be one of .*method='median'"),
    (dict(x=X, method="mode"), TypeError, r"`method='mode'` .* dtype=float32"),
    (dict(x=X, edge="pad"), ValueError, r"`edge` must be one of .*edge='pad'"),
    (dict(x=X, levels=-1), ValueError, r"`levels` must be None or an int >= 0, but got levels=-1"),
    (dict(x=X, levels=1.5), ValueError, r"levels=1.5"),
    (dict(x=X, levels=3, edge="trim"), ValueError, r"`levels`=3 with edge='trim' would leave axis 0 .*at most 2"),
    (dict(x=X, factor=0), ValueError, r"`factor` must be >= 1 .*factor=0"),
    (dict(x=X, factor=1), ValueError, r"> 1 on at least one, but got factor=1"),
    (dict(x=X, factor=(2, 2, 2)), ValueError, r"one entry per pooled axis \(2: axes=\(0, 1\)\), but got factor=\(2, 2, 2\)"),
    (dict(x=X, factor=(2**15, 2**15)), ValueError, r"windows of 1073741824 elements; at most 2\*\*29"),
    (dict(x=X, factor=2.0), TypeError, r"`factor` must be an int or a tuple of ints, but got factor=2.0"),
    (dict(x=X, axes=2), ValueError, r"`axes` must lie in \[-2, 2\) .*axes=2"),
    (dict(x=X, axes=(0, -2)), ValueError, r"must not repeat an axis, but got axes=\(0, -2\)"),
    (dict(x=X, axes="yx"), TypeError, r"`axes` must be an int or a non-empty tuple of ints, but got axes='yx'"),
    (dict(x=np.zeros((2,) * 4)), ValueError, r"at most 3 axes can be pooled .*axes=\(1, 2, 3\)"),
    (dict(x=X, max_block_bytes=0), ValueError, r"`max_block_bytes` must be an int >= 1, but got max_block_bytes=0"),
]


@pytest.mark.parametrize("kwargs,exc,match", ERRORS, ids=[m[:30] for _, _, m in ERRORS])
def test_errors(kwargs, exc, match):
    kwargs = dict(kwargs)
    x = kwargs.pop("x")
    with pytest.raises(exc, match=match):
        poolkit.pyramid(x, **kwargs)


def test_dask_unknown_chunks_error():
    d = da.from_array(np.arange(10.0), chunks=5)
    d = d[d > 3]
    with pytest.raises(ValueError, match="unknown chunk sizes; call x.compute_chunk_sizes"):
        poolkit.pyramid(d)


def test_pyramid_is_public_and_lazy():
    assert "pyramid" in poolkit.__all__ and "write_pyramid" in poolkit.__all__
    assert callable(poolkit.pyramid) and callable(poolkit.write_pyramid)
    # Importing the module of the same concern does not shadow the function.
    importlib.import_module("poolkit.multiscale.levels")
    assert callable(poolkit.pyramid)



@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**20), st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40))
def test_float_rounding_path_is_exact(n, values):
    # The float64 path of the integer mean against Python's exact round-half-even, sums of 32-bit values.
    from poolkit.multiscale.reduce import round_half_even as _round_half_even

    s = np.array([v * n // 3 + k for k, v in enumerate(values)] + [v * n + n // 2 for v in values[:5]],
                 dtype=np.int64)
    bits = 32 + n.bit_length()
    got = _round_half_even(s, np.full(s.shape, n, np.int64), bits)
    assert got.tolist() == [round(Fraction(int(v), n)) for v in s]


# --------------------------------------------------------------------------- #
# per-level factors: schedules, the isotropic rule, per-axis stops
# --------------------------------------------------------------------------- #
def test_factor_schedule_matches_reference_and_dask():
    x = rng.integers(0, 500, (9, 20, 22)).astype(np.uint16)
    sched = [(1, 2, 2), (1, 2, 2), (3, 2, 2)]
    got = poolkit.pyramid(x, factors=sched)
    assert [g.shape for g in got] == [(9, 20, 22), (9, 10, 11), (9, 5, 6), (3, 3, 3)]
    want = [x]
    for f in sched:
        want.append(ref_level(want[-1], f, "mean", "partial"))
    assert_levels_equal(got, want)
    for budget in (1, 2**20):
        lazy = poolkit.pyramid(da.from_array(x, chunks=(4, 7, 5)), factors=sched, max_block_bytes=budget)
        assert_levels_equal(da.compute(*lazy), want)
    # An int entry is that factor on every pooled axis; axes= narrows what an entry names.
    assert_levels_equal(poolkit.pyramid(x, factors=[2, (2, 1)], axes=(1, 2)),
                        [x, ref_level(x, (1, 2, 2), "mean", "partial"),
                         ref_level(ref_level(x, (1, 2, 2), "mean", "partial"), (1, 2, 1), "mean", "partial")])


def test_auto_factors_wait_for_isotropy():
    x = np.zeros((16, 256, 256), np.uint8)
    got = poolkit.pyramid(x, 4, factors="auto", scale=(4.0, 1.0, 1.0))
    # z (4 um) stays until y, x reach 4 um; then all three go together.
    assert [g.shape for g in got] == [(16, 256, 256), (16, 128, 128), (16, 64, 64), (8, 32, 32), (4, 16, 16)]
    # Nearly isotropic (within sqrt 2): pooled together from the start.
    assert poolkit.pyramid(x, 1, factors="auto", scale=(1.3, 1.0, 1.0))[1].shape == (8, 128, 128)


def test_stop_per_axis():
    x = np.zeros((6, 100, 40), np.float32)
    got = poolkit.pyramid(x, stop=(8, 16, 16))
    # z fits 8 at once and is never pooled; x stops at 10 (<= 16) while y goes on to 13.
    assert [g.shape for g in got] == [(6, 100, 40), (6, 50, 20), (6, 25, 10), (6, 13, 10)]
    d = poolkit.pyramid(da.from_array(x, chunks=(3, 32, 16)), stop=(8, 16, 16))
    assert [g.shape for g in d] == [g.shape for g in got]


SCHEDULE_ERRORS = [
    (dict(factors="iso"), TypeError, r"`factors` must be None, 'auto' or a non-empty list .*factors='iso'"),
    (dict(factors=[(2, 2, 2)]), ValueError, r"`factors` entry 0 must be an int >= 1 or 2 of them .*\(2, 2, 2\)"),
    (dict(factors=[2, 1]), ValueError, r"`factors` entry 1 pools no axis"),
    (dict(factors=[2, 2], levels=3), ValueError, r"`levels`=3 disagrees with the 2 levels of `factors`"),
    (dict(factors=[2, 2, 2], edge="trim"), ValueError, r"`factors` level 3 with edge='trim' leaves axis 0 empty"),
    (dict(factors="auto"), ValueError, r"`factors='auto'` chooses factors from the pixel sizes: pass `scale`"),
    (dict(factors="auto", scale=(1.0, -1.0)), ValueError, r"`scale` must be a positive number or one per axis \(2\)"),
    (dict(stop=(4,)), ValueError, r"`stop` must be an int >= 1 or one per axis \(2\), but got stop=\(4,\)"),
    (dict(stop=2, levels=5), ValueError, r"`levels`=5 but no axis is left to pool after 2 levels"),
]


@pytest.mark.parametrize("kwargs,exc,match", SCHEDULE_ERRORS, ids=[m[:30] for _, _, m in SCHEDULE_ERRORS])
def test_schedule_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        poolkit.pyramid(X, **kwargs)
