"""mode_pool, the public op: every backend against a brute-force oracle, layouts, masks, Dask, layers.

The kernels themselves are tested window by window in ``test_mode_kernels.py``; here the whole
path -- argument checks, layouts (``data_format``, ``axes=``, unbatched), masks and masked arrays,
Dask, the layers -- is checked against :func:`_oracle`, which reads each window straight from its
definition and takes ``np.unique`` of what is left in it.
"""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolkit

BACKENDS = ("reference", "img2col", "numba", "auto")
DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")


def _oracle(x, kernel, stride, padding, dilation, ceil_mode, valid=None):
    """Mode pooling over the last ``len(kernel)`` axes of ``x`` (N, C, *S), from the definition."""
    rank = len(kernel)
    spatial = x.shape[-rank:]
    outs = [poolkit.output_shape(n, k, s, p, d, ceil_mode)[0]
            for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation)]
    empty = False if x.dtype == np.bool_ else np.iinfo(x.dtype).min
    y = np.empty(x.shape[:-rank] + tuple(outs), dtype=x.dtype)
    for lead in np.ndindex(*x.shape[:-rank]):
        for o in itertools.product(*(range(n) for n in outs)):
            values = []
            for j in itertools.product(*(range(k) for k in kernel)):
                pos = tuple(oi * s - p + ji * d for oi, ji, s, p, d in zip(o, j, stride, padding, dilation))
                if all(0 <= q < n for q, n in zip(pos, spatial)) and (valid is None or valid[lead + pos]):
                    values.append(x[lead + pos])
            if not values:
                y[lead + o] = empty
                continue
            u, counts = np.unique(np.array(values, dtype=x.dtype), return_counts=True)
            y[lead + o] = u[np.argmax(counts)]           # np.unique sorts: the first of the most is the smallest
    return y


def _labels(rng, shape, dtype):
    if dtype == "bool":
        return rng.random(shape) < 0.4
    info = np.iinfo(dtype)
    # few distinct labels, so that windows hold ties and majorities; the extremes of the dtype too
    pool = np.array([info.min, info.max, 0, 1, 2, 3] + ([-1, -2] if info.min < 0 else []), dtype=dtype)
    return pool[rng.integers(0, pool.size, shape)]


@st.composite
def _cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    ceil_mode = draw(st.booleans())
    spatial = tuple(draw(st.integers(d * (k - 1) + 1 - 2 * p if d * (k - 1) + 1 - 2 * p > 0 else 1, 7))
                    for k, p, d in zip(kernel, padding, dilation))
    dtype = draw(st.sampled_from(DTYPES))
    masked = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return rank, kernel, stride, padding, dilation, ceil_mode, spatial, dtype, masked, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_every_backend_matches_the_oracle(case):
    rank, kernel, stride, padding, dilation, ceil_mode, spatial, dtype, masked, seed = case
    rng = np.random.default_rng(seed)
    x = _labels(rng, (2, 3) + spatial, dtype)
    valid = rng.random(x.shape) < 0.7 if masked else None
    expected = _oracle(x, kernel, stride, padding, dilation, ceil_mode, valid)
    fn = getattr(poolkit, f"mode_pool{rank}d")
    for backend in BACKENDS:
        got = fn(x, kernel, stride, padding, dilation, ceil_mode, mask=valid, backend=backend)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, expected, err_msg=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_and_axes_agree(backend):
    rng = np.random.default_rng(1)
    x = _labels(rng, (2, 4, 9, 8), "int16")
    first = poolkit.mode_pool2d(x, 3, 2, 1, backend=backend)
    last = poolkit.mode_pool2d(np.moveaxis(x, 1, -1), 3, 2, 1, data_format="NHWC", backend=backend)
    np.testing.assert_array_equal(np.moveaxis(last, -1, 1), first)
    # any axes of any array: the pooled axes apart and in another order
    y = np.transpose(x, (2, 0, 3, 1))                                # (H, N, W, C)
    z = poolkit.mode_pool(y, 3, 2, 1, axes=(0, 2), backend=backend)
    np.testing.assert_array_equal(np.transpose(z, (1, 3, 0, 2)), first)
    np.testing.assert_array_equal(poolkit.mode_pool2d(x[0], 3, 2, 1, backend=backend), first[0])   # unbatched


def test_masked_array_is_masked_where_a_window_is_empty():
    rng = np.random.default_rng(2)
    x = _labels(rng, (1, 2, 6, 6), "uint8")
    hidden = rng.random(x.shape) < 0.5
    hidden[0, 0, :2, :2] = True                                      # one window with nothing left
    got = poolkit.mode_pool2d(np.ma.MaskedArray(x, mask=hidden), 2)
    assert isinstance(got, np.ma.MaskedArray)
    empty = _oracle(np.ones(x.shape, np.uint8), (2, 2), (2, 2), (0, 0), (1, 1), False, ~hidden) == 0
    assert empty[0, 0, 0, 0]
    np.testing.assert_array_equal(np.ma.getmaskarray(got), empty)
    np.testing.assert_array_equal(got.data, _oracle(x, (2, 2), (2, 2), (0, 0), (1, 1), False, ~hidden))


def test_ties_go_to_the_smallest_and_labels_are_never_mixed():
    x = np.array([[[5, 3, 3, 5, -7, 2, 2, -7]]], dtype=np.int8)
    np.testing.assert_array_equal(poolkit.mode_pool1d(x, 4), [[[3, -7]]])
    b = np.array([[[True, False, False, True]]])
    assert poolkit.mode_pool1d(b, 4).tolist() == [[[False]]]
    big = np.array([[[2**63 - 1, 2**63 - 1, -2**63, 5]]], dtype=np.int64)
    assert poolkit.mode_pool1d(big, 4)[0, 0, 0] == 2**63 - 1


def test_one_level_of_the_label_pyramid():
    x = _labels(np.random.default_rng(3), (11, 9, 7), "uint16")
    np.testing.assert_array_equal(poolkit.mode_pool(x, 2, ceil_mode=True, axes=(0, 1, 2)),
                                  poolkit.pyramid(x, 1, method="mode")[1])


@pytest.mark.parametrize("chunks", [(1, 1, 2, 3), (2, 3, 5, 4), (1, 2, 1, 7)])
def test_dask_is_bit_for_bit_numpy(chunks):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(4)
    x = _labels(rng, (2, 3, 11, 9), "int32")
    valid = rng.random(x.shape) < 0.8
    for args in [(2,), (3, 2, 1), (3, 1, 1, 2, True)]:
        lazy = poolkit.mode_pool2d(da.from_array(x, chunks=chunks), *args, mask=da.from_array(valid, chunks=chunks))
        np.testing.assert_array_equal(lazy.compute(), poolkit.mode_pool2d(x, *args, mask=valid), err_msg=str(args))


def test_layers():
    x = _labels(np.random.default_rng(5), (2, 3, 6, 6, 6), "uint8")
    layer = poolkit.ModePool3d(2, 2, 1, data_format="NCDHW")
    assert repr(layer) == ("ModePool3d(kernel_size=2, stride=2, padding=1, dilation=1, ceil_mode=False, "
                           "data_format='NCDHW', axes=None, backend='auto')")
    y = layer(x)
    np.testing.assert_array_equal(y, poolkit.mode_pool3d(x, 2, 2, 1))
    assert layer.saved_nbytes == 0
    with pytest.raises(TypeError, match="no gradient"):
        layer.backward(np.ones(y.shape))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(layer))(x), y)
    two = poolkit.ModePool2d((2, 3), axes=(0, 1))
    np.testing.assert_array_equal(two(x[0, 0]), poolkit.mode_pool(x[0, 0], (2, 3), axes=(0, 1)))
    np.testing.assert_array_equal(poolkit.ModePool1d(3, 1, 1)(x[:, :, 0, 0]), poolkit.mode_pool1d(x[:, :, 0, 0], 3, 1, 1))


def test_input_is_never_written():
    x = _labels(np.random.default_rng(6), (1, 1, 5, 5), "int64")
    x.setflags(write=False)
    before = x.copy()
    for backend in BACKENDS:
        poolkit.mode_pool2d(x, 3, 1, 1, backend=backend)
    np.testing.assert_array_equal(x, before)
