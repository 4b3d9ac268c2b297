"""nan_policy="propagate" (PyTorch's, the default) and "ignore" (NumPy's nan-functions).

Oracle: every window cut out of the input by brute force (written here from the
definition, independent of poolkit's geometry) and reduced with ``np.nanmax`` /
``np.nanargmax`` / ``np.nanmean``.  Semantics under test:

* "ignore": NaN elements leave their window.  Max: the largest other element
  (first one in scan order on ties); a window whose input elements are all NaN
  gives NaN and index -1.  Average: the sum of the other elements divided by
  ``divisor_override``, or by (taps inside the padded extent with
  ``count_include_pad``, else taps inside the input) minus the NaN count -- so
  with ``count_include_pad=False`` it is exactly ``np.nanmean`` of the window,
  with ``True`` it is ``np.nanmean`` of the window with its padding as zeros.
  A window whose input elements are all NaN gives NaN and passes back no gradient.
* A window wholly in padding: max -inf and index -1, average 0, under both policies.
* "propagate": a window holding NaN gives NaN (max: index of its last NaN).
"""
from __future__ import annotations

import functools
import itertools
import warnings

import numpy as np
import pytest

import poolkit
from helpers import KERNEL_BACKENDS, assert_identical, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RANKS = (1, 2, 3)
SIZES = (7, 6, 5)

# per-axis geometry; the first `rank` entries are used
GEOMETRIES = {
    "torch_pad": dict(kernel=(3, 3, 3), stride=(2, 2, 2), padding=((1, 1), (1, 1), (1, 1))),
    "pairs_empty": dict(kernel=(2, 3, 2), stride=(2, 1, 3), padding=((3, 1), (2, 2), (0, 4))),
    "same_overlap": dict(kernel=(3, 2, 4), stride=(1, 1, 2), padding="same"),
}


def _geometry(name, rank):
    g = GEOMETRIES[name]
    pad = g["padding"] if isinstance(g["padding"], str) else g["padding"][:rank]
    return g["kernel"][:rank], g["stride"][:rank], pad


def _same_pairs(sizes, kernel, stride):
    """TensorFlow's "same": out = ceil(n / s), total = max(0, (out-1)*s + k - n), odd pixel after."""
    pairs = []
    for n, k, s in zip(sizes, kernel, stride):
        total = max(0, (-(-n // s) - 1) * s + k - n)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def windows(sizes, kernel, stride, pads):
    """Yield ``(o, positions inside the input, taps inside the padded extent)`` for every output ``o``."""
    outs = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(sizes, kernel, stride, pads)]
    for o in itertools.product(*(range(m) for m in outs)):
        per_axis, padded = [], 1
        for oi, n, k, s, (lo, hi) in zip(o, sizes, kernel, stride, pads):
            taps = [oi * s - lo + j for j in range(k)]
            per_axis.append([q for q in taps if 0 <= q < n])
            padded *= sum(1 for q in taps if -lo <= q < n + hi)
        yield o, list(itertools.product(*per_axis)), padded


def oracle(x, op, kernel, stride, pads, nan_policy="ignore", count_include_pad=True, divisor_override=None):
    """Brute-force pooling of channels-first ``x`` (N, C, *S) in float64 with NumPy's reductions."""
    rank = len(kernel)
    sizes = x.shape[-rank:]
    planes = x.reshape((-1,) + sizes).astype(np.float64)
    outs = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(sizes, kernel, stride, pads)]
    y = np.empty((planes.shape[0],) + tuple(outs))
    idx = np.full(y.shape, -1, dtype=np.int64)
    for o, pos, padded in windows(sizes, kernel, stride, pads):
        sel = (slice(None),) + o
        if not pos:                                   # wholly in padding
            y[sel] = -np.inf if op == "max" else 0.0
            continue
        vals = np.stack([planes[(slice(None),) + p] for p in pos], axis=1)     # (planes, taps)
        flat = np.array([np.ravel_multi_index(p, sizes) for p in pos])
        nan = np.isnan(vals)
        all_nan = nan.all(axis=1)
        safe = np.where(all_nan[:, None], 0.0, vals)   # keeps the nan-functions quiet on all-NaN rows
        if op == "max":
            if nan_policy == "ignore":
                y[sel] = np.where(all_nan, np.nan, np.nanmax(safe, axis=1))
                idx[sel] = np.where(all_nan, -1, flat[np.nanargmax(safe, axis=1)])
            else:
                y[sel] = np.max(vals, axis=1)           # NaN propagates
                last_nan = nan.shape[1] - 1 - np.argmax(nan[:, ::-1], axis=1)
                idx[sel] = np.where(nan.any(axis=1), flat[last_nan], flat[np.argmax(vals, axis=1)])
        else:
            if nan_policy == "propagate":
                y[sel] = vals.sum(axis=1) / (divisor_override or (padded if count_include_pad else len(pos)))
            elif divisor_override is not None:
                y[sel] = np.where(all_nan, np.nan, np.nansum(vals, axis=1) / divisor_override)
            else:
                # np.nanmean of the window, padding counted as zeros when count_include_pad
                zeros = np.zeros((vals.shape[0], padded - len(pos) if count_include_pad else 0))
                y[sel] = np.where(all_nan, np.nan, np.nanmean(np.concatenate([safe, zeros], axis=1), axis=1))
    shape = x.shape[:-rank] + tuple(outs)
    return y.reshape(shape), idx.reshape(shape)


@functools.lru_cache(maxsize=None)
def nan_input(rank, seed=0, lead=(2, 3), values="distinct"):
    """Tie-free values with ~30% NaN, plus a NaN corner block so that some windows are all NaN."""
    rng = np.random.default_rng(seed + rank)
    x = make_input(rng, lead + SIZES[:rank], np.float64, values)
    x[rng.random(x.shape) < 0.3] = np.nan
    x[(0, 0) + (slice(0, 3),) * rank] = np.nan
    x[(-1, -1) + (slice(-2, None),) * rank] = np.nan
    x.setflags(write=False)
    return x


def _resolve(name, rank, x):
    kernel, stride, pad = _geometry(name, rank)
    pairs = _same_pairs(x.shape[-rank:], kernel, stride) if pad == "same" else pad
    return kernel, stride, pad, pairs


def _forward(op, rank, x, kernel, stride, pad, backend, nan_policy="ignore", **kw):
    """(output, indices or None); ``nan_policy=None`` leaves the argument out (the default)."""
    if nan_policy is not None:
        kw["nan_policy"] = nan_policy
    if op == "max":
        return getattr(poolkit, f"max_pool{rank}d")(x, kernel, stride, pad, return_indices=True,
                                                   backend=backend, **kw)
    return getattr(poolkit, f"avg_pool{rank}d")(x, kernel, stride, pad, backend=backend, **kw), None


PARAMS = [pytest.param(name, op, rank, be, id=f"{name}-{op}-{rank}d-{be}")
          for name in GEOMETRIES for op in ("max", "avg") for rank in RANKS for be in KERNEL_BACKENDS]


# --------------------------------------------------------------------------- #
# forward
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,op,rank,backend", PARAMS)
def test_ignore_forward_matches_numpy(name, op, rank, backend):
    x = nan_input(rank)
    kernel, stride, pad, pairs = _resolve(name, rank, x)
    for cip in ((True,) if op == "max" else (True, False)):
        y, idx = _forward(op, rank, x, kernel, stride, pad, backend, count_include_pad=cip) if op == "avg" \
            else _forward(op, rank, x, kernel, stride, pad, backend)
        expected, expected_idx = oracle(x, op, kernel, stride, pairs, "ignore", cip)
        assert np.isnan(expected).any(), "the input must give some all-NaN windows"
        if op == "max":
            assert_identical(y, expected)
            assert_identical(idx, expected_idx)
        else:
            np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14, err_msg=f"cip={cip}")
            assert np.array_equal(np.isnan(y), np.isnan(expected))


@pytest.mark.parametrize("name,op,rank,backend", PARAMS)
def test_propagate_forward(name, op, rank, backend):
    """The default: any NaN in a window makes it NaN; max reports the window's last NaN."""
    x = nan_input(rank)
    kernel, stride, pad, pairs = _resolve(name, rank, x)
    y, idx = _forward(op, rank, x, kernel, stride, pad, backend, nan_policy="propagate")
    expected, expected_idx = oracle(x, op, kernel, stride, pairs, "propagate")
    if op == "max":
        assert_identical(y, expected)
        assert_identical(idx, expected_idx)
    else:
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)
    default = _forward(op, rank, x, kernel, stride, pad, backend, nan_policy=None)[0]
    assert_identical(y, default)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("rank", [2, 3])              # avg_pool1d has no divisor_override (as in PyTorch)
def test_ignore_with_divisor_override(rank, backend):
    x = nan_input(rank)
    kernel, stride, pad, pairs = _resolve("torch_pad", rank, x)
    fn = getattr(poolkit, f"avg_pool{rank}d")
    y = fn(x, kernel, stride, pad, divisor_override=5, nan_policy="ignore", backend=backend)
    expected, _ = oracle(x, "avg", kernel, stride, pairs, "ignore", divisor_override=5)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)
    assert np.isnan(y).any()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_ignore_hand_derived(backend):
    # windows (kernel 2, stride 2, padding 1 each side): [pad, 1] [nan, 3] [nan, nan] [5, pad]
    x = np.array([[[1.0, np.nan, 3.0, np.nan, np.nan, 5.0]]])
    y, idx = poolkit.max_pool1d(x, 2, 2, 1, return_indices=True, nan_policy="ignore", backend=backend)
    np.testing.assert_array_equal(y, [[[1.0, 3.0, np.nan, 5.0]]])
    np.testing.assert_array_equal(idx, [[[0, 2, -1, 5]]])
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(x, 2, 2, 1, count_include_pad=False, nan_policy="ignore", backend=backend),
        [[[1.0, 3.0, np.nan, 5.0]]])
    # count_include_pad: the padding tap still counts (1/2), the NaN tap does not (3/1)
    np.testing.assert_array_equal(
        poolkit.avg_pool1d(x, 2, 2, 1, count_include_pad=True, nan_policy="ignore", backend=backend),
        [[[0.5, 3.0, np.nan, 2.5]]])
    # propagate: NaN wins, and the index is the window's last NaN
    y, idx = poolkit.max_pool1d(x, 2, 2, 1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(y, [[[1.0, np.nan, np.nan, 5.0]]])
    np.testing.assert_array_equal(idx, [[[0, 1, 4, 5]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_wholly_padded_windows_under_ignore(backend):
    # padding (2, 2), kernel 2, stride 2 on [nan, 1]: windows [pad pad] [nan 1] [pad pad]
    x = np.array([[[np.nan, 1.0]]])
    y, idx = poolkit.max_pool1d(x, 2, 2, ((2, 2),), return_indices=True, nan_policy="ignore", backend=backend)
    np.testing.assert_array_equal(y, [[[-np.inf, 1.0, -np.inf]]])
    np.testing.assert_array_equal(idx, [[[-1, 1, -1]]])
    for cip, mid in ((True, 1.0), (False, 1.0)):
        np.testing.assert_array_equal(
            poolkit.avg_pool1d(x, 2, 2, ((2, 2),), count_include_pad=cip, nan_policy="ignore", backend=backend),
            [[[0.0, mid, 0.0]]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_ignore_without_nan_equals_propagate(backend):
    x = make_input(np.random.default_rng(5), (2, 3, 7, 6), np.float64, "ties")
    for op in ("max", "avg"):
        a = _forward(op, 2, x, 3, 2, 1, backend, nan_policy="ignore")
        b = _forward(op, 2, x, 3, 2, 1, backend, nan_policy="propagate")
        assert_identical(a[0], b[0])
        if op == "max":
            assert_identical(a[1], b[1])


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint8])
def test_ignore_on_integers_is_plain_max(dtype):
    x = make_input(np.random.default_rng(1), (2, 3, 9), dtype, "ties")
    a = poolkit.max_pool1d(x, 3, 2, 1, return_indices=True, nan_policy="ignore")
    b = poolkit.max_pool1d(x, 3, 2, 1, return_indices=True)
    assert_identical(a[0], b[0])
    assert_identical(a[1], b[1])


def test_ignore_float32_matches_float64_oracle():
    x = nan_input(2).astype(np.float32)
    y = poolkit.avg_pool2d(x, 3, 1, "same", count_include_pad=False, nan_policy="ignore")
    expected, _ = oracle(x, "avg", (3, 3), (1, 1), _same_pairs(x.shape[-2:], (3, 3), (1, 1)), "ignore", False)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_global_and_adaptive_ignore(op):
    x = nan_input(2).copy()
    x[1, 2] = np.nan                                   # one plane of NaN only
    plane = x.reshape(x.shape[:2] + (-1,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy warns on the all-NaN plane
        expected = np.nanmax(plane, -1) if op == "max" else np.nanmean(plane, -1)
    got = getattr(poolkit, f"global_{op}_pool")(x, nan_policy="ignore")
    assert np.isnan(got[1, 2])
    if op == "max":
        assert_identical(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    a = getattr(poolkit, f"adaptive_{op}_pool2d")(x, (7, 6), nan_policy="ignore")    # one window per element
    assert_identical(a, x)


def test_nan_policy_errors():
    x = nan_input(1)
    for bad in ("omit", None, "IGNORE", True):
        with pytest.raises(ValueError, match="nan_policy"):
            poolkit.max_pool1d(x, 2, nan_policy=bad)
        with pytest.raises(ValueError, match="nan_policy"):
            poolkit.AvgPool1d(2, nan_policy=bad)


# --------------------------------------------------------------------------- #
# backward
# --------------------------------------------------------------------------- #
def _fd(op, rank, x, g, kernel, stride, pad, backend, cip, h=0.25):
    """Central differences of sum(g * pool(x)) over x's non-NaN elements (NaN elements: 0).

    Outputs that cannot change (NaN: all-NaN windows; -inf: windows wholly in padding)
    are left out of the sum; all perturbed inputs are pooled in one batched call.
    """
    live = np.flatnonzero(~np.isnan(x))
    n = live.size
    batch = np.repeat(x, 2 * n, axis=0)
    flat = batch.reshape(2 * n, -1)
    flat[np.arange(n), live] += h
    flat[n + np.arange(n), live] -= h
    y = _forward(op, rank, batch, kernel, stride, pad, backend, count_include_pad=cip)[0] if op == "avg" \
        else _forward(op, rank, batch, kernel, stride, pad, backend)[0]
    fy = np.where(np.isfinite(y), g * y, 0.0).reshape(2 * n, -1).sum(axis=1)
    out = np.zeros(x.size)
    out[live] = (fy[:n] - fy[n:]) / (2 * h)
    return out.reshape(x.shape)


def _layer(op, rank, kernel, stride, pad, backend, cip):
    if op == "max":
        return getattr(poolkit, f"MaxPool{rank}d")(kernel, stride, pad, nan_policy="ignore", backend=backend)
    return getattr(poolkit, f"AvgPool{rank}d")(kernel, stride, pad, count_include_pad=cip, nan_policy="ignore",
                                              backend=backend)


@pytest.mark.parametrize("name,op,rank,backend", PARAMS)
def test_ignore_backward_matches_finite_differences(name, op, rank, backend):
    x = nan_input(rank, seed=20, lead=(1, 1))
    kernel, stride, pad, _ = _resolve(name, rank, x)
    for cip in ((True,) if op == "max" else (True, False)):
        layer = _layer(op, rank, kernel, stride, pad, backend, cip)
        y = layer(x)
        assert np.isnan(y).any(), "the input must give some all-NaN windows"
        g = np.random.default_rng(4).uniform(0.5, 1.5, size=y.shape)
        grad = layer.backward(g)
        assert not np.isnan(grad).any()
        assert (grad[np.isnan(x)] == 0).all(), "NaN elements get no gradient"
        np.testing.assert_allclose(grad, _fd(op, rank, x, g, kernel, stride, pad, backend, cip),
                                   rtol=1e-10, atol=1e-10, err_msg=f"cip={cip}")
        if op == "max":
            _, idx = _forward(op, rank, x, kernel, stride, pad, backend)
            fn = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend=backend)
        else:
            # the functional form needs the forward input to know which elements were NaN
            fn = getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, kernel, stride, pad,
                                                              count_include_pad=cip, nan_policy="ignore",
                                                              x=x, backend=backend)
        assert_identical(fn, grad)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_all_nan_window_passes_no_gradient(backend):
    # windows (kernel 2, stride 1): [1 nan] [nan nan] [nan 4]; the middle one gets a huge upstream value
    x = np.array([[[1.0, np.nan, np.nan, 4.0]]])
    g = np.array([[[1.0, 1e6, 1.0]]])
    for op, expected in (("max", [[[1.0, 0.0, 0.0, 1.0]]]), ("avg", [[[1.0, 0.0, 0.0, 1.0]]])):
        layer = _layer(op, 1, 2, 1, 0, backend, False)
        y = layer(x)
        np.testing.assert_array_equal(y, [[[1.0, np.nan, 4.0]]])
        np.testing.assert_array_equal(layer.backward(g), expected)


@pytest.mark.parametrize("name,op,rank", [pytest.param(n_, o_, r_, id=f"{n_}-{o_}-{r_}d")
                                          for n_ in GEOMETRIES for o_ in ("max", "avg") for r_ in RANKS])
def test_ignore_equal_across_backends(name, op, rank):
    x = nan_input(rank, seed=30)
    kernel, stride, pad, _ = _resolve(name, rank, x)
    for cip in ((True,) if op == "max" else (True, False)):
        res = {}
        for be in KERNEL_BACKENDS:
            layer = _layer(op, rank, kernel, stride, pad, be, cip)
            y = layer(x)
            g = np.random.default_rng(8).standard_normal(y.shape)
            res[be] = (y, layer.backward(g))
        for be in ("img2col", "numba"):
            if op == "max":
                assert_identical(res[be][0], res["reference"][0])
                assert_identical(res[be][1], res["reference"][1])
            else:
                for a, b in zip(res[be], res["reference"]):
                    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_functional_avg_backward_ignore_needs_the_input():
    x = nan_input(2, seed=5)
    g = np.ones(poolkit.avg_pool2d(x, 2, nan_policy="ignore").shape)
    with pytest.raises(ValueError, match="x="):
        poolkit.avg_pool2d_backward(g, x.shape, 2, nan_policy="ignore")
    with pytest.raises(ValueError, match="shape"):
        poolkit.avg_pool2d_backward(g, x.shape, 2, nan_policy="ignore", x=x[..., :-1])
    adaptive = poolkit.AdaptiveAvgPool2d(3, nan_policy="ignore")
    ga = np.ones(adaptive(x).shape)
    assert_identical(poolkit.adaptive_avg_pool_backward(ga, x.shape, nan_policy="ignore", x=x, data_format="NCHW"),
                     adaptive.backward(ga))
