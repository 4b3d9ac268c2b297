"""Pooling over any axes of any array: ``axes=``, and ``data_format`` as a shorthand for it.

The oracle is the same pooling done the long way: move the pooled axes to the
end (in the order given), fold every other axis into one channel axis, call
the channels-first ``max_pool{r}d`` / ``avg_pool{r}d`` and undo the moves.
Indices are flat over the pooled axes in the order given by ``axes``, so they
equal the long way's indices exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import KERNEL_BACKENDS, assert_identical, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RANKS = (1, 2, 3)
FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}

# per pooled axis, in the order of `axes`: kernel, stride, per-side padding
KERNEL = (3, 2, 2)
STRIDE = (2, 1, 2)
PADDING = ((1, 0), (0, 1), (1, 1))


def _args(rank):
    return KERNEL[:rank], STRIDE[:rank], PADDING[:rank]


def long_way(op, x, axes, kernel, stride, padding, backend="reference", grad=None, **kw):
    """Pool ``x`` over ``axes`` by moving them last and calling the channels-first function.

    Returns (y, indices) for max, (y, None) for avg; with ``grad`` (in the result's
    layout) also the input gradient computed the same way.
    """
    rank = len(axes)
    axes = tuple(a % x.ndim for a in axes)
    moved = np.moveaxis(x, axes, tuple(range(-rank, 0)))           # (others..., pooled in `axes` order)
    others = moved.shape[:-rank]
    x4 = moved.reshape((1, -1) + moved.shape[-rank:])              # (1, prod(others), *pooled)
    fn = getattr(poolkit, f"{op}_pool{rank}d")
    if op == "max":
        y4, i4 = fn(x4, kernel, stride, padding, return_indices=True, backend=backend, **kw)
    else:
        y4, i4 = fn(x4, kernel, stride, padding, backend=backend, **kw), None

    def back(a):                                                    # (1, prod(others), *pooled) -> user layout
        return np.moveaxis(a.reshape(others + a.shape[2:]), tuple(range(-rank, 0)), axes)

    y = back(y4)
    idx = None if i4 is None else back(i4)
    if grad is None:
        return y, idx
    g4 = np.moveaxis(grad, axes, tuple(range(-rank, 0))).reshape(y4.shape)
    if op == "max":
        gx4 = getattr(poolkit, f"max_pool{rank}d_backward")(g4, i4, x4.shape, backend=backend)
    else:
        gx4 = getattr(poolkit, f"avg_pool{rank}d_backward")(g4, x4.shape, kernel, stride, padding,
                                                           backend=backend, **kw)
    return y, idx, back(gx4)


def short_way(op, x, axes, kernel, stride, padding, backend, grad=None, fixed_rank=False, **kw):
    """The same with ``axes=``: through ``max_pool``/``avg_pool`` or the fixed-rank function."""
    rank = len(axes) if isinstance(axes, tuple) else 1
    fn = getattr(poolkit, f"{op}_pool{rank}d" if fixed_rank else f"{op}_pool")
    if op == "max":
        y, idx = fn(x, kernel, stride, padding, return_indices=True, axes=axes, backend=backend, **kw)
    else:
        y, idx = fn(x, kernel, stride, padding, axes=axes, backend=backend, **kw), None
    if grad is None:
        return y, idx
    if op == "max":
        gx = poolkit.max_pool_backward(grad, idx, x.shape, axes=axes, backend=backend)
    else:
        gx = poolkit.avg_pool_backward(grad, x.shape, kernel, stride, padding, axes=axes, backend=backend, **kw)
    return y, idx, gx


def _check(op, x, axes, backend, fixed_rank=False, **kw):
    kernel, stride, padding = _args(len(axes))
    y, idx = short_way(op, x, axes, kernel, stride, padding, backend, fixed_rank=fixed_rank, **kw)
    g = np.random.default_rng(9).standard_normal(y.shape)
    ey, eidx, egx = long_way(op, x, axes, kernel, stride, padding, grad=g, **kw)
    _, _, gx = short_way(op, x, axes, kernel, stride, padding, backend, grad=g, fixed_rank=fixed_rank, **kw)
    assert_identical(y, ey, f"{axes}: output")
    if op == "max":
        assert_identical(idx, eidx, f"{axes}: indices")
        assert_identical(gx, egx, f"{axes}: gradient")
    else:
        np.testing.assert_allclose(gx, egx, rtol=1e-13, atol=1e-15, err_msg=f"{axes}: gradient")
    # the layer with the same axes
    kind = "MaxPool" if op == "max" else "AvgPool"
    layer = getattr(poolkit, f"{kind}{len(axes)}d")(kernel, stride, padding, axes=axes, backend=backend, **kw)
    assert_identical(layer(x), y, f"{axes}: layer output")
    lg = layer.backward(g)
    if op == "max":
        assert_identical(lg, gx, f"{axes}: layer gradient")
    else:
        np.testing.assert_allclose(lg, gx, rtol=1e-13, atol=1e-15)
    return y


# --------------------------------------------------------------------------- #
# the shapes of the issue: an image, a clip, a sequence
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_plain_image(op, backend):
    x = make_input(np.random.default_rng(1), (9, 8), np.float64, "ties")
    y = _check(op, x, (0, 1), backend)
    assert y.shape == poolkit.output_shape((9, 8), KERNEL[:2], STRIDE[:2], PADDING[:2])
    # and the same with the fixed-rank function
    _check(op, x, (0, 1), backend, fixed_rank=True)
    # an image is an unbatched single-channel (1, H, W) array for max_pool2d
    kernel, stride, padding = _args(2)
    fn = getattr(poolkit, f"{op}_pool2d")
    assert_identical(fn(x[None], kernel, stride, padding, backend=backend)[0], y)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_clip_thwc(op, backend):
    x = make_input(np.random.default_rng(2), (5, 6, 7, 3), np.float64, "ties")      # (T, H, W, C)
    y3 = _check(op, x, (0, 1, 2), backend)                                            # over T, H, W
    assert y3.shape[-1] == 3
    y2 = _check(op, x, (1, 2), backend)                                               # frame by frame
    assert y2.shape[0] == 5
    # frame by frame is NHWC with T as the batch
    kernel, stride, padding = _args(2)
    fn = getattr(poolkit, f"{op}_pool2d")
    assert_identical(fn(x, kernel, stride, padding, data_format="NHWC", backend=backend), y2)
    # T, H, W at once is an unbatched channels-last 3-D call
    kernel, stride, padding = _args(3)
    fn = getattr(poolkit, f"{op}_pool3d")
    assert_identical(fn(x, kernel, stride, padding, data_format="NDHWC", backend=backend), y3)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_sequence_nlc(op, backend):
    x = make_input(np.random.default_rng(3), (2, 11, 4), np.float64, "ties")          # (N, L, C)
    y = _check(op, x, (1,), backend)
    assert_identical(short_way(op, x, 1, 3, 2, ((1, 0),), backend)[0], y)            # an int for one axis
    fn = getattr(poolkit, f"{op}_pool1d")
    assert_identical(fn(x, 3, 2, ((1, 0),), data_format="NLC", backend=backend), y)


# --------------------------------------------------------------------------- #
# non-adjacent, unsorted and negative axes
# --------------------------------------------------------------------------- #
AXES = {
    1: [(0,), (2,), (-1,)],
    2: [(3, 1), (0, 4), (-1, -3), (2, 0), (2, 1)],
    3: [(4, 0, 2), (1, 3, 0), (-2, 0, -4)],
}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("rank", RANKS)
def test_any_axes(rank, op, backend):
    x = make_input(np.random.default_rng(4), (5, 6, 2, 7, 4), np.float64, "ties")
    for axes in AXES[rank]:
        _check(op, x, axes, backend)


def test_indices_are_flat_in_the_order_of_axes():
    x = np.zeros((3, 4, 5))
    x[1, 2, 3] = 1.0
    # pooled over (2, 0) with one window covering everything: the index is i2 * 3 + i0
    y, idx = poolkit.max_pool(x, (5, 3), axes=(2, 0), return_indices=True)
    assert y.shape == (1, 4, 1)
    assert idx[0, 2, 0] == 3 * 3 + 1
    y, idx = poolkit.max_pool(x, (3, 5), axes=(0, 2), return_indices=True)
    assert idx[0, 2, 0] == 1 * 5 + 3


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_noncontiguous_input_is_not_modified(backend):
    base = make_input(np.random.default_rng(6), (6, 10, 3, 8), np.float64, "normal")
    x = base[::2, 1:, :, ::-1]                                   # a strided view
    before = x.copy()
    for op in ("max", "avg"):
        _check(op, x, (3, 1), backend)
    assert_identical(x, before)


# --------------------------------------------------------------------------- #
# data_format is a shorthand for axes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("rank", RANKS)
def test_data_format_equals_axes(rank, op, backend):
    kernel, stride, padding = _args(rank)
    spatial = (7, 6, 5)[:rank]
    fn = getattr(poolkit, f"{op}_pool{rank}d")
    generic = getattr(poolkit, f"{op}_pool")
    rng = np.random.default_rng(7)
    cases = [  # (shape, data_format, equivalent axes)
        ((2, 3) + spatial, FIRST[rank], tuple(range(2, 2 + rank))),
        ((2,) + spatial + (3,), LAST[rank], tuple(range(1, 1 + rank))),
        ((3,) + spatial, FIRST[rank], tuple(range(1, 1 + rank))),          # unbatched
        (spatial + (3,), LAST[rank], tuple(range(rank))),                  # unbatched
    ]
    for shape, fmt, axes in cases:
        x = make_input(rng, shape, np.float64, "ties")
        kw = {"return_indices": True} if op == "max" else {}
        by_format = _as_tuple(fn(x, kernel, stride, padding, data_format=fmt, backend=backend, **kw))
        by_axes = _as_tuple(fn(x, kernel, stride, padding, axes=axes, backend=backend, **kw))
        for a, b in zip(by_format, by_axes):
            assert_identical(a, b, f"{fmt} {shape}")
        if len(shape) == rank + 2:               # the N-d functions' channels_first / channels_last
            word = "channels_first" if fmt == FIRST[rank] else "channels_last"
            for a, b in zip(_as_tuple(generic(x, kernel, stride, padding, data_format=word, backend=backend,
                                              **kw)), by_axes):
                assert_identical(a, b, f"{word} {shape}")
        # backward: the same gradient through either spelling
        g = rng.standard_normal(by_axes[0].shape)
        if op == "max":
            bw_fmt = getattr(poolkit, f"max_pool{rank}d_backward")(g, by_axes[1], shape, data_format=fmt,
                                                                  backend=backend)
            bw_axes = poolkit.max_pool_backward(g, by_axes[1], shape, axes=axes, backend=backend)
        else:
            bw_fmt = getattr(poolkit, f"avg_pool{rank}d_backward")(g, shape, kernel, stride, padding,
                                                                  data_format=fmt, backend=backend)
            bw_axes = poolkit.avg_pool_backward(g, shape, kernel, stride, padding, axes=axes, backend=backend)
        assert_identical(bw_fmt, bw_axes, f"{fmt} {shape}: gradient")


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def test_axes_wins_over_data_format():
    x = make_input(np.random.default_rng(8), (4, 5, 6), np.float64)
    a = poolkit.max_pool2d(x, 2, axes=(0, 1), data_format="NCHW")
    b = poolkit.max_pool2d(x, 2, axes=(0, 1), data_format="NHWC")
    assert_identical(a, b)
    assert a.shape == (2, 2, 6)


def test_same_and_nan_ignore_over_axes():
    """The other options of the issue combine with axes: "same" padding and nan_policy="ignore"."""
    x = make_input(np.random.default_rng(9), (3, 7, 6, 2), np.float64, "nan")        # (T, H, W, C)
    for op in ("max", "avg"):
        kw = {"count_include_pad": False} if op == "avg" else {}
        by_axes = getattr(poolkit, f"{op}_pool")(x, 3, 2, "same", axes=(1, 2), nan_policy="ignore", **kw)
        by_fmt = getattr(poolkit, f"{op}_pool2d")(x, 3, 2, "same", data_format="NHWC", nan_policy="ignore", **kw)
        assert_identical(by_axes, by_fmt)
        assert by_axes.shape == (3, 4, 3, 2)
        layer = getattr(poolkit, f"{'Max' if op == 'max' else 'Avg'}Pool2d")(3, 2, "same", axes=(1, 2),
                                                                            nan_policy="ignore", **kw)
        assert_identical(layer(x), by_axes)
        assert layer.backward(np.ones_like(by_axes)).shape == x.shape


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def test_axes_errors():
    x = np.zeros((4, 5, 6))
    with pytest.raises(ValueError, match="repeat"):
        poolkit.max_pool(x, 2, axes=(1, 1))
    with pytest.raises(ValueError, match="repeat"):
        poolkit.avg_pool(x, 2, axes=(2, -1))
    with pytest.raises(ValueError, match="out of range"):
        poolkit.max_pool(x, 2, axes=(0, 3))
    with pytest.raises(ValueError, match="out of range"):
        poolkit.avg_pool(x, 2, axes=(-4,))
    with pytest.raises(ValueError, match="axes"):
        poolkit.max_pool2d(x, 2, axes=(0, 1, 2))                 # 2-D pooling names two axes
    with pytest.raises(ValueError):
        poolkit.max_pool(x, (2, 2, 2), axes=(0, 1))              # kernel for three axes, two named
    with pytest.raises(TypeError, match="axes"):
        poolkit.max_pool(x, 2, axes=(0.0, 1))
    with pytest.raises(TypeError, match="axes"):
        poolkit.max_pool(x, 2, axes=(True, 1))
    with pytest.raises(TypeError, match="axes"):
        poolkit.max_pool(x, 2, axes="01")
    with pytest.raises(ValueError, match="axes"):
        poolkit.MaxPool2d(2, axes=(0,))(x)
    with pytest.raises(ValueError, match="data_format"):
        poolkit.max_pool2d(x, 2, data_format="HWCN")
    with pytest.raises(ValueError, match="dimensions"):
        poolkit.max_pool2d(np.zeros((2, 3, 4, 5, 6)), 2)            # 5-D input needs axes=
