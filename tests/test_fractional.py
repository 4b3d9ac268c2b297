"""Fractional max pooling: PyTorch as the oracle (given its samples), every backend, properties, errors, layers.

The window rule is written again here, plainly, from PyTorch's
``generate_intervals`` (:func:`starts`), so that a slip in
``poolkit.functional.fractional`` cannot hide by also being in the expectation.
"""
from __future__ import annotations

import copy
import doctest
import itertools
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
from poolkit.core.windows import SAMPLE_COLUMN
from poolkit.functional import fractional as fr
from poolkit.layers import fractional as fr_layers
from poolkit.backends import fractional as _fractional
from helpers import KERNEL_BACKENDS, assert_identical, make_input, to_first, to_last

from oracle import F, torch

BACKENDS = KERNEL_BACKENDS + ("auto",)
FLOATS = (np.float32, np.float64)
POOL = {2: fr.fractional_max_pool2d, 3: fr.fractional_max_pool3d}
BACK = {2: fr.fractional_max_pool2d_backward, 3: fr.fractional_max_pool3d_backward}
TORCH = {2: lambda *a, **k: F.fractional_max_pool2d(*a, **k),       # PyTorch, once a test calls it
         3: lambda *a, **k: F.fractional_max_pool3d(*a, **k)}
LAYER = {2: poolkit.FractionalMaxPool2d, 3: poolkit.FractionalMaxPool3d}
LAST = {2: "NHWC", 3: "NDHWC"}


def starts(u: float, size: int, out: int, k: int) -> list:
    """PyTorch's window starts for one plane and axis, in Python (float64) arithmetic."""
    if out == 1:
        return [size - k]
    alpha = (size - k) / (out - 1)
    return [int((i + u) * alpha) - int(u * alpha) for i in range(out - 1)] + [size - k]


def windows(rank, shape, kernel, out, u):
    """Every output position ``(n, c, *pos)`` with its window (slices into plane ``x[n, c]``), by PyTorch's rule."""
    sizes = shape[2:]
    for n in range(shape[0]):
        for c in range(shape[1]):
            axes_starts = [starts(float(u[n, c, col]), s, o, k)
                           for col, s, o, k in zip(SAMPLE_COLUMN[rank], sizes, out, kernel)]
            for pos in np.ndindex(*out):
                yield (n, c) + pos, tuple(slice(st_[p], st_[p] + k) for st_, p, k in zip(axes_starts, pos, kernel))


def random_case(rng, rank, dtype, values="normal", batched=True, strict3d=True):
    """A random input, kernel, output size and PyTorch-layout samples (float in x's dtype)."""
    N, C = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    sizes = tuple(int(s) for s in rng.integers(2, 10, size=rank))
    kernel = tuple(int(rng.integers(1, min(s, 4) + 1)) for s in sizes)
    # PyTorch's 3-D kernel wants out + k - 1 < size (its 2-D one, and poolkit, allow <=)
    slack = 1 if (rank == 3 and strict3d) else 0
    out = []
    for s, k in zip(sizes, kernel):
        top = s - k + 1 - slack
        out.append(int(rng.integers(1, top + 1)) if top >= 1 else None)
    if None in out:
        return random_case(rng, rank, dtype, values, batched, strict3d)
    x = make_input(rng, ((N, C) if batched else (C,)) + sizes, dtype, values)
    u = rng.random((N if batched else 1, C, rank)).astype(dtype)
    return x, kernel, tuple(out), u


def torch_pool(rank, x, kernel, out, u):
    xt = torch.tensor(x, requires_grad=True)
    y, idx = TORCH[rank](xt, kernel, output_size=out, return_indices=True, _random_samples=torch.tensor(u))
    return xt, y, idx


# --------------------------------------------------------------------------- #
# PyTorch as the oracle
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("rank", (2, 3))
def test_matches_torch(rank, dtype, backend):
    rng = np.random.default_rng(100 * rank + len(backend) + (dtype == np.float32))
    for trial in range(12):
        batched = trial % 4 != 3
        x, kernel, out, u = random_case(rng, rank, dtype, "normal", batched)
        xt, yt, it = torch_pool(rank, x, kernel, out, u)
        y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, backend=backend)
        what = f"{x.shape} k={kernel} out={out}"
        assert_identical(y, yt.detach().numpy(), what)
        assert_identical(idx, it.numpy(), what)
        g = make_input(rng, y.shape, dtype, "normal")
        yt.backward(torch.tensor(g))
        gx = BACK[rank](g, idx, x.shape, backend=backend)
        # overlapping windows: an element that wins several sums their gradients (in output order)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=what)
        assert gx.dtype == x.dtype


@pytest.mark.parametrize("values", ("ties", "nan", "inf"))
@pytest.mark.parametrize("rank", (2, 3))
def test_ties_and_nan_follow_torch(rank, values):
    rng = np.random.default_rng(7 + rank)
    for _ in range(10):
        x, kernel, out, u = random_case(rng, rank, np.float64, values)
        _, yt, it = torch_pool(rank, x, kernel, out, u)
        for backend in KERNEL_BACKENDS:
            y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, backend=backend)
            assert_identical(idx, it.numpy(), f"{backend} {values}")
            assert_identical(y, yt.detach().numpy(), f"{backend} {values}")


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_low_precision_windows_follow_torch(dtype):
    # PyTorch places the windows in the samples' dtype, rounding every step: so does poolkit.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    np_dt = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    t_dt = getattr(torch, dtype)
    rng = np.random.default_rng(3)
    for trial in range(20):
        rank = 2 + trial % 2
        x, kernel, out, _ = random_case(rng, rank, np.float32)
        x = x * 100                                  # coarse dtypes: big sizes are not needed to differ
        xt = torch.tensor(x).to(t_dt)
        ut = torch.rand(x.shape[0], x.shape[1], rank, dtype=t_dt)
        yt, it = TORCH[rank](xt, kernel, output_size=out, return_indices=True, _random_samples=ut)
        xn, un = xt.float().numpy().astype(np_dt), ut.float().numpy().astype(np_dt)
        y, idx = POOL[rank](xn, kernel, out, return_indices=True, samples=un, backend="numba")
        assert y.dtype == np_dt
        assert_identical(idx, it.numpy())
        assert_identical(y.astype(np.float32), yt.float().numpy())


@pytest.mark.parametrize("rank", (2, 3))
def test_sample_columns_are_torchs(rank):
    # 2-D: samples[..., 0] places W and [..., 1] places H; 3-D: D, H, W in order. Sizes and samples
    # are picked so that any other assignment of columns to axes moves some window.
    sizes, out = ((10, 14), (4, 6)) if rank == 2 else ((10, 14, 10), (4, 6, 4))
    u = np.array([[[0.9, 0.1]]]) if rank == 2 else np.array([[[0.1, 0.9, 0.5]]])
    order = (1, 0) if rank == 2 else (0, 1, 2)
    x = np.arange(np.prod(sizes), dtype=np.float64).reshape((1, 1) + sizes)
    y = POOL[rank](x, 2, out, samples=u, backend="reference")

    def expected(columns):
        # increasing x: each window's max is its last element
        ends = [[s + 1 for s in starts(u[0, 0, col], n, o, 2)] for col, n, o in zip(columns, sizes, out)]
        return x[0, 0][np.ix_(*ends)]

    assert_identical(y[0, 0], expected(order))
    for other in itertools.permutations(range(rank)):
        if other != order:
            assert not np.array_equal(expected(other), y[0, 0])


@pytest.mark.parametrize("rank", (2, 3))
def test_channels_last_and_unbatched(rank):
    rng = np.random.default_rng(11)
    x, kernel, out, u = random_case(rng, rank, np.float32, "ties")
    y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, backend="img2col")
    for backend in KERNEL_BACKENDS:
        yl, il = POOL[rank](to_last(x, rank), kernel, out, return_indices=True, samples=u, data_format=LAST[rank], backend=backend)
        assert_identical(to_first(yl, rank), y)
        assert_identical(to_first(il, rank), idx)
        g = make_input(rng, yl.shape, np.float32)
        gl = BACK[rank](g, il, to_last(x, rank).shape, data_format=LAST[rank], backend=backend)
        assert_identical(to_first(gl, rank), BACK[rank](np.ascontiguousarray(to_first(g, rank)), idx, x.shape))
    # unbatched: one plane set, samples (1, C, rank) or (C, rank)
    y1, i1 = POOL[rank](x[0], kernel, out, return_indices=True, samples=u[:1])
    y2 = POOL[rank](x[0], kernel, out, samples=u[0])
    _, yt, it = torch_pool(rank, x[0], kernel, out, u[:1])
    assert_identical(y1, yt.detach().numpy())
    assert_identical(i1, it.numpy())
    assert_identical(y2, y1)


def test_output_ratio_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 13))
    u = rng.random((2, 3, 2))
    yt = F.fractional_max_pool2d(torch.tensor(x), 3, output_ratio=(0.5, 0.7), _random_samples=torch.tensor(u))
    assert_identical(fr.fractional_max_pool2d(x, 3, output_ratio=(0.5, 0.7), samples=u), yt.numpy())
    assert fr.fractional_max_pool2d(x, 2, output_ratio=0.5, rng=0).shape == (2, 3, 4, 6)
    assert fr.fractional_max_pool3d(rng.random((1, 2, 6, 7, 8)), 2, output_ratio=0.5, rng=0).shape == (1, 2, 3, 3, 4)


def test_integer_input_is_exact():
    rng = np.random.default_rng(2)
    x = rng.integers(-1000, 1000, size=(2, 3, 8, 9)).astype(np.int32)
    u = rng.random((2, 3, 2))
    yf, idf = fr.fractional_max_pool2d(x.astype(np.float64), 3, 4, return_indices=True, samples=u, backend="img2col")
    for backend in ("reference", "img2col"):
        y, idx = fr.fractional_max_pool2d(x, 3, 4, return_indices=True, samples=u, backend=backend)
        assert y.dtype == np.int32
        assert_identical(idx, idf)
        assert_identical(y, yf.astype(np.int32))


def test_bool_input_is_exact():
    # bool pools as max pooling does (a dilation): True wins, the first True of a window is its index
    rng = np.random.default_rng(6)
    x = rng.random((2, 2, 8, 8)) < 0.2
    u = rng.random((2, 2, 2))
    y, idx = fr.fractional_max_pool2d(x, 3, 4, return_indices=True, samples=u, backend="img2col")
    ey, eidx = fr.fractional_max_pool2d(x.astype(np.float64), 3, 4, return_indices=True, samples=u,
                                        backend="reference")
    assert y.dtype == bool
    assert_identical(y, ey.astype(bool))
    assert_identical(idx, eidx)


def test_empty_batch():
    y, idx = fr.fractional_max_pool2d(np.zeros((0, 3, 6, 6), np.float32), 2, 3, return_indices=True, samples=np.zeros((0, 3, 2)))
    assert y.shape == idx.shape == (0, 3, 3, 3)
    assert fr.fractional_max_pool2d_backward(y, idx, (0, 3, 6, 6)).shape == (0, 3, 6, 6)


def test_output_size_up_to_the_input():
    # out + k - 1 == size: windows advance by one element (PyTorch's 3-D kernel refuses this, poolkit does not)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5, 5))
    y = fr.fractional_max_pool3d(x, 2, 4, rng=1)
    expected = poolkit.max_pool3d(x, 2, 1)
    assert_identical(y, expected)


# --------------------------------------------------------------------------- #
# properties and gradients
# --------------------------------------------------------------------------- #
@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), rank=st.sampled_from((2, 3)), backend=st.sampled_from(KERNEL_BACKENDS),
       values=st.sampled_from(("normal", "ties", "inf")))
def test_every_output_is_the_max_of_its_window(seed, rank, backend, values):
    rng = np.random.default_rng(seed)
    x, kernel, out, u = random_case(rng, rank, np.float64, values, strict3d=False)
    y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, backend=backend)
    sizes = x.shape[2:]
    for at, window in windows(rank, x.shape, kernel, out, u):
        block = x[at[:2]][window]
        assert y[at] == block.max()
        where = np.unravel_index(idx[at], sizes)
        assert all(w.start <= i < w.stop for w, i in zip(window, where)), "index outside its window"
        assert x[at[:2]][where] == y[at]
        # the first maximum in scan order
        assert np.flatnonzero(block.ravel() == block.max())[0] == np.ravel_multi_index(
            tuple(i - w.start for w, i in zip(window, where)), block.shape)


@pytest.mark.parametrize("rank", (2, 3))
def test_gradient_by_finite_differences(rank):
    rng = np.random.default_rng(21)
    x, kernel, out, u = random_case(rng, rank, np.float64, "distinct")
    g = rng.standard_normal(POOL[rank](x, kernel, out, samples=u).shape)

    def loss(v):
        return float((POOL[rank](v, kernel, out, samples=u) * g).sum())

    y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u)
    analytic = BACK[rank](g, idx, x.shape)
    eps = 1e-3                                  # "distinct" values are >= 1 apart: no window changes winner
    numeric = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        numeric[i] = (loss(x + step) - loss(x - step)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7)


def test_rng_reproducible():
    x = np.random.default_rng(0).standard_normal((2, 3, 11, 11))
    a = fr.fractional_max_pool2d(x, 2, 5, return_indices=True, rng=42)
    b = fr.fractional_max_pool2d(x, 2, 5, return_indices=True, rng=np.random.default_rng(42))
    assert_identical(a[1], b[1])
    u = np.random.default_rng(42).random((2, 3, 2))
    assert_identical(fr.fractional_max_pool2d(x, 2, 5, return_indices=True, samples=u)[1], a[1])
    gen = np.random.default_rng(1)
    first = fr.fractional_max_pool2d(x, 2, 5, return_indices=True, rng=gen)[1]
    second = fr.fractional_max_pool2d(x, 2, 5, return_indices=True, rng=gen)[1]
    assert not np.array_equal(first, second), "a Generator must advance between calls"


def test_drawn_samples_dtype():
    assert fr.sample_dtype(np.float16) == np.float32
    assert fr.sample_dtype(np.float32) == np.float32
    assert fr.sample_dtype(np.float64) == np.float64
    assert fr.sample_dtype(np.int16) == np.float64
    layer = poolkit.FractionalMaxPool2d(2, 3, rng=0)
    layer(np.zeros((1, 2, 6, 6), np.float16))
    assert layer.samples.dtype == np.float32 and layer.samples.shape == (1, 2, 2)


def test_numba_backend_runs_the_kernel():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
    fr.fractional_max_pool2d(x, 2, 3, samples=np.zeros((1, 2, 2)), backend="numba")
    assert _fractional._argmax_kernel.body.signatures, "the numba backend did not run its kernel"


def test_auto_serves_with_numpy_while_compiling(tmp_path):
    # A fresh process with an empty cache: the first call is served by img2col, later ones by the kernel.
    code = textwrap.dedent("""
        import json, numpy as np, poolkit
        from poolkit.functional.fractional import fractional_max_pool2d
        from poolkit.backends import served
        x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
        first = fractional_max_pool2d(x, 2, 4, return_indices=True, rng=0)
        fallbacks = served.AUTO.fallbacks
        poolkit.wait_for_kernels()
        second = fractional_max_pool2d(x, 2, 4, return_indices=True, rng=0)
        same = all(np.array_equal(a, b) for a, b in zip(first, second))
        print(json.dumps({"fallbacks": fallbacks, "after": served.AUTO.fallbacks, "same": same}))
    """)
    env = dict(os.environ, POOLKIT_COMPILE="background", POOLKIT_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.path.join(os.path.dirname(__file__), os.pardir, "src"))
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    import json
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == {"fallbacks": 1, "after": 1, "same": True}


# --------------------------------------------------------------------------- #
# axes= and nan_policy
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rank", (2, 3))
def test_axes_pool_the_same_planes_wherever_they_lie(rank):
    rng = np.random.default_rng(30 + rank)
    x, kernel, out, u = random_case(rng, rank, np.float64, "ties")
    y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, backend="reference")
    g = make_input(rng, y.shape, np.float64)
    gx = BACK[rank](g, idx, x.shape, backend="reference")
    own = tuple(range(2, rank + 2))
    for backend in KERNEL_BACKENDS:
        # naming the data format's own axes is the same call
        ya, ia = POOL[rank](x, kernel, out, return_indices=True, samples=u, axes=own, backend=backend)
        assert_identical(ya, y, backend)
        assert_identical(ia, idx, backend)
        # the axes shuffled: the same result, shuffled alike; the samples follow the other axes' order
        perm = tuple(int(a) for a in rng.permutation(rank + 2))
        xp = x.transpose(perm)
        axes = tuple(perm.index(a) for a in own)
        up = u if perm.index(0) < perm.index(1) else u.transpose(1, 0, 2)
        yp, ip = POOL[rank](xp, kernel, out, return_indices=True, samples=up, axes=axes, backend=backend)
        what = f"{backend} perm={perm}"
        assert_identical(yp, y.transpose(perm), what)
        assert_identical(ip, idx.transpose(perm), what)
        gp = BACK[rank](g.transpose(perm), ip, xp.shape, axes=axes, backend=backend)
        assert_identical(gp, gx.transpose(perm), what)


def test_axes_with_more_or_no_batch_axes():
    rng = np.random.default_rng(33)
    x = make_input(rng, (2, 3, 4, 9, 8), np.float32, "ties")
    u = rng.random((2, 3, 4, 2)).astype(np.float32)
    y, idx = fr.fractional_max_pool2d(x, 2, (5, 4), return_indices=True, samples=u, axes=(-2, -1))
    y4, i4 = fr.fractional_max_pool2d(x.reshape(6, 4, 9, 8), 2, (5, 4), return_indices=True, samples=u.reshape(6, 4, 2))
    assert_identical(y, y4.reshape(y.shape))
    assert_identical(idx, i4.reshape(idx.shape))
    # a plain (H, W) array: one plane, samples of shape (2,)
    y1, i1 = fr.fractional_max_pool2d(x[0, 0, 0], 2, (5, 4), return_indices=True, samples=u[0, 0, 0], axes=(0, 1))
    assert_identical(y1, y[0, 0, 0])
    assert_identical(i1, idx[0, 0, 0])
    assert fr.fractional_max_pool2d(x[0, 0, 0], 2, output_ratio=0.5, rng=0, axes=(1, 0)).shape == (4, 4)


def _nan_case(rng, rank, dtype=np.float64):
    x, kernel, out, u = random_case(rng, rank, dtype, "ties", strict3d=False)
    x[rng.random(x.shape) < 0.4] = np.nan
    x[0, 0] = np.nan                                   # a plane of NaN only: its windows have no number
    return x, kernel, out, u


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), rank=st.sampled_from((2, 3)), backend=st.sampled_from(KERNEL_BACKENDS))
def test_nan_policy_ignore_is_the_nanmax_of_each_window(seed, rank, backend):
    rng = np.random.default_rng(seed)
    x, kernel, out, u = _nan_case(rng, rank)
    y, idx = POOL[rank](x, kernel, out, return_indices=True, samples=u, nan_policy="ignore", backend=backend)
    for at, window in windows(rank, x.shape, kernel, out, u):
        block = x[at[:2]][window].ravel()
        if np.isnan(block).all():
            assert np.isnan(y[at]) and idx[at] == -1
            continue
        best = np.nanmax(block)
        assert y[at] == best
        first = int(np.flatnonzero(block == best)[0])          # ties: the first in scan order
        where = tuple(w.start + i for w, i in zip(window, np.unravel_index(first, kernel)))
        assert idx[at] == np.ravel_multi_index(where, x.shape[2:])
    # the gradient skips windows with no number, and reaches no NaN element
    g = rng.standard_normal(y.shape)
    gx = BACK[rank](g, idx, x.shape, backend=backend)
    assert np.all(gx[np.isnan(x)] == 0)
    np.testing.assert_allclose(gx.sum(), g[idx >= 0].sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank", (2, 3))
def test_nan_policy_backends_agree_bit_for_bit(rank):
    rng = np.random.default_rng(40 + rank)
    for dtype in (np.float32, np.float64):
        x, kernel, out, u = _nan_case(rng, rank, dtype)
        want = POOL[rank](x, kernel, out, return_indices=True, samples=u, nan_policy="ignore", backend="reference")
        for backend in KERNEL_BACKENDS + ("auto",):
            got = POOL[rank](x, kernel, out, return_indices=True, samples=u, nan_policy="ignore", backend=backend)
            assert_identical(got[0], want[0], backend)
            assert_identical(got[1], want[1], backend)


def test_nan_policy_ignore_without_nan_changes_nothing():
    rng = np.random.default_rng(44)
    x, kernel, out, u = random_case(rng, 2, np.float64, "ties")
    for xin in (x, (x * 10).astype(np.int16)):
        for backend in KERNEL_BACKENDS:
            a = fr.fractional_max_pool2d(xin, kernel, out, return_indices=True, samples=u, backend=backend)
            b = fr.fractional_max_pool2d(xin, kernel, out, return_indices=True, samples=u, nan_policy="ignore",
                                         backend=backend)
            assert_identical(a[0], b[0])
            assert_identical(a[1], b[1])


def test_layer_axes_and_nan_policy():
    rng = np.random.default_rng(45)
    x = rng.standard_normal((9, 8, 3))                       # (H, W, C), pooled with axes
    x[:4, :4, 1] = np.nan
    layer = poolkit.FractionalMaxPool2d(2, 4, axes=(0, 1), nan_policy="ignore", rng=0)
    assert repr(layer) == ("FractionalMaxPool2d(kernel_size=2, output_size=4, output_ratio=None, return_indices=False, "
                           "data_format='NCHW', axes=(0, 1), nan_policy='ignore', backend='auto')")
    y = layer(x)
    assert y.shape == (4, 4, 3) and layer.samples.shape == (3, 2)
    want, idx = fr.fractional_max_pool2d(x, 2, 4, return_indices=True, samples=layer.samples, axes=(0, 1),
                                         nan_policy="ignore")
    assert_identical(y, want)
    g = rng.standard_normal(y.shape)
    assert_identical(layer.backward(g), fr.fractional_max_pool2d_backward(g, idx, x.shape, axes=(0, 1)))
    with pytest.raises(ValueError, match=r"`axes` must name 2 axes for 2-D pooling"):
        poolkit.FractionalMaxPool2d(2, 4, axes=(0, 1, 2))
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        poolkit.FractionalMaxPool2d(2, 4, nan_policy="omit")


# --------------------------------------------------------------------------- #
# errors: one per path
# --------------------------------------------------------------------------- #
X = np.zeros((1, 2, 6, 6))


@pytest.mark.parametrize("kw, exc, match", [
    (dict(), ValueError, "needs `output_size` or `output_ratio`"),
    (dict(output_size=3, output_ratio=0.5), ValueError, "not both"),
    (dict(output_ratio=1.0), ValueError, r"strictly between 0 and 1.*output_ratio=1.0"),
    (dict(output_ratio=0), ValueError, r"strictly between 0 and 1.*output_ratio=0"),
    (dict(output_ratio=(0.5, 0.5, 0.5)), ValueError, r"sequence of 2 numbers.*\(3 values\)"),
    (dict(output_ratio="half"), TypeError, "output_ratio='half'"),
    (dict(output_ratio=0.1), ValueError, r"empty output along H: int\(6 \* 0.1\) = 0"),
    (dict(output_size=6), ValueError, r"output_size`=\(6, 6\).*needs at least 6 \+ 2 - 1 = 7 input elements along H"),
    (dict(output_size=(3, 0)), ValueError, "`output_size` must be positive"),
    (dict(output_size=3.0), TypeError, "output_size=3.0"),
])
def test_window_argument_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        fr.fractional_max_pool2d(X, 2, **kw)


def test_kernel_size_error():
    with pytest.raises(ValueError, match="kernel_size"):
        fr.fractional_max_pool2d(X, 0, 3)


@pytest.mark.parametrize("samples, exc, match", [
    (np.zeros((1, 2, 3)), ValueError, r"shape \(N, C, 2\) = \(1, 2, 2\).*got shape \(1, 2, 3\)"),
    (np.zeros((2, 2, 2)), ValueError, r"got shape \(2, 2, 2\)"),
    (np.zeros((1, 2, 2), dtype=np.int64), TypeError, "floating point.*dtype=int64"),
    (np.full((1, 2, 2), 1.0), ValueError, r"\[0, 1\), but got 1.0 at index \(0, 0, 0\)"),
    (np.full((1, 2, 2), -0.25), ValueError, r"\[0, 1\), but got -0.25"),
    (np.full((1, 2, 2), np.nan), ValueError, r"\[0, 1\), but got nan"),
])
def test_samples_errors(samples, exc, match):
    with pytest.raises(exc, match=match):
        fr.fractional_max_pool2d(X, 2, 3, samples=samples)


def test_unbatched_samples_shape_error_says_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2, 2\) \(or \(2, 2\) for this unbatched input\)"):
        fr.fractional_max_pool2d(X[0], 2, 3, samples=np.zeros((3, 2)))


def test_coarse_samples_error():
    # float16 rounding would put a window past the input's end: refused, with the fix
    x = np.zeros((1, 1, 1, 2057), np.float16)
    with pytest.raises(ValueError, match="dtype float16 are too coarse.*along W.*Pass float32"):
        fr.fractional_max_pool2d(x, (1, 2), (1, 2054), samples=np.array([[[0.9, 0.0]]], np.float16))
    assert fr.fractional_max_pool2d(x, (1, 2), (1, 2054), samples=np.array([[[0.9, 0.0]]], np.float32)).shape == \
        (1, 1, 1, 2054)


@pytest.mark.parametrize("rng", [1.5, -1, "seed", True, np.random.RandomState(0)])
def test_rng_error(rng):
    with pytest.raises(TypeError, match="`rng` must be None, a non-negative int seed or a numpy.random.Generator"):
        fr.fractional_max_pool2d(X, 2, 3, rng=rng)


@pytest.mark.parametrize("x, kw, exc, match", [
    (np.zeros((2, 6, 6, 1, 1)), dict(), ValueError, "must have 4 dimensions"),
    (X, dict(data_format="NCDHW"), ValueError, "data_format"),
    (X, dict(backend="cuda"), ValueError, "backend='cuda'"),
    (X, dict(return_indices=1), TypeError, "return_indices=1"),
    (X.astype(complex), dict(), TypeError, "complex128"),
    (np.zeros((1, 0, 6, 6)), dict(), ValueError, "empty channel axis"),
])
def test_input_errors(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        fr.fractional_max_pool2d(x, 2, 3, **kw)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(axes=(1, 1)), ValueError, "must not repeat an axis"),
    (dict(axes=(2, 4)), ValueError, r"`axes`=\(2, 4\) is out of range for `x` with 4 dimensions"),
    (dict(axes=2), ValueError, r"`axes` must name 2 axes for 2-D pooling"),
    (dict(axes=(2.0, 3)), TypeError, r"`axes` must be an int or a tuple of ints"),
    (dict(axes=(2, 3), samples=np.zeros((2, 1, 2))), ValueError,
     r"`samples` must have shape \(the other axes of `x`\.\.\., 2\) = \(1, 2, 2\), one sample per plane.*"
     r"got shape \(2, 1, 2\)"),
    (dict(nan_policy="omit"), ValueError, "`nan_policy` must be 'propagate' or 'ignore', but got nan_policy='omit'"),
])
def test_axes_and_nan_policy_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        fr.fractional_max_pool2d(X, 2, 3, **kw)


def test_backward_index_error():
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 36\)"):
        fr.fractional_max_pool2d_backward(np.ones((1, 2, 3, 3)), np.full((1, 2, 3, 3), 36), (1, 2, 6, 6))


# --------------------------------------------------------------------------- #
# layers
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rank", (2, 3))
def test_layer_draws_new_samples_and_backward_reuses_them(rank):
    rng = np.random.default_rng(4)
    x = make_input(rng, (2, 3) + (9,) * rank, np.float64, "distinct")
    layer = LAYER[rank](2, output_ratio=0.5, rng=0)
    y1 = layer(x)
    u1 = layer.samples.copy()
    y2 = layer(x)
    u2 = layer.samples
    assert not np.array_equal(u1, u2), "each training forward draws new samples"
    g = rng.standard_normal(y2.shape)
    gx = layer.backward(g)
    # PyTorch with the layer's own samples: same output, same gradient
    xt = torch.tensor(x, requires_grad=True)
    yt = TORCH[rank](xt, 2, output_ratio=(0.5,) * rank, _random_samples=torch.tensor(u2))   # a tuple: torch 2-D needs one
    yt.backward(torch.tensor(g))
    assert_identical(y2, yt.detach().numpy())
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=0)
    assert_identical(y1, POOL[rank](x, 2, output_ratio=0.5, samples=u1))


def test_layer_eval_keeps_nothing_and_backward_errors():
    layer = poolkit.FractionalMaxPool2d(2, 3, rng=0)
    with pytest.raises(RuntimeError, match="no forward has run yet"):
        layer.backward(np.ones((1, 2, 3, 3)))
    y = layer(X)
    assert layer.saved_nbytes == 1 * 2 * 3 * 3 * 8 + 1 * 2 * 2 * 8
    layer.forward(X, train=False)
    assert layer.saved_nbytes == 0 and layer.samples is None
    with pytest.raises(RuntimeError, match="train=False"):
        layer.backward(np.ones_like(y))


def test_layer_grad_checks():
    layer = poolkit.FractionalMaxPool2d(2, 3, rng=0)
    y = layer(X.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape of the pooled output, \(1, 2, 3, 3\)"):
        layer.backward(np.ones((1, 2, 3, 4), np.float32))
    with pytest.raises(TypeError, match="dtype, float32"):
        layer.backward(np.ones(y.shape, np.float64))


def test_layer_explicit_samples_and_indices():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 8, 8))
    u = rng.random((2, 3, 2))
    layer = poolkit.FractionalMaxPool2d((2, 3), (4, 3), return_indices=True, data_format="NCHW", backend="img2col")
    y, idx = layer(x, samples=u)
    ey, eidx = fr.fractional_max_pool2d(x, (2, 3), (4, 3), return_indices=True, samples=u)
    assert_identical(y, ey)
    assert_identical(idx, eidx)
    assert_identical(layer.samples, u)


def test_layer_channels_last_unbatched():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 8, 3))                     # (H, W, C)
    layer = poolkit.FractionalMaxPool2d(2, 4, data_format="NHWC", rng=3)
    y = layer(x)
    assert y.shape == (4, 4, 3) and layer.samples.shape == (1, 3, 2)
    assert_identical(y, fr.fractional_max_pool2d(x, 2, 4, samples=layer.samples, data_format="NHWC"))
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_layer_pickle_and_copy():
    x = np.random.default_rng(0).standard_normal((1, 2, 9, 9))
    layer = poolkit.FractionalMaxPool2d(3, output_ratio=(0.5, 0.6), rng=5)
    layer(x)
    g = np.ones((1, 2, 4, 5))
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert_identical(clone.backward(g), layer.backward(g))          # the saved context travels
        assert repr(clone) == repr(layer)
    clone = pickle.loads(pickle.dumps(layer))
    # the generator's state travels too: both draw the same next windows
    assert_identical(clone(x), layer(x))
    assert_identical(clone.samples, layer.samples)


def test_layer_repr_and_construction_errors():
    layer = poolkit.FractionalMaxPool3d(2, output_ratio=0.5)
    assert repr(layer) == ("FractionalMaxPool3d(kernel_size=2, output_size=None, output_ratio=0.5, "
                           "return_indices=False, data_format='NCDHW', axes=None, nan_policy='propagate', "
                           "backend='auto')")
    with pytest.raises(ValueError, match="not both"):
        poolkit.FractionalMaxPool2d(2, 3, 0.5)
    with pytest.raises(ValueError, match="data_format"):
        poolkit.FractionalMaxPool2d(2, 3, data_format="NCL")
    with pytest.raises(ValueError, match="backend"):
        poolkit.FractionalMaxPool2d(2, 3, backend="gpu")
    with pytest.raises(TypeError, match="rng"):
        poolkit.FractionalMaxPool2d(2, 3, rng="x")
    with pytest.raises(TypeError, match="train"):
        poolkit.FractionalMaxPool2d(2, 3)(X, train=None)


def test_docstring_examples(monkeypatch):
    # The examples use the package-level names (re-exported by poolkit/__init__).
    for name in fr.__all__:
        if not hasattr(poolkit, name):
            monkeypatch.setattr(poolkit, name, getattr(fr, name), raising=False)
    for module in (fr, fr_layers):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
