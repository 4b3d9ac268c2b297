"""Pooling of Dask arrays: lazy, chunk by chunk, bit for bit the in-memory result.

Dask arrays
-----------
Every forward pooling function (strided 1-D/2-D/3-D and N-d ``axes=``, adaptive,
global, ``max_unpool*``, fractional max and spatial pyramid pooling) accepts a
``dask.array.Array`` and returns a lazy Dask array; nothing is computed until
you call ``.compute()`` (or store the result).
Values, dtypes and ``return_indices`` -- flat positions within the *whole*
input plane, not within a chunk -- are identical to those of the same call on
``np.asarray(x)``, for any chunking (``pip install 'poolkit[dask]'``)::

    import dask.array as da, poolkit
    x = da.from_zarr("scan.zarr")                       # (C, H, W), any chunks
    y = poolkit.avg_pool2d(x, 3, stride=2, padding=1)   # lazy
    y.to_zarr("scan_2x.zarr")

How: along each pooled axis the input is rechunked only where it must be -- a
chunk boundary is kept where a window starts after it, and chunks shorter than
a window's reach are merged -- and windows that reach past their chunk get a
halo from the next chunks (``dask.array.overlap.overlap``).  Other axes keep
their chunks.  Each task pools its block with the ordinary in-memory kernels,
its windows restricted to the block (:func:`poolkit.core.geometry.restrict_axis`)
so that padding, ``ceil_mode``, dilation and divisors are those of the whole
array; the task graph has a few tasks per chunk.  Global pooling,
``max_unpool*`` and fractional max pooling need whole planes (a sum's order,
indices anywhere in the plane, windows drawn per plane): they rechunk the pooled
axes to one chunk (:func:`per_plane`).  Spatial pyramid pooling is adaptive
pooling level by level, each level through :func:`run_forward`.

Threads, one policy for every task of this engine (:func:`task_threads`): Dask
supplies the parallelism, so kernels inside Dask tasks run on one thread.
``dask.config.set({"poolkit.threads": n})`` while building the graph gives each
task ``n`` threads instead (for few, large chunks).

Not lazy: backward functions, ``grad_output`` and layers in training raise
TypeError for a Dask array.  Errors that depend on values (``max_unpool``
indices out of range) raise when the graph is computed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.args import is_int
from ..core.geometry import Axis, restrict_axis, trivial_axis
from ..core.layout import Layout, is_dask_array
from ..core.threads import threads
from .eager import run_forward as _pool_in_memory
from .prepare import Prepared

__all__ = ["run_forward", "per_plane", "task_threads", "THREADS_KEY"]

THREADS_KEY = "poolkit.threads"


def task_threads() -> int:
    """Threads per Dask task: ``dask.config`` ``"poolkit.threads"``, 1 unless set."""
    import dask
    import numba

    n = dask.config.get(THREADS_KEY, 1)
    top = numba.config.NUMBA_NUM_THREADS
    if not is_int(n) or not 1 <= int(n) <= top:
        raise ValueError(f"dask.config `{THREADS_KEY}` must be an int from 1 to {top} (NUMBA_NUM_THREADS), "
                         f"but got {n!r}.")
    return int(n)


@dataclasses.dataclass(frozen=True)
class _Block:
    """What one Dask block computes along one pooled axis."""

    axis: Axis          # its windows, over the stretch it reads
    lo: int             # the stretch, within the (overlapped) Dask block
    hi: int
    origin: int         # the stretch's first position in the whole axis


def _split_axis(axis: Axis, chunks: Sequence[int]) -> Tuple[List[int], List[_Block], int]:
    """``(bounds, blocks, halo)`` along one pooled axis of ``chunks``.

    Block ``j`` owns the windows that start in ``[bounds[j], bounds[j+1])``
    (the first block also those starting in the left padding, the last one also
    those past the end) and reads its input from ``bounds[j]`` up to ``halo``
    elements into the next chunks.  A chunk boundary of the input is kept only
    where both sides own a window starting inside the input and both chunks
    are at least a window's reach long, so that one halo from the next chunk
    suffices (``overlap`` takes it from there alone).
    """
    start, size = axis.start, axis.size
    reach = axis.step * (axis.taps - 1)           # how far past its start a window reads
    # Windows out of order (none of poolkit's own) would defeat the search below: one chunk then.
    least = max(1, reach) if np.all(np.diff(start) >= 0) else size
    live = int(np.searchsorted(start, size))      # windows starting before the end (>= 1: window 0)
    bounds, firsts = [0], [0]
    for c in np.cumsum(chunks)[:-1].tolist():
        o = int(np.searchsorted(start, c))        # the first window starting at or after c
        if c - bounds[-1] >= least and firsts[-1] < o < live:
            bounds.append(c)
            firsts.append(o)
    while len(bounds) > 1 and size - bounds[-1] < least:
        bounds.pop()
        firsts.pop()
    stops = firsts[1:] + [axis.out]
    # Last position + 1 each window reads inside the input (-1: none); per block the largest.
    has = axis.hi > axis.lo
    ends = np.where(has, start + (axis.hi - 1) * axis.step + 1, -1)
    reads = np.maximum.reduceat(ends, firsts)
    blocks, halo = [], 0
    for j, (o1, o2, c) in enumerate(zip(firsts, stops, bounds)):
        # One block reads the whole axis: the windows as they are, in any order.
        a = max(0, int(start[o1])) if len(bounds) > 1 else 0
        b = max(a + 1, int(reads[j])) if len(bounds) > 1 else size
        if j + 1 < len(bounds):
            halo = max(halo, b - bounds[j + 1])
        blocks.append(_Block(restrict_axis(axis, o1, o2, a, b), a - c, b - c, a))
    return bounds, blocks, halo


def _with_pooled(lead: Sequence[Axis], pooled: Sequence[Axis]) -> Tuple[Axis, Axis, Axis]:
    """A plan's D, H, W windows: its leading (trivial) ones, then those of the pooled axes."""
    d, h, w = tuple(lead[: 3 - len(pooled)]) + tuple(pooled)
    return d, h, w


def _template(p: Prepared) -> Prepared:
    """``p`` without its per-position window tables: what every task gets (it is small)."""
    axes = _with_pooled(p.plan.axes, [trivial_axis()] * len(p.layout.axes))
    return dataclasses.replace(p, plan=dataclasses.replace(p.plan, axes=axes, scratch={}))


def _block_prepared(template: Prepared, shape: Tuple[int, ...], axes: Sequence[Axis]) -> Prepared:
    """The prepared call that pools one block of ``shape`` with its restricted windows ``axes``."""
    pooled = template.layout.axes
    layout = Layout.make(tuple(shape), pooled)
    d, h, w = full = _with_pooled(template.plan.axes, axes)
    b, c = layout.batch, layout.channels
    plan = dataclasses.replace(template.plan, axes=full, in_shape=(b, d.size, h.size, w.size, c),
                               out_shape=(b, d.out, h.out, w.out, c), scratch={})
    out_shape = layout.user_shape(tuple(a.out for a in axes))
    return dataclasses.replace(template, plan=plan, layout=layout, out_layout=Layout.make(out_shape, pooled),
                               in_shape=tuple(shape), out_shape=out_shape)


def _whole_plane(idx: np.ndarray, block: Sequence[int], origins: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    """Flat indices into a block's plane (of ``block`` sizes) as flat indices into the whole plane."""
    rem, coords = np.maximum(idx, 0), []
    for n in reversed(block):
        rem, c = np.divmod(rem, n)
        coords.append(c)
    flat = np.zeros_like(idx)
    for c, a, n in zip(reversed(coords), origins, sizes):
        flat = flat * n + (c + a)
    return np.where(idx >= 0, flat, -1)


def _pool_block(xb, *rest, template: Prepared, masked: bool, return_indices: bool, n_threads: int):
    """One task: pool a Dask block (halo included) as the in-memory call would pool that part."""
    mb = rest[0] if masked else None
    blocks = [t[0] for t in rest[int(masked):]]    # one _Block per pooled axis (1-element object arrays)
    pooled = template.layout.axes
    cut: List[Any] = [slice(None)] * xb.ndim
    for ax, b in zip(pooled, blocks):
        cut[ax] = slice(b.lo, b.hi)
    xb = xb[tuple(cut)]
    if mb is not None:
        mb = mb[tuple(cut)]
    bp = _block_prepared(template, xb.shape, [b.axis for b in blocks])
    with threads(n_threads):
        y, idx, _ = _pool_in_memory(bp, xb, mask=mb, return_indices=return_indices, keep=False)
    if not return_indices:
        return y
    return y, _whole_plane(idx, bp.in_sizes, [b.origin for b in blocks], template.in_sizes)


def _pick(pair, i: int):
    return pair[i]


def _overlapped(a, chunks, depth: Dict[int, Tuple[int, int]]):
    """``a`` rechunked to ``chunks`` and, where ``depth`` says, with halos from the next chunks."""
    import dask.array as da

    a = a.rechunk(chunks)
    if depth:
        a = da.overlap.overlap(a, depth=depth, boundary="none", allow_rechunk=False)
    return a


def run_forward(p: Prepared, x, *, mask=None, return_indices: bool = False, keep: bool = True):
    """Pool the Dask array ``x`` lazily; ``(y, indices or None, None)`` as :func:`poolkit.engine.eager.run_forward`.

    ``mask`` (bool, NumPy or Dask, broadcastable to ``x``) is blocked as ``x`` is.
    """
    if keep:
        raise TypeError("`x` is a Dask array, but this call keeps in-memory state for a backward pass (a "
                        "backward function, or a layer in training): pass np.asarray(x) to compute it.")
    import dask.array as da

    pooled = p.layout.axes
    windows = p.plan.axes[3 - len(pooled):]
    chunks = list(x.chunks)
    depth: Dict[int, Tuple[int, int]] = {}
    tables, out_chunks = [], {}
    for ax, axis in zip(pooled, windows):
        bounds, blocks, halo = _split_axis(axis, x.chunks[ax])
        chunks[ax] = tuple(np.diff(bounds + [axis.size]).tolist())
        if halo:
            depth[ax] = (0, halo)
        table = np.empty(len(blocks), dtype=object)
        table[:] = blocks
        tables.append(da.from_array(table, chunks=1))
        out_chunks[ax] = tuple(b.axis.out for b in blocks)
    ind = tuple(range(x.ndim))
    args: List[Any] = [_overlapped(x, tuple(chunks), depth), ind]
    if mask is not None:
        m = mask if is_dask_array(mask) else da.from_array(np.asarray(mask), chunks=x.chunks)
        if m.dtype != np.bool_:
            raise TypeError(f"`mask` must be a bool array (True where an element takes part), "
                            f"but got dtype={m.dtype}.")
        args += [_overlapped(da.broadcast_to(m, x.shape), tuple(chunks), depth), ind]
    for ax, t in zip(pooled, tables):
        args += [t, (ax,)]
    dtype = p.policy.result
    meta = np.empty((0,) * x.ndim, dtype=dtype)
    imeta = np.empty((0,) * x.ndim, dtype=np.int64)
    out = da.blockwise(_pool_block, ind, *args, adjust_chunks=out_chunks, align_arrays=False,
                       meta=imeta if return_indices else meta, template=_template(p), masked=mask is not None,
                       return_indices=return_indices, n_threads=task_threads())
    if not return_indices:
        return out, None, None
    y = out.map_blocks(_pick, 0, dtype=dtype, meta=meta)
    idx = out.map_blocks(_pick, 1, dtype=np.int64, meta=imeta)
    return y, idx, None


def per_plane(fn: Callable, arrays: Sequence, pooled: Sequence[int], sizes: Sequence[int],
              dtypes: Union[Any, Tuple[Any, ...]], side: Optional[np.ndarray] = None) -> Any:
    """``fn(*blocks, shape)`` on whole planes of ``arrays`` (NumPy or Dask, same shape), lazily.

    The pooled axes become one chunk each (the other axes keep the first Dask
    array's chunks); ``fn`` gets the blocks and the shape of its result, whose
    pooled axes have ``sizes``.  For work whose reads or writes may land
    anywhere in a plane (``max_unpool``, fractional windows).  ``side``: a NumPy
    array with one row per plane, of shape ``(non-pooled axes..., k)``; ``fn``
    then gets its block's rows after the blocks.  ``dtypes``: one dtype, or a
    tuple of them when ``fn`` returns that many arrays (each comes back lazy).
    """
    import dask.array as da

    lazy = next(a for a in arrays if is_dask_array(a))
    whole = {ax: -1 for ax in pooled}
    ds = [(a if is_dask_array(a) else da.from_array(np.asarray(a), chunks=lazy.chunks)).rechunk(whole)
          for a in arrays]
    ind = tuple(range(lazy.ndim))
    args: List[Any] = []
    for a in ds:
        args += [a, ind]
    if side is not None:
        others = tuple(ax for ax in ind if ax not in pooled)
        rows = da.from_array(side, chunks=tuple(ds[0].chunks[ax] for ax in others) + (side.shape[-1],))
        args += [rows, others + (lazy.ndim,)]            # its last axis is not in the output: whole per task
    many = isinstance(dtypes, tuple)
    metas = [np.empty((0,) * lazy.ndim, dtype=d) for d in (dtypes if many else (dtypes,))]
    out = da.blockwise(_plane_block, ind, *args, adjust_chunks={ax: (int(n),) for ax, n in zip(pooled, sizes)},
                       concatenate=True, meta=metas[-1] if many else metas[0], fn=fn, pooled=tuple(pooled),
                       sizes=tuple(sizes), n_threads=task_threads())
    if not many:
        return out
    return tuple(out.map_blocks(_pick, i, dtype=m.dtype, meta=m) for i, m in enumerate(metas))


def _plane_block(*blocks, fn: Callable, pooled: Tuple[int, ...], sizes: Tuple[int, ...], n_threads: int):
    shape = list(blocks[0].shape)
    for ax, n in zip(pooled, sizes):
        shape[ax] = n
    with threads(n_threads):
        return fn(*blocks, tuple(shape))
