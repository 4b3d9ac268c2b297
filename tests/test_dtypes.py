"""float16 and bfloat16 (``ml_dtypes``) in, the same dtype out, computed in float32 and rounded once.

Forward and backward, max and average, 1-D to 3-D, every kernel backend.
The expectation is the float32 computation of the same values rounded to the
input's dtype (bit for bit), and within one unit in the last place of the
float64 computation rounded the same way.  Also: sums that would overflow or
lose precision in the narrow dtype do not, integers are pooled exactly, and
unsupported dtypes are refused.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import KERNEL_BACKENDS, assert_identical, bits, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RANKS = (1, 2, 3)
SIZES = (7, 6, 5)


def _bfloat16():
    return pytest.importorskip("ml_dtypes").bfloat16


def _dtype(name):
    return np.dtype(np.float16) if name == "float16" else np.dtype(_bfloat16())


# (kernel, stride, padding, count_include_pad) per geometry; first `rank` entries used
GEOMETRIES = {
    "torch": ((3, 3, 3), (2, 2, 2), (1, 1, 1), True),
    "same": ((3, 2, 4), (2, 1, 3), "same", False),
    "pairs": ((2, 3, 2), (1, 2, 2), ((2, 0), (1, 3), (0, 2)), False),
}


def _geometry(name, rank):
    k, s, p, cip = GEOMETRIES[name]
    return k[:rank], s[:rank], (p if isinstance(p, str) else p[:rank]), cip


def _pool(op, rank, x, name, backend, **kw):
    k, s, p, cip = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"max_pool{rank}d")(x, k, s, p, return_indices=True, backend=backend, **kw)
    return getattr(poolkit, f"avg_pool{rank}d")(x, k, s, p, count_include_pad=cip, backend=backend, **kw), None


def _layer(op, rank, name, backend, **kw):
    k, s, p, cip = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"MaxPool{rank}d")(k, s, p, backend=backend, **kw)
    return getattr(poolkit, f"AvgPool{rank}d")(k, s, p, count_include_pad=cip, backend=backend, **kw)


def _backward(op, rank, g, idx, shape, name, backend):
    k, s, p, cip = _geometry(name, rank)
    if op == "max":
        return getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, shape, backend=backend)
    return getattr(poolkit, f"avg_pool{rank}d_backward")(g, shape, k, s, p, False, cip, backend=backend)


def _ulps(a, b):
    """Distance in units in the last place between two arrays of the same 16-bit float dtype."""
    ia = bits(a).astype(np.int32)
    ib = bits(b).astype(np.int32)
    # map sign-magnitude bit patterns onto a monotonic integer line
    ia = np.where(ia & 0x8000, 0x8000 - ia, ia)
    ib = np.where(ib & 0x8000, 0x8000 - ib, ib)
    return np.abs(ia - ib)


def _input(rank, dt, values="normal", seed=0):
    x = make_input(np.random.default_rng(seed + rank), (2, 3) + SIZES[:rank], np.float64, values)
    return (x * 3).astype(dt)                      # values exactly representable in dt from here on


PARAMS = [pytest.param(dtn, op, rank, be, id=f"{dtn}-{op}-{rank}d-{be}")
          for dtn in ("float16", "bfloat16") for op in ("max", "avg") for rank in RANKS for be in KERNEL_BACKENDS]


@pytest.mark.parametrize("dtname,op,rank,backend", PARAMS)
def test_forward_in_dtype_computed_in_float32(dtname, op, rank, backend):
    dt = _dtype(dtname)
    for name in GEOMETRIES:
        x = _input(rank, dt)
        y, idx = _pool(op, rank, x, name, backend)
        assert y.dtype == dt, name
        y32, idx32 = _pool(op, rank, x.astype(np.float32), name, backend)
        assert_identical(y, y32.astype(dt), f"{name}: float32 rounded once")
        if op == "max":
            assert_identical(idx, idx32, name)
        y64, _ = _pool(op, rank, x.astype(np.float64), name, backend)
        assert _ulps(y, y64.astype(dt)).max() <= 1, f"{name}: more than 1 ulp from float64"


@pytest.mark.parametrize("dtname,op,rank,backend", PARAMS)
def test_backward_in_dtype_computed_in_float32(dtname, op, rank, backend):
    dt = _dtype(dtname)
    for name in GEOMETRIES:
        x = _input(rank, dt, seed=10)
        y, idx = _pool(op, rank, x, name, backend)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(dt)
        gx = _backward(op, rank, g, idx, x.shape, name, backend)
        assert gx.dtype == dt, name
        expected = _backward(op, rank, g.astype(np.float32), idx, x.shape, name, backend).astype(dt)
        assert_identical(gx, expected, f"{name}: gradient, float32 rounded once")
        layer = _layer(op, rank, name, backend)
        assert_identical(layer(x), y, f"{name}: layer output")
        assert_identical(layer.backward(g), expected, f"{name}: layer gradient")
        with pytest.raises(TypeError, match="dtype"):
            layer.backward(g.astype(np.float32))                 # the gradient must match the output's dtype


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtname", ["float16", "bfloat16"])
def test_nan_ignore_in_narrow_dtypes(dtname, backend):
    dt = _dtype(dtname)
    x = _input(2, dt, "nan")
    for op in ("max", "avg"):
        y, _ = _pool(op, 2, x, "same", backend, nan_policy="ignore")
        y32, _ = _pool(op, 2, x.astype(np.float32), "same", backend, nan_policy="ignore")
        assert y.dtype == dt
        assert_identical(y, y32.astype(dt))
        layer = _layer(op, 2, "same", backend, nan_policy="ignore")
        layer(x)
        g = np.ones(y.shape, dt)
        layer32 = _layer(op, 2, "same", backend, nan_policy="ignore")
        layer32(x.astype(np.float32))
        assert_identical(layer.backward(g), layer32.backward(g.astype(np.float32)).astype(dt))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_float16_sum_does_not_overflow(backend):
    # 4 * 60000 = 240000 > float16's max 65504: a float16 sum would give inf
    x = np.full((1, 1, 4), 60000.0, dtype=np.float16)
    y = poolkit.avg_pool1d(x, 4, backend=backend)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.array([[[60000.0]]], dtype=np.float16))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_float16_gradient_accumulates_in_float32(backend):
    # one peak inside 8 overlapping windows: its gradient is 2048 + 7 * 1. Summed in float16,
    # 2048 + 1 rounds back to 2048 every time; summed in float32 it is 2055, rounded once to 2056.
    x = np.zeros((1, 1, 15), dtype=np.float16)
    x[0, 0, 7] = 1.0
    y, idx = poolkit.max_pool1d(x, 8, 1, return_indices=True, backend=backend)
    assert (idx == 7).all()
    g = np.ones(y.shape, dtype=np.float16)
    g[0, 0, 0] = 2048.0
    gx = poolkit.max_pool1d_backward(g, idx, x.shape, backend=backend)
    assert gx.dtype == np.float16
    assert gx[0, 0, 7] == np.float16(2056.0)
    layer = poolkit.MaxPool1d(8, 1, backend=backend)
    layer(x)
    assert layer.backward(g)[0, 0, 7] == np.float16(2056.0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_bfloat16_sum_keeps_float32_precision(backend):
    bf16 = _bfloat16()
    # in bfloat16 (8 significant bits) 256 + 1 rounds back to 256; in float32 the mean is exactly 65
    x = np.array([[[256.0, 1.0, 1.0, 2.0]]], dtype=bf16)
    y = poolkit.avg_pool1d(x, 4, backend=backend)
    assert y.dtype == bf16
    assert float(y[0, 0, 0]) == 65.0


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_float16_mean_rounds_once(backend):
    # mean of (2049, 1, 1, 1)/... chosen so that float16 partial sums would round: 2048 + 1 -> 2048 in float16
    x = np.array([[[2048.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]], dtype=np.float16)
    y = poolkit.avg_pool1d(x, 8, backend=backend)
    np.testing.assert_array_equal(y, np.array([[[np.float32(2055.0) / 8]]], dtype=np.float16))


# --------------------------------------------------------------------------- #
# integers and refused dtypes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_integer_max_is_exact(dtype, backend):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(info.min, info.max, size=(2, 3, 7, 6), dtype=dtype, endpoint=True)
    x[0, 0, 0, :2] = info.max
    x[0, 0, 1, :2] = info.max - 1                 # differ by 1 where float64 could not tell them apart
    y, idx = poolkit.max_pool2d(x, 3, 2, ((1, 0), (0, 2)), return_indices=True, backend=backend)
    assert y.dtype == np.dtype(dtype)
    planes = x.reshape(6, -1)
    picked = np.take_along_axis(planes, np.maximum(idx.reshape(6, -1), 0), axis=1).reshape(y.shape)
    assert_identical(np.where(idx >= 0, picked, y), y)
    # against an exact window-by-window maximum (padding at the dtype's minimum)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 2)), constant_values=info.min)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            window = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            np.testing.assert_array_equal(y[:, :, i, j], window.max(axis=(2, 3)))
    # backward: the gradient keeps its own float dtype
    layer = poolkit.MaxPool2d(3, 2, ((1, 0), (0, 2)), backend=backend)
    assert_identical(layer(x), y)
    g = np.ones(y.shape, np.float32)
    gx = layer.backward(g)
    assert gx.dtype == np.float32 and gx.shape == x.shape
    assert_identical(gx, poolkit.max_pool2d_backward(g, idx, x.shape, backend=backend))


def test_refused_dtypes():
    with pytest.raises(TypeError, match="round"):
        poolkit.avg_pool1d(np.zeros((1, 1, 4), np.int32), 2)
    with pytest.raises(TypeError, match="dtype"):
        poolkit.max_pool1d(np.zeros((1, 1, 4), np.complex64), 2)
    with pytest.raises(TypeError, match="dtype"):
        poolkit.avg_pool1d(np.zeros((1, 1, 4), bool), 2)      # bool max/min/sum pooling is allowed
    with pytest.raises(TypeError, match="dtype"):
        poolkit.max_pool1d(np.array([[["a", "b"]]]), 1)
    if np.dtype(np.longdouble).itemsize > 8:
        with pytest.raises(TypeError, match="not supported"):
            poolkit.max_pool1d(np.zeros((1, 1, 4), np.longdouble), 2)
