"""PyTorch (CPU) as the oracle, on hundreds of seeded random configurations.

Each test draws one random case (shape batched or not, kernel, stride, padding,
dilation, ceil_mode, count_include_pad, divisor_override, dtype, channels-first
or channels-last, backend, tie-free / tied / NaN values) and checks poolkit's
forward, indices and backward -- functional and through the layers -- against
``torch.nn.functional``.  Where PyTorch rejects a case, poolkit must reject it
too, with ValueError or TypeError.

Two PyTorch behaviours are deliberately not compared:

* A max window lying wholly in padding (possible with dilation) gets index -1
  in poolkit; PyTorch reports a garbage index there, and its backward writes
  through it out of bounds, corrupting the heap.  Such cases never reach
  PyTorch's backward (:func:`helpers.empty_windows`) and their indices are only
  checked against the brute-force reference.
* ``max_unpool`` with duplicate indices is nondeterministic in PyTorch, so
  unpooling is compared with ``stride == kernel_size`` (disjoint windows).
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import (BACKENDS, FIRST, LAST, RANKS, adaptive_bounds, assert_close, assert_identical, empty_windows,
                     make_input, naive_adaptive, naive_max_backward, naive_pool, sample_adaptive_case, sample_case,
                     to_first, to_last)
from oracle import F, n, t, torch

OPS = ("max", "avg")
N_STRIDED = 60          # seeds per (op, rank): 360 strided cases
N_ADAPTIVE = 20         # seeds per (op, rank): 120 adaptive cases
N_UNPOOL = 20           # seeds per rank: 60 unpool cases
N_GLOBAL = 30


def _rng(*key):
    return np.random.default_rng([20240611, *key])


def _fmt(rank, last):
    return LAST[rank] if last else FIRST[rank]


# --------------------------------------------------------------------------- #
# strided max / avg pooling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(N_STRIDED))
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("op", OPS)
def test_strided_matches_torch(op, rank, seed):
    rng = _rng(1, OPS.index(op), rank, seed)
    case = sample_case(rng, op, rank, invalid=0.15)
    x, x_first = case.make_x(rng)
    xt = t(x_first).requires_grad_(True)
    extra = {"return_indices": True} if op == "max" else {}
    try:
        res_t = case.torch_fn()(xt, **case.torch_kwargs(), **extra)
    except (RuntimeError, ValueError, TypeError) as exc:
        # PyTorch rejects it: our written-out rules must agree, and poolkit must reject it too.
        assert not case.torch_valid(), f"{case}: torch raised {exc!r}"
        with pytest.raises((ValueError, TypeError)):
            case.pk_fn()(x, **case.pk_kwargs())
        with pytest.raises((ValueError, TypeError)):
            case.layer_cls()(**case.layer_kwargs())(x)
        return
    assert case.torch_valid(), f"{case}: torch accepted a case our rules reject"

    if op == "max":
        _check_max(case, rng, x, x_first, xt, *res_t)
    else:
        _check_avg(case, rng, x, x_first, xt, res_t)


def _check_max(case, rng, x, x_first, xt, y_t, i_t):
    rank, fmt = case.rank, case.pk_kwargs()["data_format"]
    y, idx = case.pk_fn()(x, **case.pk_kwargs(), return_indices=True)
    assert y.dtype == x.dtype and idx.dtype == np.int64
    y_f, idx_f = case.to_first(y), case.to_first(idx)
    # values: a max is one of the inputs, so bit-identical (signed zeros and NaN included)
    assert_identical(y_f, n(y_t), f"{case} forward")
    inside = idx_f >= 0
    assert np.array_equal(idx_f[inside], n(i_t)[inside]), f"{case} indices"
    # a window wholly in padding: -inf and index -1 (PyTorch: -inf and a garbage index)
    assert np.all(np.isneginf(y_f[~inside])), f"{case} empty windows"
    y_n, i_n = naive_pool(x_first, case)
    assert_identical(y_f, y_n, f"{case} vs brute force")
    assert np.array_equal(idx_f, i_n), f"{case} indices vs brute force"

    # backward, through a layer and through max_poolNd_backward(grad, indices, x.shape)
    layer = case.layer_cls()(**case.layer_kwargs(), return_indices=True)
    y_l, idx_l = layer(x)
    assert_identical(y_l, y, "layer forward")
    assert np.array_equal(idx_l, idx)
    g_first = make_input(rng, y_f.shape, case.dtype, "normal")
    g = case.to_user(g_first)
    gx = layer.backward(g)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    gx_fn = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, data_format=fmt,
                                                          backend=case.backend)
    assert_identical(gx_fn, gx, f"{case} functional vs layer backward")
    expected = naive_max_backward(g_first, idx_f, x_first.shape, rank)
    assert_identical(case.to_first(gx), expected, f"{case} backward vs brute force")
    if not empty_windows(idx):            # PyTorch's backward would write out of bounds
        y_t.backward(t(g_first))
        assert_identical(case.to_first(gx), n(xt.grad), f"{case} backward vs torch")


def _check_avg(case, rng, x, x_first, xt, y_t):
    rank = case.rank
    y = case.pk_fn()(x, **case.pk_kwargs())
    assert y.dtype == x.dtype
    y_f = case.to_first(y)
    assert_close(y_f, n(y_t), what=f"{case} forward")
    assert_close(y_f, naive_pool(x_first, case)[0], what=f"{case} vs brute force", scale=4)

    layer = case.layer_cls()(**case.layer_kwargs())
    assert_identical(layer(x), y, "layer forward")
    g_first = make_input(rng, y_f.shape, case.dtype, "normal")
    g = case.to_user(g_first)
    gx = layer.backward(g)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    gx_fn = getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, **case.pk_kwargs())
    assert_identical(gx_fn, gx, f"{case} functional vs layer backward")
    y_t.backward(t(g_first))
    assert_close(case.to_first(gx), n(xt.grad), what=f"{case} backward vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
def test_window_wholly_in_padding(rank, backend):
    """Size 1, kernel 2, dilation 2, padding 1: the only window's taps (-1 and 1) are both padding.

    poolkit: -inf and index -1, and a zero gradient. PyTorch agrees on the value but
    returns a garbage index, and its backward would write through it out of bounds --
    so only PyTorch's forward value is compared.
    """
    x = np.full((2, 3) + (1,) * rank, 3.0)
    fn = getattr(poolkit, f"max_pool{rank}d")
    y, idx = fn(x, 2, 1, 1, 2, return_indices=True, backend=backend)
    assert y.shape == (2, 3) + (1,) * rank
    assert np.all(np.isneginf(y)) and np.all(idx == -1)
    assert_identical(y, n(getattr(F, f"max_pool{rank}d")(t(x), 2, 1, 1, 2)))
    g = np.ones_like(y)
    zeros = np.zeros_like(x)
    assert_identical(getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend=backend), zeros)
    layer = getattr(poolkit, f"MaxPool{rank}d")(2, 1, 1, 2, backend=backend)
    layer(x)
    assert_identical(layer.backward(g), zeros)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("op", OPS)
def test_float16_matches_torch(op, rank, seed):
    """float16 in, float16 out: max exactly PyTorch's (a max is an input), avg and gradients loosely.

    The oracle is PyTorch in float32 on the same float16 values, rounded to float16:
    that is poolkit's documented rule (compute in float32), and PyTorch's CPU
    avg_pool3d has no float16 kernel at all.
    """
    rng = _rng(2, OPS.index(op), rank, seed)
    case = sample_case(rng, op, rank, dtypes=(np.float16,))
    x, x_first = case.make_x(rng)
    xt = t(x_first.astype(np.float32)).requires_grad_(True)
    layer = case.layer_cls()(**case.layer_kwargs(), **({"return_indices": True} if op == "max" else {}))
    res = layer(x)
    y, idx = res if op == "max" else (res, None)
    assert y.dtype == np.float16
    y_t = case.torch_fn()(xt, **case.torch_kwargs())
    expected = n(y_t).astype(np.float16)
    if op == "max":
        assert_identical(case.to_first(y), expected, f"{case}")
    else:
        assert_close(case.to_first(y), expected, np.float16, f"{case}")
    g_first = make_input(rng, expected.shape, np.float16, "normal")
    gx = layer.backward(case.to_user(g_first))
    assert gx.dtype == np.float16
    if op == "max" and empty_windows(idx):
        return                         # PyTorch's backward would write out of bounds
    y_t.backward(t(g_first.astype(np.float32)))
    assert_close(case.to_first(gx), n(xt.grad).astype(np.float16), np.float16, f"{case} backward")


# --------------------------------------------------------------------------- #
# adaptive pooling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(N_ADAPTIVE))
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("op", OPS)
def test_adaptive_matches_torch(op, rank, seed):
    rng = _rng(3, OPS.index(op), rank, seed)
    case = sample_adaptive_case(rng, op, rank)
    x, x_first = case.make_x(rng)
    xt = t(x_first).requires_grad_(True)
    kw = dict(data_format=case.data_format, backend=case.backend)
    layer_kw = dict(kw, return_indices=True) if op == "max" else kw
    layer = case.layer_cls()(case.output_size, **layer_kw)
    g_first = make_input(rng, x_first.shape[:-rank] + case.out_spatial, case.dtype, "normal")
    g = case.to_user(g_first)
    if op == "max":
        y_t, i_t = case.torch_fn()(xt, case.output_size, return_indices=True)
        y, idx = case.pk_fn()(x, case.output_size, True, **kw)
        assert_identical(case.to_first(y), n(y_t), f"{case}")
        assert np.array_equal(case.to_first(idx), n(i_t)), f"{case} indices"
        y_n, i_n = naive_adaptive(x_first, "max", case.out_spatial)
        assert_identical(case.to_first(y), y_n, f"{case} vs brute force")
        assert np.array_equal(case.to_first(idx), i_n)
        y_l, idx_l = layer(x)
        assert_identical(y_l, y)
        assert np.array_equal(idx_l, idx)
        gx = layer.backward(g)
        gx_fn = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, **kw)
        assert_identical(gx_fn, gx, f"{case} functional vs layer backward")
        y_t.backward(t(g_first))
        assert_identical(case.to_first(gx), n(xt.grad), f"{case} backward")
    else:
        y_t = case.torch_fn()(xt, case.output_size)
        y = case.pk_fn()(x, case.output_size, **kw)
        assert_close(case.to_first(y), n(y_t), what=f"{case}")
        assert_close(case.to_first(y), naive_adaptive(x_first, "avg", case.out_spatial)[0],
                     what=f"{case} vs brute force", scale=4)
        assert_identical(layer(x), y)
        gx = layer.backward(g)
        gx_fn = poolkit.adaptive_avg_pool_backward(g, x.shape, **kw)
        assert_identical(gx_fn, gx, f"{case} functional vs layer backward")
        y_t.backward(t(g_first))
        assert_close(case.to_first(gx), n(xt.grad), what=f"{case} backward")
    assert gx.shape == x.shape and gx.dtype == x.dtype


@pytest.mark.parametrize("rank", RANKS)
def test_adaptive_windows_are_torch_windows(rank):
    """Output size 1..size+3 for every size 1..9: brute-force windows equal PyTorch's (tie-free input)."""
    rng = _rng(4, rank)
    for size in range(1, 10 if rank < 3 else 6):
        for out in range(1, size + 4):
            shape = (1, 2) + (size,) * rank
            x = make_input(rng, shape, np.float64, "distinct")
            y_t, i_t = getattr(F, f"adaptive_max_pool{rank}d")(t(x), out, return_indices=True)
            y, idx = getattr(poolkit, f"adaptive_max_pool{rank}d")(x, out, True)
            assert_identical(y, n(y_t))
            assert np.array_equal(idx, n(i_t)), (size, out)
            assert_close(getattr(poolkit, f"adaptive_avg_pool{rank}d")(x, out),
                         n(getattr(F, f"adaptive_avg_pool{rank}d")(t(x), out)))
    # the helper's bounds are PyTorch's formula, checked on one case by hand
    assert [adaptive_bounds(5, 3, o) for o in range(3)] == [(0, 2), (1, 4), (3, 5)]


# --------------------------------------------------------------------------- #
# global pooling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(N_GLOBAL))
def test_global_matches_torch(seed):
    rng = _rng(5, seed)
    rank = int(rng.integers(1, 4))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + tuple(
        int(v) for v in rng.integers(1, 6, size=rank))
    last = bool(rng.random() < 0.4)
    keepdims = bool(rng.random() < 0.5)
    dtype = (np.float32, np.float64)[int(rng.integers(2))]
    backend = BACKENDS[int(rng.integers(len(BACKENDS)))]
    values = ("normal", "ties", "nan", "distinct")[int(rng.integers(4))]
    x_first = make_input(rng, shape, dtype, values)
    x = to_last(x_first, rank) if last else x_first
    kw = dict(data_format="channels_last" if last else "channels_first", keepdims=keepdims, backend=backend)
    dims = tuple(range(2, 2 + rank))

    def first(y):        # back to channels-first for comparison
        return to_first(y, rank) if (last and keepdims) else y

    # max: vs torch.amax; indices vs the brute-force scan (PyTorch has no global indices)
    y, idx = poolkit.global_max_pool(x, return_indices=True, **kw)
    assert_identical(first(y), n(torch.amax(t(x_first), dim=dims, keepdim=keepdims)), f"seed {seed} max")
    _, i_n = naive_adaptive(x_first, "max", (1,) * rank)
    assert np.array_equal(first(idx).reshape(-1), i_n.reshape(-1))
    # avg: vs torch.mean
    ya = poolkit.global_avg_pool(x, **kw)
    xt = t(x_first).requires_grad_(True)
    ya_t = torch.mean(xt, dim=dims, keepdim=keepdims)
    assert_close(first(ya), n(ya_t), what=f"seed {seed} avg", scale=10)

    # backward of the mean
    g_first = make_input(rng, ya_t.shape, dtype, "normal")
    g = (to_last(g_first, rank) if (last and keepdims) else g_first)
    gx = poolkit.global_avg_pool_backward(g, x.shape, data_format=kw["data_format"])
    ya_t.backward(t(g_first))
    assert_close(to_first(gx, rank) if last else gx, n(xt.grad), what=f"seed {seed} avg backward")

    # backward of the max (keepdims indices) via max_pool_backward, vs torch.amax on tie-free input
    xd_first = make_input(rng, shape, dtype, "distinct")
    xd = to_last(xd_first, rank) if last else xd_first
    yk, ik = poolkit.global_max_pool(xd, return_indices=True, keepdims=True, backend=backend,
                                     data_format=kw["data_format"])
    gk_first = make_input(rng, shape[:2] + (1,) * rank, dtype, "normal")
    gk = to_last(gk_first, rank) if last else gk_first
    gxm = poolkit.max_pool_backward(gk, ik, xd.shape, data_format=kw["data_format"], backend=backend)
    xdt = t(xd_first).requires_grad_(True)
    torch.amax(xdt, dim=dims, keepdim=True).backward(t(gk_first))
    # values only: torch.amax's backward multiplies by a 0/1 mask, leaving -0.0 where grad < 0
    np.testing.assert_array_equal(to_first(gxm, rank) if last else gxm, n(xdt.grad), f"seed {seed} max backward")


# --------------------------------------------------------------------------- #
# max-unpooling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(N_UNPOOL))
@pytest.mark.parametrize("rank", RANKS)
def test_unpool_matches_torch(rank, seed):
    rng = _rng(6, rank, seed)
    kernel = tuple(int(v) for v in rng.integers(1, 4, size=rank))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel) if rng.random() < 0.4 else 0
    pads = padding if isinstance(padding, tuple) else (0,) * rank
    spatial = tuple(int(max(k, rng.integers(1, 8 if rank < 3 else 6))) for k in kernel)
    lead = ((int(rng.integers(1, 3)),) if rng.random() < 0.75 else ()) + (int(rng.integers(1, 4)),)
    last = bool(rng.random() < 0.35)
    dtype = (np.float32, np.float64)[int(rng.integers(2))]
    backend = BACKENDS[int(rng.integers(len(BACKENDS)))]
    fmt = _fmt(rank, last)
    x_first = make_input(rng, lead + spatial, dtype, ("normal", "ties")[int(rng.integers(2))])
    # stride == kernel: disjoint windows, so no duplicate indices (PyTorch's unpool is then deterministic)
    y_t, i_t = getattr(F, f"max_pool{rank}d")(t(x_first), kernel, kernel, padding, return_indices=True)
    y_first, i_first = n(y_t), n(i_t)
    default = [(m - 1) * k - 2 * p + k for m, k, p in zip(y_first.shape[-rank:], kernel, pads)]
    # output_size: default, or anything within stride of it -- or (sometimes) just outside
    choice = rng.random()
    if choice < 0.4:
        output_size = None
    elif choice < 0.85:
        output_size = tuple(int(d + rng.integers(-(k - 1), k)) for d, k in zip(default, kernel))
        if rng.random() < 0.3:
            # a full shape is accepted too: PyTorch's (N, C, *sizes), also for unbatched input;
            # poolkit also takes the shape in the array's own layout (channels-last: (N, *sizes, C))
            if last:
                output_size = lead[:-1] + output_size + lead[-1:]
            else:
                output_size = (lead if len(lead) == 2 else (1,) + lead) + output_size
    else:
        output_size = tuple(d + k if i == 0 else d for i, (d, k) in enumerate(zip(default, kernel)))
    y = to_last(y_first, rank) if last else y_first
    idx = to_last(i_first, rank) if last else i_first
    fn = getattr(poolkit, f"max_unpool{rank}d")
    yt = t(y_first).requires_grad_(True)
    # PyTorch wants (N, C, *sizes); the channels-last full shape above is poolkit's own form
    size_t = output_size[-rank - 1:-1] if last and output_size and len(output_size) > rank else output_size
    try:
        u_t = getattr(F, f"max_unpool{rank}d")(yt, t(i_first), kernel, kernel, padding, size_t)
    except (RuntimeError, ValueError):
        # output_size out of range, or (with padding) an index beyond the smaller unpooled plane
        with pytest.raises(ValueError, match="output_size|indices"):
            fn(y, idx, kernel, kernel, padding, output_size, data_format=fmt, backend=backend)
        return
    u = fn(y, idx, kernel, kernel, padding, output_size, data_format=fmt, backend=backend)
    assert u.dtype == y.dtype
    assert_identical(to_first(u, rank) if last else u, n(u_t), f"unpool {kernel} {padding} {output_size}")
    # backward: grad_output read at the indices
    g_first = make_input(rng, tuple(u_t.shape), dtype, "normal")
    g = to_last(g_first, rank) if last else g_first
    # the rank-specific name ("NCHW", ...) says how many axes are pooled, also for unbatched input
    gy = poolkit.max_unpool_backward(g, idx, data_format=fmt)
    u_t.backward(t(g_first))
    assert_identical(to_first(gy, rank) if last else gy, n(yt.grad), "unpool backward")
