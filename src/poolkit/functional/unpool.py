"""Values sent to flat indices: ``max_unpool*``, its backward, and the scatter behind max pooling's backward."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..core.args import check_int64_product, is_int, normalize_ints
from ..core.layout import Layout, as_input_array, is_dask_array, resolve_axes
from ..engine import lazy
from ..engine.eager import run_scatter
from ..engine.prepare import prepare_scatter
from .common import rank_of
from .fixed import fields, fixed_ranks

__all__ = [
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "max_unpool_backward",
]


def index_scatter(rank, values, indices, shape, *, data_format, axes, backend, accumulate, values_name,
                  lazy_ok=False):
    """Send ``values`` to flat ``indices`` of each plane of an array of ``shape``.

    ``shape`` is the full target shape; ``values`` and ``indices`` share a shape
    that differs from it only along the pooled axes. ``lazy_ok``: either may be a
    Dask array (max_unpool), and so is the result.
    """
    v = as_input_array(values, values_name, lazy=lazy_ok)
    idx = as_input_array(indices, "indices", lazy=lazy_ok)
    s = prepare_scatter(v, idx, shape, rank, data_format=data_format, axes=axes, backend=backend,
                        values_name=values_name)
    if is_dask_array(v) or is_dask_array(idx):
        # An index may point anywhere in its plane: each task scatters whole planes, in memory
        # (where the indices are checked, when the result is computed).
        scatter = functools.partial(index_scatter, rank, data_format=data_format, axes=axes, backend=backend,
                                    accumulate=accumulate, values_name=values_name)
        return lazy.per_plane(scatter, (v, idx), s.dst.axes, s.dst.sizes, v.dtype)
    return run_scatter(s, v, idx, accumulate)


def _unpool(rank, x, indices, kernel_size, stride=None, padding=0, output_size=None, *, data_format=None,
            axes=None, backend="auto") -> Any:
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
        if not isinstance(os_, tuple) or not all(is_int(v) for v in os_):
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
    return index_scatter(rank, x, indices, tuple(shape), data_format=data_format, axes=axes, backend=backend,
                         accumulate=False, values_name="x", lazy_ok=True)


_UNPOOL_DOC = """Partial inverse of :func:`max_pool{rank}d`: put each value back where its maximum was.

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
        ``data_format="{last}"`` for channels-last input; or any shape with ``axes``.
    indices : array_like of int, same shape
        From ``max_pool{rank}d(..., return_indices=True)``.
    kernel_size, stride, padding : int or tuple of {rank} ints
        Those of the pooling being inverted.
    output_size : tuple of ints, optional
        The pooled sizes of the result (or its full shape).

    Returns
    -------
    out : ndarray, dtype of ``x``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange({n}.).reshape({ones})
    >>> y, idx = poolkit.max_pool{rank}d(x, 2, return_indices=True)
    >>> poolkit.max_unpool{rank}d(y, idx, 2).ravel()
    array([{unpooled}])
    """


def _unpool_doc(rank: int) -> str:
    n = 2 ** rank
    return _UNPOOL_DOC.format(unpooled=", ".join(["0."] * (n - 1) + [f"{n - 1}."]), **fields(rank))


max_unpool1d, max_unpool2d, max_unpool3d = fixed_ranks(_unpool, "max_unpool{rank}d", _unpool_doc,
                                                        module=__name__)


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
    rank = rank_of(idx.ndim, None, axes, data_format)
    pooled, _ = resolve_axes(idx.shape, rank, data_format, axes, name="indices")
    gpooled, _ = resolve_axes(g.shape, rank, data_format, axes, name="grad_output")
    if g.ndim != idx.ndim or any(g.shape[a] != idx.shape[a] for a in range(g.ndim) if a not in pooled):
        raise ValueError(f"`grad_output` of shape {g.shape} does not match `indices` of shape {idx.shape} "
                         f"outside the pooled axes.")
    plane = int(np.prod([g.shape[a] for a in gpooled], dtype=np.int64))
    if idx.size and (idx.min() < -1 or idx.max() >= plane):
        raise ValueError(f"`indices` must lie in [0, {plane}), but found "
                         f"{int(idx.max()) if idx.max() >= plane else int(idx.min())}.")
    src = Layout.make(tuple(idx.shape), pooled)
    gl = Layout.make(tuple(g.shape), gpooled)
    g5 = gl.to_canonical(g)
    i5 = src.to_canonical(idx).astype(np.int64, copy=False)
    B, C = g5.shape[0], g5.shape[4]
    # explicit sizes: reshape(B, -1, C) fails for an empty batch (B == 0)
    gi = i5.reshape(B, i5.shape[1] * i5.shape[2] * i5.shape[3], C)
    picked = np.take_along_axis(g5.reshape(B, g5.shape[1] * g5.shape[2] * g5.shape[3], C), np.maximum(gi, 0),
                                axis=1)
    picked = np.where(gi >= 0, picked, 0).astype(g5.dtype, copy=False)
    return src.from_canonical(picked.reshape(src.canonical_shape(src.sizes)), src.sizes)
