"""Mode pooling kernels (backends/mode.py): three backends against a brute-force oracle, bit for bit.

The oracle lays the windows itself from kernel, stride, padding, dilation and ceil_mode (PyTorch's
rules, not the plan's tables) and takes ``np.unique`` of each window's elements: the most frequent
value, ties to the smallest, a window with no element the dtype's minimum.
"""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolkit.backends import implementation
from poolkit.backends import mode as M
from poolkit.core.geometry import output_size, regular_axis
from poolkit.core.plan import make_plan
from poolkit.core.reductions import MODE

DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
BACKENDS = ["reference", "img2col", "numba", "auto"]


def _mode_forward(x5, plan, skip, backend):
    """What the engine runs for mode pooling on ``backend`` (served as the shared kernels are)."""
    return implementation(backend, MODE).mode_forward(x5, plan, skip)


def oracle(x, windows, skip):
    """``x`` (B, *S, C); ``windows`` one (kernel, stride, pad, dilation, ceil) per spatial axis."""
    sizes = x.shape[1:-1]
    outs = [output_size(n, k, s, d, p, p, c) for n, (k, s, p, d, c) in zip(sizes, windows)]
    out = np.empty((x.shape[0], *outs, x.shape[-1]), dtype=x.dtype)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[-1])):
        for o in itertools.product(*map(range, outs)):
            per_axis = [[oi * s - p + j * d for j in range(k) if 0 <= oi * s - p + j * d < n]
                        for oi, n, (k, s, p, d, _) in zip(o, sizes, windows)]
            vals = [x[(b, *pos, c)] for pos in itertools.product(*per_axis)
                    if skip is None or not skip[(b, *pos, c)]]
            if not vals:
                out[(b, *o, c)] = np.iinfo(x.dtype).min if x.dtype != np.bool_ else False
                continue
            u, n = np.unique(np.array(vals, dtype=x.dtype), return_counts=True)
            out[(b, *o, c)] = u[np.argmax(n)]
    return out


def canonical(x, windows):
    """The plan and the (B, D, H, W, C) view of ``x`` (B, *S, C)."""
    axes = tuple(regular_axis(n, k, s, d, p, p, c) for n, (k, s, p, d, c) in zip(x.shape[1:-1], windows))
    plan = make_plan(MODE, axes, x.shape[0], x.shape[-1])
    return plan, x.reshape(plan.in_shape)


def values(draw, dtype, shape):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return np.array(draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                        dtype=bool).reshape(shape)
    info = np.iinfo(dt)
    # few distinct labels (ties are common), the extremes among them, negatives for signed types
    pool = sorted({int(info.min), int(info.max), 0, 1, 2, int(info.min) + 1 if dt.kind == "i" else 3,
                   -1 if dt.kind == "i" else 4})
    idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array([pool[i] for i in idx], dtype=dt).reshape(shape)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(1, 3))
    windows, sizes = [], []
    for _ in range(rank):
        k = draw(st.integers(1, 3))
        d = draw(st.integers(1, 2))
        p = draw(st.integers(0, k // 2))
        s = draw(st.integers(1, 3))
        n = draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 7))
        windows.append((k, s, p, d, draw(st.booleans())))
        sizes.append(n)
    B, C = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    x = values(draw, dtype, (B, *sizes, C))
    skip = None
    if draw(st.booleans()):
        skip = np.array(draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size)), dtype=bool).reshape(x.shape)
    return x, windows, skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_every_backend_is_the_oracle(case):
    x, windows, skip = case
    want = oracle(x, windows, skip)
    plan, x5 = canonical(x, windows)
    s5 = None if skip is None else skip.reshape(plan.in_shape)
    for backend in BACKENDS:
        got = _mode_forward(x5, plan, s5, backend)
        assert got.dtype == x.dtype and got.shape == plan.out_shape, backend
        assert got.tobytes() == want.reshape(plan.out_shape).tobytes(), backend


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_go_to_the_smallest_and_empty_windows_to_the_minimum(dtype):
    dt = np.dtype(dtype)
    lo = False if dt == np.bool_ else np.iinfo(dt).min
    a, b = (False, True) if dt == np.bool_ else ((-5, 7) if dt.kind == "i" else (3, 9))
    # windows of 2 along W, padding 1 on each side: [pad, b], [a, b], [a, b] ... and a fully masked one
    x = np.array([b, a, b, a, b, b], dtype=dt).reshape(1, 6, 1)
    skip = np.zeros_like(x, dtype=bool)
    skip[0, 4:, 0] = True
    plan, x5 = canonical(x, [(2, 2, 1, 1, False)])            # windows [-1, 0], [1, 2], [3, 4], [5, 6]
    for backend in BACKENDS:
        got = _mode_forward(x5, plan, None, backend).ravel()
        assert got.tolist() == np.array([b, min(a, b), min(a, b), b], dtype=dt).tolist(), backend
        masked = _mode_forward(x5, plan, skip.reshape(plan.in_shape), backend).ravel()
        # [b], [a, b] -> smaller, [a, (masked)] -> a, [(masked)] -> empty
        assert masked.tolist() == np.array([b, min(a, b), a, lo], dtype=dt).tolist(), backend


def test_a_window_wholly_in_padding_is_the_minimum():
    # kernel 1, stride 1, padding 1: windows at -1, 0, 1, 2, 3; the first and last hold no element
    x5 = np.array([4, 6, 6], dtype=np.int16).reshape(1, 1, 1, 3, 1)
    plan = make_plan(MODE, (regular_axis(3, 1, 1, 1, 1, 1, False),), 1, 1)
    for backend in BACKENDS:
        got = _mode_forward(x5, plan, None, backend).ravel()
        assert got.tolist() == [np.iinfo(np.int16).min, 4, 6, 6, np.iinfo(np.int16).min], backend


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "complex64"])
def test_floats_raise_a_type_error_naming_the_dtype(dtype):
    x = np.zeros((1, 1, 1, 4, 1), dtype=dtype)
    plan = make_plan(MODE, (regular_axis(4, 2, 2, 1, 0, 0, False),), 1, 1)
    for backend in BACKENDS:
        with pytest.raises(TypeError, match=f"dtype={dtype}"):
            _mode_forward(x, plan, None, backend)


def test_large_windows_sort_and_threads_do_not_change_the_result():
    # Windows past SMALL_MODE elements take the sorting path; an input past the parallel
    # threshold runs on several threads.
    import poolkit
    from poolkit.backends.numba.mode import SMALL_MODE

    rng = np.random.default_rng(3)
    windows = [(5, 3, 2, 1, True), (5, 2, 1, 2, False)]                 # 25 taps
    assert 25 > SMALL_MODE
    small = rng.integers(-3, 4, (1, 9, 11, 1)).astype(np.int32)
    plan, x5 = canonical(small, windows)
    want = oracle(small, windows, None).reshape(plan.out_shape)
    for backend in BACKENDS:
        assert _mode_forward(x5, plan, None, backend).tobytes() == want.tobytes(), backend
    big = rng.integers(-3, 4, (1, 60, 700, 1)).astype(np.int32)
    plan, x5 = canonical(big, windows)
    want = M.img2col.mode_forward(x5, plan)
    for n in (1, 2):
        with poolkit.threads(n):
            assert _mode_forward(x5, plan, None, "numba").tobytes() == want.tobytes()
