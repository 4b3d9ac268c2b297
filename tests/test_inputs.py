"""What poolkit accepts as input, and that it never writes to it.

* Inputs (and gradients, and indices) are never modified, on any backend.
* Read-only arrays, non-contiguous views, negative strides, Fortran order,
  non-native byte order and nested Python lists all work and give exactly the
  result of a C-contiguous copy.
* An empty batch (N=0) gives an empty result, as in PyTorch.
* Integer max pooling is exact (also beyond float64's 53-bit mantissa).
* float16 in gives float16 out.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import (BACKENDS, INTS, LAST, RANKS, Case, assert_identical, make_input, naive_adaptive, naive_pool)
from oracle import F, n, t, torch

# Every public computation, as f(x, g, backend) -> result; g is a gradient of the output's shape
# where the call needs one (created from a first forward).


def _max_bwd(x, backend, rank=2):
    y, idx = getattr(poolkit, f"max_pool{rank}d")(x, 3, 2, 1, return_indices=True, backend=backend)
    g = np.linspace(-1, 1, y.size).reshape(y.shape).astype(x.dtype if x.dtype.kind == "f" else np.float64)
    return g, idx


def _calls():
    """(name, function of (x, backend) returning a list of arrays) for a (2, 3, 7, 6) float input."""
    def max_fwd(x, b):
        return list(poolkit.max_pool2d(x, 3, 2, 1, 2, True, True, backend=b))

    def max_layer(x, b):
        layer = poolkit.MaxPool2d(3, 2, 1, backend=b)
        y = layer(x)
        g = np.ones_like(y)
        return [y, layer.backward(g), g]

    def max_functional_bwd(x, b):
        g, idx = _max_bwd(x, b)
        g0, idx0 = g.copy(), idx.copy()
        gx = poolkit.max_pool2d_backward(g, idx, x.shape, backend=b)
        assert_identical(g, g0, "grad_output modified")
        assert np.array_equal(idx, idx0), "indices modified"
        return [gx]

    def avg_layer(x, b):
        layer = poolkit.AvgPool2d(3, 2, 1, True, False, backend=b)
        y = layer(x)
        g = np.ones_like(y)
        g0 = g.copy()
        gx = layer.backward(g)
        assert_identical(g, g0, "grad_output modified")
        return [y, gx, poolkit.avg_pool2d_backward(g, x.shape, 3, 2, 1, True, False, backend=b)]

    def adaptive(x, b):
        y, idx = poolkit.adaptive_max_pool2d(x, (3, None), True, backend=b)
        pool = poolkit.AdaptiveAvgPool2d(4, backend=b)
        ya = pool(x)
        return [y, idx, ya, pool.backward(np.ones_like(ya)),
                poolkit.adaptive_avg_pool_backward(np.ones_like(ya), x.shape, data_format="NCHW", backend=b)]

    def global_(x, b):
        y, idx = poolkit.global_max_pool(x, return_indices=True, backend=b)
        return [y, idx, poolkit.global_avg_pool(x, backend=b, keepdims=True)]

    def unpool(x, b):
        y, idx = poolkit.max_pool2d(x, 2, return_indices=True, backend=b)
        y0, idx0 = y.copy(), idx.copy()
        u = poolkit.max_unpool2d(y, idx, 2, output_size=x.shape, backend=b)
        gu = poolkit.max_unpool_backward(x, idx)         # x doubles as a gradient of u's shape
        assert_identical(y, y0, "unpool values modified")
        assert np.array_equal(idx, idx0), "unpool indices modified"
        return [u, gu]

    def channels_last(x, b):
        layer = poolkit.MaxPool2d(2, 1, data_format="NHWC", backend=b)
        y = layer(x)
        return [y, layer.backward(np.ones_like(y)), poolkit.avg_pool2d(x, 2, 1, data_format="NHWC", backend=b)]

    return [("max", max_fwd), ("max-layer", max_layer), ("max-backward", max_functional_bwd),
            ("avg-layer", avg_layer), ("adaptive", adaptive), ("global", global_), ("unpool", unpool),
            ("channels-last", channels_last)]


CALLS = _calls()


def _x(dtype=np.float64, values="ties", seed=61):
    return make_input(np.random.default_rng(seed), (2, 3, 7, 6), dtype, values)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, call", CALLS, ids=[c[0] for c in CALLS])
def test_input_never_modified(name, call, backend):
    x = _x(values="nan")
    x0 = x.copy()
    call(x, backend)
    assert_identical(x, x0, f"{name} modified its input")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, call", CALLS, ids=[c[0] for c in CALLS])
def test_read_only_arrays(name, call, backend):
    """Read-only inputs (and read-only gradients, via the layers' own ones_like copies) work."""
    x = _x()
    expected = call(x.copy(), backend)
    x.setflags(write=False)
    for a, b in zip(call(x, backend), expected):
        assert_identical(a, b, name)


def _variants(x):
    """The same values as ``x`` in other memory layouts: (name, array) pairs."""
    big = np.zeros((x.shape[0], x.shape[1] * 2) + x.shape[2:], x.dtype)
    big[:, ::2] = x
    rev = np.ascontiguousarray(x[..., ::-1])
    return [
        ("strided-view", big[:, ::2]),
        ("negative-strides", rev[..., ::-1]),
        ("fortran", np.asfortranarray(x)),
        ("transposed-view", np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)),
        ("big-endian", x.astype(x.dtype.newbyteorder(">"))),
        ("list", x.tolist()),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, call", CALLS, ids=[c[0] for c in CALLS])
def test_memory_layouts_give_the_same_result(name, call, backend):
    x = _x(values="nan")
    expected = call(x, backend)
    for vname, v in _variants(x):
        if vname == "list" and name not in ("max", "global"):
            v = np.asarray(v)                 # these calls also read x.shape/x.dtype themselves
        for a, b in zip(call(v, backend), expected):
            assert_identical(a, b, f"{name} with a {vname} input")


@pytest.mark.parametrize("backend", BACKENDS)
def test_lists_of_python_numbers(backend):
    x = [[[1, 5, 2, 0, 3, 3]]]                              # ints: integer max pooling
    np.testing.assert_array_equal(poolkit.max_pool1d(x, 2, backend=backend), [[[5, 2, 3]]])
    xf = [[[1.0, 5.0, 2.0, 0.0]]]
    np.testing.assert_array_equal(poolkit.avg_pool1d(xf, 2, backend=backend), [[[3.0, 1.0]]])
    layer = poolkit.MaxPool1d(2, backend=backend)
    layer(xf)
    np.testing.assert_array_equal(layer.backward([[[1.0, 2.0]]]), [[[0.0, 1.0, 2.0, 0.0]]])


# --------------------------------------------------------------------------- #
# empty batch
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
def test_empty_batch(rank, backend):
    shape = (0, 3) + (5,) * rank
    x = np.zeros(shape, np.float32)
    xt = torch.zeros(shape)
    y, idx = getattr(poolkit, f"max_pool{rank}d")(x, 2, return_indices=True, backend=backend)
    assert y.shape == tuple(getattr(F, f"max_pool{rank}d")(xt, 2).shape) and idx.shape == y.shape
    assert y.dtype == np.float32 and idx.dtype == np.int64
    ya = getattr(poolkit, f"avg_pool{rank}d")(x, 3, 2, 1, backend=backend)
    assert ya.shape == tuple(getattr(F, f"avg_pool{rank}d")(xt, 3, 2, 1).shape)
    yad = getattr(poolkit, f"adaptive_max_pool{rank}d")(x, 2, backend=backend)
    assert yad.shape == tuple(getattr(F, f"adaptive_max_pool{rank}d")(xt, 2).shape)
    # backward of an empty batch is an empty gradient of the input's shape
    for layer in (getattr(poolkit, f"MaxPool{rank}d")(2, backend=backend),
                  getattr(poolkit, f"AvgPool{rank}d")(2, backend=backend),
                  getattr(poolkit, f"AdaptiveAvgPool{rank}d")(3, backend=backend)):
        out = layer(x)
        assert out.shape[0] == 0
        gx = layer.backward(np.zeros_like(out))
        assert gx.shape == shape and gx.dtype == np.float32
    assert getattr(poolkit, f"max_pool{rank}d_backward")(np.zeros_like(y), idx, shape, backend=backend).shape == shape
    assert poolkit.max_unpool_backward(np.zeros(shape, np.float32), idx).shape == idx.shape
    assert getattr(poolkit, f"max_unpool{rank}d")(y, idx, 2, backend=backend).shape == (0, 3) + (4,) * rank
    yg, ig = poolkit.global_max_pool(x, return_indices=True, backend=backend)
    assert yg.shape == ig.shape == (0, 3)
    assert poolkit.global_avg_pool(x, backend=backend).shape == (0, 3)
    assert poolkit.global_avg_pool_backward(np.zeros((0, 3), np.float32), shape).shape == shape
    # channels-last, empty batch
    xl = np.zeros((0,) + (5,) * rank + (3,), np.float32)
    assert getattr(poolkit, f"max_pool{rank}d")(xl, 2, data_format=LAST[rank], backend=backend).shape == \
        (0,) + tuple(y.shape[2:]) + (3,)


# --------------------------------------------------------------------------- #
# integers
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_max_pooling_is_exact(dtype, backend):
    rng = np.random.default_rng(62)
    info = np.iinfo(dtype)
    for rank in RANKS:
        shape = (2, 2) + (5,) * rank
        # the whole range, extremes included, with many ties
        x = rng.choice(np.array([info.min, info.min + 1, -1 if info.min else 0, 0, 1, info.max - 1, info.max],
                                dtype=dtype), size=shape)
        case = Case("max", rank, shape, 3, 2, 1, (1,) * (rank - 1) + (2,), ceil_mode=True, dtype=dtype,
                    backend=backend)
        y, idx = getattr(poolkit, f"max_pool{rank}d")(x, **case.pk_kwargs(), return_indices=True)
        y_n, i_n = naive_pool(x, case)
        assert y.dtype == np.dtype(dtype)
        assert_identical(y, y_n, f"{rank}-D {np.dtype(dtype).name}")
        assert np.array_equal(idx, i_n)
        # adaptive and global, too
        ya, ia = getattr(poolkit, f"adaptive_max_pool{rank}d")(x, 3, True, backend=backend)
        ya_n, ia_n = naive_adaptive(x, "max", (3,) * rank)
        assert_identical(ya, ya_n)
        assert np.array_equal(ia, ia_n)
        assert_identical(poolkit.global_max_pool(x, backend=backend), x.reshape(2, 2, -1).max(axis=2))
        # the gradient is real-valued: it keeps the gradient's float dtype
        layer = getattr(poolkit, f"MaxPool{rank}d")(2, backend=backend)
        yl = layer(x)
        for gdt in (np.float32, np.float64):
            gx = layer.backward(np.ones(yl.shape, gdt))
            assert gx.dtype == gdt and gx.shape == x.shape and gx.sum() == yl.size


@pytest.mark.parametrize("backend", BACKENDS)
def test_int64_beyond_float_precision(backend):
    """2**62 and 2**62 + 1 are one float64; integer pooling must still tell them apart."""
    big = 2 ** 62
    x = np.array([[[big, big + 1, big + 3, big + 2, -big - 1, -big]]], dtype=np.int64)
    y, idx = poolkit.max_pool1d(x, 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[big + 1, big + 3, -big]]])
    np.testing.assert_array_equal(idx, [[[1, 2, 5]]])
    u = poolkit.max_unpool1d(y, idx, 2, backend=backend)
    assert u.dtype == np.int64 and u[0, 0, 1] == big + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_window_in_padding_gives_dtype_minimum(backend):
    x = np.full((1, 1, 1), 7, np.int16)
    y, idx = poolkit.max_pool1d(x, 2, 1, 1, 2, return_indices=True, backend=backend)
    assert y.dtype == np.int16 and y[0, 0, 0] == np.iinfo(np.int16).min and idx[0, 0, 0] == -1


# --------------------------------------------------------------------------- #
# float16
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_in_float16_out(backend):
    x = _x(np.float16, "normal")
    x32 = x.astype(np.float32)
    outs = {
        "max": (poolkit.max_pool2d(x, 3, 2, 1, backend=backend), poolkit.max_pool2d(x32, 3, 2, 1)),
        "avg": (poolkit.avg_pool2d(x, 3, 2, 1, backend=backend), poolkit.avg_pool2d(x32, 3, 2, 1)),
        "adaptive-max": (poolkit.adaptive_max_pool2d(x, 4, backend=backend), poolkit.adaptive_max_pool2d(x32, 4)),
        "adaptive-avg": (poolkit.adaptive_avg_pool2d(x, 4, backend=backend), poolkit.adaptive_avg_pool2d(x32, 4)),
        "global-max": (poolkit.global_max_pool(x, backend=backend), poolkit.global_max_pool(x32)),
        "global-avg": (poolkit.global_avg_pool(x, backend=backend), poolkit.global_avg_pool(x32)),
    }
    for name, (y16, y32) in outs.items():
        assert y16.dtype == np.float16, name
        # computed in float32, then rounded once
        assert_identical(y16, y32.astype(np.float16), name)
    for cls in (poolkit.MaxPool2d, poolkit.AvgPool2d):
        layer = cls(3, 2, 1, backend=backend)
        y = layer(x)
        gx = layer.backward(np.ones_like(y))
        assert y.dtype == gx.dtype == np.float16
        ref = cls(3, 2, 1)
        ref(x32)
        assert_identical(gx, ref.backward(np.ones(y.shape, np.float32)).astype(np.float16), cls.__name__)
    y, idx = poolkit.max_pool2d(x, 2, return_indices=True, backend=backend)
    assert poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend=backend).dtype == np.float16
    assert poolkit.max_unpool2d(y, idx, 2, output_size=x.shape, backend=backend).dtype == np.float16


def test_float16_matches_torch_half_max():
    """Where PyTorch has a float16 kernel (max_pool2d), poolkit's float16 result is PyTorch's."""
    x = _x(np.float16, "ties")
    y, idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True)
    y_t, i_t = F.max_pool2d(t(x), 3, 2, 1, return_indices=True)
    assert_identical(y, n(y_t))
    assert np.array_equal(idx, n(i_t))


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_gradients_and_indices(backend):
    x = _x()
    y, idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True, backend=backend)
    g = np.linspace(-1, 1, y.size).reshape(y.shape)
    expected = poolkit.max_pool2d_backward(g, idx, x.shape, backend=backend)
    for a in (g, idx):
        a.setflags(write=False)
    assert_identical(poolkit.max_pool2d_backward(g, idx, x.shape, backend=backend), expected)
    layer = poolkit.AvgPool2d(3, 2, 1, backend=backend)
    layer(x)
    assert_identical(layer.backward(g), poolkit.avg_pool2d_backward(g.copy(), x.shape, 3, 2, 1, backend=backend))
    y2, i2 = poolkit.max_pool2d(x, 2, return_indices=True, backend=backend)
    for a in (y2, i2):
        a.setflags(write=False)
    assert poolkit.max_unpool2d(y2, i2, 2, output_size=x.shape, backend=backend).shape == x.shape
