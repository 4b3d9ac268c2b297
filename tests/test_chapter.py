"""The textbook chapter's interface: ``poolkit.PoolingLayer(input_shape, pool_shape, stride, pooling_type)``.

Both of the chapter's methods -- ``forward_numba``/``backward_numba`` (loop
kernels) and ``forward_img2col``/``backward_col2img`` (vectorised NumPy) -- must
agree with each other (max bit for bit, mean within rounding) and with PyTorch,
for MAX and MEAN pooling alike (the chapter's own code only ever ran MAX).
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from poolkit import PoolingTypes
from helpers import assert_close, assert_identical, make_input
from oracle import F, n, t

# (input_shape (C, H, W), pool_shape, stride, batch)
CONFIGS = [
    ((3, 28, 28), (2, 2), 2, 4),          # the chapter's example
    ((1, 5, 7), (2, 3), 1, 2),            # overlapping windows
    ((2, 6, 6), (3, 3), 3, 1),
    ((4, 9, 8), (3, 2), 2, 3),            # leftover rows/columns are dropped
    ((2, 7, 9), (2, 2), (2, 1), 2),       # stride given per axis
]
TYPES = ["MAX", "max", PoolingTypes.MAX, "MEAN", "mean", PoolingTypes.MEAN]


def _is_max(kind):
    return (kind.value if isinstance(kind, PoolingTypes) else kind.upper()) == "MAX"


def _torch(kind, x, pool_shape, stride):
    fn = F.max_pool2d if _is_max(kind) else F.avg_pool2d
    return fn(x, pool_shape, stride)


@pytest.mark.parametrize("kind", TYPES, ids=[str(k) for k in TYPES])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONFIGS])
def test_both_methods_agree_and_match_torch(config, kind):
    input_shape, pool_shape, stride, batch = config
    rng = np.random.default_rng([51, CONFIGS.index(config)])
    layer = poolkit.PoolingLayer(input_shape, pool_shape, stride, kind)
    x = make_input(rng, (batch,) + input_shape, np.float64, "ties" if _is_max(kind) else "normal")
    z1 = layer.forward_numba(x)
    z2 = layer.forward_img2col(x)
    assert z1.shape == (batch,) + layer.output_shape
    xt = t(x).requires_grad_(True)
    z_t = _torch(kind, xt, pool_shape, stride)
    delta = make_input(rng, z1.shape, np.float64, "normal")
    z_t.backward(t(delta))
    layer.forward_numba(x)
    d1 = layer.backward_numba(delta, 1)
    layer.forward_img2col(x)
    d2 = layer.backward_col2img(delta, 1)
    assert d1.shape == x.shape
    if _is_max(kind):
        assert_identical(z1, z2, "forward_numba vs forward_img2col")
        assert_identical(d1, d2, "backward_numba vs backward_col2img")
        assert_identical(z1, n(z_t))
        assert_identical(d1, n(xt.grad))
    else:
        assert_close(z1, z2, what="forward_numba vs forward_img2col")
        assert_close(d1, d2, what="backward_numba vs backward_col2img")
        assert_close(z1, n(z_t))
        assert_close(d1, n(xt.grad))


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONFIGS])
def test_output_shape_is_the_chapters_formula(config):
    (c, h, w), (ph, pw), stride, _ = config
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    layer = poolkit.PoolingLayer((c, h, w), (ph, pw), stride, "MAX")
    assert layer.output_shape == (c, (h - ph) // sh + 1, (w - pw) // sw + 1)
    assert (layer.output_height, layer.output_width) == layer.output_shape[1:]


@pytest.mark.parametrize("kind", ["MAX", "MEAN"])
def test_forward_backward_use_the_last_method(kind):
    """forward/backward(delta_in, layer_idx): backward follows whichever forward ran last."""
    rng = np.random.default_rng(52)
    layer = poolkit.PoolingLayer((2, 6, 6), (2, 2), 2, kind)
    x = make_input(rng, (3, 2, 6, 6), np.float32, "normal")
    z = layer.forward(x)
    delta = make_input(rng, z.shape, np.float32, "normal")
    d = layer.backward(delta, 3)
    assert_identical(z, layer.forward_numba(x))
    assert_identical(d, layer.backward_numba(delta))
    # after forward_img2col, backward() is img2col's backward
    layer.forward_img2col(x)
    assert_identical(layer.backward(delta, 0), layer.backward_col2img(delta))
    assert z.dtype == d.dtype == np.float32


def test_mean_backward_spreads_a_quarter():
    """The chapter's example: upstream [[1, 2], [3, 4]] over 2x2 windows of a 4x4 input."""
    layer = poolkit.PoolingLayer((1, 4, 4), (2, 2), 2, "MEAN")
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(layer.forward(x), [[[[2.5, 4.5], [10.5, 12.5]]]])
    delta = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.array([[0.25, 0.25, 0.5, 0.5],
                         [0.25, 0.25, 0.5, 0.5],
                         [0.75, 0.75, 1.0, 1.0],
                         [0.75, 0.75, 1.0, 1.0]])
    for forward, backward in [(layer.forward_numba, layer.backward_numba),
                              (layer.forward_img2col, layer.backward_col2img)]:
        forward(x)
        np.testing.assert_array_equal(backward(delta, 1)[0, 0], expected)


def test_max_backward_routes_to_the_maximum():
    layer = poolkit.PoolingLayer((1, 4, 4), (2, 2), 2, "MAX")
    x = np.array([[[[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]]]])
    np.testing.assert_array_equal(layer.forward(x), [[[[4., 5], [3, 4]]]])
    d = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), 1)
    np.testing.assert_array_equal(d[0, 0], [[0, 0, 0, 0], [1, 0, 0, 2], [3, 0, 0, 0], [0, 0, 0, 4]])


@pytest.mark.parametrize("bad", [(1, 3, 6, 6), (2, 6, 6), (1, 2, 6, 7), (1, 2, 6, 6, 1)])
def test_wrong_input_shape(bad):
    layer = poolkit.PoolingLayer((2, 6, 6), (2, 2), 2, "MAX")
    for method in (layer.forward, layer.forward_numba, layer.forward_img2col):
        with pytest.raises(ValueError) as info:
            method(np.zeros(bad))
        assert str(bad) in str(info.value) and "(2, 6, 6)" in str(info.value)


def test_pooling_types_and_repr():
    assert poolkit.PoolingLayer((1, 4, 4), (2, 2), 2).pooling_type is PoolingTypes.MAX      # default
    for word, kind in [("max", PoolingTypes.MAX), (" Mean ", PoolingTypes.MEAN), ("AVG", PoolingTypes.MEAN),
                       (PoolingTypes.MEAN, PoolingTypes.MEAN)]:
        layer = poolkit.PoolingLayer((1, 4, 4), (2, 2), 2, word)
        assert layer.pooling_type is kind
    text = repr(poolkit.PoolingLayer((3, 28, 28), (2, 2), 2, "mean"))
    assert text == "PoolingLayer(input_shape=(3, 28, 28), pool_shape=(2, 2), stride=2, pooling_type='MEAN')"
    for bad in ("MIN", 1, None):
        with pytest.raises(ValueError, match="pooling_type"):
            poolkit.PoolingLayer((1, 4, 4), (2, 2), 2, bad)


def test_eval_forward_keeps_nothing():
    layer = poolkit.PoolingLayer((1, 4, 4), (2, 2), 2, "MAX")
    z = layer.forward(np.ones((1, 1, 4, 4)), train=False)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(z), 1)


def test_pool_larger_than_input_is_refused():
    with pytest.raises(ValueError, match="kernel_size"):
        poolkit.PoolingLayer((1, 2, 2), (3, 3), 1, "MAX")
