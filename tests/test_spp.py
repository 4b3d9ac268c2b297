"""Spatial pyramid pooling: a PyTorch composition (adaptive pools + cat) as the oracle, every backend,
properties, finite differences, errors, the layer."""
from __future__ import annotations

import copy
import doctest
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
from poolkit.functional import spp
from poolkit.layers import spp as spp_layers
from helpers import KERNEL_BACKENDS, adaptive_bounds, assert_identical, make_input

from oracle import F, torch

BACKENDS = KERNEL_BACKENDS + ("auto",)


def torch_spp(x: np.ndarray, levels, mode):
    """The oracle: PyTorch's adaptive pools, each level flattened C-major, concatenated (NCHW input)."""
    xt = torch.tensor(x, requires_grad=True)
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    batch = tuple(x.shape[:-3])
    parts = [pool(xt, lv).reshape(batch + (x.shape[-3] * lv * lv,)) for lv in levels]
    return xt, torch.cat(parts, dim=-1)


def nhwc(x):
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def nchw(x):
    return np.moveaxis(x, -1, -3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", spp.MODES)
def test_matches_torch(mode, backend):
    rng = np.random.default_rng(len(backend) + (mode == "max"))
    for trial in range(8):
        levels = tuple(int(v) for v in rng.choice([1, 2, 3, 4, 6], size=int(rng.integers(1, 4)), replace=False))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        if trial % 4 == 3:
            shape = shape[1:]                                   # unbatched
        dtype = (np.float32, np.float64)[trial % 2]
        x = make_input(rng, shape, dtype, "distinct" if mode == "max" else "normal")
        xt, yt = torch_spp(x, levels, mode)
        g = make_input(rng, yt.shape, dtype)
        yt.backward(torch.tensor(g))
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        for fmt, xin in (("NCHW", x), ("NHWC", nhwc(x))):
            res = spp.spatial_pyramid_pool2d(xin, levels, mode, mode == "max", data_format=fmt, backend=backend)
            y, idx = res if mode == "max" else (res, None)
            what = f"{shape} {levels} {fmt}"
            if mode == "max":
                assert_identical(y, yt.detach().numpy(), what)
            else:
                np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=rtol, err_msg=what)
                assert y.dtype == x.dtype
            gx = spp.spatial_pyramid_pool2d_backward(g, xin.shape, levels, mode, indices=idx, data_format=fmt,
                                                     backend=backend)
            assert gx.dtype == x.dtype and gx.shape == xin.shape
            np.testing.assert_allclose(gx if fmt == "NCHW" else nchw(gx), xt.grad.numpy(), rtol=rtol, atol=rtol,
                                       err_msg=what)


@pytest.mark.parametrize("mode", spp.MODES)
def test_backends_agree_bit_for_bit(mode):
    rng = np.random.default_rng(3)
    x = make_input(rng, (2, 3, 9, 7), np.float64, "ties")
    levels = (1, 2, 4)
    ref = spp.spatial_pyramid_pool2d(x, levels, mode, mode == "max", backend="img2col")
    y, idx = ref if mode == "max" else (ref, None)
    g = make_input(rng, y.shape, np.float64)
    gref = spp.spatial_pyramid_pool2d_backward(g, x.shape, levels, mode, indices=idx, backend="img2col")
    for backend in ("numba", "auto"):
        res = spp.spatial_pyramid_pool2d(x, levels, mode, mode == "max", backend=backend)
        for a, b in zip(res if mode == "max" else (res,), ref if mode == "max" else (ref,)):
            assert_identical(a, b, backend)
        assert_identical(spp.spatial_pyramid_pool2d_backward(g, x.shape, levels, mode, indices=idx,
                                                             backend=backend), gref, backend)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 9), w=st.integers(1, 9),
       levels=st.lists(st.integers(1, 5), min_size=1, max_size=3), mode=st.sampled_from(spp.MODES),
       last=st.booleans())
def test_features_are_the_windows_in_c_major_order(seed, h, w, levels, mode, last):
    # Every feature, written out from the documented order and PyTorch's adaptive-window rule.
    rng = np.random.default_rng(seed)
    x = make_input(rng, (2, 3, h, w), np.float64, "ties")
    xin = nhwc(x) if last else x
    res = spp.spatial_pyramid_pool2d(xin, levels, mode, mode == "max", data_format="NHWC" if last else "NCHW",
                                     backend="img2col")
    y, idx = res if mode == "max" else (res, None)
    assert y.shape == (2, spp.output_features(3, levels))
    k = 0
    for lv in levels:
        for c in range(3):
            for i in range(lv):
                for j in range(lv):
                    r0, r1 = adaptive_bounds(h, lv, i)
                    c0, c1 = adaptive_bounds(w, lv, j)
                    block = x[:, c, r0:r1, c0:c1].reshape(2, -1)
                    if mode == "max":
                        np.testing.assert_array_equal(y[:, k], block.max(axis=1))
                        rows, cols = np.divmod(idx[:, k], w)
                        assert np.all((r0 <= rows) & (rows < r1) & (c0 <= cols) & (cols < c1))
                    else:
                        np.testing.assert_allclose(y[:, k], block.mean(axis=1), rtol=1e-12, atol=1e-12)
                    k += 1
    assert k == y.shape[1]


@pytest.mark.parametrize("mode", spp.MODES)
def test_gradient_by_finite_differences(mode):
    rng = np.random.default_rng(12)
    x = make_input(rng, (1, 2, 5, 6), np.float64, "distinct")
    levels = (1, 2, 3)
    y, idx = spp.spatial_pyramid_pool2d(x, levels, "max", True) if mode == "max" else \
        (spp.spatial_pyramid_pool2d(x, levels, "avg"), None)
    g = rng.standard_normal(y.shape)
    analytic = spp.spatial_pyramid_pool2d_backward(g, x.shape, levels, mode, indices=idx)
    eps = 1e-3                                   # "distinct" values are >= 1 apart: no winner changes
    numeric = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        up = spp.spatial_pyramid_pool2d(x + step, levels, mode)
        down = spp.spatial_pyramid_pool2d(x - step, levels, mode)
        numeric[i] = float(((up - down) * g).sum()) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7)


def test_any_input_size_gives_the_same_length():
    levels = (1, 2, 4)
    for h, w in ((1, 1), (3, 17), (32, 32), (5, 2)):
        assert spp.spatial_pyramid_pool2d(np.ones((2, 4, h, w)), levels).shape == (2, 4 * 21)


def test_low_precision_and_integers():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    for dt in (np.float16, ml_dtypes.bfloat16):
        xl = x.astype(dt)
        y = spp.spatial_pyramid_pool2d(xl, (1, 2), "avg")
        assert y.dtype == dt
        np.testing.assert_allclose(y.astype(np.float32), spp.spatial_pyramid_pool2d(xl.astype(np.float32), (1, 2),
                                   "avg").astype(dt).astype(np.float32))
        g = spp.spatial_pyramid_pool2d_backward(np.ones_like(y), xl.shape, (1, 2), "avg")
        assert g.dtype == dt
    xi = rng.integers(-50, 50, size=(2, 3, 6, 5)).astype(np.int16)
    yi, ii = spp.spatial_pyramid_pool2d(xi, (1, 2), return_indices=True, backend="img2col")
    yf, jf = spp.spatial_pyramid_pool2d(xi.astype(np.float64), (1, 2), return_indices=True, backend="img2col")
    assert yi.dtype == np.int16
    assert_identical(yi, yf.astype(np.int16))
    assert_identical(ii, jf)


def test_empty_batch():
    y, idx = spp.spatial_pyramid_pool2d(np.zeros((0, 3, 5, 5)), (1, 2), return_indices=True)
    assert y.shape == idx.shape == (0, 15)
    assert spp.spatial_pyramid_pool2d_backward(y, (0, 3, 5, 5), (1, 2), indices=idx).shape == (0, 3, 5, 5)
    assert spp.spatial_pyramid_pool2d_backward(y, (0, 3, 5, 5), (1, 2), "avg").shape == (0, 3, 5, 5)


# --------------------------------------------------------------------------- #
# axes= and nan_policy
# --------------------------------------------------------------------------- #
LEVELS = (1, 2, 3)


def per_plane(v, channels, levels=LEVELS):
    """A data_format result (N, C * sum(l*l)), level-major, as (N, C, sum(l*l)): what axes= gives."""
    parts, at = [], 0
    for lv in levels:
        parts.append(v[:, at: at + channels * lv * lv].reshape(v.shape[0], channels, lv * lv))
        at += channels * lv * lv
    return np.concatenate(parts, axis=-1)


@pytest.mark.parametrize("mode", spp.MODES)
def test_axes_pool_the_same_planes_wherever_they_lie(mode):
    rng = np.random.default_rng(50 + len(mode))
    x = make_input(rng, (2, 3, 7, 9), np.float64, "ties")
    res = spp.spatial_pyramid_pool2d(x, LEVELS, mode, mode == "max", backend="reference")
    y, idx = res if mode == "max" else (res, None)
    g = make_input(rng, y.shape, np.float64)
    gx = spp.spatial_pyramid_pool2d_backward(g, x.shape, LEVELS, mode, indices=idx, backend="reference")
    want, want_idx, want_g = per_plane(y, 3), None if idx is None else per_plane(idx, 3), per_plane(g, 3)
    for backend in BACKENDS:
        # pooled over (H, W) = axes (2, 3): each plane's features on a last axis
        perm = tuple(int(a) for a in rng.permutation(4))
        xp, axes = x.transpose(perm), (perm.index(2), perm.index(3))
        swap = perm.index(0) > perm.index(1)                  # the other axes keep their order in xp
        res = spp.spatial_pyramid_pool2d(xp, LEVELS, mode, mode == "max", axes=axes, backend=backend)
        yp, ip = res if mode == "max" else (res, None)
        what = f"{backend} perm={perm}"
        assert_identical(yp.swapaxes(0, 1) if swap else yp, want, what)
        if mode == "max":
            assert_identical(ip.swapaxes(0, 1) if swap else ip, want_idx, what)
        gp = spp.spatial_pyramid_pool2d_backward(want_g.swapaxes(0, 1) if swap else want_g, xp.shape, LEVELS, mode,
                                                 indices=ip, axes=axes, backend=backend)
        assert gp.flags.c_contiguous
        np.testing.assert_allclose(gp, gx.transpose(perm), rtol=1e-12, atol=1e-12, err_msg=what)


def test_axes_with_more_or_no_batch_axes():
    rng = np.random.default_rng(52)
    x = make_input(rng, (2, 3, 4, 7, 6), np.float32, "ties")
    y, idx = spp.spatial_pyramid_pool2d(x, LEVELS, return_indices=True, axes=(-2, -1))
    y1, i1 = spp.spatial_pyramid_pool2d(x.reshape(24, 1, 7, 6), LEVELS, return_indices=True)
    assert y.shape == (2, 3, 4, 14)
    assert_identical(y, y1.reshape(y.shape))
    assert_identical(idx, i1.reshape(idx.shape))
    ya = spp.spatial_pyramid_pool2d(x[0, 0, 0], LEVELS, "avg", axes=(0, 1))
    np.testing.assert_allclose(ya, spp.spatial_pyramid_pool2d(x[:1, :1, 0], LEVELS, "avg")[0], rtol=1e-6)


def windows_oracle(x, levels, mode, g):
    """nan_policy='ignore' over explicit windows of an (N, C, H, W) array: values, indices and the gradient."""
    N, C, H, W = x.shape
    ys, idxs, gx, k = [], [], np.zeros_like(x), 0
    for lv in levels:
        for c in range(C):
            for i in range(lv):
                for j in range(lv):
                    r0, r1 = adaptive_bounds(H, lv, i)
                    c0, c1 = adaptive_bounds(W, lv, j)
                    for n in range(N):
                        block = x[n, c, r0:r1, c0:c1]
                        ok = ~np.isnan(block)
                        if not ok.any():
                            ys.append(np.nan)
                            idxs.append(-1)
                            continue
                        if mode == "max":
                            best = np.nanmax(block)
                            r, q = np.unravel_index(int(np.flatnonzero(block.ravel() == best)[0]), block.shape)
                            ys.append(best)
                            idxs.append((r0 + r) * W + c0 + q)
                            gx[n, c, r0 + r, c0 + q] += g[n, k]
                        else:
                            ys.append(np.nanmean(block))
                            idxs.append(0)
                            gx[n, c, r0:r1, c0:c1] += np.where(ok, g[n, k] / ok.sum(), 0)
                    k += 1
    shape = (N, len(ys) // N)
    return (np.array(ys).reshape(shape[1], N).T, np.array(idxs).reshape(shape[1], N).T, gx)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 9), w=st.integers(1, 9), mode=st.sampled_from(spp.MODES),
       backend=st.sampled_from(KERNEL_BACKENDS))
def test_nan_policy_ignore_leaves_nan_out_of_each_window(seed, h, w, mode, backend):
    rng = np.random.default_rng(seed)
    x = make_input(rng, (2, 3, h, w), np.float64, "ties")
    x[rng.random(x.shape) < 0.4] = np.nan
    x[0, 1] = np.nan                                           # a plane of NaN only
    want, want_idx, _ = windows_oracle(x, LEVELS, mode, np.zeros((2, 3 * 14)))
    g = rng.standard_normal(want.shape)
    want_g = windows_oracle(x, LEVELS, mode, g)[2]
    res = spp.spatial_pyramid_pool2d(x, LEVELS, mode, mode == "max", nan_policy="ignore", backend=backend)
    y, idx = res if mode == "max" else (res, None)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    if mode == "max":
        np.testing.assert_array_equal(idx, want_idx)
    gx = spp.spatial_pyramid_pool2d_backward(g, x.shape, LEVELS, mode, indices=idx, nan_policy="ignore",
                                             x=x if mode == "avg" else None, backend=backend)
    np.testing.assert_allclose(gx, want_g, rtol=1e-12, atol=1e-12)
    # the layer keeps what backward needs (for averages: where the NaN were), channels-last and with axes alike
    for kw, xin, back in ((dict(), x, lambda v: v), (dict(data_format="NHWC"), nhwc(x), nchw),
                          (dict(axes=(2, 3)), x, lambda v: v)):
        layer = poolkit.SpatialPyramidPool2d(LEVELS, mode, nan_policy="ignore", backend=backend, **kw)
        yl = layer(xin)
        gl = g if "axes" not in kw else per_plane(g, 3)
        np.testing.assert_allclose(back(layer.backward(gl)), want_g, rtol=1e-12, atol=1e-12)
        assert layer.saved_nbytes == (yl.size * 8 if mode == "max" else x.size)


def test_nan_policy_propagate_is_torchs():
    x = np.random.default_rng(53).standard_normal((1, 2, 5, 5))
    x[0, 0, 0, 0] = np.nan
    for mode in spp.MODES:
        _, yt = torch_spp(x, LEVELS, mode)
        np.testing.assert_array_equal(spp.spatial_pyramid_pool2d(x, LEVELS, mode), yt.detach().numpy())


def test_layer_axes_repr_and_errors():
    layer = poolkit.SpatialPyramidPool2d((1, 2), "avg", axes=(0, 1), nan_policy="ignore")
    assert repr(layer) == ("SpatialPyramidPool2d(levels=(1, 2), mode='avg', data_format='NCHW', axes=(0, 1), "
                           "nan_policy='ignore', backend='auto')")
    y = layer(np.ones((4, 4, 3)))
    assert y.shape == (3, 5)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert_identical(clone.backward(np.ones_like(y)), layer.backward(np.ones_like(y)))
    with pytest.raises(TypeError, match=r"`axes` must be an int or a tuple of ints"):
        poolkit.SpatialPyramidPool2d(axes="HW")
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        poolkit.SpatialPyramidPool2d(nan_policy="omit")


# --------------------------------------------------------------------------- #
# errors: one per path
# --------------------------------------------------------------------------- #
X = np.zeros((1, 2, 4, 4))


@pytest.mark.parametrize("kw, exc, match", [
    (dict(levels=()), TypeError, r"non-empty sequence of positive ints.*levels=\(\)"),
    (dict(levels=4), TypeError, "levels=4"),
    (dict(levels=(1, 2.0)), TypeError, r"levels=\(1, 2.0\)"),
    (dict(levels=(1, 0)), ValueError, r"`levels` must be positive, but got levels=\(1, 0\)"),
    (dict(mode="min"), ValueError, "mode='min'"),
    (dict(mode="avg", return_indices=True), ValueError, "return_indices=True` needs mode='max'"),
    (dict(return_indices="yes"), TypeError, "return_indices='yes'"),
    (dict(data_format="NCL"), ValueError, "data_format"),
    (dict(backend="tpu"), ValueError, "backend='tpu'"),
    (dict(axes=(2, 2)), ValueError, "must not repeat an axis"),
    (dict(axes=(2, 4)), ValueError, r"`axes`=\(2, 4\) is out of range for `x` with 4 dimensions"),
    (dict(axes=3), ValueError, r"`axes` must name 2 axes for 2-D pooling"),
    (dict(nan_policy="omit"), ValueError, "`nan_policy` must be 'propagate' or 'ignore', but got nan_policy='omit'"),
])
def test_forward_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        spp.spatial_pyramid_pool2d(X, **kw)


def test_forward_input_errors():
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        spp.spatial_pyramid_pool2d(np.zeros((4, 4)))
    with pytest.raises(TypeError, match="integer input"):
        spp.spatial_pyramid_pool2d(X.astype(np.int32), mode="avg")


G = np.ones((1, 10))
I = np.zeros((1, 10), dtype=np.int64)


@pytest.mark.parametrize("args, kw, exc, match", [
    ((G, X.shape, (1, 2)), dict(), ValueError, r"mode='max' needs the forward call's `indices`"),
    ((G, X.shape, (1, 2), "avg"), dict(indices=I), ValueError, "only for mode='max'"),
    ((G, X.shape, (1, 2)), dict(indices=I.astype(float)), TypeError, "`indices` must be an integer array"),
    ((G, X.shape, (1, 2)), dict(indices=I[:, :5]), ValueError, r"shape of `grad_output`, \(1, 10\)"),
    ((G, X.shape, (1, 2, 3)), dict(indices=I), ValueError, r"shape \(1, 28\).*got shape \(1, 10\)"),
    ((G.astype(int), X.shape, (1, 2)), dict(indices=I), TypeError, "must be floating point"),
    ((G, (1, 2, 4), (1, 2)), dict(indices=I), ValueError, "input_shape"),
    ((G, "shape", (1, 2)), dict(indices=I), TypeError, "input_shape"),
    ((G, X.shape, (1, 2)), dict(indices=I + 16), ValueError, r"`indices` must lie in \[0, 16\)"),
    ((G, X.shape, (1, 2), "avg"), dict(nan_policy="ignore"), ValueError,
     r"nan_policy='ignore' needs the forward input: pass it as `x=`"),
    ((G, X.shape, (1, 2), "avg"), dict(nan_policy="ignore", x=X[0]), ValueError,
     r"`x` must have shape `input_shape`=\(1, 2, 4, 4\), but got shape \(2, 4, 4\)"),
    ((G, X.shape, (1, 2), "avg"), dict(nan_policy="omit"), ValueError, "nan_policy='omit'"),
    ((G, X.shape, (1, 2), "avg"), dict(axes=(2, 3)), ValueError, r"shape \(1, 2, 5\).*got shape \(1, 10\)"),
])
def test_backward_errors(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        spp.spatial_pyramid_pool2d_backward(*args, **kw)


# --------------------------------------------------------------------------- #
# the layer
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("mode", spp.MODES)
@pytest.mark.parametrize("fmt", ("NCHW", "NHWC"))
def test_layer_forward_backward(mode, fmt):
    rng = np.random.default_rng(2)
    x = make_input(rng, (2, 3, 7, 9), np.float64, "distinct")
    xin = x if fmt == "NCHW" else nhwc(x)
    layer = poolkit.SpatialPyramidPool2d((1, 2, 3), mode, data_format=fmt)
    y = layer(xin)
    g = rng.standard_normal(y.shape)
    gx = layer.backward(g)
    xt, yt = torch_spp(x, (1, 2, 3), mode)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx if fmt == "NCHW" else nchw(gx), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert layer.saved_nbytes == (y.size * 8 if mode == "max" else 0)


def test_layer_state_errors_and_pickle():
    layer = poolkit.SpatialPyramidPool2d((1, 2))
    with pytest.raises(RuntimeError, match="no forward has run yet"):
        layer.backward(G)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    y = layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert_identical(clone.backward(np.ones_like(y)), layer.backward(np.ones_like(y)))
    with pytest.raises(ValueError, match="shape of the pooled output"):
        layer.backward(np.ones((1, 11)))
    with pytest.raises(TypeError, match="dtype, float64"):
        layer.backward(np.ones((1, 10), np.float32))
    layer.forward(x, train=False)
    assert layer.saved_nbytes == 0
    with pytest.raises(RuntimeError, match="train=False"):
        layer.backward(np.ones_like(y))


def test_layer_repr_and_construction_errors():
    assert repr(poolkit.SpatialPyramidPool2d()) == ("SpatialPyramidPool2d(levels=(1, 2, 4), mode='max', "
                                                    "data_format='NCHW', axes=None, nan_policy='propagate', "
                                                    "backend='auto')")
    with pytest.raises(ValueError, match="levels"):
        poolkit.SpatialPyramidPool2d((0,))
    with pytest.raises(ValueError, match="mode"):
        poolkit.SpatialPyramidPool2d(mode="sum")
    with pytest.raises(ValueError, match="data_format"):
        poolkit.SpatialPyramidPool2d(data_format="NCDHW")
    with pytest.raises(ValueError, match="backend"):
        poolkit.SpatialPyramidPool2d(backend="x")


def test_docstring_examples(monkeypatch):
    for name in spp.__all__:
        if not hasattr(poolkit, name):
            monkeypatch.setattr(poolkit, name, getattr(spp, name), raising=False)
    for module in (spp, spp_layers):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
