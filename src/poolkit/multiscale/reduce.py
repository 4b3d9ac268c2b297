"""Pyramid levels of one in-memory block: the reductions ``pyramid()`` runs, on NumPy arrays.

:func:`reduce_levels` is the interface the pyramid engines call (in memory, per Dask task,
per region task): it computes ``k`` successive levels of one block, each from the previous one.
A block is either the whole array or a piece of it whose start is a multiple of every factor of
its levels, so windows cut by the block's end are the array's own edge windows.

Two paths give the same bits:

* the compiled one (:mod:`poolkit.backends.numba.pyramid`): consecutive levels of one method
  in one pass over the block, each input element read once, every level written straight into
  one output buffer (the levels are views of it); the scratch is a few rows per thread. Used
  for bool, integers up to 64 bits, float32 and float64, with at most three pooled axes.
* the NumPy one (:func:`reduce_once`, level by level; whole-array NumPy and the pooling
  functions), which serves "nearest" (a strided copy), other dtypes, and every call whose
  kernel is not compiled yet (the "auto" backend's policy: the kernel compiles in the
  background meanwhile), in slabs of :data:`SLAB_BYTES` of input.
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
    from ..backends.mode import longest_runs

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
        result[start:stop] = longest_runs(np.sort(rows[start:stop], axis=1), n_pad[start:stop])
    return result.reshape(out_shape)


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


# --------------------------------------------------------------------------- #
# several levels per pass: the compiled kernels (backends/numba/pyramid.py)
# --------------------------------------------------------------------------- #
#: Input bytes of one slab of the NumPy path (kernels not compiled yet): bounds its scratch.
SLAB_BYTES = 4 * 2**20


def _native_kind(dtype: np.dtype) -> bool:
    # dtypes the kernels take: bool, native integers up to 64 bits, float32 and float64
    return dtype.isnative and (dtype.kind in "biu" or dtype in (np.float32, np.float64))


def _fusable(a: np.ndarray, method: str) -> bool:
    return method != "nearest" and _native_kind(a.dtype) and a.size > 0


def _groups(steps: Sequence[Spec]) -> List[List[Spec]]:
    """Consecutive steps of one method, at most three pooled axes among them: one pass each."""
    groups: List[List[Spec]] = []
    for s in steps:
        if groups and groups[-1][0].method == s.method and \
                len(set(groups[-1][0].axes).union(*(g.axes for g in groups[-1]), s.axes)) <= 3:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def _accumulator(dtype: np.dtype, n: int) -> np.dtype:
    """The narrowest unsigned type that holds the sum of any ``n`` values of ``dtype`` exactly.

    The kernels sum unsigned views (signed values with their sign bit flipped: ``v + 2**(b-1)``,
    in ``[0, 2**b)``), so the bound is ``(2**b - 1) * n`` for either signedness.
    """
    top = 2 ** (8 * np.dtype(dtype).itemsize) - 1
    for acc in (np.uint16, np.uint32, np.uint64):
        if np.iinfo(acc).bits > 8 * np.dtype(dtype).itemsize and top * n <= np.iinfo(acc).max:
            return np.dtype(acc)
    return np.dtype(np.uint64)                     # unreachable below 64-bit data: n <= 2**29


def _use_float(dtype: np.dtype, n: int) -> bool:
    """May sums of ``n`` values of ``dtype`` (as the kernels sum them, unsigned) be divided in
    float64 (sum < 2**52, see round_half_even)?"""
    return (2 ** (8 * np.dtype(dtype).itemsize) - 1) * n < 2**52


def _stages(shapes: List[Tuple[int, ...]], b: int, threads: int) -> List[Tuple[int, int]]:
    """Cut levels ``1..L`` into passes ``(first, last)``: one pass, unless threads want more work items.

    A pass's work items are the rows of its last level; with several threads a pass stops
    at the deepest level that still has 4 rows per thread (the levels after it are small
    and take the next pass, from that level).
    """
    L = len(shapes) - 1
    if threads <= 1:
        return [(1, L)]
    out, first = [], 1
    while first <= L:
        last = first
        while last < L and b * shapes[last + 1][0] * shapes[last + 1][1] >= 4 * threads:
            last += 1
        if last == first and b * shapes[first][0] * shapes[first][1] < 4 * threads:
            last = L                               # the rest is small: one pass for all of it
        out.append((first, last))
        first = last + 1
    return out


def _kernel_pass(x5: np.ndarray, shapes, factors, op: int, acc, bias, use_float: bool, signed: bool,
                 threads: int) -> List[np.ndarray]:
    """Levels ``shapes[1:]`` (canonical ``(D, H, W)`` each) of ``x5`` (B, D, H, W, C) by one kernel call."""
    from ..backends.numba import loops as _loops
    from ..backends.numba.pyramid import KERNELS

    B, C = x5.shape[0], x5.shape[4]
    L = len(shapes) - 1
    geo = np.zeros((L + 1, 9), dtype=np.int64)
    off = 0
    for l, (s, f) in enumerate(zip(shapes, factors)):
        geo[l, :3] = s
        geo[l, 4:7] = f
        # rows as the traversal sees them: every row of the level below under one of them
        geo[l, 7:] = s[:2] if l == 0 else np.maximum(s[:2], -(-geo[l - 1, 7:] // np.array(f[:2])))
        if l:
            geo[l, 3] = off
            off += B * s[0] * s[1] * s[2] * C
    buf = np.empty(off, dtype=x5.dtype)
    items = B * int(geo[L, 7]) * int(geo[L, 8])
    nchunks = threads if x5.size >= _loops.PARALLEL_MIN_ELEMENTS else 1
    KERNELS[op](items, nchunks, x5.reshape(-1), buf, geo, L, B, C, np.zeros(1, dtype=acc), bias, use_float, signed)
    return [buf[geo[l, 3]: geo[l, 3] + B * s[0] * s[1] * s[2] * C].reshape((B,) + tuple(s) + (C,))
            for l, s in enumerate(shapes) if l]


def _canonical_levels(x5: np.ndarray, shapes, factors, method: str, threads: int) -> List[np.ndarray]:
    """All levels of canonical ``x5`` by the kernels (raises NotCompiled when one is not ready)."""
    from ..backends.numba import pyramid as P

    dtype = x5.dtype
    signed = dtype.kind == "i"
    use_float = True
    acc = dtype
    bias = np.int64(0)
    if dtype.kind in "iu" and not (method == "mean" and dtype.itemsize == 8):
        # integers on unsigned views, the sign bit of signed ones flipped where it matters (see P)
        u = np.dtype(f"u{dtype.itemsize}")
        bias = u.type(1 << (8 * dtype.itemsize - 1)) if signed else u.type(0)
        x5 = x5.view(u)
    if method == "mode":
        op, acc = P.MODE, x5.dtype
    elif method in ("max", "min"):
        op = (P.MAX if method == "max" else P.MIN) if dtype.kind == "f" else (P.MAXK if method == "max" else P.MINK)
        acc = x5.dtype
    elif dtype.kind == "f":
        op = P.FMEAN
    elif dtype.itemsize == 8:
        x5, op, acc = x5.view(np.int64), P.MEAN64, np.dtype(np.int64)
    else:
        n = max(int(np.prod(f)) for f in factors[1:])
        acc = _accumulator(dtype, n)
        use_float = _use_float(dtype, n)
        op = P.MEAN
    out: List[np.ndarray] = []
    cur = x5
    for first, last in _stages(list(shapes), x5.shape[0], threads):
        lv = _kernel_pass(cur, list(shapes[first - 1: last + 1]), list(factors[first - 1: last + 1]), op, acc,
                          bias, use_float, signed, threads)
        out += lv
        cur = lv[-1]
    return [o.view(dtype) for o in out]


def _numpy_levels(a: np.ndarray, group: Sequence[Spec]) -> List[np.ndarray]:
    """The same levels by the NumPy path (one level at a time, in slabs of ~``SLAB_BYTES``)."""
    out = []
    for spec in group:
        shape = spec.shape_after(a.shape, 1)
        ax = next((i for i, n in enumerate(a.shape) if n > 1), 0)
        f = spec.factors[ax]
        unit = f * int(np.prod(a.shape[ax + 1:])) * a.itemsize
        step = f * max(1, SLAB_BYTES // max(unit, 1))
        if a.size == 0 or step >= a.shape[ax] or 0 in shape:
            res = reduce_once(a, spec)
        else:
            res = np.empty(shape, dtype=a.dtype)
            for i0 in range(0, shape[ax] * f, step):
                sl = [slice(None)] * a.ndim
                sl[ax] = slice(i0, min(i0 + step, a.shape[ax]))
                piece = reduce_once(a[tuple(sl)], spec)
                sl[ax] = slice(i0 // f, i0 // f + piece.shape[ax])
                res[tuple(sl)] = piece
        out.append(res)
        a = res
    return out


def _group_levels(a: np.ndarray, group: Sequence[Spec], threads: int) -> List[np.ndarray]:
    """The levels of one group of steps (one method): one kernel pass, or the NumPy path."""
    from ..backends import get_backend
    from ..backends.numba import jit as _jit

    method = group[0].method
    shapes = [tuple(a.shape)]
    for spec in group:
        shapes.append(spec.shape_after(shapes[-1], 1))
    if not _fusable(a, method) or any(0 in s for s in shapes):
        return _numpy_levels(a, group)
    if a.dtype == np.bool_:
        return [o.view(np.bool_) for o in _group_levels(a.view(np.uint8), group, threads)]
    if not a.flags.c_contiguous:
        if a.flags.f_contiguous and (a.dtype.kind != "f" or method == "mode"):
            # The transpose is C-contiguous: pool it with the factors reversed, no copy (integer
            # results do not depend on the order of the taps; float sums and NaN bits do).
            rev = [Spec(s.factors[::-1], s.method, s.edge) for s in group]
            return [o.T for o in _group_levels(a.T, rev, threads)]
        a = np.ascontiguousarray(a)
    pooled = sorted(set().union(*(s.axes for s in group)))
    first, last = pooled[0], pooled[-1]
    between = [i for i in range(first, last) if i not in pooled]
    if any(a.shape[i] > 1 for i in between):
        # Unpooled axes between pooled ones: pool each of their planes (a contiguous copy each).
        keep = [i for i in range(a.ndim) if i not in between]
        sub = [Spec(tuple(s.factors[i] for i in keep), s.method, s.edge) for s in group]
        out = [np.empty(s, dtype=a.dtype) for s in shapes[1:]]
        for idx in np.ndindex(*(a.shape[i] for i in between)):
            at = [slice(None)] * a.ndim
            for i, j in zip(between, idx):
                at[i] = j
            for o, lv in zip(out, _group_levels(np.ascontiguousarray(a[tuple(at)]), sub, threads)):
                o[tuple(at)] = lv
        return out
    # canonical (B, D, H, W, C): the pooled axes (padded to three) between the merged others
    p3 = [None] * (3 - len(pooled)) + pooled
    B = int(np.prod(a.shape[:first]))
    C = int(np.prod(a.shape[last + 1:]))

    def dhw(shape):
        return tuple(1 if i is None else shape[i] for i in p3)

    cshapes = [dhw(s) for s in shapes]
    cfactors = [(1, 1, 1)] + [tuple(1 if i is None else s.factors[i] for i in p3) for s in group]
    x5 = a.reshape((B,) + cshapes[0] + (C,))
    served = get_backend("auto")
    try:
        levels = _jit.call(_canonical_levels, (x5, cshapes, cfactors, method, threads), served.wait)
    except _jit.NotCompiled:
        served.fallbacks += 1
        return _numpy_levels(a, group)
    return [lv.reshape(s) for lv, s in zip(levels, shapes[1:])]


def reduce_levels(block: np.ndarray, steps: Sequence[Spec], threads: int = 1) -> Tuple[np.ndarray, ...]:
    """Successive levels of one block: ``steps[0]`` applied to ``block``, ``steps[1]`` to that, ...

    Consecutive steps of one method are computed in one pass over ``block`` by a compiled
    kernel (:mod:`poolkit.backends.numba.pyramid`): each input element is read once, the
    levels are written straight into their arrays (for the levels of one pass, views of one
    buffer), and the scratch is a few rows per thread. The values are those of
    :func:`reduce_once` applied level by level, bit for bit: each level is the previous
    level's (rounded) values, pooled. While a kernel compiles (the first call in a process
    whose cache lacks it) the NumPy path serves the call, one level at a time in slabs of
    about ``SLAB_BYTES`` of input, with the same bits.

    The kernels read C-contiguous blocks. Others are copied first, except Fortran-ordered
    integer ones (pooled through their transpose: integer results do not depend on the
    order of the taps); unpooled axes between pooled ones (``(Z, C, Y, X)`` pooled on Z, Y,
    X) are pooled one plane of theirs at a time, each plane copied.

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

    Examples
    --------
    >>> import numpy as np
    >>> from poolkit.multiscale.reduce import reduce_levels
    >>> from poolkit.multiscale.spec import Spec
    >>> x = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> [a.tolist() for a in reduce_levels(x, [Spec((2, 2), "mean", "partial")] * 2)]
    [[[2, 4], [10, 12]], [[7]]]
    """
    from ..core.threads import threads as _threads

    out: List[np.ndarray] = []
    cur = block
    with _threads(threads):
        for group in _groups(steps):
            levels = _group_levels(cur, group, threads)
            out += levels
            cur = levels[-1]
    return tuple(out)
