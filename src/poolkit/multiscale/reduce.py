"""Pyramid levels of one in-memory block: the reductions ``pyramid()`` runs, on NumPy arrays.

:func:`reduce_levels` is the interface the pyramid engines call (in memory, per Dask task,
per region task): it computes ``k`` successive levels of one block, each from the previous one.
A block is either the whole array or a piece of it whose start is a multiple of every factor of
its levels, so windows cut by the block's end are the array's own edge windows.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .spec import Spec

__all__ = ["reduce_levels", "reduce_once", "round_half_even", "window_counts"]

# Windows per batch in the mode reduction: bounds its int64 scratch arrays (~100 MB).
_MODE_BATCH = 2**20


def window_counts(shape: Tuple[int, ...], spec: Spec) -> np.ndarray:
    """Valid elements per window (int64), broadcastable to the reduced shape."""
    n = np.ones((1,) * len(shape), dtype=np.int64)
    for a in spec.axes:
        f, length = spec.factors[a], shape[a]
        out = spec.next_length(length, a)
        c = np.full(out, f, dtype=np.int64)
        c[-1] = length - (out - 1) * f        # the partial window at the edge, if any
        n = n * c.reshape([-1 if i == a else 1 for i in range(len(shape))])
    return n


def round_half_even(s: np.ndarray, n: np.ndarray, bits: int = 64) -> np.ndarray:
    """``s / n`` rounded to the nearest integer, ties to even, exactly (int64 sums, n > 0, |s| < 2**bits)."""
    if bits <= 52:
        # Float64 fast path (int64 division is ~20x slower). The quotient is then within a
        # quarter of 1/n of s / n (relative error 2**-53), ties k + 1/2 are exact in float64 and
        # any other quotient lies >= 1/(2n) from a tie: rint rounds it exactly as the integers would.
        return np.rint(s / n)
    q = s // n                           # floor, also for negative sums
    twice_r = 2 * (s - q * n)            # 0 <= r < n
    return q + ((twice_r > n) | ((twice_r == n) & (q % 2 == 1)))


def _sum_pool(a: np.ndarray, spec: Spec) -> np.ndarray:
    from ..functional import sum_pool

    return sum_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)


def _integer_mean(a: np.ndarray, spec: Spec) -> np.ndarray:
    n = window_counts(a.shape, spec)
    if a.dtype.itemsize < 8:
        # int64 sums of <= 32-bit integers are exact for any window of < 2**31 elements.
        bits = 8 * a.dtype.itemsize + int(np.prod(spec.kernel)).bit_length()      # |sum| < 2**bits
        return round_half_even(_sum_pool(a, spec), n, bits).astype(a.dtype)
    # 64-bit integers: sums could overflow int64. Split x = hi * 2**32 + lo and sum each half
    # exactly; then mean = q * 2**32 + (r * 2**32 + sum(lo)) / n with q, r = divmod(sum(hi), n).
    signed = a.dtype.kind == "i"
    hi = (a >> 32).astype(np.int32 if signed else np.uint32)
    lo = (a & 0xFFFFFFFF).astype(np.uint32)
    q, r = np.divmod(_sum_pool(hi, spec), n)
    t = r * 2**32 + _sum_pool(lo, spec)      # 0 <= t < 2 * n * 2**32 <= 2**62 (n <= 2**29)
    # 2**32 is even, so ties-to-even on t / n is ties-to-even on the whole mean.
    frac = round_half_even(t, n)
    return (q.astype(a.dtype) << a.dtype.type(32)) + frac.astype(a.dtype)


def _mode(a: np.ndarray, spec: Spec) -> np.ndarray:
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
    n_pad = (n_taps - np.broadcast_to(window_counts(a.shape, spec), out_shape)).reshape(-1)
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


def reduce_once(a: np.ndarray, spec: Spec) -> np.ndarray:
    """One level: ``a`` reduced over disjoint ``factor`` windows (partial at the edge or trimmed)."""
    if spec.edge == "trim":
        a = a[tuple(slice(0, (n // f) * f) for n, f in zip(a.shape, spec.factors))]
    out_shape = spec.shape_after(a.shape, 1)
    if a.size == 0 or 0 in out_shape:         # a Dask edge block that trimming emptied
        return np.empty(out_shape, dtype=a.dtype)
    if a.dtype == np.bool_:
        # Kernels know numbers: pool the 0/1 bytes and view the result as bool again.
        return reduce_once(a.view(np.uint8), spec).view(np.bool_)
    if spec.method == "nearest":
        return np.ascontiguousarray(a[tuple(slice(None, None, f) for f in spec.factors)])
    if spec.method == "mode":
        return _mode(a, spec)
    if spec.method == "max":
        from ..functional import max_pool

        return max_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)
    if spec.method == "min":
        from ..functional import min_pool

        return min_pool(a, spec.kernel, ceil_mode=True, axes=spec.axes)
    if a.dtype.kind in "iu":
        return _integer_mean(a, spec)
    from ..functional import avg_pool

    return avg_pool(a, spec.kernel, ceil_mode=True, count_include_pad=False, axes=spec.axes)


def reduce_levels(block: np.ndarray, steps: Sequence[Spec], threads: int = 1) -> Tuple[np.ndarray, ...]:
    """Successive levels of one block: ``steps[0]`` applied to ``block``, ``steps[1]`` to that, ...

    Parameters
    ----------
    block : ndarray
        The whole level (in memory) or a block of it whose start along every axis is a
        multiple of the product of the factors of ``steps`` (so its edge windows are the array's).
    steps : sequence of Spec
        One per level to compute (the factors, method and edge of that level).
    threads : int
        Threads the kernels may use (1 inside Dask and region tasks: they supply the parallelism).

    Returns
    -------
    tuple of ndarray
        ``len(steps)`` levels, in order, each in ``block``'s dtype.
    """
    from ..core.threads import threads as _threads

    out = []
    with _threads(threads):
        for step in steps:
            block = reduce_once(block, step)
            out.append(block)
    return tuple(out)
