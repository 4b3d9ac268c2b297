"""Finite-difference gradient checks in float64.

For ``f(x) = sum(g * pool(x))`` with a fixed random ``g``, central differences
``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` must equal ``backward(g)[i]``.
Average pooling is linear, so the difference quotient is exact up to rounding.
Max pooling is piecewise linear: with tie-free inputs whose values are at least
1 apart (a permutation) no winner changes under a 1e-3 nudge, so it is exact too.
Every check runs channels-first and channels-last, through the layers and the
functional backward, on every backend.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import FIRST, KERNEL_BACKENDS, LAST, finite_diff_grad, make_input, to_last

EPS = 1e-3
TOL = dict(rtol=1e-7, atol=1e-7)

# (op, rank, arguments, channels-first shape)
CASES = [
    ("max", 1, dict(kernel_size=3, stride=2, padding=1), (2, 3, 9)),
    ("max", 2, dict(kernel_size=3, stride=1, padding=1), (2, 2, 5, 6)),          # shared winners add up
    ("max", 2, dict(kernel_size=2, stride=2, dilation=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
    ("max", 2, dict(kernel_size=(1, 3), stride=(2, 1)), (3, 5, 7)),               # unbatched
    ("max", 3, dict(kernel_size=(2, 3, 2), stride=(1, 2, 1), padding=(1, 1, 0)), (1, 2, 4, 5, 4)),
    ("avg", 1, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 3, 8)),
    ("avg", 2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 2, 7, 6)),
    ("avg", 2, dict(kernel_size=(2, 3), stride=1, divisor_override=5), (1, 3, 5, 5)),
    ("avg", 2, dict(kernel_size=2, stride=1), (2, 4, 4)),                          # unbatched
    ("avg", 3, dict(kernel_size=2, stride=1, padding=1, count_include_pad=False), (1, 2, 3, 4, 4)),
    ("avg", 3, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (1, 1, 5, 5, 5)),
]


def _id(c):
    op, rank, kw, shape = c
    return f"{op}{rank}d-" + "-".join(f"{k}{v}".replace(" ", "") for k, v in kw.items())


def _objective(fn, g):
    def f(x):
        y = fn(x)
        # a max window wholly in padding gives -inf whatever x is: leave it out
        return float(np.sum(np.where(np.isfinite(y), g * y, 0.0)))
    return f


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_strided_gradient_matches_finite_differences(case, last):
    op, rank, kw, shape = case
    rng = np.random.default_rng([CASES.index(case), last])
    x_first = make_input(rng, shape, np.float64, "distinct" if op == "max" else "normal")
    x = to_last(x_first, rank) if last else x_first
    fmt = LAST[rank] if last else FIRST[rank]
    fwd = getattr(poolkit, f"{op}_pool{rank}d")
    y = fwd(x, **kw, data_format=fmt)
    g = rng.standard_normal(y.shape)
    numeric = finite_diff_grad(_objective(lambda a: fwd(a, **kw, data_format=fmt), g), x, EPS)
    assert np.abs(numeric).sum() > 0
    cls = getattr(poolkit, f"{'Max' if op == 'max' else 'Avg'}Pool{rank}d")
    for backend in KERNEL_BACKENDS:
        layer = cls(**kw, data_format=fmt, backend=backend)
        layer(x)
        np.testing.assert_allclose(layer.backward(g), numeric, **TOL, err_msg=f"{backend} layer")
        if op == "max":
            _, idx = fwd(x, **kw, data_format=fmt, return_indices=True, backend=backend)
            gx = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, data_format=fmt, backend=backend)
        else:
            gx = getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, **kw, data_format=fmt, backend=backend)
        np.testing.assert_allclose(gx, numeric, **TOL, err_msg=f"{backend} functional")


@pytest.mark.parametrize("output_size", [3, (2, None), (5, 4)], ids=["3", "2xNone", "5x4"])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_adaptive_gradient_matches_finite_differences(op, output_size):
    """Adaptive windows overlap and differ in size (4 -> 3, 5 -> 4); 5x4 from 4x5 also repeats elements."""
    rng = np.random.default_rng(21)
    x = make_input(rng, (2, 2, 4, 5), np.float64, "distinct" if op == "max" else "normal")
    fwd = getattr(poolkit, f"adaptive_{op}_pool2d")
    y = fwd(x, output_size)
    g = rng.standard_normal(y.shape)
    numeric = finite_diff_grad(_objective(lambda a: fwd(a, output_size), g), x, EPS)
    cls = getattr(poolkit, f"Adaptive{'Max' if op == 'max' else 'Avg'}Pool2d")
    for backend in KERNEL_BACKENDS:
        layer = cls(output_size, backend=backend)
        layer(x)
        np.testing.assert_allclose(layer.backward(g), numeric, **TOL, err_msg=backend)
        if op == "max":
            _, idx = fwd(x, output_size, True, backend=backend)
            gx = poolkit.max_pool2d_backward(g, idx, x.shape, backend=backend)
        else:
            gx = poolkit.adaptive_avg_pool_backward(g, x.shape, data_format="NCHW", backend=backend)
        np.testing.assert_allclose(gx, numeric, **TOL, err_msg=backend)


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
def test_global_gradient_matches_finite_differences(last):
    rng = np.random.default_rng(22)
    fmt = "channels_last" if last else "channels_first"
    x_first = make_input(rng, (2, 3, 3, 4), np.float64, "distinct")
    x = to_last(x_first, 2) if last else x_first
    g = rng.standard_normal((2, 3))
    numeric_avg = finite_diff_grad(_objective(lambda a: poolkit.global_avg_pool(a, data_format=fmt), g), x, EPS)
    np.testing.assert_allclose(poolkit.global_avg_pool_backward(g, x.shape, data_format=fmt), numeric_avg, **TOL)
    numeric_max = finite_diff_grad(_objective(lambda a: poolkit.global_max_pool(a, data_format=fmt), g), x, EPS)
    gk = g.reshape((2, 1, 1, 3) if last else (2, 3, 1, 1))
    for backend in KERNEL_BACKENDS:
        _, idx = poolkit.global_max_pool(x, data_format=fmt, keepdims=True, return_indices=True, backend=backend)
        gx = poolkit.max_pool_backward(gk, idx, x.shape, data_format=fmt, backend=backend)
        np.testing.assert_allclose(gx, numeric_max, **TOL, err_msg=backend)


def test_unpool_gradient_matches_finite_differences():
    """max_unpool is linear in its values: its backward is the gather at the indices."""
    rng = np.random.default_rng(23)
    x = make_input(rng, (2, 2, 6, 4), np.float64, "distinct")
    y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    g = rng.standard_normal(x.shape)
    numeric = finite_diff_grad(_objective(lambda v: poolkit.max_unpool2d(v, idx, 2), g), y, EPS)
    np.testing.assert_allclose(poolkit.max_unpool_backward(g, idx), numeric, **TOL)
