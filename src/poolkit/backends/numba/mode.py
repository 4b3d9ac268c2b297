"""Numba kernels of mode pooling: the most frequent value of each window, ties to the smallest.

They work on unsigned views of bool and integer data (the same width): equality does not
care about the sign, and order comes from keys ``v ^ bias``, ``bias`` being the sign bit for
signed dtypes (it maps their order onto the unsigned one) and 0 otherwise.

:func:`mode_of` is the mode of a few values (counting for small windows, an in-place sort
beyond :data:`SMALL_MODE`); the pyramid kernels (:mod:`.pyramid`) share it and the 2x2 and
2x2x2 shortcuts :func:`_mode4` and :func:`_mode8`.  :data:`forward` is the general-window kernel of
:func:`poolkit.backends.mode.numba` (any kernel, stride, padding, dilation, ceil_mode,
masks), over output rows ``(b, od, oh)``, reading windows from a plan's table like
:mod:`.kernels`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .jit import kernel

__all__ = ["SMALL_MODE", "mode_of", "forward"]

#: Windows of at most this many elements find their mode by counting (about n**2 / 2
#: compares, with an early exit); larger ones sort their keys in place and scan the runs.
SMALL_MODE = 16


@njit(inline="always")
def _smaller(a, b, bias):
    # the smaller of a and b in the order of the keys v ^ bias
    return a if (a ^ bias) <= (b ^ bias) else b


@njit(inline="always")
def _mode4(a, b, c, d, bias):
    # Among four values an equal pair is the mode, or ties with the other pair (then the smaller).
    if a == b:
        return _smaller(a, c, bias) if c == d else a
    if a == c:
        return _smaller(a, b, bias) if b == d else a
    if a == d:
        return _smaller(a, b, bias) if b == c else a
    if b == c or b == d:
        return b
    if c == d:
        return c
    return _smaller(_smaller(a, b, bias), _smaller(c, d, bias), bias)


@njit(inline="always")
def _count8(v, x0, x1, x2, x3, x4, x5, x6, x7):
    return (np.int32(v == x0) + np.int32(v == x1) + np.int32(v == x2) + np.int32(v == x3)
            + np.int32(v == x4) + np.int32(v == x5) + np.int32(v == x6) + np.int32(v == x7))


@njit(inline="always")
def _pick(bv, bc, v, c, bias):
    # (v, c) replaces the best (bv, bc) when more frequent, or as frequent and smaller
    take = (c > bc) | ((c == bc) & ((v ^ bias) < (bv ^ bias)))
    return (v if take else bv), (c if take else bc)


@njit(inline="always")
def _mode8(x0, x1, x2, x3, x4, x5, x6, x7, bias):
    # Mode of eight values (a 2x2x2 window) without branches: every value's count, then the
    # most frequent, the smallest among equals (2-3x the counting loop's speed, which
    # mispredicts on mixed windows).
    bv, bc = x0, _count8(x0, x0, x1, x2, x3, x4, x5, x6, x7)
    bv, bc = _pick(bv, bc, x1, _count8(x1, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x2, _count8(x2, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x3, _count8(x3, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x4, _count8(x4, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x5, _count8(x5, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x6, _count8(x6, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    bv, bc = _pick(bv, bc, x7, _count8(x7, x0, x1, x2, x3, x4, x5, x6, x7), bias)
    return bv


@njit(inline="always")
def _mode_count(wb, n, bias):
    # Mode of wb[:n] by counting: a value's count is taken at its first occurrence (later
    # copies count fewer and never win); stop once no later-first value can reach the best.
    best = wb[0]
    top = 0
    for i in range(n):
        v = wb[i]
        c = 1
        for j in range(i + 1, n):
            c += wb[j] == v
        if c > top or (c == top and (v ^ bias) < (best ^ bias)):
            best = v
            top = c
        if top > min(n - top, n - 1 - i):
            break
    return best


@njit(inline="always")
def _mode_sort(wb, n, bias):
    # Mode of wb[:n] by sorting its keys in place: the first longest run is the smallest value.
    for i in range(n):
        wb[i] ^= bias
    w = wb[:n]
    w.sort()
    best = w[0]
    top = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and w[j] == w[i]:
            j += 1
        if j - i > top:
            top = j - i
            best = w[i]
        i = j
    return best ^ bias


@njit(inline="always")
def mode_of(wb, n, bias):
    """The most frequent of ``wb[:n]`` (n >= 1), ties to the smallest key ``v ^ bias``; may reorder ``wb``."""
    if n <= SMALL_MODE:
        return _mode_count(wb, n, bias)
    return _mode_sort(wb, n, bias)


@kernel
def forward(lo, hi, x, out, tab, skip, has_skip, bias, empty):
    """Mode of each window of output rows ``[lo, hi)`` (``(b, od, oh)``, row-major).

    ``x`` and ``out`` are unsigned views (B, D, H, W, C) and (B, OD, OH, OW, C); ``tab`` the
    plan's window table (start, lo, hi, padded count, step per axis). Taps outside the input
    (padding) and elements where ``skip`` is True (when ``has_skip``) are left out; a window
    with none left gets ``empty``.
    """
    C = x.shape[4]
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
    nwin = 1
    for a in range(3):
        top = 0
        for o in range(out.shape[a + 1]):
            top = max(top, tab[a, 2, o] - tab[a, 1, o])
        nwin *= max(top, 1)
    wb = np.empty(nwin, dtype=x.dtype)
    for r in range(lo, hi):
        b = r // (OD * OH)
        od = (r // OH) % OD
        oh = r % OH
        d0, dlo, dhi = tab[0, 0, od], tab[0, 1, od], tab[0, 2, od]
        h0, hlo, hhi = tab[1, 0, oh], tab[1, 1, oh], tab[1, 2, oh]
        for ow in range(OW):
            w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
            for c in range(C):
                n = 0
                for jd in range(dlo, dhi):
                    pd = d0 + jd * sd
                    for jh in range(hlo, hhi):
                        ph = h0 + jh * sh
                        for jw in range(wlo, whi):
                            pw = w0 + jw * sw
                            if has_skip and skip[b, pd, ph, pw, c]:
                                continue
                            wb[n] = x[b, pd, ph, pw, c]
                            n += 1
                out[b, od, oh, ow, c] = mode_of(wb, n, bias) if n > 0 else empty
