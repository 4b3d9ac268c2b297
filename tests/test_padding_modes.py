"""Padding beyond PyTorch's: per-side pairs, "valid" and TensorFlow's "same".

For max and average pooling, 1-D to 3-D, every kernel backend, forward and
backward.  Oracles:

* JAX's ``lax.reduce_window`` (a test extra), given explicit ``(low, high)``
  pairs or its own "SAME"/"VALID" strings -- never poolkit's resolution of them;
  average = window sum / divisor, the divisor being ``prod(kernel)`` or a
  ``reduce_window`` over ones (``count_include_pad=False``);
* small cases whose expected arrays are written out by hand;
* central finite differences (float64, tie-free inputs) for the gradients, and
  the reference backend for cross-backend equality (bit for bit for max).

Semantics under test (documented in :func:`poolkit.max_pool`/:func:`poolkit.avg_pool`):
a window that lies wholly in padding gives -inf (integers: the dtype's minimum)
and index -1 for max, 0 for average, and passes back no gradient.
"""
from __future__ import annotations

import functools
import os
import tracemalloc

import numpy as np
import pytest

import poolkit
from helpers import KERNEL_BACKENDS, assert_identical, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")   # e.g. a 0/0 for an empty window

RANKS = (1, 2, 3)
OPS = ("max", "avg")


# --------------------------------------------------------------------------- #
# the JAX oracle
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def _jax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax = pytest.importorskip("jax")
    return jax


def jax_pool(x, op, kernel, stride, padding, dilation=None, count_include_pad=True, extra_after=None):
    """Pool the trailing ``len(kernel)`` axes of ``x`` with ``lax.reduce_window`` in float64.

    ``padding`` is a JAX padding string ("SAME", "VALID", "SAME_LOWER") or one
    ``(low, high)`` pair per pooled axis.  ``extra_after`` widens the high side
    to let ``ceil_mode``'s last window run past the right padding: those extra
    positions never count, not even with ``count_include_pad``.  A window with
    nothing to average gives 0 (poolkit's rule; 0/0 in JAX).
    """
    jax = _jax()
    from jax import lax
    rank = len(kernel)
    lead = x.ndim - rank
    dilation = dilation or (1,) * rank
    dims, strides, wdil = (1,) * lead + tuple(kernel), (1,) * lead + tuple(stride), (1,) * lead + tuple(dilation)
    with jax.enable_x64(True):
        xs = np.asarray(x, dtype=np.float64)
        if isinstance(padding, str):
            pad = padding
            assert extra_after is None
        else:
            extra = extra_after or (0,) * rank
            pad = ((0, 0),) * lead + tuple((lo, hi + e) for (lo, hi), e in zip(padding, extra))

        def window_sum(a, p):
            return np.asarray(lax.reduce_window(a, 0.0, lax.add, dims, strides, p, window_dilation=wdil))

        if op == "max":
            return np.asarray(lax.reduce_window(xs, -np.inf, lax.max, dims, strides, pad, window_dilation=wdil))
        total = window_sum(xs, pad)
        spatial = x.shape[lead:]
        ones_shape = (1,) * lead + spatial
        if not count_include_pad:
            count = window_sum(np.ones(ones_shape), pad)
        elif isinstance(padding, str):
            # Without ceil_mode every window lies inside the padded extent (Flax's rule).
            count = np.full((1,) * lead + total.shape[lead:], float(np.prod(kernel)))
        else:
            # Taps inside the padded extent: pool ones padded with ones, then the extra with zeros.
            padded_ones = np.pad(np.ones(ones_shape), ((0, 0),) * lead + tuple(padding), constant_values=1.0)
            count = window_sum(padded_ones, ((0, 0),) * lead + tuple((0, e) for e in extra))
        return np.where(count == 0, 0.0, total / np.where(count == 0, 1.0, count))


# --------------------------------------------------------------------------- #
# the cases: per-axis values, the first `rank` of them are used
# --------------------------------------------------------------------------- #
SIZES = (7, 6, 5)

CASES = {
    # any non-negative sizes, more than half the kernel: windows wholly in padding at both ends
    "pairs": dict(kernel=(3, 2, 3), stride=(2, 1, 2), padding=((3, 1), (0, 2), (2, 2))),
    "pairs_far": dict(kernel=(2, 2, 2), stride=(3, 2, 3), padding=((4, 5), (1, 6), (5, 0))),
    "valid": dict(kernel=(3, 2, 4), stride=(2, 2, 1), padding="valid"),
    "same_s2": dict(kernel=(3, 3, 4), stride=(2, 2, 3), padding="same"),
    "same_s1": dict(kernel=(2, 4, 3), stride=(1, 1, 1), padding="same"),
    "same_big_kernel": dict(kernel=(9, 7, 6), stride=(1, 2, 4), padding="same"),
    "same_dilated": dict(kernel=(2, 2, 3), stride=(1, 2, 2), dilation=(2, 3, 2), padding="same"),
    "pairs_dilated": dict(kernel=(2, 3, 2), stride=(2, 1, 3), dilation=(3, 2, 2),
                          padding=((2, 3), (4, 0), (0, 5))),
    "pairs_ceil": dict(kernel=(3, 2, 3), stride=(2, 3, 2), padding=((1, 0), (0, 2), (2, 1)), ceil_mode=True),
}
MAX_ONLY = {"same_dilated", "pairs_dilated"}          # average pooling has no dilation (as in PyTorch)


def _params(ops=OPS, backends=KERNEL_BACKENDS):
    out = []
    for name in CASES:
        for op in ops:
            if op == "avg" and name in MAX_ONLY:
                continue
            for rank in RANKS:
                for be in backends:
                    out.append(pytest.param(name, op, rank, be, id=f"{name}-{op}-{rank}d-{be}"))
    return out


def _geometry(name, rank):
    c = CASES[name]
    kernel = c["kernel"][:rank]
    stride = c["stride"][:rank]
    dilation = c.get("dilation", (1, 1, 1))[:rank]
    padding = c["padding"] if isinstance(c["padding"], str) else c["padding"][:rank]
    return kernel, stride, dilation, padding, c.get("ceil_mode", False)


def _ceil_out(sizes, kernel, stride, dilation, padding):
    """ceil_mode output sizes and how far past the right padding the last window reaches.

    PyTorch's and ONNX's rule: round up, then drop a last window that would start in
    the right padding. (With per-side pairs that can drop a window that floor mode
    keeps: a window wholly in a right padding of at least the stride.)
    """
    outs, extra = [], []
    for n, k, s, d, (lo, hi) in zip(sizes, kernel, stride, dilation, padding):
        span = d * (k - 1) + 1
        out = -(-(n + lo + hi - span) // s) + 1
        if (out - 1) * s >= n + lo:
            out -= 1
        outs.append(out)
        extra.append(max(0, (out - 1) * s + span - (n + lo + hi)))
    return tuple(outs), tuple(extra)


def _call(op, rank, x, name, *, backend, count_include_pad=True, return_indices=False, **kw):
    kernel, stride, dilation, padding, ceil_mode = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"max_pool{rank}d")(x, kernel, stride, padding, dilation, ceil_mode,
                                                   return_indices, backend=backend, **kw)
    return getattr(poolkit, f"avg_pool{rank}d")(x, kernel, stride, padding, ceil_mode, count_include_pad,
                                               backend=backend, **kw)


def _backward(op, rank, g, x_shape, name, *, backend, indices=None, count_include_pad=True):
    kernel, stride, _, padding, ceil_mode = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"max_pool{rank}d_backward")(g, indices, x_shape, backend=backend)
    return getattr(poolkit, f"avg_pool{rank}d_backward")(g, x_shape, kernel, stride, padding, ceil_mode,
                                                        count_include_pad, backend=backend)


@functools.lru_cache(maxsize=None)
def _input(rank, values="normal", lead=(2, 3)):
    x = make_input(np.random.default_rng(100 + rank), lead + SIZES[:rank], np.float64, values)
    x.setflags(write=False)
    return x


@functools.lru_cache(maxsize=None)
def _oracle(name, op, rank, count_include_pad):
    x = _input(rank)
    kernel, stride, dilation, padding, ceil_mode = _geometry(name, rank)
    if isinstance(padding, str):
        return jax_pool(x, op, kernel, stride, padding.upper(), dilation, count_include_pad)
    if not ceil_mode:
        return jax_pool(x, op, kernel, stride, padding, dilation, count_include_pad)
    outs, extra = _ceil_out(x.shape[2:], kernel, stride, dilation, padding)
    y = jax_pool(x, op, kernel, stride, padding, dilation, count_include_pad, extra)
    return np.ascontiguousarray(y[(Ellipsis,) + tuple(slice(0, o) for o in outs)])


# --------------------------------------------------------------------------- #
# forward against JAX
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,op,rank,backend", _params())
def test_forward_matches_jax(name, op, rank, backend):
    x = _input(rank)
    for cip in ((True,) if op == "max" else (True, False)):
        expected = _oracle(name, op, rank, cip)
        if op == "max":
            y, idx = _call(op, rank, x, name, backend=backend, return_indices=True)
            assert_identical(y, expected, f"{name} max")
            # indices point at the maximum inside each plane; -1 exactly where the window is all padding
            planes = x.reshape(x.shape[:2] + (-1,))
            picked = np.take_along_axis(planes, np.maximum(idx, 0).reshape(idx.shape[:2] + (-1,)), axis=2)
            hit = idx.reshape(picked.shape) >= 0
            assert np.array_equal(picked[hit], y.reshape(picked.shape)[hit])
            assert np.array_equal(~hit, np.isneginf(y).reshape(picked.shape))
        else:
            y = _call(op, rank, x, name, backend=backend, count_include_pad=cip)
            assert y.shape == expected.shape
            np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14, err_msg=f"{name} cip={cip}")


@pytest.mark.parametrize("rank", RANKS)
def test_same_resolves_like_jax(rank):
    """poolkit's "same" pairs equal JAX's own "SAME" (TensorFlow's rule), dilation included."""
    from jax import lax
    _jax()
    for name in ("same_s2", "same_s1", "same_big_kernel", "same_dilated"):
        kernel, stride, dilation, _, _ = _geometry(name, rank)
        spec = poolkit.core.geometry.PoolSpec.from_args(rank, kernel, stride, "same", dilation)
        for sizes in (SIZES[:rank], (1,) * rank, (11, 16, 2)[:rank]):
            span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
            assert spec.pads(sizes) == tuple(lax.padtype_to_pads(sizes, span, stride, "SAME")), (name, sizes)
            assert poolkit.output_shape(sizes, kernel, stride, "same", dilation) == \
                tuple(-(-n // s) for n, s in zip(sizes, stride))


def test_padding_words_are_case_insensitive():
    x = _input(2)
    assert_identical(poolkit.max_pool2d(x, 3, 2, "SAME"), poolkit.max_pool2d(x, 3, 2, "same"))
    assert_identical(poolkit.avg_pool2d(x, 3, 2, "Valid"), poolkit.avg_pool2d(x, 3, 2, 0))


# --------------------------------------------------------------------------- #
# hand-derived cases
# --------------------------------------------------------------------------- #
X5 = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_same_puts_the_odd_pixel_after(backend):
    # TensorFlow's "same", width 5, kernel 2, stride 2: out = ceil(5/2) = 3, total padding
    # (3-1)*2 + 2 - 5 = 1, all of it after: windows [1 2] [3 4] [5 pad].
    y, idx = poolkit.max_pool1d(X5, 2, 2, "same", return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[2.0, 4.0, 5.0]]])
    np.testing.assert_array_equal(idx, [[[1, 3, 4]]])
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(X5, 2, 2, "same", count_include_pad=False, backend=backend), [[[1.5, 3.5, 5.0]]])
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(X5, 2, 2, "same", count_include_pad=True, backend=backend), [[[1.5, 3.5, 2.5]]])
    assert poolkit.output_shape(5, 2, 2, "same") == (3,)
    # kernel 4, stride 1 on 5: total 3 -> 1 before, 2 after; window o reads o-1 .. o+2
    np.testing.assert_array_equal(poolkit.max_pool1d(X5[..., ::-1], 4, 1, "same", backend=backend),
                                  [[[5.0, 5.0, 4.0, 3.0, 2.0]]])
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(X5, 4, 1, "same", count_include_pad=False, backend=backend),
        [[[2.0, 2.5, 3.5, 4.0, 4.5]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_same_is_dilation_aware(backend):
    # kernel 2, dilation 2 spans 3: total padding 2 -> (1, 1); window o reads o-1 and o+1.
    x = np.array([[[4.0, 1.0, 3.0, 2.0]]])
    y, idx = poolkit.max_pool1d(x, 2, 1, "same", 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[1.0, 4.0, 2.0, 3.0]]])
    np.testing.assert_array_equal(idx, [[[1, 0, 3, 2]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_windows_wholly_in_padding(backend):
    # x = [1 2 3] padded 3 before, 2 after (more than half the kernel): windows start at -3, -1, 1, 3.
    x = np.array([[[1.0, 2.0, 3.0]]])
    pad = ((3, 2),)
    y, idx = poolkit.max_pool1d(x, 2, 2, pad, return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[-np.inf, 1.0, 3.0, -np.inf]]])
    np.testing.assert_array_equal(idx, [[[-1, 0, 2, -1]]])
    avg_in = poolkit.avg_pool1d(x, 2, 2, pad, count_include_pad=True, backend=backend)
    avg_out = poolkit.avg_pool1d(x, 2, 2, pad, count_include_pad=False, backend=backend)
    np.testing.assert_array_equal(avg_in, [[[0.0, 0.5, 2.5, 0.0]]])
    np.testing.assert_array_equal(avg_out, [[[0.0, 1.0, 2.5, 0.0]]])
    # gradients: the empty windows send nothing back (their upstream values are large on purpose)
    g = np.array([[[100.0, 1.0, 1.0, 100.0]]])
    np.testing.assert_array_equal(poolkit.max_pool1d_backward(g, idx, x.shape, backend=backend), [[[1.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(poolkit.avg_pool1d_backward(g, x.shape, 2, 2, pad, False, True, backend=backend),
                                  [[[0.5, 0.5, 0.5]]])
    np.testing.assert_array_equal(poolkit.avg_pool1d_backward(g, x.shape, 2, 2, pad, False, False, backend=backend),
                                  [[[1.0, 0.5, 0.5]]])
    for cls, kw in ((poolkit.MaxPool1d, {}), (poolkit.AvgPool1d, {"count_include_pad": False})):
        layer = cls(2, 2, pad, backend=backend, **kw)
        layer(x)
        expected = [[[1.0, 0.0, 1.0]]] if cls is poolkit.MaxPool1d else [[[1.0, 0.5, 0.5]]]
        np.testing.assert_array_equal(layer.backward(g), expected)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_windows_wholly_in_padding_2d(backend):
    # rows padded (0, 2), columns (2, 0), kernel 2, stride 2 on a 2x2 input: only window (0, 1) sees data.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    pad = ((0, 2), (2, 0))
    y, idx = poolkit.max_pool2d(x, 2, 2, pad, return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[[-np.inf, 4.0], [-np.inf, -np.inf]]]])
    np.testing.assert_array_equal(idx, [[[[-1, 3], [-1, -1]]]])
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, 2, pad, count_include_pad=False, backend=backend),
                                  [[[[0.0, 2.5], [0.0, 0.0]]]])
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, 2, pad, backend=backend),
                                  [[[[0.0, 2.5], [0.0, 0.0]]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.float16, np.float32])
def test_wholly_padded_max_is_lowest_of_dtype(dtype, backend):
    x = np.array([[[5, 7]]], dtype=dtype)
    y, idx = poolkit.max_pool1d(x, 1, 1, ((1, 1),), return_indices=True, backend=backend)
    lowest = -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, np.array([[[lowest, 5, 7, lowest]]], dtype=dtype))
    np.testing.assert_array_equal(idx, [[[-1, 0, 1, -1]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_valid_is_no_padding(backend):
    x = _input(3)
    for fn in (poolkit.max_pool3d, poolkit.avg_pool3d):
        plain = fn(x, 2, 1, 0, backend=backend)
        assert_identical(fn(x, 2, 1, "valid", backend=backend), plain)
        assert_identical(fn(x, 2, 1, ((0, 0),) * 3, backend=backend), plain)


def test_pairs_equal_to_symmetric_padding_match_pytorch_style():
    x = _input(2)
    sym = poolkit.avg_pool2d(x, 3, 2, (1, 0), count_include_pad=True)
    pairs = poolkit.avg_pool2d(x, 3, 2, ((1, 1), (0, 0)), count_include_pad=True)
    assert_identical(sym, pairs)
    assert_identical(poolkit.max_pool2d(x, 3, 1, 1), poolkit.max_pool2d(x, 3, 1, ((1, 1), (1, 1))))


# --------------------------------------------------------------------------- #
# backward: finite differences, cross-backend equality, layers
# --------------------------------------------------------------------------- #
def _finite_difference(op, rank, x, g, name, backend, count_include_pad, h=0.25):
    """d/dx of sum(g * pool(x)) by central differences, all perturbed inputs pooled in one batched call.

    Outputs that do not depend on x (max windows wholly in padding, -inf) are left out of the sum.
    """
    n = x.size
    eye = np.eye(n).reshape((n,) + x.shape[1:])
    batch = np.concatenate([x + h * eye, x - h * eye])               # (2n, 1, *S)
    y = _call(op, rank, batch, name, backend=backend, count_include_pad=count_include_pad)
    gy = np.where(np.isfinite(y), g * y, 0.0).reshape(2 * n, -1).sum(axis=1)
    return ((gy[:n] - gy[n:]) / (2 * h)).reshape(x.shape)


@pytest.mark.parametrize("name,op,rank,backend", _params())
def test_backward_matches_finite_differences(name, op, rank, backend):
    # tie-free integers: every gap >= 1, so a +-0.25 step never changes a window's winner
    x = make_input(np.random.default_rng(7 + rank), (1, 1) + SIZES[:rank], np.float64, "distinct")
    for cip in ((True,) if op == "max" else (True, False)):
        y = _call(op, rank, x, name, backend=backend, count_include_pad=cip, return_indices=op == "max")
        y, idx = (y if op == "max" else (y, None))
        g = np.random.default_rng(3).uniform(0.5, 1.5, size=y.shape)
        grad = _backward(op, rank, g, x.shape, name, backend=backend, indices=idx, count_include_pad=cip)
        numeric = _finite_difference(op, rank, x, g, name, backend, cip)
        np.testing.assert_allclose(grad, numeric, rtol=1e-10, atol=1e-10, err_msg=f"{name} cip={cip}")


def _layer(op, rank, name, backend, count_include_pad):
    kernel, stride, dilation, padding, ceil_mode = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"MaxPool{rank}d")(kernel, stride, padding, dilation, ceil_mode, backend=backend)
    return getattr(poolkit, f"AvgPool{rank}d")(kernel, stride, padding, ceil_mode, count_include_pad,
                                              backend=backend)


@pytest.mark.parametrize("name,op,rank", [pytest.param(*p.values[:3], id=p.id.rsplit("-", 1)[0])
                                          for p in _params(backends=("numba",))])
def test_backward_equal_across_backends(name, op, rank):
    """Every backend's gradient equals the reference backend's (bit for bit for max), function and layer."""
    x = _input(rank, "ties")                        # ties: the first maximum must win everywhere
    for cip in ((True,) if op == "max" else (True, False)):
        g = None
        results = {}
        for be in KERNEL_BACKENDS:
            if op == "max":
                y, idx = _call(op, rank, x, name, backend=be, return_indices=True)
            else:
                y, idx = _call(op, rank, x, name, backend=be, count_include_pad=cip), None
            if g is None:
                g = np.random.default_rng(11).standard_normal(y.shape)
            results[be] = _backward(op, rank, g, x.shape, name, backend=be, indices=idx, count_include_pad=cip)
            layer = _layer(op, rank, name, be, cip)
            layer(x)
            assert_identical(layer.backward(g), results[be], f"{be}: layer vs function")
        for be in ("img2col", "numba"):
            if op == "max":
                assert_identical(results[be], results["reference"], f"{name}: {be} vs reference")
            else:
                np.testing.assert_allclose(results[be], results["reference"], rtol=1e-13, atol=1e-15,
                                           err_msg=f"{name}: {be} vs reference, cip={cip}")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_same_channels_last_and_layers(backend):
    """"same" on channels-last data and through the layers equals the channels-first function."""
    x = _input(2)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for op in OPS:
        kw = {} if op == "max" else {"count_include_pad": False}
        fn = getattr(poolkit, f"{op}_pool2d")
        first = fn(x, 3, 2, "same", backend=backend, **kw)
        last = fn(x_last, 3, 2, "same", backend=backend, data_format="NHWC", **kw)
        assert_identical(np.moveaxis(last, -1, 1), first)
        layer = (poolkit.MaxPool2d if op == "max" else poolkit.AvgPool2d)(3, 2, "same", backend=backend, **kw)
        assert_identical(layer(x), first)
        # the same layer on another size resolves "same" again: (9, 4) -> (5, 2)
        other = x[:, :, :, :4].copy()
        other = np.concatenate([other, other[:, :, :2]], axis=2)
        assert_identical(layer(other), fn(other, 3, 2, "same", backend=backend, **kw))
        assert layer(other).shape[2:] == (5, 2)


# --------------------------------------------------------------------------- #
# no padded copy, and argument errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_padding_is_not_materialised(backend):
    # 400 planes of 200 samples padded by 5000 on each side: a padded copy would take 33 MB,
    # the input is 0.6 MB and the output 400 * 2 numbers.
    x = make_input(np.random.default_rng(0), (400, 1, 200), np.float64)
    pad = ((5000, 5000),)

    def pool(op):
        if op == "max":
            return poolkit.max_pool1d(x, 5000, 5000, pad, backend=backend)
        return poolkit.avg_pool1d(x, 5000, 5000, pad, count_include_pad=False, backend=backend)

    for op in OPS:
        # The first call of a process may compile the kernel or load it from the disk cache
        # (tens of MB of Numba's own allocations): make it outside the traced region, so that
        # only the pooling itself is measured, whichever tests ran before in this worker.
        pool(op)
        tracemalloc.start()
        try:
            y = pool(op)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert y.shape == (400, 1, 2)
        # window 0 lies wholly in the left padding, window 1 covers the whole input
        np.testing.assert_array_equal(y[..., 0], -np.inf if op == "max" else 0.0)
        expected = x.max(-1) if op == "max" else x.mean(-1)
        np.testing.assert_allclose(y[..., 1], expected, rtol=1e-12)
        assert peak < 8 * x.nbytes, f"{op}: peak {peak / 1e6:.1f} MB suggests a padded copy"


def test_padding_errors():
    x = _input(2)
    with pytest.raises(ValueError, match="ceil_mode"):
        poolkit.max_pool2d(x, 2, padding="same", ceil_mode=True)
    with pytest.raises(ValueError, match="non-negative"):
        poolkit.max_pool2d(x, 2, padding=((0, -1), (0, 0)))
    with pytest.raises(ValueError, match="pairs"):
        poolkit.max_pool2d(x, 2, padding=((0, 1),))
    with pytest.raises(ValueError, match="pairs"):
        poolkit.avg_pool2d(x, 2, padding=((0, 1, 2), (0, 0)))
    with pytest.raises(ValueError, match="padding"):
        poolkit.max_pool2d(x, 2, padding="full")
    with pytest.raises(ValueError, match="half"):
        poolkit.max_pool2d(x, 2, padding=2)                  # PyTorch's limit for symmetric padding ...
    poolkit.max_pool2d(x, 2, padding=((2, 2), (2, 2)))        # ... which pairs lift
    assert_identical(poolkit.max_pool2d(x, 2, padding=[[2, 1], [0, 3]]),  # lists work as pairs too
                     poolkit.max_pool2d(x, 2, padding=((2, 1), (0, 3))))
    with pytest.raises(ValueError, match="too small"):
        poolkit.max_pool2d(x, 20, padding="valid")
