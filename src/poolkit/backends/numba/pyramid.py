"""Numba kernels of the pyramid: ``k`` levels of one block in one traversal of its input.

The block is canonical: ``x`` is ``(B, D, H, W, C)``, C-contiguous, the pooled axes D, H, W
(1 where fewer are pooled), the windows disjoint (kernel == stride == factor, per level and
axis) and cut short at the end of an axis (partial windows) or not there at all (trimmed
levels are simply shorter).  All levels go into one flat output buffer ``buf``; the geometry
table ``geo`` (int64, ``(L + 1, 9)``) gives per level ``l`` its ``D, H, W``, its offset in
``buf`` and the factors ``fd, fh, fw`` that make it from level ``l - 1`` (level 0 is ``x``), then ``VD, VH``:
the level's rows as the traversal sees them (at least ``D, H``, and enough that every row of
the level below lies under one: a trimmed level lacks rows of the one below).

Work items are the *top rows* ``(b, od, oh)`` of the last level ``L`` (``VD x VH`` of them).  Each item walks the
tree of rows below it in post-order: a row of level ``l`` is computed as soon as the ``fd * fh``
rows of level ``l - 1`` under it are done, reading them back while they are still in cache.
So every input element is read once, every level's row is read once more by the level above,
and the scratch is a few rows per thread.  Every output is written by one work item, so
results never depend on the thread count.

Reductions (a compile-time constant ``OP`` per kernel):

Integers run on unsigned views of their width (one compiled kernel per width, not per
dtype): ``bias`` is their sign bit for signed dtypes, else 0. XORing it in maps the signed
order onto the unsigned one, and adds ``2**(b-1)`` to every value modulo ``2**b``.

``MEAN``
    (u)int8/16/32: window sums of ``v ^ bias`` in an accumulator row of the narrowest exact
    unsigned type (``acc``'s dtype, chosen by the caller), divided by the window's count of
    valid elements and rounded half to even, in the kernel, then ``^ bias`` again: the mean
    of the shifted values is the mean shifted by ``2**(b-1)``, an even integer, so the
    rounding (ties to even) is the same.
``MEAN64``
    64-bit integers, on int64 views: each element splits into ``hi * 2**32 + lo``, whose
    sums are exact in int64; the mean is put together exactly (see :func:`_mean64`).
``FMEAN``
    floats: taps added in scan order from 0 in the input's precision, then divided by the
    count -- the bits of ``avg_pool(..., count_include_pad=False)``.
``MAX``, ``MIN``
    floats: the first tap, replaced by a later one that is greater (smaller) or NaN:
    ``max_pool``'s bits. ``MAXK``, ``MINK``: integers, compared as the keys ``v ^ bias``.
``MODE``
    the most frequent value, ties to the smallest key ``v ^ bias``.

Fast paths, picked per row at run time: ``C == 1`` and full windows two wide along W over
one, two or four rows (the 1x2, 2x2 and 2x2x2 windows of factor-2 pyramids) run as
straight-line code; a 2x2 mode uses that among four values any equal pair is the mode or
ties for it, a 2x2x2 mode counts every value's copies without a branch and keeps the most
frequent (the smallest among equals).
"""
from __future__ import annotations

import types as pytypes

import numpy as np
from numba import njit

from .jit import kernel
from .mode import _mode4, _mode8, _smaller, mode_of

U = np.uint64

__all__ = ["MEAN", "MEAN64", "FMEAN", "MAX", "MIN", "MAXK", "MINK", "MODE", "KERNELS"]

MEAN, MEAN64, FMEAN, MAX, MIN, MAXK, MINK, MODE = range(8)

# --------------------------------------------------------------------------- #
# exact integer division, rounded half to even
# --------------------------------------------------------------------------- #
@njit(inline="always")
def _rdiv_pow2(s, k):
    # s / 2**k (k >= 1), nearest, ties to even, for int64 s of either sign (>> floors):
    # with s = q * 2**k + r, adding 2**(k-1) - 1 + (q & 1) carries into q exactly when
    # r > 2**(k-1), or r == 2**(k-1) and q is odd.
    return (s + ((1 << (k - 1)) - 1) + ((s >> k) & 1)) >> k


@njit(inline="always")
def _rdiv(s, n, use_float):
    # s / n (int64, n >= 1), nearest, ties to even, exactly.
    if use_float:
        # |s| < 2**52: the float64 quotient is within 2**-53 relative of s / n, ties k + 1/2
        # are exact, and any other quotient lies >= 1/(2n) from one: rint rounds it as the
        # integers would (the argument of multiscale.reduce.round_half_even).
        return np.int64(np.rint(np.float64(s) / np.float64(n)))
    q = s // n                       # floor, also for negative s
    twice_r = 2 * (s - q * n)        # 0 <= r < n
    return q + np.int64((twice_r > n) or (twice_r == n and (q & 1) == 1))


@njit(inline="always")
def _mean64(hi, lo, n):
    # The exact mean of n 64-bit integers x = hi * 2**32 + lo (hi: the signed or unsigned top
    # half, lo: the low 32 bits), from sum(hi) and sum(lo), both exact in int64 (n <= 2**29).
    # mean = q * 2**32 + (r * 2**32 + sum(lo)) / n with q, r = divmod(sum(hi), n); 2**32 is
    # even, so rounding the second term half to even rounds the whole mean so. The sum
    # q * 2**32 + f may wrap in int64; the true mean fits, so the wrapped bits are its bits.
    q = hi // n
    r = hi - q * n
    t = r * 4294967296 + lo          # 0 <= t < 2 * n * 2**32 <= 2**62
    return (q << 32) + _rdiv(t, n, False)


# --------------------------------------------------------------------------- #
# one output row, per reduction (each its own compiled function: a kernel holds only its own)
# --------------------------------------------------------------------------- #
# Every row function: output row ``dst[d0 : d0 + W * C]`` from the ``R`` source rows starting
# at ``src[rows[r]]``; window ``ow`` covers source columns ``[ow * fw, min((ow + 1) * fw, Ws))``
# of each row (``Ws`` columns of ``C`` channels); taps are visited in scan order (rows in
# order, then columns). ``acc`` and ``wb`` are scratch (an accumulator row, one window's
# values), ``tmp`` one element of ``dst``'s dtype for conversions.

@njit(inline="always")
def _full(R, Ws, W, C, fw):
    # Windows of the fast paths at the start of the row (C == 1, two wide over 1, 2 or 4 rows).
    if C == 1 and fw == 2 and (R == 1 or R == 2 or R == 4):
        return min(W, Ws // 2)
    return 0


# Rows are read at unsigned (np.uint64) offsets into the flat source: no negative-index
# wraparound in the loops, so LLVM vectorises the straight ones (40x for uint8 2x2 means).
# The row functions are compiled on their own, not inlined into the traversal: inlined, LLVM
# vectorised them less (uint8 2x2 means 2.7x, modes 5x slower, measured).

@njit(inline="always")
def _fast_rows(rows, R):
    # where the R (1, 2 or 4) source rows of the fast paths start (the first repeated if fewer)
    a = U(rows[0])
    b = U(rows[1]) if R > 1 else a
    c = U(rows[2]) if R > 2 else a
    d = U(rows[3]) if R > 2 else a
    return a, b, c, d


@njit
def _row_mean(src, rows, R, Ws, W, C, fw, dst, d0, acc, wb, bias, use_float, signed, tmp):
    # unsigned views; signed data has its sign bit flipped on the way in and out (see MEAN)
    start = _full(R, Ws, W, C, fw)
    if start:
        a, b, c, d = _fast_rows(rows, R)
        o = U(d0)
        if R == 1:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = _rdiv_pow2(np.int64(src[a + i] ^ bias) + np.int64(src[a + i + U(1)] ^ bias), 1) ^ bias
        elif R == 2:
            for ow in range(U(start)):
                i = U(2) * ow
                s = (np.int64(src[a + i] ^ bias) + np.int64(src[a + i + U(1)] ^ bias)
                     + np.int64(src[b + i] ^ bias) + np.int64(src[b + i + U(1)] ^ bias))
                dst[o + ow] = _rdiv_pow2(s, 2) ^ bias
        else:
            for ow in range(U(start)):
                i = U(2) * ow
                s = (np.int64(src[a + i] ^ bias) + np.int64(src[a + i + U(1)] ^ bias)
                     + np.int64(src[b + i] ^ bias) + np.int64(src[b + i + U(1)] ^ bias)
                     + np.int64(src[c + i] ^ bias) + np.int64(src[c + i + U(1)] ^ bias)
                     + np.int64(src[d + i] ^ bias) + np.int64(src[d + i + U(1)] ^ bias))
                dst[o + ow] = _rdiv_pow2(s, 3) ^ bias
    if start == W:
        return
    # the general windows: sums in the accumulator row (its narrow type is exact for them)
    n = (W - start) * C
    ac = acc[:n]
    ac[:] = 0
    for r in range(R):
        a = src[rows[r] + start * fw * C: rows[r] + Ws * C]
        for t in range(W - start):
            for j in range(min(fw, Ws - (start + t) * fw)):
                p = U((t * fw + j) * C)
                q = U(t * C)
                for k in range(U(C)):
                    ac[q + k] += a[p + k] ^ bias
    o = dst[d0 + start * C: d0 + W * C]
    for t in range(W - start):
        cnt = R * min(fw, Ws - (start + t) * fw)
        q = U(t * C)
        for k in range(U(C)):
            o[q + k] = _rdiv(np.int64(ac[q + k]), cnt, use_float) ^ bias


@njit
def _row_mean64(src, rows, R, Ws, W, C, fw, dst, d0, acc, wb, bias, use_float, signed, tmp):
    # int64 views of 64-bit integers: hi and lo halves summed apart (acc: hi sums, then lo sums)
    n = W * C
    hs = acc[:n]
    ls = acc[n: 2 * n]
    hs[:] = 0
    ls[:] = 0
    for r in range(R):
        a = src[rows[r]: rows[r] + Ws * C]
        for t in range(W):
            for j in range(min(fw, Ws - t * fw)):
                p = U((t * fw + j) * C)
                q = U(t * C)
                for k in range(U(C)):
                    v = a[p + k]
                    hs[q + k] += (v >> 32) if signed else ((v >> 32) & 4294967295)
                    ls[q + k] += v & 4294967295
    o = dst[d0: d0 + n]
    for t in range(W):
        cnt = R * min(fw, Ws - t * fw)
        q = U(t * C)
        for k in range(U(C)):
            o[q + k] = _mean64(hs[q + k], ls[q + k], cnt)


@njit
def _row_fmean(src, rows, R, Ws, W, C, fw, dst, d0, acc, wb, bias, use_float, signed, tmp):
    # floats: add from 0 in scan order, then divide by the count (avg_pool's bits)
    tmp[0] = 0
    zero = tmp[0]
    start = _full(R, Ws, W, C, fw)
    if start:
        tmp[0] = 2 * R
        dv = tmp[0]
        a, b, c, d = _fast_rows(rows, R)
        o = U(d0)
        if R == 1:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = (zero + src[a + i] + src[a + i + U(1)]) / dv
        elif R == 2:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = (zero + src[a + i] + src[a + i + U(1)] + src[b + i] + src[b + i + U(1)]) / dv
        else:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = (zero + src[a + i] + src[a + i + U(1)] + src[b + i] + src[b + i + U(1)]
                         + src[c + i] + src[c + i + U(1)] + src[d + i] + src[d + i + U(1)]) / dv
    if start == W:
        return
    n = (W - start) * C
    ac = acc[:n]
    ac[:] = zero
    for r in range(R):
        a = src[rows[r] + start * fw * C: rows[r] + Ws * C]
        for t in range(W - start):
            for j in range(min(fw, Ws - (start + t) * fw)):
                p = U((t * fw + j) * C)
                q = U(t * C)
                for k in range(U(C)):
                    ac[q + k] += a[p + k]
    o = dst[d0 + start * C: d0 + W * C]
    for t in range(W - start):
        tmp[0] = R * min(fw, Ws - (start + t) * fw)
        dv = tmp[0]
        q = U(t * C)
        for k in range(U(C)):
            o[q + k] = ac[q + k] / dv


def _make_row_extreme(IS_MIN, KEYED):
    @njit
    def row_extreme(src, rows, R, Ws, W, C, fw, dst, d0, acc, wb, bias, use_float, signed, tmp):
        # The first tap, then any later one that is greater (smaller) or NaN: max_pool's rule.
        # KEYED: integers on unsigned views, compared as the keys v ^ bias.
        n = W * C
        ac = acc[:n]
        for r in range(R):
            a = src[rows[r]: rows[r] + Ws * C]
            for t in range(W):
                for j in range(min(fw, Ws - t * fw)):
                    p = U((t * fw + j) * C)
                    q = U(t * C)
                    for k in range(U(C)):
                        v = a[p + k]
                        if r == 0 and j == 0:
                            ac[q + k] = v
                        else:
                            m = ac[q + k]
                            if KEYED:
                                better = ((v ^ bias) < (m ^ bias)) if IS_MIN else ((v ^ bias) > (m ^ bias))
                            else:
                                better = ((v < m) if IS_MIN else (v > m)) or v != v
                            ac[q + k] = v if better else m
        dst[d0: d0 + n] = ac
    return row_extreme


_row_max, _row_min = _make_row_extreme(False, False), _make_row_extreme(True, False)
_row_maxk, _row_mink = _make_row_extreme(False, True), _make_row_extreme(True, True)


@njit
def _row_mode(src, rows, R, Ws, W, C, fw, dst, d0, acc, wb, bias, use_float, signed, tmp):
    start = _full(R, Ws, W, C, fw)
    if start:
        a, b, c, d = _fast_rows(rows, R)
        o = U(d0)
        if R == 1:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = _smaller(src[a + i], src[a + i + U(1)], bias)            # of two values: the smaller
        elif R == 2:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = _mode4(src[a + i], src[a + i + U(1)], src[b + i], src[b + i + U(1)], bias)
        else:
            for ow in range(U(start)):
                i = U(2) * ow
                dst[o + ow] = _mode8(src[a + i], src[a + i + U(1)], src[b + i], src[b + i + U(1)], src[c + i], src[c + i + U(1)], src[d + i], src[d + i + U(1)], bias)
    for ow in range(start, W):
        nw = min(fw, Ws - ow * fw)
        for k in range(C):
            n = 0
            for r in range(R):
                p = rows[r] + ow * fw * C + k
                for j in range(nw):
                    wb[n] = src[p + j * C]
                    n += 1
            dst[d0 + ow * C + k] = mode_of(wb, n, bias)


@njit(inline="always")
def _window_rows(geo, l, b, d, h, C, rows, soff):
    # The source rows of row (b, d, h) of level l (in rows[:R]; offsets from ``soff``), R, and
    # where the output row starts.
    Ds, Hs, Ws = geo[l - 1, 0], geo[l - 1, 1], geo[l - 1, 2]
    D, H, W, off, fd, fh = geo[l, 0], geo[l, 1], geo[l, 2], geo[l, 3], geo[l, 4], geo[l, 5]
    nd = min(fd, Ds - d * fd)
    nh = min(fh, Hs - h * fh)
    base = soff + ((b * Ds + d * fd) * Hs + h * fh) * Ws * C
    R = 0
    for i in range(nd):
        for j in range(nh):
            rows[R] = base + (i * Hs + j) * Ws * C
            R += 1
    return R, off + ((b * D + d) * H + h) * W * C


_ROWS = {MEAN: _row_mean, MEAN64: _row_mean64, FMEAN: _row_fmean, MAX: _row_max, MIN: _row_min,
         MAXK: _row_maxk, MINK: _row_mink, MODE: _row_mode}


def _make(OP):
    # The row function is a global of the kernel (one per OP; see _ROWS), not a closure cell:
    # the kernel's name and disk-cache key come from its cells (OP alone, below).
    proto = _levels_template(OP)
    scope = dict(proto.__globals__, _row=_ROWS[OP])
    fn = pytypes.FunctionType(proto.__code__, scope, proto.__name__, None, proto.__closure__)
    fn.__qualname__ = proto.__qualname__
    fn.__doc__ = proto.__doc__
    return kernel(fn)


def _levels_template(OP):
    def levels(lo, hi, x, buf, geo, L, B, C, acc_proto, bias, use_float, signed):
        """Levels ``1..L`` of the top rows ``[lo, hi)`` (``(b, od, oh)`` of level ``L``, row-major)."""
        nrows, nacc, nwin = 1, 1, 1
        for l in range(1, L + 1):
            nrows = max(nrows, geo[l, 4] * geo[l, 5])
            nacc = max(nacc, geo[l, 2] * C)
            nwin = max(nwin, geo[l, 4] * geo[l, 5] * geo[l, 6])
        rows = np.empty(nrows, dtype=np.int64)
        acc = np.empty(2 * nacc if OP == MEAN64 else nacc, dtype=acc_proto.dtype)
        wb = np.empty(nwin if OP == MODE else 1, dtype=x.dtype)      # one window's values: modes only
        tmp = np.empty(1, dtype=buf.dtype)
        cd = np.empty(L + 1, dtype=np.int64)
        ch = np.empty(L + 1, dtype=np.int64)
        child = np.zeros(L + 1, dtype=np.int64)
        DL, HL = geo[L, 7], geo[L, 8]
        for item in range(lo, hi):
            cd[L] = (item // HL) % DL
            ch[L] = item % HL
            child[L] = 0
            b = item // (DL * HL)
            l = L
            while True:
                fd, fh = geo[l, 4], geo[l, 5]
                if l > 1 and child[l] < fd * fh:
                    # descend into the next row of level l - 1 under this one, if it exists
                    dd = cd[l] * fd + child[l] // fh
                    hh = ch[l] * fh + child[l] % fh
                    child[l] += 1
                    if dd < geo[l - 1, 7] and hh < geo[l - 1, 8]:
                        l -= 1
                        cd[l] = dd
                        ch[l] = hh
                        child[l] = 0
                    continue
                # every row under (cd[l], ch[l]) is done: make it, from x (level 1) or buf, unless
                # the level (trimmed) has no such row
                if cd[l] >= geo[l, 0] or ch[l] >= geo[l, 1]:
                    if l == L:
                        break
                    l += 1
                    continue
                R, d0 = _window_rows(geo, l, b, cd[l], ch[l], C, rows, 0 if l == 1 else geo[l - 1, 3])
                if l == 1:        # two calls: x may be read-only, a type of its own
                    _row(x, rows, R, geo[0, 2], geo[1, 2], C, geo[1, 6], buf, d0, acc, wb, bias, use_float,
                         signed, tmp)
                else:
                    _row(buf, rows, R, geo[l - 1, 2], geo[l, 2], C, geo[l, 6], buf, d0, acc, wb, bias,
                         use_float, signed, tmp)
                if l == L:
                    break
                l += 1

    return levels


KERNELS = {op: _make(op) for op in _ROWS}
