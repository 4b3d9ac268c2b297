"""Min, sum and Lp pooling, dilation for every reduction, and masks (issue 13).

Oracles: PyTorch for Lp pooling and for min pooling's indices (max pooling of -x), NumPy
window reductions (np.nanmin, np.nansum, np.nanmean over explicit windows) for min, sum
and masks, finite differences for every backward, and the three backends against each other.
"""
from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import poolkit

from oracle import F, torch
BACKENDS = ("reference", "img2col", "numba")


# --------------------------------------------------------------------------- #
# a plain NumPy oracle: explicit windows over one padded axis pair
# --------------------------------------------------------------------------- #
def windows_2d(x, k, s, p, d, ceil_mode, fill):
    """``(N, C, OH, OW, K)`` window values of a (N, C, H, W) array and an ``inside`` mask (padding: False)."""
    N, C, H, W = x.shape
    out = [poolkit.output_shape((n,), k, s, p, d, ceil_mode)[0] for n in (H, W)]
    vals = np.full((N, C, out[0], out[1], k * k), fill, dtype=x.dtype)
    inside = np.zeros((out[0], out[1], k * k), dtype=bool)
    for oh in range(out[0]):
        for ow in range(out[1]):
            for jh in range(k):
                for jw in range(k):
                    h, w = oh * s - p + jh * d, ow * s - p + jw * d
                    if 0 <= h < H and 0 <= w < W:
                        vals[:, :, oh, ow, jh * k + jw] = x[:, :, h, w]
                        inside[oh, ow, jh * k + jw] = True
    return vals, inside


def configs(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k = int(rng.integers(1, 4))
        yield dict(k=k, s=int(rng.integers(1, 4)), p=int(rng.integers(0, k // 2 + 1)), d=int(rng.integers(1, 3)),
                   ceil_mode=bool(rng.integers(0, 2)), H=int(rng.integers(4, 9)), W=int(rng.integers(4, 9)),
                   seed=int(rng.integers(1 << 30)))


def _valid(c):
    span = c["d"] * (c["k"] - 1) + 1
    return min(c["H"], c["W"]) + 2 * c["p"] >= span


CONFIGS = [c for c in configs(40, 0) if _valid(c)]


# --------------------------------------------------------------------------- #
# min pooling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", CONFIGS[:14], ids=lambda c: "k{k}s{s}p{p}d{d}c{ceil_mode:d}".format(**c))
def test_min_pool_matches_torch_max_of_negated(c, backend):
    rng = np.random.default_rng(c["seed"])
    x = rng.integers(-3, 4, size=(2, 3, c["H"], c["W"])).astype(np.float64)       # many ties
    x[0, 0, 0, 0] = np.nan
    args = (c["k"], c["s"], c["p"], c["d"], c["ceil_mode"])
    y, idx = poolkit.min_pool2d(x, *args, return_indices=True, backend=backend)
    ty, tidx = F.max_pool2d(-torch.from_numpy(x), *args, return_indices=True)
    np.testing.assert_array_equal(y, -ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    # backward: the gradient goes to the winners, as torch's does through -x
    g = rng.standard_normal(y.shape)
    xt = torch.from_numpy(x).requires_grad_()
    (-F.max_pool2d(-xt, *args)).backward(torch.from_numpy(g))
    np.testing.assert_array_equal(poolkit.min_pool_backward(g, idx, x.shape, backend=backend), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (4, 4, 0)])
def test_min_pool_vector_blocks_match_torch(k, s, p, dtype):
    # rows long enough for the specialised kernels' vector blocks (and a virtual-row case)
    rng = np.random.default_rng(k * 10 + s)
    for shape in ((2, 3, 37, 70), (3, 2, 12, 12)):
        x = rng.integers(-20, 20, size=shape).astype(dtype)
        x[0, 0, 5, 7] = np.nan
        y, idx = poolkit.min_pool2d(x, k, s, p, return_indices=True, backend="numba")
        ty, tidx = F.max_pool2d(-torch.from_numpy(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, -ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.uint64, bool])
def test_min_pool_integers_and_bool_are_exact(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if dtype is not bool else None
    if info is None:
        x = rng.integers(0, 2, size=(2, 2, 7, 6)).astype(bool)
    else:
        x = rng.integers(info.min, info.max, size=(2, 2, 7, 6), dtype=dtype, endpoint=True)
        x[0, 0, :2, :2] = info.min
        x[0, 1, :2, :2] = info.max
    vals, inside = windows_2d(x, 3, 2, 1, 1, True, x.max())
    want = np.where(inside, vals, np.array(x.max(), dtype=x.dtype)).min(axis=-1)
    for backend in BACKENDS:
        y = poolkit.min_pool2d(x, 3, 2, 1, 1, True, backend=backend)
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(y, want)


def test_min_pool_padding_only_window_gives_the_top():
    x = np.arange(4, dtype=np.int16).reshape(1, 1, 4)
    y, idx = poolkit.min_pool1d(x, 1, padding=((2, 0),), return_indices=True)
    assert y[0, 0, 0] == np.iinfo(np.int16).max and idx[0, 0, 0] == -1
    yf = poolkit.min_pool1d(x.astype(np.float32), 1, padding=((1, 0),))
    assert yf[0, 0, 0] == np.inf


def test_min_pool_indices_unpool():
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4))
    y, idx = poolkit.min_pool2d(x, 2, return_indices=True)
    u = poolkit.max_unpool2d(y, idx, 2)
    assert np.count_nonzero(u) == y.size and np.all(u[u != 0] == np.sort(y.ravel())[np.argsort(np.argsort(u[u != 0]))])
    np.testing.assert_array_equal(poolkit.min_pool2d(np.where(u != 0, u, np.inf), 2), y)


# --------------------------------------------------------------------------- #
# sum pooling and dilation of averages
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("c", CONFIGS[:16], ids=lambda c: "k{k}s{s}p{p}d{d}c{ceil_mode:d}".format(**c))
def test_sum_and_dilated_avg_match_window_oracle(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((2, 2, c["H"], c["W"]))
    args = (c["k"], c["s"], c["p"], c["d"], c["ceil_mode"])
    vals, inside = windows_2d(x, *args, 0.0)
    want_sum = vals.sum(axis=-1)
    # count_include_pad with dilation: the dilated taps inside [-p, size + p) (ONNX's reference rule)
    H, W = c["H"], c["W"]
    k, s, p, d = c["k"], c["s"], c["p"], c["d"]
    oh, ow = want_sum.shape[2:]
    padded = np.array([[sum(1 for jh in range(k) for jw in range(k)
                            if -p <= i * s - p + jh * d < H + p and -p <= j * s - p + jw * d < W + p)
                        for j in range(ow)] for i in range(oh)], dtype=float)
    for backend in BACKENDS:
        np.testing.assert_allclose(poolkit.sum_pool2d(x, *args, backend=backend), want_sum, rtol=1e-12, atol=1e-12)
        avg = poolkit.avg_pool2d(x, k, s, p, c["ceil_mode"], dilation=d, backend=backend)
        np.testing.assert_allclose(avg, want_sum / padded, rtol=1e-12, atol=1e-12)
        avg_in = poolkit.avg_pool2d(x, k, s, p, c["ceil_mode"], False, dilation=d, backend=backend)
        np.testing.assert_allclose(avg_in, want_sum / np.maximum(inside.sum(-1), 1), rtol=1e-12, atol=1e-12)


def test_sum_pool_integers_exact_in_int64():
    big = np.array([[2**62, 2**62 - 1, 3, -(2**62)]], dtype=np.int64)
    for backend in BACKENDS:
        y = poolkit.sum_pool(big, 2, stride=1, axes=1, backend=backend)
        assert y.dtype == np.int64
        assert y.tolist() == [[2**63 - 1, 2**62 + 2, 3 - 2**62]]
    u = np.full((1, 1, 4, 4), 255, dtype=np.uint8)
    np.testing.assert_array_equal(poolkit.sum_pool2d(u, 2), np.full((1, 1, 2, 2), 1020))
    # the largest sums each compute path must hold exactly (float32 to 2**24, float64 to 2**53)
    for dtype, k in ((np.uint16, 16), (np.int16, 16), (np.uint16, 17), (np.uint32, 3), (np.int32, 3)):
        info = np.iinfo(dtype)
        for v in (info.max, info.min):
            x = np.full((1, 1, k, k), v, dtype=dtype)
            x[0, 0, 0, 0] = v - 1 if v == info.max else v + 1
            for backend in BACKENDS:
                y = poolkit.sum_pool2d(x, k, backend=backend)
                assert y.dtype == np.int64 and int(y.ravel()[0]) == int(x.astype(object).sum()), (dtype, k, v)
    b = np.eye(4, dtype=bool)[None, None]
    np.testing.assert_array_equal(poolkit.sum_pool2d(b, 2), [[[[2, 0], [0, 2]]]])


def test_sum_pool_float_dtypes_stay():
    x = np.ones((1, 1, 4, 4), dtype=np.float16)
    y = poolkit.sum_pool2d(x, 2)
    assert y.dtype == np.float16 and np.all(y == 4)


def test_sum_pool_backward_matches_torch_avg_times_k():
    rng = np.random.default_rng(3)
    for c in CONFIGS[:10]:
        x = rng.standard_normal((1, 2, c["H"], c["W"]))
        args = (c["k"], c["s"], c["p"], c["d"], c["ceil_mode"])
        g = rng.standard_normal(poolkit.sum_pool2d(x, *args).shape)
        # d(sum)/dx by finite differences is exact for a linear map: compare with the transpose
        gx = poolkit.sum_pool_backward(g, x.shape, *args)
        e = rng.standard_normal(x.shape)
        np.testing.assert_allclose(np.sum(poolkit.sum_pool2d(e, *args) * g), np.sum(e * gx), rtol=1e-10)


# --------------------------------------------------------------------------- #
# Lp pooling
# --------------------------------------------------------------------------- #
LP_CASES = [(p, c) for p in (1.0, 2.0, 3.0, 1.5, math.inf, -math.inf) for c in CONFIGS[:6] if c["d"] == 1]


@pytest.mark.parametrize("p, c", LP_CASES, ids=[f"p{p}-{i}" for i, (p, _) in enumerate(LP_CASES)])
def test_lp_pool_matches_torch(p, c):
    rng = np.random.default_rng(c["seed"])
    x = rng.uniform(0.1, 2.0, size=(2, 2, c["H"], c["W"]))
    if p in (1.0, 3.0, math.inf):
        x = x * rng.choice([-1, 1], size=x.shape)       # PyTorch's rule for negative sums
    k, s = c["k"], c["s"]
    xt = torch.from_numpy(x).requires_grad_()
    ty = F.lp_pool2d(xt, p, k, s, c["ceil_mode"])
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(g))
    for backend in BACKENDS:
        y = poolkit.lp_pool2d(x, p, k, s, c["ceil_mode"], backend=backend)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12, equal_nan=True)
        gx = poolkit.lp_pool_backward(g, x, p, k, s, c["ceil_mode"], backend=backend)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-8, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("rank", [1, 3])
def test_lp_pool_1d_3d_match_torch(rank):
    rng = np.random.default_rng(rank)
    x = rng.uniform(0.1, 2, size=(2, 2) + (5,) * rank)
    fn_t = {1: F.lp_pool1d, 3: F.lp_pool3d}[rank]
    fn = {1: poolkit.lp_pool1d, 3: poolkit.lp_pool3d}[rank]
    for p, ceil in ((2.0, False), (3.0, True)):
        np.testing.assert_allclose(fn(x, p, 2, 2, ceil), fn_t(torch.from_numpy(x), p, 2, 2, ceil).numpy(),
                                   rtol=1e-12)
    layer = {1: poolkit.LPPool1d, 3: poolkit.LPPool3d}[rank](2, 2)
    y = layer(x)
    np.testing.assert_allclose(layer.backward(np.ones_like(y)), poolkit.lp_pool_backward(
        np.ones_like(y), x, 2, 2, data_format={1: "NCL", 3: "NCDHW"}[rank]), rtol=1e-12)


def test_lp_pool_zero_sum_gradient_is_finite():
    x = np.array([[[[1., -1], [0, 0]], [[0., 0], [0, 0]]]])            # p=3: both windows sum to 0
    g = poolkit.lp_pool_backward(np.ones((1, 2, 1, 1)), x, 3.0, 2)
    assert np.all(g == 0)
    xt = torch.from_numpy(x).requires_grad_()
    F.lp_pool2d(xt, 3.0, 2).sum().backward()
    np.testing.assert_array_equal(g, xt.grad.numpy())      # PyTorch 2.13 also gives 0 (was NaN: pytorch#6765)
    g2 = poolkit.lp_pool_backward(np.ones((1, 2, 1, 1)), x, 2.0, 2)   # an all-zero window, p=2
    assert np.all(np.isfinite(g2)) and np.all(g2[0, 1] == 0)
    y = poolkit.lp_pool2d(x, 3.0, 2)
    assert np.all(y == 0)


def test_lp_pool_gradient_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 2, size=(1, 2, 5, 5))
    for p, kw in ((2.0, {}), (3.0, dict(padding=1, dilation=2)), (1.5, dict(padding=((0, 1), (1, 0))))):
        g = rng.standard_normal(poolkit.lp_pool2d(x, p, 2, 1, **kw).shape)
        gx = poolkit.lp_pool_backward(g, x, p, 2, 1, **kw, data_format="NCHW")
        eps = 1e-6
        for i in rng.choice(x.size, 6, replace=False):
            e = np.zeros(x.size)
            e[i] = eps
            e = e.reshape(x.shape)
            fd = (np.sum(poolkit.lp_pool2d(x + e, p, 2, 1, **kw) * g)
                  - np.sum(poolkit.lp_pool2d(x - e, p, 2, 1, **kw) * g)) / (2 * eps)
            assert abs(fd - gx.ravel()[i]) < 1e-6 * max(1, abs(fd))


def test_global_lp_pool_matches_onnx_formula_and_gradient():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 5))
    for p in (1.0, 2.0, 3.5):
        want = np.sum(np.abs(x) ** p, axis=(2, 3)) ** (1 / p)
        np.testing.assert_allclose(poolkit.global_lp_pool(x, p), want, rtol=1e-12)
        assert poolkit.global_lp_pool(x, p, keepdims=True).shape == (2, 3, 1, 1)
        xt = torch.from_numpy(x).requires_grad_()
        (xt.abs() ** p).sum(dim=(2, 3)).pow(1 / p).sum().backward()
        np.testing.assert_allclose(poolkit.global_lp_pool_backward(np.ones((2, 3)), x, p), xt.grad.numpy(),
                                   rtol=1e-10)
    np.testing.assert_array_equal(poolkit.global_lp_pool(x, math.inf), np.abs(x).max(axis=(2, 3)))
    gi = poolkit.global_lp_pool_backward(np.ones((2, 3)), x, math.inf)
    xt = torch.from_numpy(x).requires_grad_()
    xt.abs().amax(dim=(2, 3)).sum().backward()
    np.testing.assert_array_equal(gi, xt.grad.numpy())


def test_lp_layers_and_pickle():
    x = np.random.default_rng(7).uniform(0.1, 1, size=(1, 2, 4, 4)).astype(np.float32)
    layer = poolkit.LPPool2d(2, 2)
    y = layer(x)
    assert y.dtype == np.float32 and layer.saved_nbytes > 0
    clone = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(clone.backward(np.ones_like(y)), layer.backward(np.ones_like(y)))
    layer(x, train=False)
    with pytest.raises(RuntimeError, match="train=False"):
        layer.backward(np.ones_like(y))
    assert "LPPool2d(norm_type=2" in repr(layer)


def test_lp_pool_float16_computes_in_float32():
    x = np.random.default_rng(8).uniform(0.1, 1, size=(1, 1, 4, 4))
    y = poolkit.lp_pool2d(x.astype(np.float16), 2, 2)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, poolkit.lp_pool2d(x.astype(np.float16).astype(np.float32), 2, 2), rtol=1e-3)


# --------------------------------------------------------------------------- #
# masks
# --------------------------------------------------------------------------- #
def _masked_oracle(x, valid, op, k, s, p, d, ceil_mode):
    xn = np.where(valid, x, np.nan)
    vals, inside = windows_2d(xn, k, s, p, d, ceil_mode, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN windows
        if op == "max":
            return np.nanmax(vals, axis=-1)
        if op == "min":
            return np.nanmin(vals, axis=-1)
        if op == "sum":
            return np.nansum(vals, axis=-1)
        return np.nanmean(vals, axis=-1)


@pytest.mark.parametrize("op", ["max", "min", "sum", "avg"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_matches_nan_reductions(op, backend):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 7, 6))
    valid = rng.random(x.shape) > 0.4
    valid[0, 0, :3, :3] = False                              # a window with nothing left
    fn = {"max": poolkit.max_pool2d, "min": poolkit.min_pool2d, "sum": poolkit.sum_pool2d,
          "avg": lambda *a, **k: poolkit.avg_pool2d(*a[:3], a[4], False, **k)}[op]
    y = fn(x, 3, 2, 0, 1, backend=backend, mask=valid) if op != "avg" else \
        poolkit.avg_pool2d(x, 3, 2, 0, False, False, mask=valid, backend=backend)
    np.testing.assert_allclose(y, _masked_oracle(x, valid, op, 3, 2, 0, 1, False), rtol=1e-12, equal_nan=True)
    # a masked array gives the same values, masked where a window has nothing left
    ym = fn(np.ma.MaskedArray(x, mask=~valid), 3, 2, 0, 1, backend=backend) if op != "avg" else \
        poolkit.avg_pool2d(np.ma.MaskedArray(x, mask=~valid), 3, 2, 0, False, False, backend=backend)
    assert isinstance(ym, np.ma.MaskedArray)
    empty = _masked_oracle(valid.astype(float), valid, "sum", 3, 2, 0, 1, False) == 0
    np.testing.assert_array_equal(np.ma.getmaskarray(ym), empty)
    np.testing.assert_array_equal(ym.data, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_and_nan_policy_share_one_mechanism(backend):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = np.nan
    valid = rng.random(x.shape) > 0.3
    # propagate: a NaN that takes part wins; ignore: the NaN is left out too, like a masked element
    y_prop = poolkit.max_pool2d(x, 2, mask=valid, backend=backend)
    assert np.isnan(y_prop[0, 0, 0, 0]) == bool(valid[0, 0, 1, 1])
    both = poolkit.avg_pool2d(x, 2, count_include_pad=False, nan_policy="ignore", mask=valid, backend=backend)
    merged = poolkit.avg_pool2d(x, 2, count_include_pad=False, mask=valid & ~np.isnan(x), backend=backend)
    np.testing.assert_array_equal(both, merged)


@pytest.mark.parametrize("op", ["max", "min", "avg", "sum"])
def test_masked_backward_sends_nothing_to_masked_elements(op):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 5))
    valid = rng.random(x.shape) > 0.5
    cls = {"max": poolkit.MaxPool2d, "min": poolkit.MinPool2d, "avg": poolkit.AvgPool2d, "sum": poolkit.SumPool2d}
    results = []
    for backend in BACKENDS:
        layer = cls[op](3, 1, 1, backend=backend)
        y = layer(x, mask=valid)
        g = np.ones_like(y)
        gx = layer.backward(g)
        assert np.all(gx[~valid] == 0)
        results.append((y, gx))
    for y, gx in results[1:]:
        np.testing.assert_allclose(y, results[0][0], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(gx, results[0][1], rtol=1e-12)
    np.testing.assert_array_equal(results[1][0], results[2][0])       # img2col == numba, bit for bit
    np.testing.assert_array_equal(results[1][1], results[2][1])
    if op in ("avg", "sum"):
        fn = poolkit.avg_pool_backward if op == "avg" else poolkit.sum_pool_backward
        args = (3, 1, 1, False, True) if op == "avg" else (3, 1, 1)
        np.testing.assert_allclose(fn(np.ones_like(results[0][0]), x.shape, *args, mask=valid), results[0][1],
                                   rtol=1e-12)


def test_masked_sum_and_avg_gradients_by_finite_differences():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 1, 5, 5))
    valid = rng.random(x.shape) > 0.3
    for fn in (lambda v: poolkit.avg_pool2d(v, 2, 1, mask=valid), lambda v: poolkit.sum_pool2d(v, 2, 1, mask=valid)):
        layer_y = fn(x)
        g = rng.standard_normal(layer_y.shape)
        # both are linear in x: the gradient is the transpose, checked on random directions
        layer = poolkit.AvgPool2d(2, 1) if fn(np.ones_like(x)).max() <= 1 else poolkit.SumPool2d(2, 1)
        layer(x, mask=valid)
        gx = layer.backward(g)
        e = rng.standard_normal(x.shape)
        np.testing.assert_allclose(np.sum(fn(e) * g), np.sum(e * gx), rtol=1e-10)


def test_integer_masks_and_masked_integer_input():
    x = np.arange(16, dtype=np.int32).reshape(1, 1, 4, 4)
    valid = np.ones_like(x, dtype=bool)
    valid[..., :2, :2] = False
    y = poolkit.max_pool2d(np.ma.MaskedArray(x, mask=~valid), 2)
    assert y.mask.tolist() == [[[[True, False], [False, False]]]]
    s = poolkit.sum_pool2d(x, 2, mask=valid)
    assert s.dtype == np.int64 and s.tolist() == [[[[0, 18], [42, 50]]]]
    m = poolkit.min_pool2d(x, 2, mask=valid)
    assert m[0, 0, 0, 0] == np.iinfo(np.int32).max


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_backends_agree_on_min_sum_and_masks(data):
    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    d = data.draw(st.integers(1, 2))
    H, W = data.draw(st.integers(d * (k - 1) + 1, 7)), data.draw(st.integers(d * (k - 1) + 1, 7))
    ceil_mode = data.draw(st.booleans())
    op = data.draw(st.sampled_from(["min", "sum", "max", "avg"]))
    seed = data.draw(st.integers(0, 2**20))
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(2, 2, H, W)).astype(np.float64)
    x[rng.random(x.shape) < 0.1] = np.nan
    valid = rng.random(x.shape) > 0.3 if data.draw(st.booleans()) else None
    nan_policy = data.draw(st.sampled_from(["propagate", "ignore"]))
    fn = {"min": poolkit.min_pool2d, "max": poolkit.max_pool2d, "sum": poolkit.sum_pool2d}.get(op)
    outs = []
    for backend in BACKENDS:
        if fn is None:
            outs.append(poolkit.avg_pool2d(x, k, s, 0, ceil_mode, dilation=d, nan_policy=nan_policy, mask=valid,
                                           backend=backend))
        else:
            outs.append(fn(x, k, s, 0, d, ceil_mode, nan_policy=nan_policy, mask=valid, backend=backend))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(outs[1], outs[2])


# The error paths of min, sum and Lp pooling and of masks are rows of tests/test_errors.py::ERRORS.


@pytest.mark.parametrize("op", ["min", "sum", "lp"])
def test_layouts_and_axes_agree(op):
    rng = np.random.default_rng(13)
    x = rng.uniform(0.1, 2, size=(2, 3, 7, 6))                   # NCHW
    fn = {"min": lambda v, **k: poolkit.min_pool2d(v, 3, 2, 1, **k),
          "sum": lambda v, **k: poolkit.sum_pool2d(v, 3, 2, 1, **k),
          "lp": lambda v, **k: poolkit.lp_pool2d(v, 2.5, 3, 2, padding=1, **k)}[op]
    nd = {"min": lambda v, **k: poolkit.min_pool(v, 3, 2, 1, **k),
          "sum": lambda v, **k: poolkit.sum_pool(v, 3, 2, 1, **k),
          "lp": lambda v, **k: poolkit.lp_pool(v, 2.5, 3, 2, padding=1, **k)}[op]
    want = fn(x)
    np.testing.assert_array_equal(fn(x.transpose(0, 2, 3, 1), data_format="NHWC"), want.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(nd(x.transpose(2, 0, 3, 1), axes=(0, 2)), want.transpose(2, 0, 3, 1))
    np.testing.assert_array_equal(fn(x[0]), want[0])                                  # unbatched (C, H, W)
