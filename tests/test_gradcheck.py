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


# --------------------------------------------------------------------------- #
# one table for every op: functions and layers, against finite differences
# --------------------------------------------------------------------------- #
U2 = np.array([[[0.3, 0.8], [0.55, 0.1]]])         # fractional samples: (N=1, C=2, rank) ...
U3 = np.array([[[0.3, 0.8, 0.2], [0.55, 0.1, 0.9]]])


def _layer(cls, *args, **kw):
    """(forward, backward) of a fresh layer: backward runs a training forward first."""
    def fwd(x, backend):
        return cls(*args, **kw, backend=backend)(x)

    def bwd(x, g, backend):
        layer = cls(*args, **kw, backend=backend)
        layer(x)
        return layer.backward(g)
    return fwd, bwd


def _spp(mode, **kw):
    def fwd(x, backend):
        return poolkit.spatial_pyramid_pool2d(x, (1, 2), mode, backend=backend, **kw)

    def bwd(x, g, backend):
        idx = poolkit.spatial_pyramid_pool2d(x, (1, 2), mode, True, backend=backend, **kw)[1] if mode == "max" else None
        return poolkit.spatial_pyramid_pool2d_backward(g, x.shape, (1, 2), mode, indices=idx, backend=backend, **kw)
    return fwd, bwd


def _fractional(rank, u):
    fwd_fn = getattr(poolkit, f"fractional_max_pool{rank}d")
    back_fn = getattr(poolkit, f"fractional_max_pool{rank}d_backward")

    def fwd(x, backend):
        return fwd_fn(x, 2, 3, samples=u, backend=backend)

    def bwd(x, g, backend):
        return back_fn(g, fwd_fn(x, 2, 3, samples=u, return_indices=True, backend=backend)[1], x.shape,
                       backend=backend)
    return fwd, bwd


def _fractional_layer(rank, u):
    """The layer's gradient through the windows of one draw: its samples, passed to every forward."""
    cls = getattr(poolkit, f"FractionalMaxPool{rank}d")

    def fwd(x, backend):
        return cls(2, 3, backend=backend)(x, samples=u)

    def bwd(x, g, backend):
        layer = cls(2, 3, backend=backend)
        layer(x, samples=u)
        return layer.backward(g)
    return fwd, bwd


def _winners(rank, op, **kw):
    fwd_fn = getattr(poolkit, f"{op}_pool{rank}d")

    def fwd(x, backend):
        return fwd_fn(x, 3, 2, 1, backend=backend, **kw)

    def bwd(x, g, backend):
        idx = fwd_fn(x, 3, 2, 1, return_indices=True, backend=backend, **kw)[1]
        return poolkit.min_pool_backward(g, idx, x.shape, data_format=FIRST[rank], backend=backend)
    return fwd, bwd


SHAPES = {1: (2, 3, 9), 2: (1, 2, 6, 5), 3: (1, 2, 4, 5, 4)}
# (public names checked, (forward(x, backend), backward(x, g, backend)), shape, values)
GRADIENTS = [
    (("min_pool", "min_pool_backward"),
     (lambda x, b: poolkit.min_pool(x, 2, 1, axes=(0, 2), backend=b),
      lambda x, g, b: poolkit.min_pool_backward(g, poolkit.min_pool(x, 2, 1, return_indices=True, axes=(0, 2),
                                                                     backend=b)[1], x.shape, axes=(0, 2), backend=b)),
     (4, 3, 5), "distinct"),
    (("sum_pool", "sum_pool_backward"),
     (lambda x, b: poolkit.sum_pool(x, 3, 2, 1, 2, True, backend=b),
      lambda x, g, b: poolkit.sum_pool_backward(g, x.shape, 3, 2, 1, 2, True, backend=b)), (1, 2, 7, 6), "normal"),
    (("lp_pool", "lp_pool_backward"),
     (lambda x, b: poolkit.lp_pool(x, 2, 3, 2, True, padding=1, backend=b),
      lambda x, g, b: poolkit.lp_pool_backward(g, x, 2, 3, 2, True, padding=1, backend=b)), (1, 2, 7, 6), "distinct"),
    (("lp_pool", "lp_pool_backward", "inf"),
     (lambda x, b: poolkit.lp_pool(x + 40, np.inf, 2, 1, backend=b),
      lambda x, g, b: poolkit.lp_pool_backward(g, x + 40, np.inf, 2, 1, backend=b)), (1, 2, 5, 6), "distinct"),
    (("global_lp_pool", "global_lp_pool_backward"),
     (lambda x, b: poolkit.global_lp_pool(x, 3.0, backend=b),
      lambda x, g, b: poolkit.global_lp_pool_backward(g, x, 3.0)), (2, 3, 3, 4), "distinct"),
    (("adaptive_avg_pool1d", "adaptive_avg_pool1d_backward"),
     (lambda x, b: poolkit.adaptive_avg_pool1d(x, 4, backend=b),
      lambda x, g, b: poolkit.adaptive_avg_pool1d_backward(g, x.shape, backend=b)), (3, 7), "normal"),    # unbatched
    (("adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"),
     (lambda x, b: poolkit.adaptive_avg_pool2d(x, (3, 2), backend=b),
      lambda x, g, b: poolkit.adaptive_avg_pool2d_backward(g, x.shape, backend=b)), (2, 5, 4), "normal"),  # unbatched
    (("adaptive_avg_pool3d", "adaptive_avg_pool3d_backward"),
     (lambda x, b: poolkit.adaptive_avg_pool3d(x, 2, data_format="NDHWC", backend=b),
      lambda x, g, b: poolkit.adaptive_avg_pool3d_backward(g, x.shape, data_format="NDHWC", backend=b)),
     (1, 3, 4, 3, 2), "normal"),
    (("adaptive_max_pool3d", "max_pool3d_backward"),
     (lambda x, b: poolkit.adaptive_max_pool3d(x, 2, backend=b),
      lambda x, g, b: poolkit.max_pool3d_backward(g, poolkit.adaptive_max_pool3d(x, 2, True, backend=b)[1], x.shape,
                                                  backend=b)), (2, 3, 4, 3), "distinct"),                    # unbatched
    (("fractional_max_pool2d", "fractional_max_pool2d_backward"), _fractional(2, U2), (1, 2, 6, 5), "distinct"),
    (("fractional_max_pool3d", "fractional_max_pool3d_backward"), _fractional(3, U3), (1, 2, 5, 4, 6), "distinct"),
    (("spatial_pyramid_pool2d", "spatial_pyramid_pool2d_backward", "max"), _spp("max"), (2, 2, 5, 4), "distinct"),
    (("spatial_pyramid_pool2d", "spatial_pyramid_pool2d_backward", "avg"), _spp("avg"), (2, 2, 5, 4), "normal"),
    (("max_unpool1d", "max_unpool_backward"),
     (lambda y, b: poolkit.max_unpool1d(y, np.array([[[1, 2, 5], [0, 3, 4]]]), 2, backend=b),
      lambda y, g, b: poolkit.max_unpool_backward(g, np.array([[[1, 2, 5], [0, 3, 4]]]))), (1, 2, 3), "distinct"),
    (("max_unpool3d", "max_unpool_backward"),
     (lambda y, b: poolkit.max_unpool3d(y, np.array([[[[[7]]], [[[2]]]]]), 2, backend=b),
      lambda y, g, b: poolkit.max_unpool_backward(g, np.array([[[[[7]]], [[[2]]]]]))), (1, 2, 1, 1, 1), "distinct"),
]
for rank in (1, 2, 3):
    GRADIENTS += [
        ((f"min_pool{rank}d",), _winners(rank, "min"), SHAPES[rank], "distinct"),
        ((f"sum_pool{rank}d",), (lambda x, b, r=rank: getattr(poolkit, f"sum_pool{r}d")(x, 2, 1, backend=b),
                                 lambda x, g, b: poolkit.sum_pool_backward(g, x.shape, 2, 1, backend=b)),
         SHAPES[rank], "normal"),
        ((f"lp_pool{rank}d",), (lambda x, b, r=rank: getattr(poolkit, f"lp_pool{r}d")(x, 2, 2, backend=b),
                                lambda x, g, b: poolkit.lp_pool_backward(g, x, 2, 2, backend=b)),
         SHAPES[rank], "distinct"),
        ((f"MaxPool{rank}d",), _layer(getattr(poolkit, f"MaxPool{rank}d"), 3, 2, 1), SHAPES[rank], "distinct"),
        ((f"AvgPool{rank}d",), _layer(getattr(poolkit, f"AvgPool{rank}d"), 3, 2, 1, True, False), SHAPES[rank],
         "normal"),
        ((f"MinPool{rank}d",), _layer(getattr(poolkit, f"MinPool{rank}d"), 2, 1, dilation=2), SHAPES[rank],
         "distinct"),
        ((f"SumPool{rank}d",), _layer(getattr(poolkit, f"SumPool{rank}d"), 3, 1, 1), SHAPES[rank], "normal"),
        ((f"LPPool{rank}d",), _layer(getattr(poolkit, f"LPPool{rank}d"), 2, 2, 1), SHAPES[rank], "distinct"),
        ((f"AdaptiveMaxPool{rank}d",), _layer(getattr(poolkit, f"AdaptiveMaxPool{rank}d"), 3), SHAPES[rank],
         "distinct"),
        ((f"AdaptiveAvgPool{rank}d",), _layer(getattr(poolkit, f"AdaptiveAvgPool{rank}d"), 3), SHAPES[rank],
         "normal"),
    ]
GRADIENTS += [
    (("FractionalMaxPool2d",), _fractional_layer(2, U2), (1, 2, 6, 5), "distinct"),
    (("FractionalMaxPool3d",), _fractional_layer(3, U3), (1, 2, 5, 4, 6), "distinct"),
    (("SpatialPyramidPool2d",), _layer(poolkit.SpatialPyramidPool2d, (1, 2)), (2, 2, 5, 4), "distinct"),
    (("SpatialPyramidPool2d", "avg"), _layer(poolkit.SpatialPyramidPool2d, (1, 2), "avg"), (2, 2, 5, 4), "normal"),
]


@pytest.mark.parametrize("names, fns, shape, values", GRADIENTS, ids=["-".join(g[0]) for g in GRADIENTS])
def test_every_op_gradient_matches_finite_differences(names, fns, shape, values):
    fwd, bwd = fns
    rng = np.random.default_rng(len(names[0]) + len(shape))
    x = make_input(rng, shape, np.float64, values)
    y = fwd(x, "img2col")
    g = rng.standard_normal(y.shape)
    numeric = finite_diff_grad(_objective(lambda a: fwd(a, "img2col"), g), x, EPS)
    assert np.abs(numeric).sum() > 0
    for backend in KERNEL_BACKENDS:
        np.testing.assert_allclose(bwd(x, g, backend), numeric, rtol=1e-6, atol=1e-6, err_msg=backend)


def test_every_op_has_a_gradient_row():
    """Every public backward function and every layer is checked against finite differences (here or above)."""
    checked = {n for names, *_ in GRADIENTS for n in names}
    # above: max/avg strided (functions and the MaxPool/AvgPool layers), adaptive, global, unpool
    checked |= {"max_pool_backward", "avg_pool_backward", "global_avg_pool_backward", "adaptive_avg_pool_backward",
                "max_unpool_backward"} | {f"{op}_pool{r}d_backward" for op in ("max", "avg") for r in (1, 2, 3)}
    wanted = {n for n in poolkit.__all__ if n.endswith("_backward")}
    wanted |= {n for n in poolkit.__all__ if n[0].isupper() and n not in ("PoolingLayer", "PoolingTypes")}
    # mode pooling has no gradient: test_mode_pool.py::test_layers checks that its layers refuse backward
    wanted -= {f"ModePool{r}d" for r in (1, 2, 3)}
    assert not sorted(wanted - checked), sorted(wanted - checked)
