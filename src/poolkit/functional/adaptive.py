"""Adaptive pooling (PyTorch's fixed-rank names) and global pooling over any number of axes.

Global pooling is adaptive pooling to one window over the pooled axes merged into
one: the same front door, the same kernels, and on Dask each plane in one chunk.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ..core.args import as_bool, check_input_shape, is_int
from ..core.layout import as_input_array, float_policy, is_dask_array, merge_pooled, resolve_axes
from ..core.reductions import AVG, MAX, SUM, Reduction
from ..core.windows import AdaptiveWindows
from ..engine.prepare import check_float_grad, prepare
from .common import pool
from .fixed import fields, fixed_ranks

__all__ = [
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "global_max_pool",
    "global_avg_pool",
    "global_avg_pool_backward",
]


def adaptive(reduction: Reduction, rank: int, x, output_size, return_indices=False, *, data_format, axes,
             backend, nan_policy="propagate") -> Any:
    """Adaptive pooling of ``x`` (an array or a Dask array) with ``reduction``."""
    x = as_input_array(x, lazy=True)
    ri = as_bool(return_indices, "return_indices")
    p = prepare(reduction, x, rank, AdaptiveWindows(output_size), data_format=data_format, axes=axes,
                backend=backend, nan_policy=nan_policy)
    y, idx, _ = pool(p, x, None, False, ri, keep=False)
    return (y, idx) if ri else y


def _adaptive_max(rank, x, output_size, return_indices=False, *, data_format=None, axes=None,
                  nan_policy="propagate", backend="auto"):
    return adaptive(MAX, rank, x, output_size, return_indices, data_format=data_format, axes=axes,
                    backend=backend, nan_policy=nan_policy)


def _adaptive_avg(rank, x, output_size, *, data_format=None, axes=None, nan_policy="propagate", backend="auto"):
    return adaptive(AVG, rank, x, output_size, data_format=data_format, axes=axes, backend=backend,
                    nan_policy=nan_policy)


_ADAPTIVE_DOC = """Adaptive {what} pooling to a fixed output size, over the last {rank} axes ({dims}).

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
    >>> poolkit.adaptive_{op}_pool{rank}d(np.arange({n}.).reshape({ones}), 1).ravel()
    array([{val}])
    """


def _adaptive_doc(red: Reduction):
    def doc(rank: int) -> str:
        n = 2 ** rank
        ri = ("\n    return_indices : bool\n        Also return the flat index of each maximum within its plane "
              "(for :func:`max_pool{rank}d_backward`).".format(rank=rank) if red.winners else "")
        rr = "\n    indices : ndarray of int64, only with ``return_indices``" if red.winners else ""
        val = f"{n - 1}." if red.winners else f"{(n - 1) / 2}"      # max and mean of arange(n), by hand
        return _ADAPTIVE_DOC.format(op=red.name, what=red.title, ri=ri, rr=rr, val=val, base=f"{red.name}_pool",
                                    **fields(rank))
    return doc


adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = fixed_ranks(
    _adaptive_max, "adaptive_max_pool{rank}d", _adaptive_doc(MAX), module=__name__)
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = fixed_ranks(
    _adaptive_avg, "adaptive_avg_pool{rank}d", _adaptive_doc(AVG), module=__name__)


# --------------------------------------------------------------------------- #
# global pooling
# --------------------------------------------------------------------------- #
def global_axes(ndim, data_format, axes) -> Tuple[int, ...]:
    """The pooled axes of global pooling: ``axes`` (normalised), or every spatial axis of ``data_format``."""
    if axes is not None:
        if is_int(axes) or isinstance(axes, bool):          # a bool is refused by resolve_axes, by name
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


def global_pool(reduction: Reduction, x, data_format, axes, keepdims, return_indices, nan_policy, backend):
    """``reduction`` over all pooled axes of ``x``: adaptive pooling to 1 over them, merged into one axis."""
    x = as_input_array(x, lazy=True)
    keep = as_bool(keepdims, "keepdims")
    ri = as_bool(return_indices, "return_indices")
    pooled = global_axes(x.ndim, data_format, axes)
    if is_dask_array(x):
        # One sum or max per plane, in the in-memory order: each plane in one chunk.
        x = x.rechunk({a: -1 for a in pooled})
    perm, mshape, axis = merge_pooled(x.shape, pooled)
    xm = (x.transpose(perm) if perm is not None else x).reshape(mshape)     # pooled axes as one
    res = adaptive(reduction, 1, xm, 1, ri, data_format="channels_first", axes=(axis,), backend=backend,
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
    return global_pool(MAX, x, data_format, axes, keepdims, return_indices, nan_policy, backend)


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
    return global_pool(AVG, x, data_format, axes, keepdims, False, nan_policy, backend)


def global_sum(x, data_format, axes, keepdims, backend):
    """The sum over all pooled axes (global Lp pooling's window sums)."""
    return global_pool(SUM, x, data_format, axes, keepdims, False, "propagate", backend)


def squeezed_grad(grad_output, shape, pooled) -> np.ndarray:
    """A global pooling's upstream gradient with its pooled axes kept as size 1 (it may have them dropped)."""
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    kept = tuple(1 if i in pooled else n for i, n in enumerate(shape))
    dropped = tuple(n for i, n in enumerate(shape) if i not in pooled)
    if g.shape == dropped:
        return g.reshape(kept)
    if g.shape != kept:
        raise ValueError(f"`grad_output` must have shape {dropped} (or {kept}), but got shape {g.shape}.")
    return g


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
    shape = check_input_shape(input_shape)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    pooled = global_axes(len(shape), data_format, axes)
    g = squeezed_grad(g, shape, pooled)
    count = int(np.prod([shape[a] for a in pooled], dtype=np.int64))
    pol = float_policy(g.dtype)
    share = g.astype(pol.compute) / pol.compute.type(count) if count else g.astype(pol.compute)
    return np.ascontiguousarray(np.broadcast_to(share, shape)).astype(pol.result, copy=False)
