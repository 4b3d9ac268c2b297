"""Every row of docs/coming-from.md: the poolkit call that reproduces another framework's pooling.

One test per row (``test_row_<n>_...``, numbered as in the table).  Oracles:

* PyTorch rows: PyTorch itself (installed as a test extra), forward and autograd.
* JAX and Flax rows: ``jax.lax.reduce_window`` itself; Flax (not installed) is
  ``reduce_window`` plus a division, as its ``flax/linen/pooling.py`` does.
* TensorFlow/Keras rows (TensorFlow not installed): Keras 3's JAX backend, which
  is ``reduce_window`` with Keras's "valid"/"same" (and, for average pooling with
  "same", a division by ``reduce_window`` over ones), plus hand-derived arrays.
* ONNX rows (no runtime installed): ``reduce_window`` with the explicit pads the
  ONNX operator spec prescribes (its SAME_LOWER is JAX's "SAME_LOWER"), plus
  hand-derived arrays for auto_pad and ceil_mode.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import poolkit
from helpers import assert_identical, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@functools.lru_cache(maxsize=None)
def _jax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    return pytest.importorskip("jax")


def reduce_window(x, op, window, strides, padding, window_dilation=None):
    """``lax.reduce_window`` in float64: op "max" (init -inf) or "sum" (init 0); numpy result."""
    jax = _jax()
    from jax import lax
    with jax.enable_x64(True):
        a = np.asarray(x, dtype=np.float64)
        if op == "max":
            return np.asarray(lax.reduce_window(a, -np.inf, lax.max, window, strides, padding,
                                                window_dilation=window_dilation))
        return np.asarray(lax.reduce_window(a, 0.0, lax.add, window, strides, padding,
                                            window_dilation=window_dilation))


def _nhwc(seed=0, shape=(2, 9, 8, 3), values="distinct"):
    return make_input(np.random.default_rng(seed), shape, np.float64, values)


def _nchw(seed=0, shape=(2, 3, 9, 8), values="distinct"):
    return make_input(np.random.default_rng(seed), shape, np.float64, values)


X5 = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])          # (N, C, L) = (1, 1, 5)
X5_NLC = X5.reshape(1, 5, 1)                           # the same as (N, L, C)


# --------------------------------------------------------------------------- #
# PyTorch
# --------------------------------------------------------------------------- #
def _torch():
    return pytest.importorskip("torch")


def test_row_1_torch_max_pool():
    torch = _torch()
    F = torch.nn.functional
    for rank, shape in ((1, (2, 3, 11)), (2, (2, 3, 9, 8)), (3, (2, 2, 5, 6, 7))):
        x = make_input(np.random.default_rng(rank), shape, np.float64, "distinct")
        args = dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
        xt = torch.tensor(x, requires_grad=True)
        yt, it = getattr(F, f"max_pool{rank}d")(xt, return_indices=True, **args)
        y, idx = getattr(poolkit, f"max_pool{rank}d")(x, return_indices=True, **args)
        assert_identical(y, yt.detach().numpy())
        assert_identical(idx, it.numpy())
        g = np.random.default_rng(0).standard_normal(y.shape)
        yt.backward(torch.tensor(g))
        assert_identical(getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape), xt.grad.numpy())
        layer = getattr(poolkit, f"MaxPool{rank}d")(**args)
        layer(x)
        assert_identical(layer.backward(g), xt.grad.numpy())


def test_row_2_torch_avg_pool():
    torch = _torch()
    F = torch.nn.functional
    for rank, shape in ((1, (2, 3, 11)), (2, (2, 3, 9, 8)), (3, (2, 2, 5, 6, 7))):
        x = make_input(np.random.default_rng(rank), shape, np.float64, "normal")
        for cip in (True, False):
            args = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=cip)
            if rank > 1:
                args["divisor_override"] = None
            xt = torch.tensor(x, requires_grad=True)
            yt = getattr(F, f"avg_pool{rank}d")(xt, **args)
            y = getattr(poolkit, f"avg_pool{rank}d")(x, **args)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
            g = np.random.default_rng(0).standard_normal(y.shape)
            yt.backward(torch.tensor(g))
            gx = getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, **args)
            np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
            layer = getattr(poolkit, f"AvgPool{rank}d")(**args)
            layer(x)
            np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    x = _nchw(values="normal")
    np.testing.assert_allclose(poolkit.avg_pool2d(x, 3, 2, 1, divisor_override=5),
                               F.avg_pool2d(torch.tensor(x), 3, 2, 1, divisor_override=5).numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- #
# TensorFlow / Keras (channels_last; strides default to pool_size; padding "valid")
# --------------------------------------------------------------------------- #
def test_row_3_keras_max_pooling_valid():
    # keras.layers.MaxPooling2D(pool_size=(3, 2), strides=None, padding="valid")
    x = _nhwc()
    expected = reduce_window(x, "max", (1, 3, 2, 1), (1, 3, 2, 1), "VALID")
    assert_identical(poolkit.max_pool2d(x, (3, 2), data_format="NHWC"), expected)
    assert_identical(poolkit.max_pool2d(x, (3, 2), padding="valid", data_format="NHWC"), expected)
    # MaxPooling1D on (N, L, C): data_format="NLC"
    x1 = _nhwc(shape=(2, 11, 3))
    assert_identical(poolkit.max_pool1d(x1, 2, data_format="NLC"),
                     reduce_window(x1, "max", (1, 2, 1), (1, 2, 1), "VALID"))


def test_row_4_keras_max_pooling_same():
    # keras.layers.MaxPooling2D(pool_size=3, strides=2, padding="same")
    x = _nhwc()
    expected = reduce_window(x, "max", (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    assert_identical(poolkit.max_pool2d(x, 3, 2, padding="same", data_format="NHWC"), expected)
    # hand-derived: width 5, pool 2, stride 2 -> 3 outputs, the one pixel of padding after
    np.testing.assert_array_equal(poolkit.max_pool1d(X5_NLC, 2, padding="same", data_format="NLC"),
                                  [[[2.0], [4.0], [5.0]]])


def test_row_5_keras_average_pooling_valid():
    # keras.layers.AveragePooling2D(pool_size=2, strides=(1, 2), padding="valid")
    x = _nhwc(values="normal")
    expected = reduce_window(x, "sum", (1, 2, 2, 1), (1, 1, 2, 1), "VALID") / 4
    np.testing.assert_allclose(poolkit.avg_pool2d(x, 2, (1, 2), data_format="NHWC"), expected, rtol=1e-12)


def test_row_6_keras_average_pooling_same():
    # keras.layers.AveragePooling2D(pool_size=3, strides=2, padding="same"): padding is not counted
    x = _nhwc(values="normal")
    total = reduce_window(x, "sum", (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    count = reduce_window(np.ones((1,) + x.shape[1:3] + (1,)), "sum", (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    y = poolkit.avg_pool2d(x, 3, 2, padding="same", count_include_pad=False, data_format="NHWC")
    np.testing.assert_allclose(y, total / count, rtol=1e-12)
    # hand-derived: [1 2] [3 4] [5 pad] -> 1.5, 3.5, 5 (5 / 1, not 5 / 2)
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(X5_NLC, 2, padding="same", count_include_pad=False, data_format="NLC"),
        [[[1.5], [3.5], [5.0]]])
    # count_include_pad=True would be PyTorch's/Flax's divisor instead: 2.5 for the last window
    assert poolkit.avg_pool1d(X5_NLC, 2, padding="same", data_format="NLC")[0, -1, 0] == 2.5


def test_row_7_tf_nn_explicit_padding():
    # tf.nn.max_pool2d(x, ksize=3, strides=2, padding=[[0, 0], [2, 0], [1, 3], [0, 0]])
    x = _nhwc()
    expected = reduce_window(x, "max", (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (2, 0), (1, 3), (0, 0)))
    assert_identical(poolkit.max_pool2d(x, 3, 2, ((2, 0), (1, 3)), data_format="NHWC"), expected)


def test_row_8_tf_max_pool_with_argmax():
    # tf.nn.max_pool_with_argmax(x, 2, 2, "VALID"): argmax = (y * W + x) * C + c within each batch element
    x = _nhwc()
    n, h, w, c = x.shape
    y, idx = poolkit.max_pool2d(x, 2, return_indices=True, data_format="NHWC")
    tf_argmax = idx * c + np.arange(c)
    assert_identical(np.take_along_axis(x.reshape(n, -1), tf_argmax.reshape(n, -1), axis=1).reshape(y.shape), y)
    # with include_batch_in_index=True: ((b * H + y) * W + x) * C + c
    tf_argmax_b = tf_argmax + (np.arange(n) * h * w * c)[:, None, None, None]
    assert_identical(x.reshape(-1)[tf_argmax_b], y)


def test_row_9_keras_global_pooling():
    # keras.layers.GlobalAveragePooling2D() / GlobalMaxPooling2D() on NHWC
    x = _nhwc(values="normal")
    np.testing.assert_allclose(poolkit.global_avg_pool(x, data_format="channels_last"), x.mean(axis=(1, 2)),
                               rtol=1e-12)
    assert_identical(poolkit.global_max_pool(x, data_format="channels_last"), x.max(axis=(1, 2)))
    # keepdims=True keeps (N, 1, 1, C)
    assert poolkit.global_avg_pool(x, data_format="channels_last", keepdims=True).shape == (2, 1, 1, 3)


# --------------------------------------------------------------------------- #
# JAX / Flax
# --------------------------------------------------------------------------- #
def test_row_10_jax_reduce_window_max():
    x = _nhwc()
    for padding, pk_padding in (("VALID", "valid"), ("SAME", "same"),
                                (((0, 0), (1, 2), (3, 0), (0, 0)), ((1, 2), (3, 0)))):
        expected = reduce_window(x, "max", (1, 3, 2, 1), (1, 2, 1, 1), padding, window_dilation=(1, 2, 2, 1))
        y = poolkit.max_pool2d(x, (3, 2), (2, 1), pk_padding, dilation=2, data_format="NHWC")
        assert_identical(y, expected)
    # any layout: pool the axes whose window is not 1, e.g. a (C, H, W, N) array over axes 1 and 2
    xt = np.ascontiguousarray(x.transpose(3, 1, 2, 0))
    expected = reduce_window(xt, "max", (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    assert_identical(poolkit.max_pool(xt, 3, 2, "same", axes=(1, 2)), expected)


def test_row_11_jax_reduce_window_sum():
    # lax.reduce_window(x, 0., lax.add, ...) / prod(window): padding counts (count_include_pad=True)
    x = _nhwc(values="normal")
    for padding, pk_padding in (("SAME", "same"), (((0, 0), (2, 1), (0, 1), (0, 0)), ((2, 1), (0, 1)))):
        expected = reduce_window(x, "sum", (1, 3, 2, 1), (1, 2, 2, 1), padding) / 6
        y = poolkit.avg_pool2d(x, (3, 2), 2, pk_padding, count_include_pad=True, data_format="NHWC")
        np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_row_12_jax_same_lower():
    # lax.reduce_window(..., padding="SAME_LOWER"): the odd pixel before -> per-side pairs
    x = _nhwc()
    pads = same_lower_pairs(x.shape[1:3], (2, 3), (2, 2))       # (9, 8): total padding 1 and 1
    assert pads == ((1, 0), (1, 0))
    expected = reduce_window(x, "max", (1, 2, 3, 1), (1, 2, 2, 1), "SAME_LOWER")
    assert_identical(poolkit.max_pool2d(x, (2, 3), 2, pads, data_format="NHWC"), expected)


def flax_pool(x, init_op, window, strides=None, padding="VALID"):
    """flax.linen.pooling.pool: (batch, *window dims, features); strides default to 1."""
    strides = strides or (1,) * len(window)
    pad = padding if isinstance(padding, str) else ((0, 0),) + tuple(padding) + ((0, 0),)
    return reduce_window(x, init_op, (1,) + tuple(window) + (1,), (1,) + tuple(strides) + (1,), pad)


def test_row_13_flax_max_pool():
    x = _nhwc()
    # nn.max_pool(x, (2, 2)): strides default to 1 in Flax, to the kernel in poolkit
    assert_identical(poolkit.max_pool2d(x, 2, 1, data_format="NHWC"), flax_pool(x, "max", (2, 2)))
    # nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME") and with pairs
    assert_identical(poolkit.max_pool2d(x, 3, 2, "same", data_format="NHWC"),
                     flax_pool(x, "max", (3, 3), (2, 2), "SAME"))
    assert_identical(poolkit.max_pool2d(x, 3, 2, ((2, 2), (0, 1)), data_format="NHWC"),
                     flax_pool(x, "max", (3, 3), (2, 2), ((2, 2), (0, 1))))
    # unbatched (H, W, C) input, as Flax accepts
    assert_identical(poolkit.max_pool2d(x[0], 2, 1, data_format="NHWC"), flax_pool(x[:1], "max", (2, 2))[0])


def test_row_14_flax_avg_pool():
    x = _nhwc(values="normal")
    ones = np.ones((1,) + x.shape[1:3] + (1,))
    for padding, pk_padding in (("VALID", "valid"), ("SAME", "same"), (((1, 2), (0, 2)), ((1, 2), (0, 2)))):
        total = flax_pool(x, "sum", (3, 3), (2, 2), padding)
        # count_include_pad=True (Flax's default): divide by the window size
        np.testing.assert_allclose(
            poolkit.avg_pool2d(x, 3, 2, pk_padding, count_include_pad=True, data_format="NHWC"), total / 9,
            rtol=1e-12)
        # count_include_pad=False: divide by the pooled ones
        np.testing.assert_allclose(
            poolkit.avg_pool2d(x, 3, 2, pk_padding, count_include_pad=False, data_format="NHWC"),
            total / flax_pool(ones, "sum", (3, 3), (2, 2), padding), rtol=1e-12)


# --------------------------------------------------------------------------- #
# ONNX (NCHW; strides default to 1; pads = [x1_begin, x2_begin, ..., x1_end, x2_end])
# --------------------------------------------------------------------------- #
def onnx_pairs(pads):
    """ONNX ``pads`` [b1, b2, ..., e1, e2, ...] -> poolkit's ((b1, e1), (b2, e2), ...)."""
    r = len(pads) // 2
    return tuple((pads[i], pads[r + i]) for i in range(r))


def same_lower_pairs(sizes, kernel, strides, dilations=None):
    """ONNX SAME_LOWER / JAX "SAME_LOWER": TensorFlow's total padding, the odd pixel before."""
    dilations = dilations or (1,) * len(sizes)
    pairs = []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
        pairs.append((total - total // 2, total // 2))
    return tuple(pairs)


def test_row_15_onnx_max_pool():
    # MaxPool(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2])
    x = _nchw()
    pads = onnx_pairs([1, 0, 2, 1])
    assert pads == ((1, 2), (0, 1))
    expected = reduce_window(x, "max", (1, 1, 3, 2), (1, 1, 2, 1), ((0, 0), (0, 0)) + pads,
                             window_dilation=(1, 1, 1, 2))
    y, idx = poolkit.max_pool2d(x, (3, 2), (2, 1), pads, (1, 2), return_indices=True)
    assert_identical(y, expected)
    # ONNX's Indices output is flat over the whole (N, C, H, W) tensor (storage_order=0)
    n, c, h, w = x.shape
    onnx_idx = idx + (np.arange(n * c) * h * w).reshape(n, c, 1, 1)
    assert_identical(x.reshape(-1)[onnx_idx], y)
    # strides default to 1 in ONNX: MaxPool(kernel_shape=[2, 2])
    assert_identical(poolkit.max_pool2d(x, 2, 1), reduce_window(x, "max", (1, 1, 2, 2), (1, 1, 1, 1), "VALID"))


def test_row_16_onnx_average_pool():
    # AveragePool(kernel_shape=[3, 3], strides=[2, 2], pads=[2, 0, 1, 2]); count_include_pad defaults to 0
    x = _nchw(values="normal")
    pads = onnx_pairs([2, 0, 1, 2])
    window, strides, full = (1, 1, 3, 3), (1, 1, 2, 2), ((0, 0), (0, 0)) + pads
    total = reduce_window(x, "sum", window, strides, full)
    inside = reduce_window(np.ones((1, 1) + x.shape[2:]), "sum", window, strides, full)
    np.testing.assert_allclose(poolkit.avg_pool2d(x, 3, 2, pads, count_include_pad=False), total / inside, rtol=1e-12)
    # count_include_pad=1: the padding counts, so every (floor-mode) window divides by 9
    np.testing.assert_allclose(poolkit.avg_pool2d(x, 3, 2, pads, count_include_pad=True), total / 9, rtol=1e-12)


def test_row_17_onnx_auto_pad():
    x = _nchw()
    # SAME_UPPER: TensorFlow's "same"
    assert_identical(poolkit.max_pool2d(x, 3, 2, "same"),
                     reduce_window(x, "max", (1, 1, 3, 3), (1, 1, 2, 2), "SAME"))
    # SAME_LOWER: the odd pixel before, as per-side pairs
    pads = same_lower_pairs(x.shape[2:], (3, 2), (2, 2))
    assert_identical(poolkit.max_pool2d(x, (3, 2), 2, pads),
                     reduce_window(x, "max", (1, 1, 3, 2), (1, 1, 2, 2), "SAME_LOWER"))
    # VALID
    assert_identical(poolkit.max_pool2d(x, 3, 2, "valid"), reduce_window(x, "max", (1, 1, 3, 3), (1, 1, 2, 2), "VALID"))
    # hand-derived, width 5, kernel 2, stride 2 (count_include_pad=0)
    upper = "same"
    lower = same_lower_pairs((5,), (2,), (2,))
    assert lower == ((1, 0),)
    np.testing.assert_array_equal(poolkit.max_pool1d(X5, 2, 2, upper), [[[2.0, 4.0, 5.0]]])
    np.testing.assert_array_equal(poolkit.max_pool1d(X5, 2, 2, lower), [[[1.0, 3.0, 5.0]]])
    np.testing.assert_array_equal(poolkit.avg_pool1d(X5, 2, 2, upper, count_include_pad=False), [[[1.5, 3.5, 5.0]]])
    np.testing.assert_array_equal(poolkit.avg_pool1d(X5, 2, 2, lower, count_include_pad=False), [[[1.0, 2.5, 4.5]]])


def test_row_18_onnx_ceil_mode():
    # MaxPool(kernel_shape=[3], strides=[2], pads=[0, 1], ceil_mode=1) on width 6:
    # out = ceil((6 + 1 - 3) / 2 + 1) = 3; windows [0..2] [2..4] [4, 5, pad]
    x = np.array([[[3.0, 1.0, 4.0, 1.0, 5.0, 9.0]]])
    y, idx = poolkit.max_pool1d(x, 3, 2, onnx_pairs([0, 1]), ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y, [[[4.0, 5.0, 9.0]]])
    np.testing.assert_array_equal(idx, [[[2, 4, 5]]])
    # AveragePool with count_include_pad=0: 8/3, 10/3, 14/2
    np.testing.assert_allclose(poolkit.avg_pool1d(x, 3, 2, onnx_pairs([0, 1]), ceil_mode=True,
                                                  count_include_pad=False), [[[8 / 3, 10 / 3, 7.0]]], rtol=1e-15)
    # width 5, kernel 2, stride 2, no pads: ceil adds a window starting at 4 -> [1 2] [3 4] [5]
    np.testing.assert_array_equal(poolkit.max_pool1d(X5, 2, 2, ceil_mode=True), [[[2.0, 4.0, 5.0]]])
    # a window that would start in the right padding is ignored: pads [0, 2], kernel 2, stride 3, width 6
    assert poolkit.output_shape(6, 2, 3, onnx_pairs([0, 2]), ceil_mode=True) == (2,)


def test_row_19_onnx_global_pool():
    # GlobalMaxPool / GlobalAveragePool keep the spatial axes as size 1
    x = _nchw(values="normal")
    assert_identical(poolkit.global_max_pool(x, keepdims=True), x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(poolkit.global_avg_pool(x, keepdims=True), x.mean(axis=(2, 3), keepdims=True),
                               rtol=1e-12)


def test_row_20_onnx_lp_pool():
    # LpPool(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], p=3): (sum over the window of |x|**3) ** (1/3),
    # the zero pads adding nothing; poolkit's lp_pool is PyTorch's, on x itself: pass |x|.
    x = _nchw(values="normal")
    pads = onnx_pairs([1, 0, 1, 1])
    total = reduce_window(np.abs(x) ** 3, "sum", (1, 1, 3, 2), (1, 1, 2, 1), ((0, 0), (0, 0)) + pads)
    np.testing.assert_allclose(poolkit.lp_pool2d(np.abs(x), 3, (3, 2), (2, 1), padding=pads), total ** (1 / 3),
                               rtol=1e-12)
    # without |x| a negative window sum gives NaN, as in PyTorch, where ONNX gives a norm
    assert np.isnan(poolkit.lp_pool2d(-np.abs(x) - 1, 3, (3, 2), (2, 1), padding=pads)).all()
    # GlobalLpPool(p=2) keeps the spatial axes as size 1
    np.testing.assert_allclose(poolkit.global_lp_pool(x, 2, keepdims=True),
                               np.sqrt((x * x).sum(axis=(2, 3), keepdims=True)), rtol=1e-12)


# --------------------------------------------------------------------------- #
# the document itself
# --------------------------------------------------------------------------- #
DOC = Path(__file__).resolve().parent.parent / "docs" / "coming-from.md"


def test_every_table_row_has_its_test():
    rows = [int(m) for m in re.findall(r"^\| (\d+) \|", DOC.read_text(), flags=re.M)]
    assert rows == list(range(1, len(rows) + 1)) and len(rows) >= 19
    tests = {int(m.group(1)) for name in dir(sys.modules[__name__])
             if (m := re.match(r"test_row_(\d+)_", name))}
    assert tests == set(rows)


def test_doc_same_lower_snippet():
    """The ``same_lower`` helper printed in the document equals JAX's "SAME_LOWER" resolution."""
    _jax()
    from jax import lax
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    scope = {}
    exec(code, scope)
    for n in range(1, 12):
        for k, s, d in ((1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 1, 1), (2, 1, 3), (3, 3, 2)):
            span = (k - 1) * d + 1
            assert scope["same_lower"]((n,), k, s, d) == tuple(lax.padtype_to_pads((n,), (span,), (s,), "SAME_LOWER"))
    assert scope["same_lower"]((9, 8), (2, 3), 2) == same_lower_pairs((9, 8), (2, 3), (2, 2))
