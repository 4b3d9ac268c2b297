"""Multiscale pyramids: repeated non-overlapping pooling, for NumPy and Dask arrays.

``pyramid(x)`` returns ``[x, level1, level2, ...]``; each level is the previous
one reduced over disjoint windows of ``factor`` elements per pooled axis
(kernel == stride == factor, so Dask chunks need no halos). The reductions of
one block are :func:`poolkit.multiscale.reduce.reduce_levels`.

On Dask, one task computes several levels of a block at once (see
:func:`pyramid`, Notes); results are bit for bit those of the NumPy call,
for any chunking. Dask is imported only when a Dask array is given.
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence, Union

import numpy as np

from ..core.layout import as_input_array, is_dask_array
from .reduce import reduce_levels
from .spec import (EDGES, METHODS, Spec, check_axes, check_factors, check_levels, check_scale, check_stop, is_int,
                   level_shapes, normalize, schedule)

__all__ = ["pyramid", "METHODS", "EDGES", "level_shapes"]

#: Bytes one Dask task may hold as input when it computes several levels (see pyramid, Notes).
DEFAULT_BLOCK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- #
# Dask
# --------------------------------------------------------------------------- #
def _stage(cur, steps: Sequence[Spec], block_bytes: int):
    """Levels this stage computes per task, and the block lengths along the pooled axes.

    A task's block merges, per pooled axis, as many chunks of ``cur`` as the product of the
    stage's ``k`` factors, so that its ``k``-th level comes out with ``cur``'s chunk length
    again; ``k`` is the most levels (at least 1) whose block fits ``block_bytes``.
    """
    itemsize = cur.dtype.itemsize
    best_k, best_blocks = 1, None
    for k in range(1, len(steps) + 1):
        span = _span(steps[:k], cur.ndim)
        axes = [a for a in range(cur.ndim) if span[a] > 1]
        blocks = {a: min(max(cur.chunks[a]) * span[a], cur.shape[a]) for a in axes}
        other = int(np.prod([max(cur.chunks[i]) for i in range(cur.ndim) if i not in blocks]))
        nbytes = itemsize * other * int(np.prod(list(blocks.values())))
        if k > 1 and nbytes > block_bytes:
            break
        best_k, best_blocks = k, blocks
    return best_k, best_blocks


def _span(steps: Sequence[Spec], ndim: int):
    """Per axis, the product of the steps' factors: one output element of the last covers that many."""
    span = [1] * ndim
    for step in steps:
        span = [s * f for s, f in zip(span, step.factors)]
    return span


def _dask_pyramid(x, steps: Sequence[Spec], block_bytes: int) -> list:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    out = [x]
    cur = x
    meta = np.empty((0,) * x.ndim, dtype=x.dtype)
    while len(out) - 1 < len(steps):
        done = len(out) - 1
        k, blocks = _stage(cur, steps[done:], block_bytes)
        stage = tuple(steps[done:done + k])
        # Blocks start at multiples of the stage's factors: every window of the k levels lies in one block.
        cur_b = cur.rechunk({a: b for a, b in blocks.items()})
        packed = da.map_blocks(reduce_levels, cur_b, steps=stage, dtype=x.dtype, meta=meta,
                               name="pyramid-levels-" + tokenize(cur_b, stage))
        chunks = cur_b.chunks
        for j, step in enumerate(stage, 1):
            chunks = tuple(tuple(step.next_length(b, a) for b in c) for a, c in enumerate(chunks))
            name = f"pyramid-level{len(out)}-" + tokenize(packed.name, j)
            # Level j of block idx is item j-1 of that block's tuple (as dask's apply_gufunc does).
            dsk = {(name,) + idx: (operator.getitem, (packed.name,) + idx, j - 1)
                   for idx in np.ndindex(*cur_b.numblocks)}
            graph = HighLevelGraph.from_collections(name, dsk, dependencies=[packed])
            out.append(da.Array(graph, name, chunks, meta=meta))
        cur = out[-1]
    return out


def steps_for(x, levels, factor, method, axes, edge, factors=None, scale=None, stop=None, fit=None):
    """Validate ``pyramid()``'s arguments for an array of ``x``'s shape and dtype: one Spec per level."""
    shape = tuple(x.shape)
    base = normalize(shape, x.dtype, factor, method, axes, edge)
    n = check_levels(levels, shape, base)
    pooled = check_axes(axes, len(shape))
    sched = check_factors(factors, base, pooled, shape)
    scale = check_scale(scale, len(shape))
    stop = check_stop(stop, len(shape))
    if factors == "auto" and scale is None:
        raise ValueError("`factors='auto'` chooses factors from the pixel sizes: pass `scale` too "
                         "(one per axis, e.g. scale=(4.0, 1.0, 1.0) for thick z slices).")
    return schedule(shape, base, n, sched, scale, stop, fit)


# --------------------------------------------------------------------------- #
# the public function
# --------------------------------------------------------------------------- #
def pyramid(x, levels: Optional[int] = None, factor: Union[int, Sequence[int]] = 2, method: str = "mean",
            axes: Union[None, int, Sequence[int]] = None, *, edge: str = "partial", factors=None,
            scale=None, stop=None, max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> list:
    """A multiscale pyramid: ``x`` and successively pooled copies of it.

    Level ``k + 1`` is level ``k`` reduced over disjoint windows of ``factor``
    elements along each pooled axis. Works on NumPy arrays (computed now) and
    on Dask arrays (lazy, chunk by chunk).

    Parameters
    ----------
    x : array_like or dask.array.Array, shape (*S)
        Image or volume, e.g. (Y, X), (Z, Y, X) or (C, Z, Y, X) with ``axes``.
        bool, integer or float dtype (``"mode"``: bool or integer).
    levels : int, optional
        Number of pooled levels (the result has ``levels + 1`` arrays). None:
        until every pooled axis fits one chunk, i.e. is at most as long as
        ``x``'s largest Dask chunk along it; for a NumPy array, until every
        pooled axis has length 1 (with ``edge="trim"``: until the next level
        would be empty).
    factor : int or tuple of ints
        Window length (== step) per pooled axis, >= 1 (> 1 on at least one).
        A tuple gives one per axis of ``axes``, e.g. ``(1, 2, 2)`` for a
        (Z, Y, X) stack with thick slices.
    method : {"mean", "max", "min", "mode", "nearest"}
        The reduction over each window. "mode": the most frequent value, ties
        to the smallest (label images). "nearest": the window's first element.
    axes : int or tuple of ints, optional
        The pooled axes; None means all axes (so pass ``axes`` to leave a
        channel or time axis alone). At most three axes with a factor > 1.
    edge : {"partial", "trim"}
        "partial": a window cut by the array's end reduces over the elements it
        has (no padding enters the result, nothing is dropped): a level is
        ``ceil(S / factor)`` long. "trim": such windows are dropped,
        ``floor(S / factor)`` (``dask.array.coarsen``'s ``trim_excess``).
    factors : None, "auto" or list, optional
        Per-level factors (anisotropic data). A list is the schedule: one
        entry per level, each an int or one factor per pooled axis, e.g.
        ``[(1, 2, 2), (1, 2, 2), (2, 2, 2)]`` for z slices 4x thicker than
        the pixels (``levels`` is then its length). ``"auto"``: at each level
        ``factor`` on the pooled axes whose pixel, once pooled, stays within
        sqrt(2) of the coarsest pixel (all of them when none would), from
        ``scale``. None: ``factor`` on every pooled axis, every level.
    scale : float or tuple of floats, optional
        Level 0's pixel size per axis, for ``factors="auto"``.
    stop : int or tuple of ints, optional
        Per axis of ``x``: pool the axis only while it is longer than this
        (an axis stops once it fits, e.g., one chunk); with ``levels=None``
        the pyramid ends when no pooled axis is longer than its stop.
    max_block_bytes : int
        Dask only: bytes of input one task may hold (see Notes).

    Returns
    -------
    list of arrays
        ``[x, level1, ..., level_levels]``; level 0 is ``x`` itself. Each level
        has ``x``'s dtype; NumPy arrays for NumPy input, Dask arrays for Dask
        input (level 0 keeps ``x``'s chunks).

    Notes
    -----
    Each level is computed from the previous one (as ome-zarr-py, ngff-zarr and
    xarray-multiscale do), with poolkit's kernels.

    *Means.* Float input: the mean of each window's valid elements, summed in
    the input's precision (:func:`avg_pool` with ``count_include_pad=False``).
    Integer input keeps its dtype: the exact mean (sums in int64, 64-bit
    integers split into exact halves) rounded to the nearest integer, ties to
    even (``np.round``'s rule), so ``mean([1, 2]) == 2`` and
    ``mean([2, 3]) == 2``. bool is pooled as 0/1.

    *NaN* propagates for "mean", "max" and "min" (see :func:`max_pool`).

    *Dask.* Windows are disjoint, so chunks need no halos. One task takes a
    block of ``factor**k`` chunks per pooled axis (at least ``k = 1``; the most
    levels whose block fits ``max_block_bytes``) and returns its ``k`` levels;
    level ``k`` comes out with the input's chunk lengths, shallower levels with
    larger ones, and the next ``k`` levels start from it. Blocks start at
    multiples of ``factor**k``, so every window lies in one block and the
    values are exactly those of the NumPy call for any chunking. Per stage of
    ``k`` levels over ``S`` blocks the graph holds ``S`` merges (rechunk),
    ``S`` tasks and ``k * S`` item lookups, with ``S ~ N / factor**(d*k)``
    for ``N`` chunks and ``d`` pooled axes, instead of ``N`` tasks per level.
    E.g. a 16384 x 16384 uint16 image in 1024 x 1024 chunks (N = 256),
    ``levels=None`` (4 levels): 68 tasks on top of the input's 256 (two
    stages of two levels, 32 MiB blocks). With ``max_block_bytes=1`` (one
    level per stage) a 256 x 256 image in 16 x 16 chunks takes 255 (N = 256)
    for its 4 levels, where ``dask.array.coarsen`` takes 1024. Inside tasks
    the kernels run on one thread. Each task holds at most
    ``max(max_block_bytes, factor**d chunks)`` of input.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(20, dtype=np.uint8).reshape(4, 5)
    >>> [a.shape for a in poolkit.pyramid(x)]
    [(4, 5), (2, 3), (1, 2), (1, 1)]
    >>> poolkit.pyramid(x, 1)[1]        # last column: mean(4, 9) = 6.5, rounded to even
    array([[ 3,  5,  6],
           [13, 15, 16]], dtype=uint8)
    >>> poolkit.pyramid(x, 1, method="nearest", edge="trim")[1]
    array([[ 0,  2],
           [10, 12]], dtype=uint8)
    """
    lazy = is_dask_array(x)
    if not lazy:
        x = as_input_array(x)
    if lazy and any(np.isnan(c) for cs in x.chunks for c in cs):
        fit = None                        # raised below, after the arguments are checked
    else:
        fit = [max(c) for c in x.chunks] if lazy else None
    steps = steps_for(x, levels, factor, method, axes, edge, factors, scale, stop, fit)
    if not is_int(max_block_bytes) or max_block_bytes < 1:
        raise ValueError(f"`max_block_bytes` must be an int >= 1, but got max_block_bytes={max_block_bytes!r}.")
    if lazy:
        if not x.dtype.isnative:          # e.g. '>u2' from a file: the kernels know native dtypes
            x = x.astype(x.dtype.newbyteorder("="))
        if fit is None:
            raise ValueError("`x` is a Dask array of unknown chunk sizes; call x.compute_chunk_sizes() first.")
        return _dask_pyramid(x, steps, int(max_block_bytes))
    from ..core.threads import get_num_threads

    return [x, *reduce_levels(x, steps, threads=get_num_threads())]
