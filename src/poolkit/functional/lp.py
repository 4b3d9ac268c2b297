"""Lp pooling: PyTorch's ``lp_pool`` (composed on average pooling) and ONNX's ``GlobalLpPool``, with gradients.

``y = (avg_pool(x**p, count_include_pad=True) * K) ** (1/p)`` with ``K`` the taps
of the kernel, exactly PyTorch's formula, around the average-pooling kernels;
``norm_type=inf`` is max pooling of ``|x|`` (``-inf``: min pooling).  What the
layer keeps for backward is :class:`LpState`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple, cast

import numpy as np

from ..core.args import is_real
from ..core.layout import as_input_array, dtype_policy, float_policy
from ..core.reductions import AVG, LP, MAX, MIN
from ..engine.eager import Context, run_backward
from ..engine.prepare import check_float_grad, split_masked
from .adaptive import global_axes, global_pool, global_sum, squeezed_grad
from .common import pool, rank_of
from .fixed import fixed_docs, fixed_ranks, nd_function
from .strided import strided

__all__ = [
    "lp_pool",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "lp_pool_backward",
    "global_lp_pool",
    "global_lp_pool_backward",
]


def check_norm_type(norm_type) -> float:
    """``norm_type`` as a float: finite and non-zero, or +-inf; else an error naming it."""
    if not is_real(norm_type):
        raise TypeError(f"`norm_type` must be a real number (the p of the Lp norm), but got norm_type={norm_type!r}.")
    p = float(norm_type)
    if p == 0 or math.isnan(p):
        raise ValueError(f"`norm_type` must be non-zero and not NaN (y = (sum x**p)**(1/p)), "
                         f"but got norm_type={norm_type!r}.")
    return p


@dataclass(eq=False)
class LpState:
    """What Lp backward needs from forward: the inner pooling's context and the values around it.

    ``xc`` is the input in the compute dtype (for ``norm_type=+-inf``: its sign), ``s``
    the window averages of ``x**p`` and ``y`` the outputs (both None for ``+-inf``).
    """

    p: float
    ctx: Context
    xc: np.ndarray
    s: Optional[np.ndarray] = None
    y: Optional[np.ndarray] = None

    @property
    def nbytes(self) -> int:
        arrays = [a for a in (self.xc, self.s, self.y) if isinstance(a, np.ndarray)]
        return self.ctx.nbytes + sum(a.nbytes for a in arrays)


def lp_forward(rank, pytorch_name, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation, *, mask, keep,
               data_format, axes, backend) -> Tuple[Any, Optional[LpState]]:
    """Lp pooling; with ``keep`` also the state :func:`lp_backward` needs."""
    p = check_norm_type(norm_type)
    x, mask, masked = split_masked(x, mask)
    kw = dict(data_format=data_format, axes=axes, backend=backend)
    if math.isinf(p):
        # PyTorch: max pooling of |x| for +inf, minus max pooling of -|x| (min pooling of |x|) for -inf.
        pol = dtype_policy(x.dtype, MAX)
        ax = np.abs(x)
        prep = strided(MAX if p > 0 else MIN, rank, pytorch_name, ax, kernel_size, stride, padding, dilation,
                       ceil_mode, **kw)
        y, _, ctx = pool(prep, ax, mask, masked, False, keep)
        return y, (LpState(p, ctx, np.sign(x).astype(pol.compute, copy=False)) if keep else None)
    pol = dtype_policy(x.dtype, LP)
    xc = x.astype(pol.compute) if pol.converts else x
    # A negative x to a fractional p: NaN; a zero to a negative p: inf (both as PyTorch).
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.power(xc, xc.dtype.type(p))
    # PyTorch's avg_pool call: count_include_pad=True, no divisor_override (its 3-D size rule included).
    prep = strided(AVG, rank, pytorch_name, t, kernel_size, stride, padding, dilation, ceil_mode, **kw)
    s, _, ctx = pool(prep, t, mask, masked, False, keep)
    taps = math.prod(a.kernel for a in prep.plan.axes if a.kernel is not None)
    # PyTorch's (sign(s) * relu(|s|)) * K, then the 1/p power: a negative sum gives NaN for most p.
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.power((np.sign(s) * np.abs(s)) * xc.dtype.type(taps), xc.dtype.type(1.0 / p))
    if pol.converts:
        y = y.astype(pol.result)
    return y, (LpState(p, ctx, xc, s, y) if keep else None)


def lp_backward(state: LpState, grad_output) -> np.ndarray:
    """The gradient of the forward call that kept ``state``."""
    p = state.p
    if math.isinf(p):
        # the gradient of |x| at its winner, times sign(x) (0 at 0, as PyTorch's abs)
        return run_backward(state.ctx, grad_output) * state.xc
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    pol = float_policy(g.dtype)
    gc = g.astype(pol.compute) if pol.converts else g
    # finite p: forward kept the window averages and the outputs
    s = np.ma.getdata(cast(np.ndarray, state.s))
    y = np.ma.getdata(cast(np.ndarray, state.y)).astype(gc.dtype, copy=False)
    one = gc.dtype.type
    # dy/ds = y / (p s): a window summing to zero passes no gradient (PyTorch would give NaN there).
    with np.errstate(invalid="ignore", divide="ignore"):
        gs = np.where(s != 0, gc * y / (one(p) * s), one(0)).astype(gc.dtype, copy=False)
        gt = run_backward(state.ctx, gs)
        # An element in no window (gt == 0 there) gets 0: y does not depend on it (PyTorch: NaN).
        gx = np.where(gt == 0, one(0), gt * one(p) * np.power(state.xc, state.xc.dtype.type(p - 1)))
    gx = gx.astype(gc.dtype, copy=False)
    return gx.astype(pol.result) if pol.converts else gx


def _lp(rank, pytorch_name, x, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
        axes=None, data_format="channels_first", mask=None, backend="auto"):
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    return lp_forward(rank, pytorch_name, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation,
                      mask=mask, keep=False, data_format=data_format, axes=axes, backend=backend)[0]


def _lp_backward(rank, pytorch_name, grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                 padding=0, dilation=1, axes=None, data_format="channels_first", mask=None, backend="auto"):
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    _, state = lp_forward(rank, pytorch_name, x, norm_type, kernel_size, stride, ceil_mode, padding, dilation,
                          mask=mask, keep=True, data_format=data_format, axes=axes, backend=backend)
    return lp_backward(cast(LpState, state), grad_output)           # keep=True: a state came back


_LP_DOC = r"""Lp (power-average) pooling over 1, 2 or 3 axes, PyTorch's ``lp_pool`` with every pooling option.

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

_LP_BACKWARD_DOC = """Gradient of :func:`lp_pool` with respect to ``x`` (the forward input; arguments as in forward).

    ``dy/dx_j = y**(1-p) * x_j**(p-1) * K/n`` per window; 0 for a window whose
    sum is zero (finite where PyTorch's may be NaN), NaN where the forward
    output is NaN, and 0 for an element that lies in no window (the output does
    not depend on it; PyTorch's is NaN there where ``x**(p-1)`` is not finite). For ``norm_type=inf`` the
    gradient goes to the element of largest ``|x|``, times its sign.

    Returns
    -------
    grad_input : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.lp_pool_backward(np.array([[1.]]), np.array([[3., 4]]), 2, 2, axes=1)
    array([[0.6, 0.8]])
    >>> poolkit.lp_pool_backward(np.array([[1.]]), np.array([[3., 4, 5]]), 2, 2, axes=1)   # 5 is in no window
    array([[0.6, 0.8, 0. ]])
    """

lp_pool: Any = nd_function(_lp, "lp_pool", _LP_DOC, module=__name__)
lp_pool_backward: Any = nd_function(_lp_backward, "lp_pool_backward", _LP_BACKWARD_DOC, module=__name__)
# The example's windows hold 2**rank twos: their Lp norm for p = 2 is 2 * sqrt(2**rank), by hand.
lp_pool1d, lp_pool2d, lp_pool3d = fixed_ranks(
    _lp, "lp_pool{rank}d",
    fixed_docs("Lp pooling (PyTorch's ``lp_pool{rank}d``)", "lp_pool",
               "float(poolkit.lp_pool{rank}d(np.full({ones}, 2.0), 2, 2).ravel()[0])",
               lambda r: f"{2.0 * (2 ** r) ** 0.5}"),
    bound=(True,), module=__name__)


# --------------------------------------------------------------------------- #
# global Lp pooling (ONNX)
# --------------------------------------------------------------------------- #
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
        return global_pool(MAX, np.abs(x), data_format, axes, keepdims, False, "propagate", backend), p
    pol = dtype_policy(x.dtype, LP)
    xc = x.astype(pol.compute) if pol.converts else x
    total = global_sum(np.power(np.abs(xc), xc.dtype.type(p)), data_format, axes, keepdims, backend)
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
    pooled = global_axes(x.ndim, data_format, axes)
    g = squeezed_grad(g, x.shape, pooled)
    pol = float_policy(g.dtype)
    gc, yc, xc = (a.astype(pol.compute, copy=False) for a in (g, y, x))
    if math.isinf(p):
        # the gradient goes to each plane's winner of max pooling |x|, times the sign of x there
        _, idx = global_pool(MAX, np.abs(xc), data_format, axes, True, True, "propagate", "auto")
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
