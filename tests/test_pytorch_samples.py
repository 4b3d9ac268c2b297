"""PyTorch's own test inputs (issue 24): its OpInfo and ModuleInfo samples for the pooling ops, through poolkit.

The first tests pin each cause of disagreement the issue found: where poolkit now
follows PyTorch (unbatched adaptive backward), PyTorch is the oracle; where it keeps
its own rule (fractional samples, the Lp gradient of elements in no window), the
test checks the rule the README's "Where poolkit differs from PyTorch" states.
The last test (slow) runs every sample input of ``torch.testing._internal``'s
``op_db`` and ``module_db`` for the pooling ops in float64 and float32 -- forward,
backward and error inputs -- and counts how each case ends.
"""
from __future__ import annotations

import collections
import inspect
import re

import numpy as np
import pytest

import poolkit
from helpers import finite_diff_grad, make_input
from oracle import F, n, t, torch


# --------------------------------------------------------------------------- #
# cause 1: unbatched adaptive backward (poolkit follows PyTorch)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_unbatched_adaptive_avg_backward_matches_torch(rank):
    rng = np.random.default_rng(rank)
    x = make_input(rng, (3,) + (5, 6, 4)[:rank], np.float64, "normal")          # (C, *S): no batch axis
    out = (2, 3, 3)[:rank]
    xt = t(x).requires_grad_(True)
    yt = getattr(F, f"adaptive_avg_pool{rank}d")(xt, out)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(t(g))
    want = n(xt.grad)
    y = getattr(poolkit, f"adaptive_avg_pool{rank}d")(x, out)
    np.testing.assert_allclose(y, n(yt), rtol=1e-12)
    np.testing.assert_allclose(getattr(poolkit, f"adaptive_avg_pool{rank}d_backward")(g, x.shape), want, rtol=1e-12)
    # the N-d function, told the rank by a rank-specific data_format
    fmt = {1: "NCL", 2: "NCHW", 3: "NCDHW"}[rank]
    np.testing.assert_allclose(poolkit.adaptive_avg_pool_backward(g, x.shape, data_format=fmt), want, rtol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_unbatched_adaptive_max_backward_matches_torch(rank):
    rng = np.random.default_rng(10 + rank)
    x = make_input(rng, (2,) + (5, 6, 4)[:rank], np.float64, "distinct")
    xt = t(x).requires_grad_(True)
    yt, it = getattr(F, f"adaptive_max_pool{rank}d")(xt, 3, return_indices=True)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(t(g))
    y, idx = getattr(poolkit, f"adaptive_max_pool{rank}d")(x, 3, return_indices=True)
    np.testing.assert_array_equal(idx, n(it))
    np.testing.assert_array_equal(getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape), n(xt.grad))


def test_generic_adaptive_backward_guesses_the_rank_only_without_one():
    # channels_first names no rank: (C, H, W) reads as batched 1-D, and the output sizes then disagree
    g = np.ones((3, 2, 2))
    with pytest.raises(ValueError, match="`grad_output`"):
        poolkit.adaptive_avg_pool_backward(g, (3, 4, 4))
    assert poolkit.adaptive_avg_pool_backward(g, (3, 4, 4), axes=(1, 2)).shape == (3, 4, 4)


# --------------------------------------------------------------------------- #
# causes 2 and 3: fractional samples (poolkit keeps its stricter rule)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("value", [1.0, 1.5, -0.25])
def test_fractional_samples_outside_0_1_are_refused(value):
    x = make_input(np.random.default_rng(3), (1, 2, 7, 7), np.float64, "distinct")
    u = np.full((1, 2, 2), value)
    F.fractional_max_pool2d(t(x), 2, output_size=3, _random_samples=t(u))          # PyTorch places windows
    with pytest.raises(ValueError, match=r"`samples` must lie in \[0, 1\)"):
        poolkit.fractional_max_pool2d(x, 2, 3, samples=u)


def test_fractional_extra_sample_rows_are_refused():
    x = make_input(np.random.default_rng(4), (2, 7, 7), np.float64, "distinct")     # unbatched (C, H, W)
    u = np.random.default_rng(5).random((3, 2, 2))                                   # rows for a batch of 3
    y_t = F.fractional_max_pool2d(t(x), 2, output_size=3, _random_samples=t(u))       # PyTorch uses row 0
    with pytest.raises(ValueError, match=r"`samples` must have shape \(N, C, 2\) = \(1, 2, 2\)"):
        poolkit.fractional_max_pool2d(x, 2, 3, samples=u)
    # the rows PyTorch used, given as such, give its result
    np.testing.assert_array_equal(poolkit.fractional_max_pool2d(x, 2, 3, samples=u[:1]), n(y_t))


# --------------------------------------------------------------------------- #
# cause 4: the Lp gradient of an element in no window (poolkit: 0, the true derivative)
# --------------------------------------------------------------------------- #
def test_lp_gradient_of_elements_in_no_window_is_zero():
    rng = np.random.default_rng(6)
    x = make_input(rng, (1, 2, 7), np.float64, "distinct") + 20.0
    # kernel 2, stride 3: windows [0, 1] and [3, 4]; elements 2, 5 and 6 are in none. A negative value
    # there has no real x**(p - 1) for p = 1.5: PyTorch's chain rule gives 0 * NaN = NaN.
    x[..., [2, 5, 6]] *= -1
    g = rng.standard_normal((1, 2, 2))
    gx = poolkit.lp_pool_backward(g, x, 1.5, 2, 3)
    np.testing.assert_array_equal(gx[..., [2, 5, 6]], 0.0)
    numeric = finite_diff_grad(lambda a: float(np.sum(g * poolkit.lp_pool1d(a, 1.5, 2, 3))), x, 1e-4)
    np.testing.assert_allclose(gx, numeric, rtol=1e-6, atol=1e-6)          # 0 is the derivative there
    layer = poolkit.LPPool1d(1.5, 2, 3)
    layer(x)
    np.testing.assert_array_equal(layer.backward(g), gx)
    xt = t(x).requires_grad_(True)
    F.lp_pool1d(xt, 1.5, 2, 3).backward(t(g))
    assert np.isnan(n(xt.grad)[..., [2, 5, 6]]).all()             # PyTorch: NaN there
    np.testing.assert_allclose(n(xt.grad)[..., [0, 1, 3, 4]], gx[..., [0, 1, 3, 4]], rtol=1e-12)


# --------------------------------------------------------------------------- #
# the smaller inconsistencies
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls", [poolkit.MaxPool2d, poolkit.MinPool2d, poolkit.AvgPool2d, poolkit.SumPool2d,
                                 poolkit.LPPool2d, poolkit.AdaptiveMaxPool2d, poolkit.AdaptiveAvgPool2d,
                                 poolkit.FractionalMaxPool2d, poolkit.SpatialPyramidPool2d])
def test_repr_shows_every_constructor_setting(cls):
    args = {poolkit.LPPool2d: (2, 3), poolkit.FractionalMaxPool2d: (2, 3)}.get(cls, (3,))
    if cls is poolkit.SpatialPyramidPool2d:
        args = ((1, 2),)
    layer = cls(*args)
    text = repr(layer)
    for name in inspect.signature(cls.__init__).parameters:
        if name not in ("self", "rng"):                 # the random stream is state, not a setting
            assert f"{name}=" in text, (name, text)
    assert "rng" not in text and "object at 0x" not in text


def test_max_and_avg_repr_gain_the_missing_settings():
    text = repr(poolkit.MaxPool2d(2, return_indices=True, axes=(0, 1), nan_policy="ignore"))
    assert "return_indices=True" in text and "axes=(0, 1)" in text and "nan_policy='ignore'" in text
    text = repr(poolkit.AvgPool3d(2, axes=(1, 2, 3), nan_policy="ignore"))
    assert "axes=(1, 2, 3)" in text and "nan_policy='ignore'" in text


@pytest.mark.parametrize("output_size", [(True, 6), [6, True], (1, 2, True, 6)])
def test_max_unpool_refuses_bools_in_output_size(output_size):
    y, idx = poolkit.max_pool2d(np.zeros((1, 2, 6, 6)), 2, return_indices=True)
    with pytest.raises(TypeError, match="`output_size` must be a tuple of ints"):
        poolkit.max_unpool2d(y, idx, 2, output_size=output_size)


@pytest.mark.parametrize("cls", [poolkit.MaxPool2d, poolkit.AvgPool2d, poolkit.MinPool2d, poolkit.SumPool2d,
                                 poolkit.AdaptiveMaxPool2d, poolkit.AdaptiveAvgPool2d])
def test_strided_layers_check_axes_and_data_format_at_construction(cls):
    with pytest.raises(ValueError, match="`data_format`"):
        cls(2, data_format="NCL")
    with pytest.raises(ValueError, match="`axes` must name 2 axes"):
        cls(2, axes=(1, 2, 3))
    with pytest.raises(TypeError, match="`axes` must be an int or a tuple of ints"):
        cls(2, axes="hw")
    assert cls(2, axes=[2, 3]).axes == (2, 3)


# --------------------------------------------------------------------------- #
# PyTorch's OpInfo and ModuleInfo samples
# --------------------------------------------------------------------------- #
BACKEND = "img2col"          # every backend gives the same bits (tests/test_backends.py); no compiling here


def _np(v):
    """A sample's argument as poolkit takes it: tensors as arrays, torch.Size as a tuple."""
    if isinstance(v, torch.Tensor):
        return v.detach().numpy().copy()
    if isinstance(v, torch.Size):
        return tuple(v)
    return v


def _rank(name: str) -> int:
    """The rank in an op or class name: ``max_unpool2d``, ``AdaptiveAvgPool3d``."""
    return int(re.search(r"(\d)d(?:_|\.|$)", name).group(1))


def _close(a, b, dtype):
    rtol = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol,
                               atol=rtol, equal_nan=True)


def _samples_for(x: np.ndarray, rank: int, dtype) -> np.ndarray:
    """Fractional samples as PyTorch draws them: (N, C, rank), N = 1 for unbatched input."""
    lead = x.shape[:-rank]
    shape = (lead if len(lead) == 2 else (1,) + lead) + (rank,)
    return np.random.default_rng(abs(hash(x.shape)) % 2**32).random(shape).astype(x.dtype)


class Outcome(Exception):
    """How a case ended other than by agreeing: the documented difference it meets."""


def _fractional_outcome(exc: ValueError, x, u, rank: int):
    """Re-raise ``exc`` as the documented difference it is, or as it is."""
    u = np.asarray(u)
    if "must lie in [0, 1)" in str(exc) and not ((u >= 0) & (u < 1)).all():
        raise Outcome("fractional samples outside [0, 1)") from None
    if "`samples` must have shape" in str(exc) and x.ndim == rank + 1 and u.shape[0] > 1:
        raise Outcome("extra rows of fractional samples") from None
    raise exc


def _fractional(name, sample, dtype):
    rank = _rank(name)
    x = _np(sample.input)
    kw = {k: _np(v) for k, v in sample.kwargs.items()}
    u = kw.pop("_random_samples", None)
    if u is None:
        u = _samples_for(x, rank, dtype)
    kernel = sample.args[0] if sample.args else kw.pop("kernel_size")
    kw.pop("return_indices", None)
    xt = sample.input.detach().clone().requires_grad_(True)
    try:
        yt, it = getattr(F, f"fractional_max_pool{rank}d")(xt, kernel, **kw, return_indices=True,
                                                           _random_samples=torch.from_numpy(np.asarray(u)))
    except RuntimeError:
        with pytest.raises((ValueError, TypeError)):
            getattr(poolkit, f"fractional_max_pool{rank}d")(x, kernel, **kw, samples=u, backend=BACKEND)
        return "error, both"
    try:
        y, idx = getattr(poolkit, f"fractional_max_pool{rank}d")(x, kernel, **kw, return_indices=True, samples=u,
                                                                 backend=BACKEND)
    except ValueError as exc:
        _fractional_outcome(exc, x, u, rank)
    np.testing.assert_array_equal(y, n(yt))
    np.testing.assert_array_equal(idx, n(it))
    g = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(g))
    _close(getattr(poolkit, f"fractional_max_pool{rank}d_backward")(g, idx, x.shape, backend=BACKEND),
           n(xt.grad), dtype)
    return "agree"


def _strided_or_adaptive(name, op, sample, dtype):
    """max/avg/adaptive pools and max_pool2d_with_indices_backward: values, indices and gradients."""
    rank = _rank(name)
    x = _np(sample.input)
    args = [_np(a) for a in sample.args]
    kw = {k: _np(v) for k, v in sample.kwargs.items()}
    adaptive = "adaptive" in name
    is_max = "max" in name
    xt = sample.input.detach().clone().requires_grad_(True)
    if name == "max_pool2d_with_indices_backward":
        want = n(op(xt, *sample.args, **sample.kwargs))           # the input gradient of ones
        kw.pop("return_indices", None)
        y, idx = poolkit.max_pool2d(x, *args, **kw, return_indices=True, backend=BACKEND)
        if (idx < 0).any():
            raise Outcome("max window wholly in padding")
        _close(poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend=BACKEND), want, dtype)
        return "agree"
    fname = name.split(".")[-1]
    fn, tfn = getattr(poolkit, fname), getattr(F, fname)
    if is_max:
        kw.pop("return_indices", None)
        if adaptive:                                             # (output_size[, return_indices])
            args = args[:1]
            yt, it = tfn(xt, sample.args[0], return_indices=True)
        else:
            yt, it = tfn(xt, *sample.args, **{**sample.kwargs, "return_indices": True})
        y, idx = fn(x, *args, **kw, return_indices=True, backend=BACKEND)
        if (idx < 0).any():
            raise Outcome("max window wholly in padding")
        np.testing.assert_array_equal(y, n(yt))
        np.testing.assert_array_equal(idx, n(it))
    else:
        yt = op(xt, *sample.args, **sample.kwargs)
        y = fn(x, *args, **kw, backend=BACKEND)
        _close(y, n(yt), dtype)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(g))
    if is_max:
        gx = getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend=BACKEND)
    elif adaptive:
        gx = getattr(poolkit, f"adaptive_avg_pool{rank}d_backward")(g, x.shape, backend=BACKEND)
    else:
        gx = getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, *args, **kw, backend=BACKEND)
    _close(gx, n(xt.grad), dtype)
    return "agree"


def _unpool(name, op, sample, dtype):
    rank = _rank(name)
    x, indices = _np(sample.input), _np(sample.args[0])
    kw = {k: _np(v) for k, v in sample.kwargs.items()}
    xt = sample.input.detach().clone().requires_grad_(True)
    yt = op(xt, *sample.args, **sample.kwargs)
    y = getattr(poolkit, f"max_unpool{rank}d")(x, indices, **kw, backend=BACKEND)
    # a position two values target holds either in PyTorch (unspecified); poolkit's is the later one
    flat = indices.reshape((-1, int(np.prod(indices.shape[-rank:]))))           # (planes, P)
    plane = int(np.prod(y.shape[-rank:]))
    counts = np.stack([np.bincount(row, minlength=plane) for row in flat])      # (planes, plane)
    unique = (counts <= 1).reshape(y.shape)
    np.testing.assert_array_equal(y[unique], n(yt)[unique])
    g = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(poolkit.max_unpool_backward(g, indices), n(xt.grad))
    return "agree" if unique.all() else "agree where indices are unique"


def _op_case(name, op, sample, dtype):
    if "fractional" in name:
        return _fractional(name, sample, dtype)
    if "unpool" in name:
        return _unpool(name, op, sample, dtype)
    return _strided_or_adaptive(name, op, sample, dtype)


def _module_case(info, module_input, dtype):
    cls_name = info.module_cls.__name__
    rank = _rank(cls_name)
    bound = inspect.signature(info.module_cls).bind(*module_input.constructor_input.args,
                                                    **module_input.constructor_input.kwargs)
    kw = {k: _np(v) for k, v in bound.arguments.items()}
    samples = kw.pop("_random_samples", None)
    (xt_in,) = module_input.forward_input.args
    x = _np(xt_in)
    xt = xt_in.detach().clone().requires_grad_(True)
    torch_layer = info.module_cls(*module_input.constructor_input.args, **module_input.constructor_input.kwargs)
    torch_layer = torch_layer.to(dtype)
    yt = torch_layer(xt)
    if isinstance(yt, tuple):
        yt = yt[0]
    layer = getattr(poolkit, cls_name)(**kw, backend=BACKEND)
    try:
        y = layer(x, samples=samples) if samples is not None else layer(x)
    except ValueError as exc:
        _fractional_outcome(exc, x, samples, rank)
    if isinstance(y, tuple):
        y = y[0]
    _close(y, n(yt), dtype)
    g = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(g))
    gx, gt = layer.backward(g), n(xt.grad)
    if cls_name.startswith("LPPool"):
        # elements in no window: PyTorch's gradient is NaN, poolkit's 0 (README: differences)
        covered = poolkit.sum_pool_backward(np.ones(y.shape), x.shape, kw["kernel_size"], kw.get("stride"),
                                            ceil_mode=kw.get("ceil_mode", False),
                                            data_format={1: "NCL", 2: "NCHW", 3: "NCDHW"}[rank]) > 0
        np.testing.assert_array_equal(gx[~covered], 0.0)
        if np.isnan(gt[~covered]).any():                # 0 * x**(p-1) with x**(p-1) NaN, in PyTorch
            np.testing.assert_array_equal(np.nan_to_num(gt[~covered], nan=0.0), 0.0)
            _close(gx[covered], gt[covered], dtype)
            raise Outcome("Lp gradient of elements in no window")
    _close(gx, gt, dtype)
    return "agree"


def _error_case(run, error_input):
    with pytest.raises((ValueError, TypeError)) as info:
        run(error_input.sample_input)
    assert "`" in str(info.value), str(info.value)          # the message names the argument
    return "error, both"


@pytest.mark.slow
def test_pytorch_opinfo_and_moduleinfo_samples():
    """Every pooling sample of PyTorch's op_db and module_db, float64 and float32: how each case ends."""
    pytest.importorskip("expecttest")              # torch.testing._internal needs it
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db

    counts: collections.Counter = collections.Counter()
    failures = []
    ops = [o for o in op_db if "pool" in o.name]
    for dtype in (torch.float64, torch.float32):
        for op in ops:
            name = op.name
            for i, sample in enumerate(op.sample_inputs("cpu", dtype, requires_grad=True)):
                try:
                    counts[_op_case(name, op.op, sample, dtype)] += 1
                except Outcome as why:
                    counts[f"documented: {why}"] += 1
                except Exception as exc:                       # a disagreement: report it with the case
                    failures.append(f"{name}[{i}] {dtype}: {type(exc).__name__}: {str(exc)[:300]}")
        for info in module_db:
            if "Pool" not in info.module_cls.__name__:
                continue
            for i, mi in enumerate(info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                                           training=True)):
                try:
                    counts[_module_case(info, mi, dtype)] += 1
                except Outcome as why:
                    counts[f"documented: {why}"] += 1
                except Exception as exc:
                    failures.append(f"{info.module_cls.__name__}[{i}] {dtype}: {type(exc).__name__}: {str(exc)[:300]}")
    for op in ops:
        if not op.error_inputs_func:
            continue
        fn = getattr(poolkit, op.name.split(".")[-1], None)

        def run(sample, fn=fn, name=op.name):
            args = [_np(a) for a in sample.args]
            kw = {k: _np(v) for k, v in sample.kwargs.items()}
            if "fractional" in name:
                kw["samples"] = kw.pop("_random_samples", None)
            return fn(_np(sample.input), *args, **kw, backend=BACKEND)
        for i, error_input in enumerate(op.error_inputs("cpu")):
            try:
                counts[_error_case(run, error_input)] += 1
            except BaseException as exc:        # pytest.raises' failure is an OutcomeException, not an Exception
                failures.append(f"{op.name} error input {i}: {type(exc).__name__}: {str(exc)[:300]}")
    print(f"\nPyTorch's pooling samples through poolkit: {sum(counts.values())} cases")
    for outcome, k in sorted(counts.items()):
        print(f"  {k:6d}  {outcome}")
    kinds = collections.Counter(f.split("[")[0] + ": " + f.split(": ", 1)[1][:90] for f in failures)
    assert not failures, f"{len(failures)} disagreements:\n" + "\n".join(f"{k:5d}  {what}" for what, k in
                                                                       kinds.most_common(30)) + "\n" + \
        "\n".join(failures[:10])
