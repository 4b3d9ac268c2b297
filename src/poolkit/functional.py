"""Public pooling functions, with PyTorch's names, argument order, defaults and semantics.

The N-d functions :func:`max_pool` and :func:`avg_pool` carry the full
documentation; ``max_pool1d/2d/3d`` and ``avg_pool1d/2d/3d`` are the same with
the rank fixed and PyTorch's ``data_format`` names.  Every function validates
its arguments before any kernel runs and never writes to its input.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike

from .engine.eager import (Context, backend_module, check_float_grad, check_mask, check_nan_policy,
    finish_forward, prepare, run_backward, run_forward, split_masked)
from .core.geometry import PoolSpec, as_bool, check_int64_product, dim_names, normalize_ints
from .core.layout import (CHANNELS_LAST, Layout, as_input_array, dtype_policy, format_rank, is_dask_array,
    merge_pooled, resolve_axes)
from .core.windows import AdaptiveWindows, StridedWindows

__all__ = [
    "max_pool", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "max_pool_backward", "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool_backward", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_avg_pool_backward",
    "global_max_pool", "global_avg_pool", "global_avg_pool_backward",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "max_unpool_backward",
    "output_shape",
]

Ints = Union[int, Sequence[int]]
OutputSize = Union[int, None, Sequence[Optional[int]]]
Padding = Union[int, str, Sequence[int], Sequence[Tuple[int, int]]]
Pooled = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]     # with return_indices: (out, indices)
F = TypeVar("F", bound=Callable[..., Any])


def _rank_of(x_ndim: int, kernel_size, axes, data_format=None) -> int:
    if axes is not None:
        return 1 if isinstance(axes, (int, np.integer)) else len(axes)
    # A rank-specific name ("NCHW", ...) fixes the rank; without it an unbatched
    # (C, H, W) shape would be taken for a batched 1-D one.
    fixed = format_rank(data_format)
    if fixed is not None:
        return fixed
    if isinstance(kernel_size, (tuple, list)):
        return len(kernel_size)
    return max(x_ndim - 2, 1)


# --------------------------------------------------------------------------- #
# strided max / average pooling
# --------------------------------------------------------------------------- #
def _strided(op, rank, x, kernel_size, stride, padding, dilation, ceil_mode, *, data_format, axes,
             backend, pytorch_name, nan_policy="propagate", count_include_pad=True, divisor_override=None):
    x = as_input_array(x, lazy=True)             # a Dask array is pooled lazily (poolkit.engine.lazy)
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    windows = StridedWindows(spec, op, pytorch_name)
    p = prepare(op, x, rank, windows, data_format=data_format, axes=axes, backend=backend,
                nan_policy=nan_policy, count_include_pad=count_include_pad,
                divisor_override=divisor_override)
    return p, x


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
             *, axes=None, data_format="channels_first", nan_policy="propagate", mask=None, backend="auto"):
    r"""Max pooling over 1, 2 or 3 axes of an array.

    Each output is the maximum of a window of ``kernel_size`` input elements,
    taken every ``stride`` elements, with taps ``dilation`` apart, over the input
    padded by ``padding`` (padding never wins: it acts as :math:`-\infty`).

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Input; ``*S`` are the pooled (spatial) axes. With
        ``data_format="channels_last"``: (N, *S, C) or (*S, C). With ``axes``:
        any shape, pooled over ``axes``. Any dtype of float16, float32,
        float64, bfloat16 (``ml_dtypes``) or integer; never modified.
    kernel_size : int or tuple of ints
        Window size per pooled axis.
    stride : int or tuple of ints, optional
        Step between windows. Default: ``kernel_size``.
    padding : int, tuple, tuple of (before, after) pairs, "valid" or "same"
        Implicit padding. An int or tuple of ints pads both sides and, as in
        PyTorch, must be at most half the kernel. Per-side pairs such as
        ``((0, 1), (1, 1))`` take any non-negative sizes. ``"same"`` follows
        TensorFlow: ``out = ceil(in / stride)``, the odd pixel of padding after.
    dilation : int or tuple of ints
        Spacing between the taps of a window.
    ceil_mode : bool
        Round the output size up instead of down; the extra window must start
        inside the input or its left padding.
    return_indices : bool
        Also return, for each output, the flat index of the winning element
        within its input plane (``int64``; PyTorch's ``return_indices``), -1
        for a window with no element inside the input.
    axes : int or tuple of ints, optional
        Pool over these axes (in this order) instead of those given by
        ``data_format``; all other axes are batch axes.
    data_format : {"channels_first", "channels_last"}
        Where the channel axis is (also "NCHW"/"NHWC" and friends in the
        fixed-rank functions).
    nan_policy : {"propagate", "ignore"}
        "propagate" (PyTorch's behaviour): a window holding NaN gives NaN and
        its index points at the window's last NaN. "ignore": NaN elements are
        skipped (like ``np.nanmax``); a window of NaN only gives NaN and index -1.
    backend : {"auto", "numba", "img2col", "reference"}
        Implementation; all give identical results. "auto" is "numba".

    Returns
    -------
    out : ndarray, shape (N, C, *O)
        Same dtype as ``x``. Along each pooled axis
        ``O = floor((S + pad_before + pad_after - dilation*(kernel_size-1) - 1) / stride) + 1``
        (rounded up with ``ceil_mode``).
    indices : ndarray of int64, shape (N, C, *O)
        Only if ``return_indices``.

    Notes
    -----
    Ties go to the first maximum in scan order (row-major over the window); a
    NaN wins over any number, so a NaN window reports NaN with the index of its
    last NaN -- both exactly as PyTorch's CPU kernels. A window that lies wholly
    in padding gives ``-inf`` (integer input: the dtype's minimum) and index -1.
    Integer inputs are pooled exactly. float16 and bfloat16 are computed in
    float32 and returned in their own dtype.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]])
    >>> poolkit.max_pool(x, 2, axes=(0, 1))
    array([[4., 5.],
           [3., 4.]])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    return _max(rank, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=False,
                mask=mask)


def _max(rank, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, *, op="max", mask=None,
         **kw):
    ri = as_bool(return_indices, "return_indices")
    x, mask, masked = split_masked(x, mask)
    p, x = _strided(op, rank, x, kernel_size, stride, padding, dilation, ceil_mode, **kw)
    y, idx, _ = finish_forward(p, x, mask, masked, ri, keep=False)
    return (y, idx) if ri else y


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, data_format="NCL", axes=None, nan_policy="propagate", mask=None, backend="auto"):
    """1-D max pooling: :func:`max_pool` over the last axis of (N, C, L) or (C, L).

    Shape: (N, C, L) -> (N, C, L_out); ``data_format="NLC"`` for (N, L, C).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.max_pool1d(np.array([[[1., 5, 2, 0, 3]]]), 2)
    array([[[5., 2.]]])
    """
    return _max(1, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                mask=mask)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, data_format="NCHW", axes=None, nan_policy="propagate", mask=None, backend="auto"):
    """2-D max pooling: :func:`max_pool` over H and W of (N, C, H, W) or (C, H, W).

    Shape: (N, C, H, W) -> (N, C, H_out, W_out); ``data_format="NHWC"`` for
    channels-last arrays.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> poolkit.max_pool2d(x, 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    >>> idx
    array([[[[ 5,  7],
             [13, 15]]]])
    """
    return _max(2, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                mask=mask)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, data_format="NCDHW", axes=None, nan_policy="propagate", mask=None, backend="auto"):
    """3-D max pooling: :func:`max_pool` over D, H and W of (N, C, D, H, W) or (C, D, H, W).

    Shape: (N, C, D, H, W) -> (N, C, D_out, H_out, W_out); ``data_format="NDHWC"``
    for channels-last arrays.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.max_pool3d(np.arange(8.).reshape(1, 1, 2, 2, 2), 2)
    array([[[[[7.]]]]])
    """
    return _max(3, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                mask=mask)


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, *, dilation=1, axes=None, data_format="channels_first", nan_policy="propagate",
             mask=None, backend="auto"):
    """Average pooling over 1, 2 or 3 axes of an array.

    Each output is the sum of a window's elements divided by the window size.
    Padding adds zeros.

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Input, as for :func:`max_pool`: float16, float32, float64 or bfloat16.
        Integer input raises TypeError (cast it first: the mean of integers is
        not an integer).
    kernel_size, stride, padding, ceil_mode, axes, data_format, backend
        As for :func:`max_pool`.
    count_include_pad : bool
        Divide by the number of taps inside the padded input (True, PyTorch's
        default) or inside the input only (False, Keras/TensorFlow's rule).
    divisor_override : int, optional
        Divide every sum by this non-zero number instead.
    nan_policy : {"propagate", "ignore"}
        "ignore" leaves NaN elements out of the sum and the count (like
        ``np.nanmean``); a window of NaN only gives NaN and passes back no gradient.

    Returns
    -------
    out : ndarray, shape (N, C, *O)
        Same dtype as ``x``; ``O`` as for :func:`max_pool` with ``dilation=1``.

    Notes
    -----
    Divisor of the window at output ``o`` along an axis: taps inside
    ``[-pad_before, S + pad_after)`` with ``count_include_pad``, else taps inside
    ``[0, S)``; the product over the axes. A ``ceil_mode`` window that runs past
    the right padding counts only up to it (as PyTorch does). A window wholly in
    padding gives 0. Sums run in the input's precision (float32 for float16 and
    bfloat16), in scan order.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]])
    >>> poolkit.avg_pool(x, 2, axes=(0, 1))
    array([[2.5 , 2.25],
           [1.75, 1.75]])
    """
    rank = _rank_of(np.ndim(x), kernel_size, axes, data_format)
    return _avg(rank, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=False,
                dilation=dilation, mask=mask)


def _avg(rank, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, *, dilation=1,
         op="avg", mask=None, **kw):
    x, mask, masked = split_masked(x, mask)
    p, x = _strided(op, rank, x, kernel_size, stride, padding, dilation, ceil_mode,
                    count_include_pad=count_include_pad, divisor_override=divisor_override, **kw)
    return finish_forward(p, x, mask, masked, False, keep=False)[0]


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, dilation=1, data_format="NCL", axes=None, nan_policy="propagate", mask=None, backend="auto"):
    """1-D average pooling: :func:`avg_pool` over the last axis of (N, C, L) or (C, L).

    PyTorch's ``avg_pool1d`` has no ``divisor_override``; neither does this one.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool1d(np.array([[[1., 5, 2, 0]]]), 2)
    array([[[3., 1.]]])
    """
    return _avg(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                dilation=dilation, mask=mask)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, data_format="NCHW", axes=None, nan_policy="propagate",
               mask=None, backend="auto"):
    """2-D average pooling: :func:`avg_pool` over H and W of (N, C, H, W) or (C, H, W).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    return _avg(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                dilation=dilation, mask=mask)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, data_format="NCDHW", axes=None, nan_policy="propagate",
               mask=None, backend="auto"):
    """3-D average pooling: :func:`avg_pool` over D, H and W of (N, C, D, H, W) or (C, D, H, W).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool3d(np.arange(8.).reshape(1, 1, 2, 2, 2), 2)
    array([[[[[3.5]]]]])
    """
    return _avg(3, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend, pytorch_name=True,
                dilation=dilation, mask=mask)


# --------------------------------------------------------------------------- #
# backward
# --------------------------------------------------------------------------- #
def _input_shape(input_shape) -> Tuple[int, ...]:
    if not isinstance(input_shape, (tuple, list)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in input_shape):
        raise TypeError(f"`input_shape` must be a tuple of non-negative ints, but got input_shape={input_shape!r}.")
    shape = tuple(int(v) for v in input_shape)
    # The gradient has this shape: up to 8 bytes per element must stay within int64.
    check_int64_product(shape + (8,), "input_shape", input_shape, "a gradient (bytes)")
    return shape


def _index_scatter(rank, values, indices, shape, *, data_format, axes, backend, accumulate, values_name,
                   lazy=False):
    """Send ``values`` to flat ``indices`` of each plane of an array of ``shape``.

    ``shape`` is the full target shape; ``values`` and ``indices`` share a shape
    that differs from it only along the pooled axes. ``lazy``: either may be a
    Dask array (max_unpool), and so is the result.
    """
    v = as_input_array(values, values_name, lazy=lazy)
    idx = as_input_array(indices, "indices", lazy=lazy)
    pooled, channel_axis = resolve_axes(shape, rank, data_format, axes, name="input_shape")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"`indices` must be an integer array, but got dtype={idx.dtype}.")
    if idx.shape != v.shape:
        raise ValueError(f"`indices` must have the shape of `{values_name}`, {v.shape}, but got {idx.shape}.")
    if v.ndim != len(shape) or any(v.shape[a] != shape[a] for a in range(len(shape)) if a not in pooled):
        raise ValueError(f"`{values_name}` of shape {v.shape} does not match `input_shape`={shape} "
                         f"outside the pooled axes {pooled}.")
    if is_dask_array(v) or is_dask_array(idx):
        # An index may point anywhere in its plane: each task scatters whole planes, in memory
        # (where the indices are checked, when the result is computed).
        from .engine.lazy import per_plane
        scatter = functools.partial(_index_scatter, rank, data_format=data_format, axes=axes, backend=backend,
                                    accumulate=accumulate, values_name=values_name)
        return per_plane(scatter, (v, idx), pooled, [shape[a] for a in pooled], v.dtype)
    plane = int(np.prod([shape[a] for a in pooled], dtype=np.int64))
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= plane:
            bad = lo if lo < -1 else hi
            raise ValueError(f"`indices` must lie in [0, {plane}) (the size of a pooled plane; -1 means "
                             f"none), but found {bad}.")
    src = Layout.make(tuple(v.shape), pooled)
    dst = Layout.make(tuple(shape), pooled)
    v5 = src.to_canonical(v)
    i5 = src.to_canonical(idx).astype(np.int64, copy=False)
    B, C = v5.shape[0], v5.shape[4]
    pol = dtype_policy(v5.dtype, "max")
    if pol.converts:
        v5 = v5.astype(pol.compute)
    module = backend_module(backend)
    P = v5.shape[1] * v5.shape[2] * v5.shape[3]        # explicit: reshape(B, -1, C) fails for B == 0
    out = module.scatter(v5.reshape(B, P, C), i5.reshape(B, P, C), plane, accumulate)
    res = dst.from_canonical(out.reshape(dst.canonical_shape(dst.sizes)), dst.sizes)
    return res.astype(pol.result) if pol.converts else res


def max_pool_backward(grad_output, indices, input_shape, *, axes=None, data_format="channels_first",
                      backend="auto"):
    """Gradient of max pooling with respect to its input, from the forward pass's indices.

    Every upstream value goes to the input element that won its window;
    elements reached by several windows sum their values (in output order).

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *O)
        Gradient with respect to the pooled output; floating point.
    indices : array_like of int, shape (N, C, *O)
        From the forward call with ``return_indices=True`` (-1: no winner).
    input_shape : tuple of ints
        Shape of the forward input, e.g. ``x.shape``.
    axes, data_format, backend
        As in the forward call.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``
        Same dtype as ``grad_output``.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[[[1., 3], [4, 2]]]])
    >>> y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    >>> poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    array([[[[0., 0.],
             [1., 0.]]]])
    """
    shape = _input_shape(input_shape)
    rank = _rank_of(len(shape), None, axes, data_format)
    return _max_backward(rank, grad_output, indices, shape, data_format=data_format, axes=axes, backend=backend)


def _max_backward(rank, grad_output, indices, shape, **kw):
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    return _index_scatter(rank, g, indices, shape, accumulate=True, values_name="grad_output", **kw)


def max_pool1d_backward(grad_output, indices, input_shape, *, data_format="NCL", axes=None, backend="auto"):
    """:func:`max_pool_backward` for :func:`max_pool1d`."""
    return _max_backward(1, grad_output, indices, _input_shape(input_shape), data_format=data_format,
                         axes=axes, backend=backend)


def max_pool2d_backward(grad_output, indices, input_shape, *, data_format="NCHW", axes=None, backend="auto"):
    """:func:`max_pool_backward` for :func:`max_pool2d` (and :func:`adaptive_max_pool2d`).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    >>> poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape)[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """
    return _max_backward(2, grad_output, indices, _input_shape(input_shape), data_format=data_format,
                         axes=axes, backend=backend)


def max_pool3d_backward(grad_output, indices, input_shape, *, data_format="NCDHW", axes=None, backend="auto"):
    """:func:`max_pool_backward` for :func:`max_pool3d`."""
    return _max_backward(3, grad_output, indices, _input_shape(input_shape), data_format=data_format,
                         axes=axes, backend=backend)


def avg_pool_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True, divisor_override=None, *, dilation=1, axes=None,
                      data_format="channels_first", nan_policy="propagate", x=None, mask=None, backend="auto"):
    """Gradient of average pooling with respect to its input.

    Each upstream value is divided by its window's divisor and added to every
    element of the window inside the input. Arguments after ``input_shape``
    must be those of the forward call.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *O)
    input_shape : tuple of ints
        Shape of the forward input.
    nan_policy : {"propagate", "ignore"}
        As in the forward call. "ignore" needs the forward input ``x``: its NaN
        elements get no gradient and shrink their windows' divisors.
    x : array_like, optional
        The forward input (only read with ``nan_policy="ignore"``).
    mask : array_like of bool, optional
        The forward call's mask: masked elements get no gradient and shrink their
        windows' divisors.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool2d_backward(np.array([[[[1., 2], [3, 4]]]]), (1, 1, 4, 4), 2)[0, 0]
    array([[0.25, 0.25, 0.5 , 0.5 ],
           [0.25, 0.25, 0.5 , 0.5 ],
           [0.75, 0.75, 1.  , 1.  ],
           [0.75, 0.75, 1.  , 1.  ]])
    """
    shape = _input_shape(input_shape)
    rank = _rank_of(len(shape), kernel_size, axes, data_format)
    return _avg_backward(rank, grad_output, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override, data_format=data_format, axes=axes, backend=backend,
                         nan_policy=nan_policy, x=x, pytorch_name=False, dilation=dilation, mask=mask)


def _avg_backward(rank, grad_output, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                  divisor_override, *, data_format, axes, backend, pytorch_name, nan_policy="propagate",
                  x=None, dilation=1, mask=None, op="avg"):
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    windows = StridedWindows(spec, op, pytorch_name)
    return _avg_backward_windows(rank, grad_output, shape, windows, count_include_pad, divisor_override,
                                 data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy, x=x,
                                 mask=mask, op=op)


def _avg_backward_windows(rank, grad_output, shape, windows, count_include_pad, divisor_override, *,
                          nan_policy="propagate", x=None, mask=None, op="avg", **kw):
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    if check_nan_policy(nan_policy):
        # Which elements were NaN decides who gets a share: the forward input is needed.
        if x is None:
            raise ValueError("nan_policy='ignore' needs the forward input: pass it as `x=`.")
        x = as_input_array(x)
        if tuple(x.shape) != shape:
            raise ValueError(f"`x` must have shape `input_shape`={shape}, but got shape {tuple(x.shape)}.")
    else:
        # Prepare against a stand-in of the input's shape and the gradient's dtype: no data is read.
        x = np.lib.stride_tricks.as_strided(np.zeros(1, g.dtype), shape=shape, strides=(0,) * len(shape))
    p = prepare(op, x, rank, windows, count_include_pad=count_include_pad,
                divisor_override=divisor_override, nan_policy=nan_policy, **kw)
    if mask is None and not p.plan.nan_ignore:
        return run_backward(Context(p, None), g)
    # The divisors depend on which elements were left out: rerun forward (on the stand-in if only a mask).
    m = None if mask is None else check_mask(mask, shape)
    return run_backward(run_forward(p, x, mask=m)[2], g)


def avg_pool1d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, dilation=1, data_format="NCL", axes=None, nan_policy="propagate",
                        x=None, mask=None, backend="auto"):
    """:func:`avg_pool_backward` for :func:`avg_pool1d`."""
    return _avg_backward(1, grad_output, _input_shape(input_shape), kernel_size, stride, padding, ceil_mode,
                         count_include_pad, None, data_format=data_format, axes=axes, backend=backend,
                         nan_policy=nan_policy, x=x, pytorch_name=True, dilation=dilation, mask=mask)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, dilation=1, data_format="NCHW",
                        axes=None, nan_policy="propagate", x=None, mask=None, backend="auto"):
    """:func:`avg_pool_backward` for :func:`avg_pool2d`.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2, 2), 2)
    array([[[[0.25, 0.25],
             [0.25, 0.25]]]])
    """
    return _avg_backward(2, grad_output, _input_shape(input_shape), kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, data_format=data_format, axes=axes,
                         backend=backend, nan_policy=nan_policy, x=x, pytorch_name=True, dilation=dilation,
                         mask=mask)


def avg_pool3d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, dilation=1, data_format="NCDHW",
                        axes=None, nan_policy="propagate", x=None, mask=None, backend="auto"):
    """:func:`avg_pool_backward` for :func:`avg_pool3d`."""
    return _avg_backward(3, grad_output, _input_shape(input_shape), kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, data_format=data_format, axes=axes,
                         backend=backend, pytorch_name=True, nan_policy=nan_policy, x=x, dilation=dilation,
                         mask=mask)


# --------------------------------------------------------------------------- #
# adaptive and global pooling
# --------------------------------------------------------------------------- #
def _adaptive(op, rank, x, output_size, return_indices=False, *, data_format, axes, backend,
              nan_policy="propagate") -> Any:
    x = as_input_array(x, lazy=True)
    ri = as_bool(return_indices, "return_indices")
    p = prepare(op, x, rank, AdaptiveWindows(output_size), data_format=data_format, axes=axes,
                backend=backend, nan_policy=nan_policy)
    y, idx, _ = run_forward(p, x, return_indices=ri, keep=False)
    return (y, idx) if ri else y


_ADAPTIVE_DOC = """Adaptive {op} pooling to a fixed output size, over the last {rank} axes ({dims}).

    Window ``o`` along an axis of input size ``S`` and output size ``O`` covers
    ``[floor(o*S/O), ceil((o+1)*S/O))`` (PyTorch's rule), so windows may differ
    in size and overlap.

    Parameters
    ----------
    x : array_like, shape (N, C, {dims}) or (C, {dims})
        ``data_format="{last}"`` for channels-last input; or any shape with ``axes``.
    output_size : int or tuple of ints or None
        Target size per pooled axis; None keeps that axis's input size.{ri}
    nan_policy, backend : as for :func:`{base}`.

    Returns
    -------
    out : ndarray, shape (N, C, *output_size){rr}

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.adaptive_{op}_pool{rank}d(np.arange({n}.).reshape({shape}), 1).ravel()
    array([{val}])
    """


def _adaptive_doc(op, rank):
    dims = ", ".join(dim_names(rank))
    last = CHANNELS_LAST[rank]
    n = 4 ** rank if rank < 3 else 8
    shape = {1: "1, 1, 4", 2: "1, 1, 4, 4", 3: "1, 1, 2, 2, 2"}[rank]
    val = {("max", 1): "3.", ("max", 2): "15.", ("max", 3): "7.",
           ("avg", 1): "1.5", ("avg", 2): "7.5", ("avg", 3): "3.5"}[(op, rank)]
    ri = ("\n    return_indices : bool\n        Also return the flat index of each maximum within its plane."
          if op == "max" else "")
    rr = "\n    indices : ndarray of int64, only with ``return_indices``" if op == "max" else ""
    return _ADAPTIVE_DOC.format(op=op, rank=rank, dims=dims, last=last, n=n, shape=shape, val=val, ri=ri, rr=rr,
                                base="max_pool" if op == "max" else "avg_pool")


def _doc(text: str) -> Callable[[F], F]:
    """Give a fixed-rank function the docstring its family's template made for it."""
    def attach(fn: F) -> F:
        fn.__doc__ = text
        return fn
    return attach


@_doc(_adaptive_doc("max", 1))
def adaptive_max_pool1d(x: ArrayLike, output_size: OutputSize, return_indices: bool = False, *,
                        data_format: str = "NCL", axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> Pooled:
    return _adaptive("max", 1, x, output_size, return_indices, data_format=data_format, axes=axes,
                     backend=backend, nan_policy=nan_policy)


@_doc(_adaptive_doc("max", 2))
def adaptive_max_pool2d(x: ArrayLike, output_size: OutputSize, return_indices: bool = False, *,
                        data_format: str = "NCHW", axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> Pooled:
    return _adaptive("max", 2, x, output_size, return_indices, data_format=data_format, axes=axes,
                     backend=backend, nan_policy=nan_policy)


@_doc(_adaptive_doc("max", 3))
def adaptive_max_pool3d(x: ArrayLike, output_size: OutputSize, return_indices: bool = False, *,
                        data_format: str = "NCDHW", axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> Pooled:
    return _adaptive("max", 3, x, output_size, return_indices, data_format=data_format, axes=axes,
                     backend=backend, nan_policy=nan_policy)


@_doc(_adaptive_doc("avg", 1))
def adaptive_avg_pool1d(x: ArrayLike, output_size: OutputSize, *, data_format: str = "NCL",
                        axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> np.ndarray:
    return _adaptive("avg", 1, x, output_size, data_format=data_format, axes=axes, backend=backend,
                     nan_policy=nan_policy)


@_doc(_adaptive_doc("avg", 2))
def adaptive_avg_pool2d(x: ArrayLike, output_size: OutputSize, *, data_format: str = "NCHW",
                        axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> np.ndarray:
    return _adaptive("avg", 2, x, output_size, data_format=data_format, axes=axes, backend=backend,
                     nan_policy=nan_policy)


@_doc(_adaptive_doc("avg", 3))
def adaptive_avg_pool3d(x: ArrayLike, output_size: OutputSize, *, data_format: str = "NCDHW",
                        axes: Optional[Ints] = None, nan_policy: str = "propagate",
                        backend: str = "auto") -> np.ndarray:
    return _adaptive("avg", 3, x, output_size, data_format=data_format, axes=axes, backend=backend,
                     nan_policy=nan_policy)


def adaptive_avg_pool_backward(grad_output, input_shape, *, axes=None, data_format="channels_first",
                               nan_policy="propagate", x=None, backend="auto"):
    """Gradient of adaptive average pooling; the output size is read off ``grad_output``.

    (Adaptive max pooling's gradient is :func:`max_pool_backward` with the
    forward call's indices.)

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.adaptive_avg_pool_backward(np.ones((1, 1, 1)), (1, 1, 4))
    array([[[0.25, 0.25, 0.25, 0.25]]])
    """
    shape = _input_shape(input_shape)
    g = as_input_array(grad_output, "grad_output")
    rank = _rank_of(len(shape), None, axes, data_format)
    pooled, _ = resolve_axes(shape, rank, data_format, axes, name="input_shape")
    if g.ndim != len(shape):
        raise ValueError(f"`grad_output` must have {len(shape)} dimensions like `input_shape`, got shape {g.shape}.")
    out_size = tuple(g.shape[a] for a in pooled)
    return _avg_backward_windows(rank, g, shape, AdaptiveWindows(out_size), True, None,
                                 data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy, x=x)


def _global_axes(ndim, data_format, axes):
    if axes is not None:
        if isinstance(axes, (int, np.integer)):
            axes = (axes,)
        _, _ = resolve_axes((1,) * ndim, len(axes), "channels_first", axes)
        return tuple(int(a) % ndim for a in axes)
    kind = str(data_format).lower()
    if kind not in ("channels_first", "channels_last"):
        raise ValueError(f"`data_format` must be 'channels_first' or 'channels_last' for global pooling, "
                         f"but got data_format={data_format!r}.")
    if ndim < 3:
        raise ValueError(f"global pooling needs (N, C, *spatial) input with at least one spatial axis, "
                         f"but got {ndim} dimensions; pass `axes` to pool other arrays.")
    return tuple(range(2, ndim)) if kind == "channels_first" else tuple(range(1, ndim - 1))


def _global(op, x, data_format, axes, keepdims, return_indices, nan_policy, backend):
    x = as_input_array(x, lazy=True)
    keep = as_bool(keepdims, "keepdims")
    ri = as_bool(return_indices, "return_indices")
    pooled = _global_axes(x.ndim, data_format, axes)
    if is_dask_array(x):
        # One sum or max per plane, in the in-memory order: each plane in one chunk.
        x = x.rechunk({a: -1 for a in pooled})
    perm, mshape, axis = merge_pooled(x.shape, pooled)
    xm = (x.transpose(perm) if perm is not None else x).reshape(mshape)     # pooled axes as one
    res = _adaptive(op, 1, xm, 1, ri, data_format="channels_first", axes=(axis,), backend=backend,
                    nan_policy=nan_policy)
    ys = res if isinstance(res, tuple) else (res,)
    out = []
    for y in ys:
        y = np.squeeze(y, axis=axis)          # result without the pooled axes (others in perm order)
        if perm is not None:
            others = [i for i in range(x.ndim) if i not in pooled]
            y = y.transpose(tuple(np.argsort(np.argsort(others)).tolist()))      # ints: Dask takes no array
        if keep:
            y = np.expand_dims(y, tuple(sorted(pooled)))
        out.append(y)
    return tuple(out) if ri else out[0]


def global_max_pool(x, *, data_format="channels_first", axes=None, keepdims=False, return_indices=False,
                    nan_policy="propagate", backend="auto"):
    """Max over all spatial axes: (N, C, *S) -> (N, C) (or (N, C, 1, ..., 1) with ``keepdims``).

    Works for any number of spatial axes. ``axes`` pools any axes instead;
    ``return_indices`` gives the flat index of each maximum within its plane
    (use it with :func:`max_pool_backward` for the gradient). A Dask array is
    pooled lazily with each plane rechunked to one chunk (the in-memory order).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.global_max_pool(np.arange(24.).reshape(2, 3, 4))
    array([[ 3.,  7., 11.],
           [15., 19., 23.]])
    """
    return _global("max", x, data_format, axes, keepdims, return_indices, nan_policy, backend)


def global_avg_pool(x, *, data_format="channels_first", axes=None, keepdims=False, nan_policy="propagate",
                    backend="auto"):
    """Mean over all spatial axes: (N, C, *S) -> (N, C) (or keep them as size-1 axes).

    A Dask array is pooled lazily with each plane rechunked to one chunk, so that
    the sum runs in the in-memory order and the result is the same bit for bit.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.global_avg_pool(np.arange(8.).reshape(1, 2, 2, 2), keepdims=True).shape
    (1, 2, 1, 1)
    """
    return _global("avg", x, data_format, axes, keepdims, False, nan_policy, backend)


def global_avg_pool_backward(grad_output, input_shape, *, data_format="channels_first", axes=None):
    """Gradient of :func:`global_avg_pool`: each value spread evenly over its plane.

    ``grad_output`` may have the pooled axes dropped or kept as size 1.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.global_avg_pool_backward(np.array([[4.]]), (1, 1, 2, 2))
    array([[[[1., 1.],
             [1., 1.]]]])
    """
    shape = _input_shape(input_shape)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    pooled = _global_axes(len(shape), data_format, axes)
    kept = tuple(1 if i in pooled else n for i, n in enumerate(shape))
    dropped = tuple(n for i, n in enumerate(shape) if i not in pooled)
    if g.shape == dropped:
        g = g.reshape(kept)
    elif g.shape != kept:
        raise ValueError(f"`grad_output` must have shape {dropped} (or {kept}), but got {g.shape}.")
    count = int(np.prod([shape[a] for a in pooled], dtype=np.int64))
    pol = dtype_policy(g.dtype, "avg")
    share = g.astype(pol.compute) / pol.compute.type(count) if count else g.astype(pol.compute)
    return np.ascontiguousarray(np.broadcast_to(share, shape)).astype(pol.result, copy=False)


# --------------------------------------------------------------------------- #
# max-unpooling
# --------------------------------------------------------------------------- #
def _unpool(rank, x, indices, kernel_size, stride, padding, output_size, *, data_format, axes, backend):
    x = as_input_array(x, lazy=True)
    kernel = normalize_ints(kernel_size, rank, "kernel_size", 1)
    strd = kernel if stride is None else normalize_ints(stride, rank, "stride", 1)
    pad = normalize_ints(padding, rank, "padding", 0)
    pooled, _ = resolve_axes(x.shape, rank, data_format, axes)
    sizes = [x.shape[a] for a in pooled]
    default = [(n - 1) * s - 2 * p + k for n, s, p, k in zip(sizes, strd, pad, kernel)]
    if output_size is None:
        target = default
    else:
        os_ = tuple(output_size) if isinstance(output_size, (tuple, list)) else output_size
        if not isinstance(os_, tuple) or not all(isinstance(v, (int, np.integer)) for v in os_):
            raise TypeError(f"`output_size` must be a tuple of ints, but got output_size={output_size!r}.")
        if len(os_) == x.ndim:
            os_ = tuple(os_[a] for a in pooled)
        elif len(os_) == rank + 2 and x.ndim == rank + 1 and tuple(pooled) == tuple(range(1, rank + 1)):
            os_ = os_[2:]           # PyTorch's rule: an (N, C, *sizes) shape, also for unbatched input
        if len(os_) != rank:
            raise ValueError(f"`output_size` must give the {rank} pooled sizes (or the full shape), "
                             f"but got output_size={output_size!r}.")
        for d, (v, dv, s) in enumerate(zip(os_, default, strd)):
            if not dv - s < v < dv + s:
                raise ValueError(f"invalid `output_size`={tuple(output_size)!r}: dim {d} must be between "
                                 f"{dv - s} and {dv + s} (exclusive).")
        target = list(os_)
    if any(t < 1 for t in target):
        raise ValueError(f"max_unpool output would be empty ({tuple(target)}); check `kernel_size`, "
                         f"`stride` and `padding`.")
    shape = list(x.shape)
    for a, t in zip(pooled, target):
        shape[a] = int(t)
    # Flat indices into a plane are int64, and the result takes up to 8 bytes per element.
    if output_size is None:
        check_int64_product(shape + [8], "stride", stride, f"with kernel_size={kernel_size!r} and "
                            f"padding={padding!r} an unpooled output (bytes)")
    else:
        check_int64_product(shape + [8], "output_size", output_size, "an unpooled output (bytes)")
    if x.dtype.kind not in "fiu" and x.dtype.name != "bfloat16":          # bool is kind "b"
        raise TypeError(f"`x` must be a numeric array, but got dtype={x.dtype}.")
    return _index_scatter(rank, x, indices, tuple(shape), data_format=data_format, axes=axes,
                          backend=backend, accumulate=False, values_name="x", lazy=True)


def _unpool_doc(rank: int) -> str:
    dims = ", ".join(dim_names(rank))
    shape = {1: "1, 1, 16", 2: "1, 1, 4, 4", 3: "1, 1, 2, 2, 4"}[rank]          # 16 elements
    return f"""Partial inverse of :func:`max_pool{rank}d`: put each value back where its maximum was.

    Every other element of the result is 0. The output size per pooled axis is
    ``(in - 1) * stride - 2 * padding + kernel_size`` unless ``output_size``
    (the pooled sizes, or a full shape) picks one within ``stride`` of it.
    If two values target the same position, the later one (in scan order) wins.
    Dask arrays (``x``, ``indices`` or both) give a lazy result; each plane is
    then one chunk (an index may point anywhere in it), and indices out of
    range raise when it is computed.

    Parameters
    ----------
    x : array_like, shape (N, C, {dims}) or (C, {dims})
    indices : array_like of int, same shape
        From ``max_pool{rank}d(..., return_indices=True)``.

    Returns
    -------
    out : ndarray, dtype of ``x``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(16.).reshape({shape})
    >>> y, idx = poolkit.max_pool{rank}d(x, 2, return_indices=True)
    >>> poolkit.max_unpool{rank}d(y, idx, 2).shape == x.shape
    True
    """


@_doc(_unpool_doc(1))
def max_unpool1d(x: ArrayLike, indices: ArrayLike, kernel_size: Ints, stride: Optional[Ints] = None,
                 padding: Ints = 0, output_size: Optional[Sequence[int]] = None, *, data_format: str = "NCL",
                 axes: Optional[Ints] = None, backend: str = "auto") -> np.ndarray:
    return _unpool(1, x, indices, kernel_size, stride, padding, output_size, data_format=data_format, axes=axes,
                   backend=backend)


@_doc(_unpool_doc(2))
def max_unpool2d(x: ArrayLike, indices: ArrayLike, kernel_size: Ints, stride: Optional[Ints] = None,
                 padding: Ints = 0, output_size: Optional[Sequence[int]] = None, *, data_format: str = "NCHW",
                 axes: Optional[Ints] = None, backend: str = "auto") -> np.ndarray:
    return _unpool(2, x, indices, kernel_size, stride, padding, output_size, data_format=data_format, axes=axes,
                   backend=backend)


@_doc(_unpool_doc(3))
def max_unpool3d(x: ArrayLike, indices: ArrayLike, kernel_size: Ints, stride: Optional[Ints] = None,
                 padding: Ints = 0, output_size: Optional[Sequence[int]] = None, *, data_format: str = "NCDHW",
                 axes: Optional[Ints] = None, backend: str = "auto") -> np.ndarray:
    return _unpool(3, x, indices, kernel_size, stride, padding, output_size, data_format=data_format, axes=axes,
                   backend=backend)


def max_unpool_backward(grad_output, indices, *, axes=None, data_format="channels_first"):
    """Gradient of max-unpooling with respect to its input: ``grad_output`` read at ``indices``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *U)
        Gradient with respect to the unpooled output.
    indices : array_like of int, shape (N, C, *S)
        The indices passed to the forward call.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.max_unpool_backward(np.arange(4.).reshape(1, 1, 4), np.array([[[1, 3]]]))
    array([[[1., 3.]]])
    """
    g = as_input_array(grad_output, "grad_output")
    idx = as_input_array(indices, "indices")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"`indices` must be an integer array, but got dtype={idx.dtype}.")
    rank = _rank_of(idx.ndim, None, axes, data_format)
    pooled, _ = resolve_axes(idx.shape, rank, data_format, axes, name="indices")
    gpooled, _ = resolve_axes(g.shape, rank, data_format, axes, name="grad_output")
    if g.ndim != idx.ndim or any(g.shape[a] != idx.shape[a] for a in range(g.ndim) if a not in pooled):
        raise ValueError(f"`grad_output` of shape {g.shape} does not match `indices` of shape {idx.shape} "
                         f"outside the pooled axes.")
    plane = int(np.prod([g.shape[a] for a in gpooled], dtype=np.int64))
    if idx.size and (idx.min() < -1 or idx.max() >= plane):
        raise ValueError(f"`indices` must lie in [0, {plane}), but found {int(idx.max()) if idx.max() >= plane else int(idx.min())}.")
    src = Layout.make(tuple(idx.shape), pooled)
    gl = Layout.make(tuple(g.shape), gpooled)
    g5 = gl.to_canonical(g)
    i5 = src.to_canonical(idx).astype(np.int64, copy=False)
    B, C = g5.shape[0], g5.shape[4]
    # explicit sizes: reshape(B, -1, C) fails for an empty batch (B == 0)
    gi = i5.reshape(B, i5.shape[1] * i5.shape[2] * i5.shape[3], C)
    picked = np.take_along_axis(g5.reshape(B, g5.shape[1] * g5.shape[2] * g5.shape[3], C), np.maximum(gi, 0), axis=1)
    picked = np.where(gi >= 0, picked, 0).astype(g5.dtype, copy=False)
    return src.from_canonical(picked.reshape(src.canonical_shape(src.sizes)), src.sizes)


# --------------------------------------------------------------------------- #
# output size
# --------------------------------------------------------------------------- #
def output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                 explain=False):
    """Output size of a strided pooling, and on request how it comes out.

    Parameters
    ----------
    input_size : int or tuple of ints
        The pooled (spatial) sizes, e.g. ``(28, 28)``.
    kernel_size, stride, padding, dilation, ceil_mode
        As for :func:`max_pool` (``padding`` also "same", "valid" or per-side pairs).
    explain : bool
        Also return a plain-words account, one line or two per axis.

    Returns
    -------
    shape : tuple of ints
    text : str
        Only with ``explain=True``.

    Raises
    ------
    ValueError
        If the configuration is invalid; the message says why (with
        ``explain=True`` as well).

    Examples
    --------
    >>> import poolkit
    >>> poolkit.output_shape((28, 28), 2)
    (14, 14)
    >>> print(poolkit.output_shape(5, 2, ceil_mode=True, explain=True)[1])
    L: input 5, padding 0+0 -> 5 positions; window spans 2.
    L: out = ceil((5 - 2) / 2) + 1 = 3.
    L: ceil_mode added a partial window starting at 4 (it runs past the end; its missing taps count as padding).
    """
    sizes = (input_size,) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
    if not sizes or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                            for n in sizes):
        raise ValueError(f"`input_size` must be a positive int or a tuple of them, but got {input_size!r}.")
    rank = len(sizes)
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    shape = spec.output_shape(sizes)
    if not explain:
        return shape
    from .explain.words import explain_shape     # the words load only when asked for
    return shape, explain_shape(spec, sizes)

