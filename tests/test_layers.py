"""The layers: MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveMax/AvgPool1d/2d/3d.

One table lists every layer with positional arguments in PyTorch's order and an
input shape; every test runs over the whole table.  The torch.nn module of the
same name, built with the same positional arguments, is the oracle for forward
and backward.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from helpers import assert_close, assert_identical, make_input
from oracle import n, t, torch

# (class name, positional args in torch.nn's order, keyword args, input shape)
LAYERS = [
    ("MaxPool1d", (3, 2, 1), {}, (2, 3, 9)),
    ("MaxPool2d", (3, 2, 1, 1), dict(ceil_mode=True), (2, 3, 7, 8)),
    ("MaxPool2d", ((2, 3), 1, (1, 0), 2), {}, (3, 6, 7)),                 # unbatched, dilated
    ("MaxPool3d", (2, 2, 0, 1), dict(ceil_mode=True), (1, 2, 5, 4, 5)),
    ("AvgPool1d", (3, 2, 1, True, False), {}, (2, 3, 9)),
    ("AvgPool2d", (3, 2, 1, False, True, 4), {}, (2, 3, 7, 8)),
    ("AvgPool2d", ((2, 3), 1, (1, 1)), {}, (3, 6, 7)),                   # unbatched
    ("AvgPool3d", (2, 1, 1, True, False), {}, (1, 2, 4, 5, 3)),
    ("AdaptiveMaxPool1d", (4,), {}, (2, 3, 9)),
    ("AdaptiveMaxPool2d", ((3, None),), {}, (2, 3, 7, 8)),
    ("AdaptiveMaxPool3d", ((2, 3, 6),), {}, (1, 2, 5, 4, 5)),
    ("AdaptiveAvgPool1d", (5,), {}, (3, 9)),                              # unbatched
    ("AdaptiveAvgPool2d", (4,), {}, (2, 3, 7, 8)),
    ("AdaptiveAvgPool3d", ((None, 2, 2),), {}, (1, 2, 5, 4, 5)),
]
IDS = [f"{name}-{i}" for i, (name, _, _, _) in enumerate(LAYERS)]


def _is_max(name):
    return "Max" in name


def _rank(name):
    return int(name[-2])


def _functional_backward(name, args, layer_kw, x, g, idx):
    """The functional gradient for the layer ``name`` (max: via the forward indices)."""
    rank = _rank(name)
    if _is_max(name):
        return getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, **layer_kw)
    if name.startswith("Adaptive"):
        return poolkit.adaptive_avg_pool_backward(g, x.shape, data_format={1: "NCL", 2: "NCHW", 3: "NCDHW"}[rank],
                                                  **layer_kw)
    return getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, *args, **layer_kw)


@pytest.mark.parametrize("backend", ["reference", "img2col", "numba", "auto"])
@pytest.mark.parametrize("name, args, kw, shape", LAYERS, ids=IDS)
def test_layer_forward_backward(name, args, kw, shape, backend):
    rng = np.random.default_rng([41, LAYERS.index((name, args, kw, shape))])
    x = make_input(rng, shape, np.float64, "ties")
    layer = getattr(poolkit, name)(*args, **kw, backend=backend)
    y = layer(x)
    assert_identical(layer.forward(x), y, "forward == __call__")
    # the same module in PyTorch, same positional arguments
    xt = t(x).requires_grad_(True)
    y_t = getattr(torch.nn, name)(*args, **kw)(xt)
    if _is_max(name):
        assert_identical(y, n(y_t))
    else:
        assert_close(y, n(y_t))
    g = make_input(rng, y.shape, np.float64, "normal")
    gx = layer.backward(g)
    y_t.backward(t(g))
    (assert_identical if _is_max(name) else assert_close)(gx, n(xt.grad))
    # the functional backward gives the same gradient
    idx = None
    if _is_max(name):
        # the layer with return_indices=True gives the indices of the same forward
        _, idx = getattr(poolkit, name)(*args, **kw, return_indices=True, backend=backend)(x)
    assert_identical(_functional_backward(name, args, dict(backend=backend), x, g, idx), gx)


@pytest.mark.parametrize("name, args, kw, shape", [r for r in LAYERS if _is_max(r[0])],
                         ids=[i for i, r in zip(IDS, LAYERS) if _is_max(r[0])])
def test_return_indices(name, args, kw, shape):
    x = make_input(np.random.default_rng(42), shape, np.float64, "distinct")
    cls = getattr(poolkit, name)
    plain = cls(*args, **kw)(x)
    assert isinstance(plain, np.ndarray)
    y, idx = cls(*args, **kw, return_indices=True)(x)
    assert_identical(y, plain)
    y_t, i_t = getattr(torch.nn, name)(*args, **kw, return_indices=True)(t(x))
    assert idx.dtype == np.int64
    assert np.array_equal(idx, n(i_t))


@pytest.mark.parametrize("name, args, kw, shape", LAYERS, ids=IDS)
def test_eval_forward_keeps_nothing(name, args, kw, shape):
    layer = getattr(poolkit, name)(*args, **kw)
    x = make_input(np.random.default_rng(43), shape)
    assert layer.saved_nbytes == 0
    y = layer.forward(x, train=False)
    assert layer.saved_nbytes == 0
    with pytest.raises(RuntimeError, match=name):
        layer.backward(np.ones_like(y))
    # the eval result is the training result
    assert_identical(layer.forward(x, train=True), y)


@pytest.mark.parametrize("name, args, kw, shape", LAYERS, ids=IDS)
def test_saved_nbytes(name, args, kw, shape):
    """Max layers keep one byte per output (windows under 255 taps); average layers keep nothing."""
    layer = getattr(poolkit, name)(*args, **kw)
    y = layer(make_input(np.random.default_rng(44), shape))
    assert layer.saved_nbytes == (y.size if _is_max(name) else 0)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_saved_nbytes_large_window(rank):
    """A window of 255 taps or more needs wider offsets: 4 bytes per output."""
    k = {1: 300, 2: 16, 3: 7}[rank]                   # 300, 256, 343 taps
    shape = (1, 2) + (k + 1,) * rank
    layer = getattr(poolkit, f"MaxPool{rank}d")(k, 1)
    x = make_input(np.random.default_rng(45), shape, np.float32, "distinct")
    y = layer(x)
    assert layer.saved_nbytes == 4 * y.size
    small = getattr(poolkit, f"MaxPool{rank}d")(2, 1)
    small(x)
    assert small.saved_nbytes == small.forward(x).size
    # and the wide offsets still give the right gradient
    gx = layer.backward(np.ones_like(y))
    xt = t(x).requires_grad_(True)
    getattr(torch.nn, f"MaxPool{rank}d")(k, 1)(xt).sum().backward()
    assert_identical(gx, n(xt.grad))


@pytest.mark.parametrize("name, args, kw, shape", LAYERS, ids=IDS)
def test_repr(name, args, kw, shape):
    layer = getattr(poolkit, name)(*args, **kw)
    text = repr(layer)
    assert text.startswith(f"{name}(") and text.endswith(")")
    first = args[0]
    key = "output_size" if name.startswith("Adaptive") else "kernel_size"
    assert f"{key}={first!r}" in text
    assert "backend='auto'" in text
    assert "object at 0x" not in text


def test_repr_shows_all_settings():
    text = repr(poolkit.AvgPool2d(3, 2, 1, True, False, 5, data_format="NHWC", backend="numba"))
    for part in ("kernel_size=3", "stride=2", "padding=1", "ceil_mode=True", "count_include_pad=False",
                 "divisor_override=5", "data_format='NHWC'", "backend='numba'"):
        assert part in text, (part, text)
    text = repr(poolkit.MaxPool3d((1, 2, 2), dilation=2))
    assert "kernel_size=(1, 2, 2)" in text and "dilation=2" in text


@pytest.mark.parametrize("name, args, kw, shape", LAYERS, ids=IDS)
def test_several_shapes_through_one_layer(name, args, kw, shape):
    """One layer, inputs of several shapes (and dtypes): each backward belongs to the last training forward."""
    rng = np.random.default_rng(46)
    layer = getattr(poolkit, name)(*args, **kw)
    bigger = shape[:-1] + (shape[-1] + 3,)
    batch = (3,) + shape[1:] if len(shape) == _rank(name) + 2 else shape
    for s, dt in [(shape, np.float64), (bigger, np.float64), (batch, np.float32), (shape, np.float64)]:
        x = make_input(rng, s, dt)
        y = layer(x)
        fresh = getattr(poolkit, name)(*args, **kw)
        assert_identical(y, fresh(x))
        g = make_input(rng, y.shape, dt)
        assert_identical(layer.backward(g), fresh.backward(g))
    # a training forward on a new shape replaces the context: the old gradient shape is refused
    y_big = layer(make_input(rng, bigger))
    y_old = fresh(make_input(rng, shape))
    if y_big.shape != y_old.shape:          # (adaptive layers may give the same output shape)
        with pytest.raises(ValueError, match="grad_output"):
            layer.backward(np.ones_like(y_old))


@pytest.mark.parametrize("name", ["MaxPool2d", "AvgPool2d"])
def test_layer_channels_last(name):
    x = make_input(np.random.default_rng(47), (2, 3, 6, 7), np.float32, "ties")
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    first = getattr(poolkit, name)(3, 2, 1)
    last = getattr(poolkit, name)(3, 2, 1, data_format="NHWC")
    y, y_last = first(x), last(x_last)
    assert_identical(y_last.transpose(0, 3, 1, 2), y)
    g = make_input(np.random.default_rng(48), y.shape, np.float32)
    gx_last = last.backward(np.ascontiguousarray(g.transpose(0, 2, 3, 1)))
    assert_identical(gx_last.transpose(0, 3, 1, 2), first.backward(g))


def test_arguments_validated_at_construction():
    """Bad settings fail when the layer is built, not at the first forward."""
    with pytest.raises(ValueError, match="kernel_size=0"):
        poolkit.MaxPool2d(0)
    with pytest.raises(ValueError, match="padding=2"):
        poolkit.AvgPool1d(3, padding=2)
    with pytest.raises(TypeError, match="output_size=1.5"):
        poolkit.AdaptiveMaxPool1d(1.5)
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        poolkit.MaxPool2d(2, nan_policy="omit")



@pytest.mark.parametrize("rank", [1, 2, 3])
def test_positional_order(rank):
    """AvgPoolNd(k, s, p, ceil_mode, count_include_pad, divisor_override) is torch.nn's order.

    MaxPoolNd(k, s, p, d, ceil_mode, *, return_indices) follows F.max_poolNd instead of
    torch.nn.MaxPoolNd (whose 5th positional is return_indices): poolkit makes
    return_indices keyword-only, so the 5th positional is ceil_mode.
    """
    x = make_input(np.random.default_rng(49), (1, 2) + (5,) * rank, np.float64, "distinct")
    y = getattr(poolkit, f"MaxPool{rank}d")(2, 2, 1, 1, True)(x)
    assert_identical(y, n(getattr(torch.nn, f"MaxPool{rank}d")(2, 2, 1, 1, ceil_mode=True)(t(x))))
    y, idx = getattr(poolkit, f"MaxPool{rank}d")(2, 2, 1, 1, True, return_indices=True)(x)
    y_t, i_t = getattr(torch.nn, f"MaxPool{rank}d")(2, 2, 1, 1, True, True)(t(x))
    assert_identical(y, n(y_t))
    assert np.array_equal(idx, n(i_t))
    extra = (3,) if rank > 1 else ()
    y = getattr(poolkit, f"AvgPool{rank}d")(3, 2, 1, True, False, *extra)(x)
    assert_close(y, n(getattr(torch.nn, f"AvgPool{rank}d")(3, 2, 1, True, False, *extra)(t(x))))
