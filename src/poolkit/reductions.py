"""Min, sum and Lp pooling: the reductions beyond max and mean, with their backward passes.

None of them needs a kernel of its own (min pooling is a compile-time variant of max pooling's):

* **min** pooling runs max pooling's kernels with the comparison reversed (a
  compile-time constant of each kernel): the same ties and NaN rule, the same
  offsets, and the gradient goes to the winner's index exactly as for max pooling;
* **sum** pooling is average pooling that does not divide (integers and bool are
  summed exactly in int64);
* **Lp** pooling is PyTorch's composition, ``(avg_pool(x**p) * K) ** (1/p)``
  with ``K`` the taps of the kernel, around the average-pooling kernels.

All of them take every option of max and average pooling: ``padding`` (also
per side, ``"same"``), ``dilation``, ``ceil_mode``, ``axes=``, channels-last
layouts, ``nan_policy`` and ``mask=`` (a bool array, True where an element
takes part, or an ``np.ma.MaskedArray``), which leave elements out of their
windows by one mechanism shared with ``nan_policy="ignore"``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from .engine.eager import check_float_grad, finish_forward, run_backward, split_masked
from .core.layout import as_input_array, dtype_policy
from .functional import (_avg, _avg_backward, _global, _global_axes, _input_shape, _max, _rank_of, _strided,
    max_pool_backward)

__all__ = [
    "min_pool", "min_pool1d", "min_pool2d", "min_pool3d", "min_pool_backward",
    "sum_pool", "sum_pool1d", "sum_pool2d", "sum_pool3d", "sum_pool_backward",
    "lp_pool", "lp_pool1d", "lp_pool2d", "lp_pool3d", "lp_pool_backward",
    "global_lp_pool", "global_lp_pool_backward", "check_norm_type",
]

Ints = Union[int, Sequence[int]]
_FORMATS = {1: "NCL", 2: "NCHW", 3: "NCDHW"}


# --------------------------------------------------------------------------- #
# min pooling
# --------------------------------------------------------------------------- #
def min_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
             *, axes=None, data_format="channels_first", nan_policy="propagate", mask=None, backend="auto"):
    r"""Min pooling over 1, 2 or 3 axes of an array: :func:`poolkit.max_pool` with the order reversed.

    Each output is the minimum of its window. Padding never wins (it acts as
    :math:`+\infty`); ties go to the first minimum in scan order; a NaN wins
    (the window's last NaN), as in max pooling. Integers and bool are exact (bool
    min pooling is erosion of a mask). A window wholly in padding gives ``+inf``
    (integers: the dtype's maximum) and index -1.

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Any real dtype: floats, integers or bool.
    kernel_size, stride, padding, dilation, ceil_mode, return_indices, axes, data_format, nan_policy, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out of their windows (a
        window with none left gives NaN, integers the maximum, and index -1).
        An ``np.ma.MaskedArray`` input is honoured the same way and gives a masked result.

    Returns
    -------
    out : ndarray, shape (N, C, *O), dtype of ``x``
    indices : ndarray of int64, shape (N, C, *O)
        Only if ``return_indices``: flat positions in each input plane, for
        :func:`min_pool_backward` and :func:`poolkit.max_unpool2d`.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]])
    >>> poolkit.min_pool(x, 2, axes=(0, 1))
    array([[1., 1.],
           [1., 0.]])
    >>> poolkit.min_pool(np.array([True, True, False, True]), 2, stride=1, axes=0)
    array([ True, False, False])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    return _max(rank, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, op="min",
                data_format=data_format, axes=axes, nan_policy=nan_policy, mask=mask, backend=backend,
                pytorch_name=False)


def _min_fixed(rank):
    def fn(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
           *, data_format=_FORMATS[rank], axes=None, nan_policy="propagate", mask=None, backend="auto"):
        return _max(rank, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, op="min",
                    data_format=data_format, axes=axes, nan_policy=nan_policy, mask=mask, backend=backend,
                    pytorch_name=True)
    fn.__name__ = fn.__qualname__ = f"min_pool{rank}d"
    fn.__doc__ = f"""{rank}-D min pooling: :func:`min_pool` over the last {rank} axes of (N, C, *S) or (C, *S).

    ``data_format="{_FORMATS[rank][0] + _FORMATS[rank][2:] + 'C'}"`` (or "channels_last") for channels-last arrays.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.min_pool{rank}d(np.arange(2.0 ** {rank}).reshape((1, 1) + (2,) * {rank}), 2).ravel()
    array([0.])
    """
    return fn


min_pool1d, min_pool2d, min_pool3d = _min_fixed(1), _min_fixed(2), _min_fixed(3)


def min_pool_backward(grad_output, indices, input_shape, *, axes=None, data_format="channels_first",
                      backend="auto"):
    """Gradient of min pooling: each upstream value goes to its window's minimum (``indices``).

    The same scatter as :func:`poolkit.max_pool_backward` (min pooling records
    its winners the same way).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[[3., 1, 2, 5]]])
    >>> y, idx = poolkit.min_pool1d(x, 2, return_indices=True)
    >>> poolkit.min_pool_backward(np.ones_like(y), idx, x.shape)
    array([[[0., 1., 1., 0.]]])
    """
    return max_pool_backward(grad_output, indices, input_shape, axes=axes, data_format=data_format,
                             backend=backend)


# --------------------------------------------------------------------------- #
# sum pooling
# --------------------------------------------------------------------------- #
def sum_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, axes=None,
             data_format="channels_first", nan_policy="propagate", mask=None, backend="auto"):
    """Sum pooling over 1, 2 or 3 axes: the sum of each window's elements inside the input.

    Padding adds 0. Integers and bool are summed exactly in int64 (and returned
    as int64); floats are summed in their own dtype (float16 and bfloat16 in
    float32), in scan order. With ``nan_policy="ignore"`` or ``mask`` the left-out
    elements add nothing; a window with none left sums to 0 (as ``np.nansum``).

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
    kernel_size, stride, padding, dilation, ceil_mode, axes, data_format, nan_policy, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out. ``np.ma.MaskedArray``
        input is honoured the same way (the result is masked where no element is left).

    Returns
    -------
    out : ndarray, shape (N, C, *O)

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.sum_pool(np.arange(8, dtype=np.uint8).reshape(2, 4), 2, axes=(0, 1))
    array([[10, 18]])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    return _avg(rank, x, kernel_size, stride, padding, ceil_mode, True, None, dilation=dilation, op="sum",
                data_format=data_format, axes=axes, nan_policy=nan_policy, mask=mask, backend=backend,
                pytorch_name=False)


def _sum_fixed(rank):
    def fn(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, data_format=_FORMATS[rank],
           axes=None, nan_policy="propagate", mask=None, backend="auto"):
        return _avg(rank, x, kernel_size, stride, padding, ceil_mode, True, None, dilation=dilation, op="sum",
                    data_format=data_format, axes=axes, nan_policy=nan_policy, mask=mask, backend=backend,
                    pytorch_name=True)
    fn.__name__ = fn.__qualname__ = f"sum_pool{rank}d"
    fn.__doc__ = f"""{rank}-D sum pooling: :func:`sum_pool` over the last {rank} axes of (N, C, *S) or (C, *S).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> float(poolkit.sum_pool{rank}d(np.ones((1, 1) + (4,) * {rank}), 2).ravel()[0])
    {2.0 ** rank}
    """
    return fn


sum_pool1d, sum_pool2d, sum_pool3d = _sum_fixed(1), _sum_fixed(2), _sum_fixed(3)


def sum_pool_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                      *, axes=None, data_format="channels_first", nan_policy="propagate", x=None, mask=None,
                      backend="auto"):
    """Gradient of :func:`sum_pool`: each upstream value is added to every element of its window.

    Arguments after ``input_shape`` must be those of the forward call. Elements
    left out (NaN with ``nan_policy="ignore"``, which needs the forward input
    ``x``; False in ``mask``) get nothing.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output`` (floating point)

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.sum_pool_backward(np.array([[[1., 2, 3]]]), (1, 1, 5), 2, stride=2, padding=1)
    array([[[1., 2., 2., 3., 3.]]])
    """
    shape = _input_shape(input_shape)
    rank = _rank_of(len(shape), kernel_size, axes, data_format)
    return _avg_backward(rank, grad_output, shape, kernel_size, stride, padding, ceil_mode, True, None,
                         data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy, x=x,
                         pytorch_name=False, dilation=dilation, mask=mask, op="sum")


# --------------------------------------------------------------------------- #
# Lp pooling
# --------------------------------------------------------------------------- #
def check_norm_type(norm_type) -> float:
    """``norm_type`` as a float: finite and non-zero, or +-inf; else an error naming it."""
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"`norm_type` must be a real number (the p of the Lp norm), but got norm_type={norm_type!r}.")
    p = float(norm_type)
    if p == 0 or math.isnan(p):
        raise ValueError(f"`norm_type` must be non-zero and not NaN (y = (sum x**p)**(1/p)), "
                         f"but got norm_type={norm_type!r}.")
    return p


class _LpState:
    """What Lp backward needs from forward: the inner pooling's context and the values around it."""

    def __init__(self, p: float, ctx, xc: np.ndarray, s=None, y=None):
        self.p, self.ctx, self.xc, self.s, self.y = p, ctx, xc, s, y

    @property
    def nbytes(self) -> int:
        arrays = [a for a in (self.xc, self.s, self.y) if isinstance(a, np.ndarray)]
        return self.ctx.nbytes + sum(a.nbytes for a in arrays)


def _lp_forward(rank, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation, *, mask, keep,
                pytorch_name, **kw) -> Tuple[Any, Optional[_LpState]]:
    """Lp pooling; with ``keep`` also the state :func:`_lp_backward` needs."""
    p = check_norm_type(norm_type)
    x, mask, masked = split_masked(x, mask)
    if math.isinf(p):
        # PyTorch: max pooling of |x| for +inf, minus max pooling of -|x| (min pooling of |x|) for -inf.
        pol = dtype_policy(x.dtype, "max")
        prep, ax = _strided("max" if p > 0 else "min", rank, np.abs(x), kernel_size, stride, padding, dilation,
                            ceil_mode, pytorch_name=pytorch_name, **kw)
        y, _, ctx = finish_forward(prep, ax, mask, masked, False, keep)
        return y, (_LpState(p, ctx, np.sign(x).astype(pol.compute, copy=False)) if keep else None)
    pol = dtype_policy(x.dtype, "lp")
    xc = x.astype(pol.compute) if pol.converts else x
    with np.errstate(invalid="ignore"):                  # a negative x to a fractional p: NaN, as PyTorch
        t = np.power(xc, xc.dtype.type(p))
    # PyTorch's avg_pool call: count_include_pad=True, no divisor_override (its 3-D size rule included).
    prep, t = _strided("avg", rank, t, kernel_size, stride, padding, dilation, ceil_mode, pytorch_name=pytorch_name,
                       count_include_pad=True, divisor_override=None, **kw)
    s, _, ctx = finish_forward(prep, t, mask, masked, False, keep)
    taps = math.prod(a.kernel for a in prep.plan.axes if a.kernel is not None)
    # PyTorch's (sign(s) * relu(|s|)) * K, then the 1/p power: a negative sum gives NaN for most p.
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.power((np.sign(s) * np.abs(s)) * xc.dtype.type(taps), xc.dtype.type(1.0 / p))
    if pol.converts:
        y = y.astype(pol.result)
    return y, (_LpState(p, ctx, xc, s, y) if keep else None)


def _lp_backward(state: _LpState, grad_output) -> np.ndarray:
    p = state.p
    if math.isinf(p):
        # the gradient of |x| at its winner, times sign(x) (0 at 0, as PyTorch's abs)
        return run_backward(state.ctx, grad_output) * state.xc
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    pol = dtype_policy(g.dtype, "avg")
    gc = g.astype(pol.compute) if pol.converts else g
    s, y = np.ma.getdata(state.s), np.ma.getdata(state.y).astype(gc.dtype, copy=False)
    one = gc.dtype.type
    # dy/ds = y / (p s): a window summing to zero passes no gradient (PyTorch would give NaN there).
    with np.errstate(invalid="ignore", divide="ignore"):
        gs = np.where(s != 0, gc * y / (one(p) * s), one(0)).astype(gc.dtype, copy=False)
        gt = run_backward(state.ctx, gs)
        gx = np.where(gt == 0, one(0), gt * one(p) * np.power(state.xc, state.xc.dtype.type(p - 1)))
    gx = gx.astype(gc.dtype, copy=False)
    return gx.astype(pol.result) if pol.converts else gx


def lp_pool(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1, axes=None,
            data_format="channels_first", mask=None, backend="auto"):
    r"""Lp (power-average) pooling over 1, 2 or 3 axes, PyTorch's ``lp_pool`` with every pooling option.

    .. math:: y = \Bigl(K \cdot \frac{1}{n} \sum_{j \in \text{window}} x_j^{p}\Bigr)^{1/p}

    where ``K`` is the number of taps of the kernel and ``n`` average pooling's
    ``count_include_pad=True`` divisor: ``n = K`` except for a ``ceil_mode`` window
    cut by the end of the padded input, so ``y`` is the Lp norm of the window
    (PyTorch's exact formula: ``(avg_pool(x**p) * K) ** (1/p)``). As in PyTorch a
    window whose sum is negative gives NaN (unless ``1/p`` is an odd integer), and
    ``norm_type=inf`` is max pooling of ``|x|`` (``-inf``: min pooling of ``|x|``).
    With ``mask`` the masked elements are left out and ``n`` shrinks with them.

    Beyond PyTorch: ``padding`` (padding adds 0 to the sum; also per side and
    ``"same"``), ``dilation``, ``axes=``, channels-last layouts, masks, and a
    gradient that is finite where a window sums to zero (it is 0 there).

    Parameters
    ----------
    x : array_like of float, shape (N, C, *S) or (C, *S)
    norm_type : float
        ``p``: non-zero; ``inf`` or ``-inf`` allowed.
    kernel_size, stride, ceil_mode
        As for :func:`poolkit.avg_pool` (PyTorch's argument order).
    padding, dilation, axes, data_format, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out (also ``np.ma.MaskedArray`` input).

    Returns
    -------
    out : ndarray, shape (N, C, *O), dtype of ``x``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.lp_pool(np.array([[3., 4, 1, 0]]), 2, 2, axes=1)
    array([[5., 1.]])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    return _lp_forward(rank, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation, mask=mask,
                       keep=False, pytorch_name=False, data_format=data_format, axes=axes, backend=backend)[0]


def _lp_fixed(rank):
    def fn(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
           data_format=_FORMATS[rank], axes=None, mask=None, backend="auto"):
        return _lp_forward(rank, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation, mask=mask,
                           keep=False, pytorch_name=True, data_format=data_format, axes=axes, backend=backend)[0]
    fn.__name__ = fn.__qualname__ = f"lp_pool{rank}d"
    fn.__doc__ = f"""{rank}-D Lp pooling: :func:`lp_pool` over the last {rank} axes (PyTorch's ``lp_pool{rank}d``).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> float(poolkit.lp_pool{rank}d(np.full((1, 1) + (2,) * {rank}, 2.0), 2, 2).ravel()[0])
    {2.0 * (2 ** rank) ** 0.5}
    """
    return fn


lp_pool1d, lp_pool2d, lp_pool3d = _lp_fixed(1), _lp_fixed(2), _lp_fixed(3)


def lp_pool_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
                     dilation=1, axes=None, data_format="channels_first", mask=None, backend="auto"):
    """Gradient of :func:`lp_pool` with respect to ``x`` (the forward input; arguments as in forward).

    ``dy/dx_j = y**(1-p) * x_j**(p-1) * K/n`` per window; 0 for a window whose
    sum is zero (finite where PyTorch's may be NaN), NaN where the forward
    output is NaN. For ``norm_type=inf`` the gradient goes to the element of
    largest ``|x|``, times its sign.

    Returns
    -------
    grad_input : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.lp_pool_backward(np.array([[1.]]), np.array([[3., 4]]), 2, 2, axes=1)
    array([[0.6, 0.8]])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    _, state = _lp_forward(rank, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation, mask=mask,
                           keep=True, pytorch_name=False, data_format=data_format, axes=axes, backend=backend)
    return _lp_backward(state, grad_output)


def global_lp_pool(x, norm_type=2.0, *, data_format="channels_first", axes=None, keepdims=False, backend="auto"):
    """ONNX's ``GlobalLpPool``: the Lp norm ``(sum |x|**p) ** (1/p)`` over all spatial axes.

    (N, C, *S) -> (N, C), or (N, C, 1, ..., 1) with ``keepdims`` (ONNX keeps
    them). Unlike :func:`lp_pool` (PyTorch's), the absolute value is taken, as
    ONNX does; ``norm_type`` must be positive (``inf``: max of ``|x|``).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.global_lp_pool(np.array([[[3., -4]]]))
    array([[5.]])
    """
    y, _ = _global_lp(x, norm_type, data_format, axes, keepdims, backend)
    return y


def _global_lp(x, norm_type, data_format, axes, keepdims, backend):
    p = check_norm_type(norm_type)
    if p < 0:
        raise ValueError(f"`norm_type` of global Lp pooling must be positive (ONNX's p), "
                         f"but got norm_type={norm_type!r}.")
    x = as_input_array(x, lazy=True)
    if math.isinf(p):
        return _global("max", np.abs(x), data_format, axes, keepdims, False, "propagate", backend), p
    pol = dtype_policy(x.dtype, "lp")
    xc = x.astype(pol.compute) if pol.converts else x
    total = _global("sum", np.power(np.abs(xc), xc.dtype.type(p)), data_format, axes, keepdims, False,
                    "propagate", backend)
    y = np.power(total, xc.dtype.type(1.0 / p))
    return (y.astype(pol.result) if pol.converts else y), p


def global_lp_pool_backward(grad_output, x, norm_type=2.0, *, data_format="channels_first", axes=None):
    """Gradient of :func:`global_lp_pool` with respect to ``x``: ``g * sign(x) * (|x| / y) ** (p - 1)``.

    0 where ``y`` is 0. ``grad_output`` may have the pooled axes dropped or kept as size 1.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.global_lp_pool_backward(np.array([[1.]]), np.array([[[3., -4]]]))
    array([[[ 0.6, -0.8]]])
    """
    x = as_input_array(x)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    y, p = _global_lp(x, norm_type, data_format, axes, True, "auto")
    pooled = _global_axes(x.ndim, data_format, axes)
    kept = tuple(1 if i in pooled else n for i, n in enumerate(x.shape))
    dropped = tuple(n for i, n in enumerate(x.shape) if i not in pooled)
    if g.shape == dropped:
        g = g.reshape(kept)
    elif g.shape != kept:
        raise ValueError(f"`grad_output` must have shape {dropped} (or {kept}), but got shape {g.shape}.")
    pol = dtype_policy(g.dtype, "avg")
    gc, yc, xc = (a.astype(pol.compute, copy=False) for a in (g, y, x))
    if math.isinf(p):
        # the gradient goes to each plane's winner of max pooling |x|, times the sign of x there
        _, idx = _global("max", np.abs(xc), data_format, axes, True, True, "propagate", "auto")
        others = [i for i in range(x.ndim) if i not in pooled]
        perm = others + list(pooled)          # the order of the flat index within a plane
        planes = int(np.prod([x.shape[i] for i in others], dtype=np.int64))
        gt = np.zeros((planes, int(np.prod([x.shape[i] for i in pooled], dtype=np.int64))), dtype=gc.dtype)
        gt[np.arange(planes), idx.transpose(perm).reshape(planes)] = gc.transpose(perm).reshape(planes)
        gx = gt.reshape([x.shape[i] for i in perm]).transpose(np.argsort(perm)) * np.sign(xc)
        return gx.astype(pol.result) if pol.converts else gx
    with np.errstate(invalid="ignore", divide="ignore"):
        gx = np.where(yc == 0, 0, gc * np.sign(xc) * np.power(np.abs(xc) / yc, p - 1))
    gx = gx.astype(pol.compute, copy=False)
    return gx.astype(pol.result) if pol.converts else gx
