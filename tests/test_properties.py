"""Property-based tests (hypothesis): invariants that hold for every configuration and backend.

Strategies draw small shapes and configurations -- rank, batched or not,
kernel, stride, padding, dilation, ceil_mode, layout, dtype, backend -- and
input arrays with ties, signed zeros, infinities and NaN.  Configurations
PyTorch would reject are either assumed away or must raise.  Runs are
derandomized (the same examples every run) and ``deadline=None`` because the
first call of a kernel compiles it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poolkit
from helpers import (KERNEL_BACKENDS, AdaptiveCase, Case, assert_close, assert_identical,
                     naive_adaptive, naive_pool, to_first, to_last, torch_out_size)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

backends = st.sampled_from(KERNEL_BACKENDS)
ranks = st.sampled_from((1, 2, 3))


@st.composite
def pool_cases(draw, op=None, valid=True, dilation=True):
    """A strided :class:`helpers.Case` (input values drawn separately)."""
    op = op or draw(st.sampled_from(("max", "avg")))
    rank = draw(ranks)
    spatial = tuple(draw(st.integers(1, 6 if rank < 3 else 4)) for _ in range(rank))
    lead = draw(st.sampled_from([(1,), (3,), (1, 2), (2, 3)]))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    s = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    d = tuple(draw(st.integers(1, 3)) for _ in range(rank)) if (dilation and op == "max") else 1
    case = Case(op, rank, lead + spatial, k, s, p, d,
                ceil_mode=draw(st.booleans()),
                count_include_pad=draw(st.booleans()),
                dtype=draw(st.sampled_from((np.float32, np.float64))),
                channels_last=draw(st.booleans()),
                backend=draw(backends))
    if valid:
        assume(case.torch_valid())
    return case


def values(dtype, nan=True, inf=True):
    """Array elements: a few repeated values (ties, -0.0 vs 0.0) or any float, plus NaN/inf."""
    special = [-2.0, -1.0, -0.0, 0.0, 1.0, 2.0]
    if inf:
        special += [np.inf, -np.inf]
    if nan:
        special += [np.nan]
    return st.one_of(st.sampled_from(special), st.floats(-1e3, 1e3, width=32))


def inputs(draw, case, **kw):
    x_first = draw(hnp.arrays(case.dtype, case.shape, elements=values(case.dtype, **kw)))
    return (to_last(x_first, case.rank) if case.channels_last else x_first), x_first


def run(case, x, **extra):
    return case.pk_fn()(x, **case.pk_kwargs(), **extra)


# --------------------------------------------------------------------------- #
# shapes
# --------------------------------------------------------------------------- #
@SETTINGS
@given(case=pool_cases(valid=False))
def test_output_shape_is_torch_formula_or_raises(case):
    """Output size = PyTorch's formula = poolkit.output_shape; where that is < 1 or invalid, ValueError."""
    x = np.zeros(case.shape, case.dtype)
    if case.channels_last:
        x = to_last(x, case.rank)
    if not case.torch_valid():
        with pytest.raises(ValueError):
            run(case, x)
        return
    expected = case.out_spatial()
    assert poolkit.output_shape(case.spatial, case.k, case.s, case.p, case.d if case.op == "max" else 1,
                                case.ceil_mode) == expected
    y = case.to_first(run(case, x))
    assert y.shape == case.shape[:-case.rank] + expected
    # ceil_mode never loses a window and adds at most one; the last window starts inside input + left pad
    for n_, k_, s_, p_, d_, o_ in zip(case.spatial, case.k, case.s, case.p, case.d, expected):
        floor = torch_out_size(n_, k_, s_, p_, d_, False)
        assert o_ - floor in ((0, 1) if case.ceil_mode else (0,))
        assert (o_ - 1) * s_ < n_ + p_


# --------------------------------------------------------------------------- #
# max pooling
# --------------------------------------------------------------------------- #
@SETTINGS
@given(data=st.data(), case=pool_cases(op="max"))
def test_max_is_window_max_by_brute_force(data, case):
    """Each output is the PyTorch-rule maximum of its window (first max on ties, last NaN)."""
    x, x_first = inputs(data.draw, case)
    y, idx = run(case, x, return_indices=True)
    y_n, i_n = naive_pool(x_first, case)
    assert_identical(case.to_first(y), y_n, str(case))
    assert np.array_equal(case.to_first(idx), i_n)
    # the index points at the value it reports
    planes = x_first.reshape((-1, int(np.prod(case.spatial))))
    yi, ii = y_n.reshape(planes.shape[0], -1), i_n.reshape(planes.shape[0], -1)
    got = np.take_along_axis(planes, np.maximum(ii, 0), axis=1)
    assert np.array_equal(got[ii >= 0], yi[ii >= 0], equal_nan=True)


@SETTINGS
@given(data=st.data(), case=pool_cases(op="max"))
def test_max_backward_conserves_gradient(data, case):
    """Every upstream value lands on exactly one input (when no window is empty): the sums agree."""
    x, _ = inputs(data.draw, case)
    layer = case.layer_cls()(**case.layer_kwargs(), return_indices=True)
    y, idx = layer(x)
    g = data.draw(hnp.arrays(case.dtype, y.shape, elements=st.integers(-8, 8).map(float)))
    gx = layer.backward(g)
    if (idx < 0).any():
        # windows wholly in padding send nothing back
        assert gx.sum(dtype=np.float64) == g[idx >= 0].sum(dtype=np.float64)
    else:
        # small integers: every partial sum is exact, in float32 too
        assert gx.sum(dtype=np.float64) == g.sum(dtype=np.float64)
    assert np.count_nonzero(gx) <= np.count_nonzero(g)


@SETTINGS
@given(data=st.data(), case=pool_cases(dilation=False))
def test_max_at_least_avg_for_finite_input(data, case):
    """Over the same windows, max >= mean of the elements (count_include_pad=False: no zeros counted)."""
    case.count_include_pad = False
    assume(replace(case, op="avg").torch_valid())       # avg_pool3d's extra size rule
    x, _ = inputs(data.draw, case, nan=False, inf=False)
    kw = dict(kernel_size=case.k, stride=case.s, padding=case.p, ceil_mode=case.ceil_mode,
              data_format=case.pk_kwargs()["data_format"], backend=case.backend)
    y_max = getattr(poolkit, f"max_pool{case.rank}d")(x, **kw)
    y_avg = getattr(poolkit, f"avg_pool{case.rank}d")(x, **kw, count_include_pad=False)
    slack = 1e-5 * np.abs(y_max).astype(np.float64) + 1e-6     # the mean rounds
    assert np.all(y_max.astype(np.float64) >= y_avg.astype(np.float64) - slack)


# --------------------------------------------------------------------------- #
# average pooling
# --------------------------------------------------------------------------- #
@SETTINGS
@given(case=pool_cases(op="avg"), c=st.floats(-100, 100, width=16))
def test_avg_of_constant_is_constant(case, c):
    case.count_include_pad = False
    x = np.full(case.shape, c, dtype=case.dtype)
    if case.channels_last:
        x = to_last(x, case.rank)
    y = run(case, x)
    np.testing.assert_allclose(y, c, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(data=st.data(), case=pool_cases(op="avg"))
def test_avg_matches_brute_force(data, case):
    x, x_first = inputs(data.draw, case, nan=False, inf=False)
    if data.draw(st.booleans(), label="divisor_override") and case.rank > 1:
        case.divisor_override = data.draw(st.integers(-3, 9).filter(bool), label="divisor")
    y = run(case, x)
    assert_close(case.to_first(y), naive_pool(x_first, case)[0], what=str(case), scale=1e3)


@SETTINGS
@given(data=st.data(), case=pool_cases(op="avg"))
def test_avg_backward_is_adjoint_of_forward(data, case):
    """Average pooling is linear: <avg(x), g> == <x, avg_backward(g)> (float64 sums)."""
    x, _ = inputs(data.draw, case, nan=False, inf=False)
    layer = case.layer_cls()(**case.layer_kwargs())
    y = layer(x)
    g = data.draw(hnp.arrays(case.dtype, y.shape, elements=st.floats(-10, 10, width=32)))
    gx = layer.backward(g)
    lhs = np.sum(y.astype(np.float64) * g)
    rhs = np.sum(x.astype(np.float64) * gx)
    scale = np.sum(np.abs(x.astype(np.float64))) * 10 + 1
    assert abs(lhs - rhs) <= (1e-5 if case.dtype == np.float32 else 1e-12) * scale


# --------------------------------------------------------------------------- #
# across backends and layouts
# --------------------------------------------------------------------------- #
@SETTINGS
@given(data=st.data(), case=pool_cases())
def test_gradients_identical_across_backends(data, case):
    x, _ = inputs(data.draw, case)
    results = []
    for b in KERNEL_BACKENDS:
        kw = dict(case.layer_kwargs(), backend=b)
        layer = case.layer_cls()(**kw)
        y = layer(x)
        g = np.linspace(-1, 1, y.size, dtype=case.dtype).reshape(y.shape)
        results.append((y, layer.backward(g)))
    for (y, gx), b in zip(results[1:], KERNEL_BACKENDS[1:]):
        if case.op == "max":
            assert_identical(y, results[0][0], f"{b}: {case}")
            assert_identical(gx, results[0][1], f"{b} gradient: {case}")
        else:
            assert_close(y, results[0][0], what=f"{b}: {case}", scale=1e3)
            assert_close(gx, results[0][1], what=f"{b} gradient: {case}", scale=1e3)


@SETTINGS
@given(data=st.data(), case=pool_cases())
def test_channels_last_is_channels_first_transposed(data, case):
    """The same data in either layout gives the same result (bit for bit: same windows, same order)."""
    case.channels_last = False
    x, x_first = inputs(data.draw, case)
    y_first = run(case, x_first)
    case.channels_last = True
    y_last = run(case, to_last(x_first, case.rank))
    assert_identical(to_first(y_last, case.rank), y_first, str(case))


# --------------------------------------------------------------------------- #
# adaptive
# --------------------------------------------------------------------------- #
@st.composite
def adaptive_cases(draw, op=None):
    op = op or draw(st.sampled_from(("max", "avg")))
    rank = draw(ranks)
    spatial = tuple(draw(st.integers(1, 7 if rank < 3 else 4)) for _ in range(rank))
    out = tuple(draw(st.one_of(st.none(), st.integers(1, n_ + 2))) if rank > 1 else draw(st.integers(1, n_ + 2))
                for n_ in spatial)
    return AdaptiveCase(op, rank, (2, 2) + spatial, out, dtype=draw(st.sampled_from((np.float32, np.float64))),
                        channels_last=draw(st.booleans()), backend=draw(backends))


@SETTINGS
@given(data=st.data(), case=adaptive_cases())
def test_adaptive_is_brute_force(data, case):
    x, x_first = inputs(data.draw, case)
    kw = dict(data_format=case.data_format, backend=case.backend)
    y = case.pk_fn()(x, case.output_size, **kw)
    assert case.to_first(y).shape == case.shape[:2] + case.out_spatial
    y_n, _ = naive_adaptive(x_first, case.op, case.out_spatial)
    if case.op == "max":
        assert_identical(case.to_first(y), y_n)
    else:
        with np.errstate(invalid="ignore"):
            assert_close(case.to_first(y), y_n, case.dtype, scale=1e3)


@SETTINGS
@given(case=adaptive_cases(op="avg"))
def test_adaptive_windows_cover_the_input(case):
    """Every input element lies in some adaptive window: the gradient of ones is positive everywhere."""
    x = np.ones(case.shape, case.dtype)
    if case.channels_last:
        x = to_last(x, case.rank)
    layer = case.layer_cls()(case.output_size, data_format=case.data_format, backend=case.backend)
    y = layer(x)
    np.testing.assert_allclose(y, 1, rtol=1e-6)
    assert np.all(layer.backward(np.ones_like(y)) > 0)
