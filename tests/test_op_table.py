"""The op table (poolkit.core.reductions): its rules, and a reduction added from outside the package.

A reduction with kernels of its own needs only its record and its kernels' module (plus public
functions, in poolkit.functional): the front door, both engines and every backend name take it.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import poolkit
from poolkit.core import reductions as R
from poolkit.core.geometry import PoolSpec
from poolkit.core.layout import dtype_policy
from poolkit.core.windows import StridedWindows
from poolkit.engine import eager, lazy
from poolkit.engine.prepare import prepare

MEDIAN = R.Reduction("median", "median", floats=True, integers=R.EXACT, saved=R.NOTHING, forward="median_forward",
                     kernels="op_table_kernels")


def _median(x, backend="auto"):
    p = prepare(MEDIAN, x, 2, StridedWindows(PoolSpec.from_args(2, 3, 2, 1), MEDIAN, True), data_format="NCHW",
                axes=None, backend=backend)
    return p, eager.run_forward(p, x, keep=True)


def _by_hand(x):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    out = np.empty(x.shape[:2] + (3, 3))
    for i in range(3):
        for j in range(3):
            out[..., i, j] = np.nanmedian(xp[..., 2 * i:2 * i + 3, 2 * j:2 * j + 3], axis=(-2, -1))
    return out


@pytest.mark.parametrize("backend", ["reference", "img2col", "numba", "auto"])
def test_a_reduction_with_kernels_of_its_own_runs_on_every_backend(backend):
    x = np.random.default_rng(0).integers(0, 9, (2, 3, 5, 6)).astype(np.int16)
    p, (y, idx, ctx) = _median(x, backend)
    assert y.dtype == np.int16 and idx is None and ctx.saved is None
    np.testing.assert_array_equal(y, _by_hand(x).astype(np.int16))
    with pytest.raises(TypeError, match="median pooling has no gradient"):
        eager.run_backward(ctx, np.ones(y.shape))


def test_a_reduction_with_kernels_of_its_own_on_dask():
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 11)).astype(np.float32)
    p = prepare(MEDIAN, x, 2, StridedWindows(PoolSpec.from_args(2, 3, 2, 1), MEDIAN, True), data_format="NCHW",
                axes=None, backend="img2col")
    got = lazy.run_forward(p, da.from_array(x, chunks=(1, 3, 4, 5)), keep=False)[0].compute()
    np.testing.assert_array_equal(got, eager.run_forward(p, x, keep=False)[0])


def test_records_read_by_the_dtype_policy():
    assert dtype_policy(np.dtype(bool), R.MAX).compute == np.uint8
    assert dtype_policy(np.dtype(np.int8), R.SUM).result == np.int64
    assert dtype_policy(np.dtype(np.uint16), R.SUM, taps=4).compute == np.float32      # exact in float32
    assert dtype_policy(np.dtype(np.uint16), R.SUM, taps=512).compute == np.float64
    with pytest.raises(TypeError, match="average pooling of integer input"):
        dtype_policy(np.dtype(np.int32), R.AVG)
    with pytest.raises(TypeError, match="Lp pooling of integer input"):
        dtype_policy(np.dtype(np.int32), R.LP)
    ints_only = R.Reduction("ints-only", "label", floats=False, integers=R.EXACT)
    with pytest.raises(TypeError, match="label pooling takes integers and bool only, but got dtype=float32"):
        dtype_policy(np.dtype(np.float32), ints_only)


def test_padding_and_empty_values():
    f, i = np.dtype(np.float32), np.dtype(np.int8)
    assert R.MAX.padding(f) == -np.inf and R.MIN.padding(f) == np.inf and R.AVG.padding(f) == 0
    assert R.MAX.padding(i) == -128 and R.MIN.padding(i) == 127
    assert np.isnan(R.AVG.empty(f)) and R.SUM.empty(f) == 0 and R.MIN.empty(i) == 127
    assert R.MAX.better is np.greater and R.MIN.better is np.less
    assert R.MIN.scan(True) is np.fmin and R.MAX.scan(False) is np.maximum


def test_records_are_singletons_through_pickle_and_the_registry():
    for r in R.REDUCTIONS.values():
        assert pickle.loads(pickle.dumps(r)) is r and R.by_name(r.name) is r
    with pytest.raises(ValueError, match="no reduction is called 'mean'"):
        R.by_name("mean")
    with pytest.raises(ValueError, match="registered already"):
        R.register(R.Reduction("max", "max"))
    with pytest.raises(TypeError, match="runs no variant of the shared kernels"):
        MEDIAN.variant
    # a layer's saved plan holds the record itself, after a round trip too
    layer = poolkit.MinPool2d(2)
    layer(np.ones((1, 1, 4, 4)))
    assert pickle.loads(pickle.dumps(layer))._ctx.prepared.plan.reduction is R.MIN
