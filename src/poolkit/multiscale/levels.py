"""Multiscale pyramids: repeated non-overlapping pooling, for NumPy and Dask arrays.

``pyramid(x)`` returns ``[x, level1, level2, ...]``; each level is the previous
one reduced over disjoint windows of ``factor`` elements per pooled axis
(kernel == stride == factor, so Dask chunks need no halos). The reductions are
poolkit's kernels (``avg_pool``/``sum_pool``, ``max_pool``, ``min_pool``) and,
for ``"mode"`` and ``"nearest"``, vectorised NumPy.

On Dask, one task computes several levels of a block at once (see
:func:`pyramid`, Notes); results are bit for bit those of the NumPy call,
for any chunking. Dask is imported only when a Dask array is given.
"""
from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.layout import as_input_array, is_dask_array

__all__ = ["pyramid", "METHODS", "EDGES", "level_shapes"]

METHODS = ("mean", "max", "min", "mode", "nearest")
EDGES = ("partial", "trim")
#: Bytes one Dask task may hold as input when it computes several levels (see pyramid, Notes).
DEFAULT_BLOCK_BYTES = 64 * 2**20
# Windows per batch in the mode reduction: bounds its int64 scratch arrays (~100 MB).
_MODE_BATCH = 2**20


@dataclass(frozen=True)
class _Spec:
    """Validated, canonical pyramid settings (picklable: Dask tasks carry it)."""

    factors: Tuple[int, ...]      # one per array axis; 1 for axes left alone
    method: str
    edge: str

    @property
    def axes(self) -> Tuple[int, ...]:
        """The pooled axes (factor > 1), ascending: the only axes the kernels see."""
        return tuple(i for i, f in enumerate(self.factors) if f > 1)

    @property
    def kernel(self) -> Tuple[int, ...]:
        return tuple(self.factors[i] for i in self.axes)

    def next_length(self, n: int, axis: int, k: int = 1) -> int:
        """Length along ``axis`` after ``k`` more levels, from length ``n``."""
        f = self.factors[axis] ** k
        # ceil and floor compose: ceil(ceil(n/a)/b) == ceil(n/(a*b)), likewise floor.
        return -(-n // f) if self.edge == "partial" else n // f

    def shape_after(self, shape: Tuple[int, ...], k: int) -> Tuple[int, ...]:
        return tuple(self.next_length(n, i, k) for i, n in enumerate(shape))


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_dtype(dtype: np.dtype, method: str) -> None:
    name = str(dtype)
    if dtype.kind not in "biuf" and name != "bfloat16":
        raise TypeError(f"`x` must hold booleans, integers or floats, but got dtype={name}.")
    if method == "mode" and dtype.kind not in "biu":
        raise TypeError(f"`method='mode'` is for label images: it needs integer or bool input, but got "
                        f"dtype={name}. Use method='mean' (or 'nearest') for intensities.")


def _normalize(shape: Tuple[int, ...], dtype, factor, method, axes, edge) -> _Spec:
    """Check every argument (naming it and echoing its value) and build the canonical spec."""
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("`x` must have at least one axis, but got a 0-d array.")
    if 0 in shape:
        raise ValueError(f"`x` must not be empty, but got shape={tuple(shape)}.")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but got method={method!r}.")
    if not isinstance(edge, str) or edge not in EDGES:
        raise ValueError(f"`edge` must be one of {EDGES}, but got edge={edge!r}.")
    _check_dtype(np.dtype(dtype), method)
    if axes is None:
        pooled = tuple(range(ndim))
    else:
        seq = (axes,) if _is_int(axes) else axes
        if not isinstance(seq, (tuple, list)) or not seq or not all(_is_int(a) for a in seq):
            raise TypeError(f"`axes` must be an int or a non-empty tuple of ints, but got axes={axes!r}.")
        if any(not -ndim <= a < ndim for a in seq):
            raise ValueError(f"`axes` must lie in [-{ndim}, {ndim}) for an array of {ndim} axes, "
                             f"but got axes={axes!r}.")
        pooled = tuple(int(a) % ndim for a in seq)
        if len(set(pooled)) != len(pooled):
            raise ValueError(f"`axes` must not repeat an axis, but got axes={axes!r}.")
    if _is_int(factor):
        per_axis = (int(factor),) * len(pooled)
    elif isinstance(factor, (tuple, list)) and all(_is_int(f) for f in factor):
        if len(factor) != len(pooled):
            raise ValueError(f"`factor` needs one entry per pooled axis ({len(pooled)}: axes={pooled}), "
                             f"but got factor={factor!r}.")
        per_axis = tuple(int(f) for f in factor)
    else:
        raise TypeError(f"`factor` must be an int or a tuple of ints, but got factor={factor!r}.")
    if any(f < 1 for f in per_axis) or all(f == 1 for f in per_axis):
        raise ValueError(f"`factor` must be >= 1 on every pooled axis and > 1 on at least one, "
                         f"but got factor={factor!r}.")
    factors = [1] * ndim
    for a, f in zip(pooled, per_axis):
        factors[a] = f
    spec = _Spec(tuple(factors), method, edge)
    if int(np.prod(spec.kernel)) > 2**29:
        # Exact integer means need sums below 2**63 (see _integer_mean).
        raise ValueError(f"`factor` makes windows of {int(np.prod(spec.kernel))} elements; at most 2**29 "
                         f"are supported, but got factor={factor!r}.")
    if len(spec.axes) > 3:
        raise ValueError(f"at most 3 axes can be pooled at once, but factor > 1 on axes {spec.axes} of "
                         f"shape={tuple(shape)}; pass `axes` (e.g. axes={tuple(range(ndim))[-3:]} for "
                         f"the last three) or a factor of 1 for the others.")
    return spec


def _check_levels(levels, shape: Tuple[int, ...], spec: _Spec) -> Optional[int]:
    if levels is None:
        return None
    if not _is_int(levels) or levels < 0:
        raise ValueError(f"`levels` must be None or an int >= 0, but got levels={levels!r}.")
    if spec.edge == "trim":
        for a in spec.axes:
            if spec.next_length(shape[a], a, int(levels)) == 0:
                most = _max_trim_levels(shape, spec)
                raise ValueError(f"`levels`={levels} with edge='trim' would leave axis {a} (length "
                                 f"{shape[a]}, factor {spec.factors[a]}) empty; at most {most} levels.")
    return int(levels)


def _max_trim_levels(shape, spec: _Spec) -> int:
    k = 0
    while all(spec.next_length(shape[a], a, k + 1) > 0 for a in spec.axes):
        k += 1
    return k


def _default_levels(shape: Tuple[int, ...], spec: _Spec, fit: Sequence[int]) -> int:
    """Levels until every pooled axis is at most ``fit[axis]`` long (one chunk), capped for trim."""
    k = 0
    while any(spec.next_length(shape[a], a, k) > fit[a] for a in spec.axes):
        if spec.edge == "trim" and any(spec.next_length(shape[a], a, k + 1) == 0 for a in spec.axes):
            break
        k += 1
    return k


def level_shapes(shape, levels=None, factor=2, axes=None, *, edge="partial", chunks=None):
    """Shapes of the levels :func:`pyramid` would return, without computing anything.

    Parameters
    ----------
    shape : tuple of ints
        Shape of level 0.
    levels, factor, axes, edge
        As for :func:`pyramid`.
    chunks : tuple of ints, optional
        Chunk lengths of level 0 (its Dask chunks), for the ``levels=None`` rule;
        None means a NumPy array (levels until every pooled axis has length 1).

    Returns
    -------
    list of tuples
        ``levels + 1`` shapes, level 0 first.

    Examples
    --------
    >>> from poolkit.multiscale import level_shapes
    >>> level_shapes((5, 7))
    [(5, 7), (3, 4), (2, 2), (1, 1)]
    >>> level_shapes((5, 7), edge="trim")
    [(5, 7), (2, 3), (1, 1)]
    """
    shape = tuple(int(n) for n in shape)
    spec = _normalize(shape, np.float64, factor, "mean", axes, edge)
    n = _check_levels(levels, shape, spec)
    if n is None:
        n = _default_levels(shape, spec, chunks if chunks is not None else (1,) * len(shape))
    return [spec.shape_after(shape, k) for k in range(n + 1)]


# --------------------------------------------------------------------------- #
# one level, on a NumPy array
# --------------------------------------------------------------------------- #
def _window_counts(shape: Tuple[int, ...], spec: _Spec) -> np.ndarray:
    """Valid elements per window (int64), broadcastable to the reduced shape."""
    n = np.ones((1,) * len(shape), dtype=np.int64)
    for a in spec.axes:
        f, length = spec.factors[a], shape[a]
        out = spec.next_length(length, a)
        c = np.full(out, f, dtype=np.int64)
        c[-1] = length - (out - 1) * f        # the partial window at the edge, if any
        n = n * c.reshape([-1 if i == a else 1 for i in range(len(shape))])
    return n


def _round_half_even(s: np.ndarray, n: np.ndarray, bits: int = 64) -> np.ndarray:
    """``s / n`` rounded to the nearest integer, ties to even, exactly (int64 sums, n > 0, |s| < 2**bits)."""
    if bits <= 52:
        # Float64 fast path (int64 division is ~20x slower). The quotient is then within a
        # quarter of 1/n of s / n (relative error 2**-53), ties k + 1/2 are exact in float64 and
        # any other quotient lies >= 1/(2n) from a tie: rint rounds it exactly as the integers would.
        return np.rint(s / n)
    q = s // n                           # floor, also for negative sums
    twice_r = 2 * (s - q * n)            # 0 <= r < n
    return q + ((twice_r > n) | ((twice_r == n) & (q % 2 == 1)))


def _sum_pool(a: np.ndarray, spec: _Spec) -> np.ndarray:
    from .. import sum_pool

    return sum_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)


def _integer_mean(a: np.ndarray, spec: _Spec) -> np.ndarray:
    n = _window_counts(a.shape, spec)
    if a.dtype.itemsize < 8:
        # int64 sums of <= 32-bit integers are exact for any window of < 2**31 elements.
        bits = 8 * a.dtype.itemsize + int(np.prod(spec.kernel)).bit_length()      # |sum| < 2**bits
        return _round_half_even(_sum_pool(a, spec), n, bits).astype(a.dtype)
    # 64-bit integers: sums could overflow int64. Split x = hi * 2**32 + lo and sum each half
    # exactly; then mean = q * 2**32 + (r * 2**32 + sum(lo)) / n with q, r = divmod(sum(hi), n).
    signed = a.dtype.kind == "i"
    hi = (a >> 32).astype(np.int32 if signed else np.uint32)
    lo = (a & 0xFFFFFFFF).astype(np.uint32)
    q, r = np.divmod(_sum_pool(hi, spec), n)
    t = r * 2**32 + _sum_pool(lo, spec)      # 0 <= t < 2 * n * 2**32 <= 2**62 (n <= 2**29)
    # 2**32 is even, so ties-to-even on t / n is ties-to-even on the whole mean.
    frac = _round_half_even(t, n)
    return (q.astype(a.dtype) << a.dtype.type(32)) + frac.astype(a.dtype)


def _mode(a: np.ndarray, spec: _Spec) -> np.ndarray:
    """Most frequent value per window; ties to the smallest value (integer input)."""
    out_shape = spec.shape_after(a.shape, 1)
    pad_value = np.iinfo(a.dtype).max
    pad = [(0, 0)] * a.ndim
    for ax in spec.axes:
        pad[ax] = (0, out_shape[ax] * spec.factors[ax] - a.shape[ax])
    # Pad partial windows with the dtype's maximum: it sorts last, so padding forms (part of) the
    # last run of its row, from which the padding count is subtracted below.
    p = np.pad(a, pad, constant_values=pad_value) if any(w for _, w in pad) else a
    split: List[int] = []
    for ax, n in enumerate(out_shape):
        split += [n, spec.factors[ax]] if ax in spec.axes else [n]
    # Where each window axis lands in ``split``: right after its output axis.
    positions = [i + 1 + k for k, i in enumerate(spec.axes)]
    w = np.moveaxis(p.reshape(split), positions, list(range(-len(positions), 0)))
    n_taps = int(np.prod(spec.kernel))
    rows = w.reshape(-1, n_taps)
    n_pad = (n_taps - np.broadcast_to(_window_counts(a.shape, spec), out_shape)).reshape(-1)
    result = np.empty(rows.shape[0], dtype=a.dtype)
    for start in range(0, rows.shape[0], _MODE_BATCH):
        stop = min(start + _MODE_BATCH, rows.shape[0])
        result[start:stop] = _mode_rows(np.sort(rows[start:stop], axis=1), n_pad[start:stop])
    return result.reshape(out_shape)


def _mode_rows(rows: np.ndarray, n_pad: np.ndarray) -> np.ndarray:
    """Mode of each sorted row of ``rows`` (M, W), its last ``n_pad[m]`` entries being padding."""
    m, w = rows.shape
    flat = rows.reshape(-1)
    is_start = np.ones(flat.size, dtype=bool)
    is_start[1:] = flat[1:] != flat[:-1]
    is_start[::w] = True                                  # a run never spans two rows
    starts = np.flatnonzero(is_start)
    lengths = np.diff(np.append(starts, flat.size))
    row = starts // w
    last_of_row = np.append(row[1:] != row[:-1], True)
    lengths = lengths - np.where(last_of_row, n_pad[row], 0)  # padding sits in the last run
    offset = starts - row * w
    # Longest run wins; among equals the earliest, i.e. the smallest value (rows are sorted).
    key = lengths * (w + 1) + (w - offset)
    first_of_row = np.flatnonzero(np.append(True, row[1:] != row[:-1]))
    best = np.maximum.reduceat(key, first_of_row)
    return rows[np.arange(m), w - best % (w + 1)]


def _reduce_once(a: np.ndarray, spec: _Spec) -> np.ndarray:
    """One level: ``a`` reduced over disjoint ``factor`` windows (partial at the edge or trimmed)."""
    if spec.edge == "trim":
        a = a[tuple(slice(0, (n // f) * f) for n, f in zip(a.shape, spec.factors))]
    out_shape = spec.shape_after(a.shape, 1)
    if a.size == 0 or 0 in out_shape:         # a Dask edge block that trimming emptied
        return np.empty(out_shape, dtype=a.dtype)
    if a.dtype == np.bool_:
        # Kernels know numbers: pool the 0/1 bytes and view the result as bool again.
        return _reduce_once(a.view(np.uint8), spec).view(np.bool_)
    if spec.method == "nearest":
        return np.ascontiguousarray(a[tuple(slice(None, None, f) for f in spec.factors)])
    if spec.method == "mode":
        return _mode(a, spec)
    if spec.method == "max":
        from ..functional import max_pool

        return max_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)
    if spec.method == "min":
        from .. import min_pool

        return min_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)
    if a.dtype.kind in "iu":
        return _integer_mean(a, spec)
    from ..functional import avg_pool

    return avg_pool(a, spec.kernel, ceil_mode=True, count_include_pad=False, axes=spec.axes)


def _levels_of_block(block: np.ndarray, spec: _Spec, k: int) -> Tuple[np.ndarray, ...]:
    """``k`` successive levels of one Dask block, single-threaded (Dask supplies the parallelism)."""
    from ..core.threads import threads

    out = []
    with threads(1):
        for _ in range(k):
            block = _reduce_once(block, spec)
            out.append(block)
    return tuple(out)


# --------------------------------------------------------------------------- #
# Dask
# --------------------------------------------------------------------------- #
def _stage(cur, spec: _Spec, remaining: int, block_bytes: int):
    """Levels this stage computes per task, and the block lengths along the pooled axes.

    A task's block merges ``factor**k`` chunks of ``cur`` per pooled axis, so that its
    ``k``-th level comes out with ``cur``'s chunk length again; ``k`` is the most levels
    (at least 1) whose block fits ``block_bytes``.
    """
    itemsize = cur.dtype.itemsize
    other = int(np.prod([max(cur.chunks[i]) for i in range(cur.ndim) if i not in spec.axes]))
    best_k, best_blocks = 1, None
    for k in range(1, remaining + 1):
        blocks = {a: min(max(cur.chunks[a]) * spec.factors[a] ** k, cur.shape[a]) for a in spec.axes}
        nbytes = itemsize * other * int(np.prod(list(blocks.values())))
        if k > 1 and nbytes > block_bytes:
            break
        best_k, best_blocks = k, blocks
    return best_k, best_blocks


def _dask_pyramid(x, spec: _Spec, levels: int, block_bytes: int) -> list:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    out = [x]
    cur = x
    meta = np.empty((0,) * x.ndim, dtype=x.dtype)
    while len(out) - 1 < levels:
        k, blocks = _stage(cur, spec, levels - (len(out) - 1), block_bytes)
        # Blocks start at multiples of factor**k: every window of the k levels lies in one block.
        cur_b = cur.rechunk({a: b for a, b in blocks.items()})
        packed = da.map_blocks(_levels_of_block, cur_b, spec=spec, k=k, dtype=x.dtype, meta=meta,
                               name="pyramid-levels-" + tokenize(cur_b, spec, k))
        for j in range(1, k + 1):
            chunks = tuple(tuple(spec.next_length(b, a, j) for b in c) if a in spec.axes else c
                           for a, c in enumerate(cur_b.chunks))
            name = f"pyramid-level{len(out)}-" + tokenize(packed.name, j)
            # Level j of block idx is item j-1 of that block's tuple (as dask's apply_gufunc does).
            dsk = {(name,) + idx: (operator.getitem, (packed.name,) + idx, j - 1)
                   for idx in np.ndindex(*cur_b.numblocks)}
            graph = HighLevelGraph.from_collections(name, dsk, dependencies=[packed])
            out.append(da.Array(graph, name, chunks, meta=meta))
        cur = out[-1]
    return out


# --------------------------------------------------------------------------- #
# the public function
# --------------------------------------------------------------------------- #
def pyramid(x, levels: Optional[int] = None, factor: Union[int, Sequence[int]] = 2, method: str = "mean",
            axes: Union[None, int, Sequence[int]] = None, *, edge: str = "partial",
            max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> list:
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
    spec = _normalize(tuple(x.shape), x.dtype, factor, method, axes, edge)
    n = _check_levels(levels, tuple(x.shape), spec)
    if not _is_int(max_block_bytes) or max_block_bytes < 1:
        raise ValueError(f"`max_block_bytes` must be an int >= 1, but got max_block_bytes={max_block_bytes!r}.")
    if lazy:
        if not x.dtype.isnative:          # e.g. '>u2' from a file: the kernels know native dtypes
            x = x.astype(x.dtype.newbyteorder("="))
        if any(np.isnan(c) for cs in x.chunks for c in cs):
            raise ValueError("`x` is a Dask array of unknown chunk sizes; call x.compute_chunk_sizes() first.")
        if n is None:
            n = _default_levels(tuple(x.shape), spec, [max(c) for c in x.chunks])
        return _dask_pyramid(x, spec, n, int(max_block_bytes))
    if n is None:
        n = _default_levels(tuple(x.shape), spec, (1,) * x.ndim)
    out = [x]
    for _ in range(n):
        out.append(_reduce_once(out[-1], spec))
    return out
