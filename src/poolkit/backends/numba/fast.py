"""Specialised Numba kernels for channels-first data and the common strided windows.

The generic kernels (``_kernels``) read every window from tables: flexible, but
LLVM cannot vectorise them.  These kernels are compiled per window shape
``(KH, KW, SW)`` (see :data:`SPECIALISED`), so that the taps of a window are
straight-line code, and each plane splits into

* an *interior* (windows with every tap inside the input).  Its rows run in
  explicit vector blocks (:mod:`._simd`), forward and backward: wide and
  narrow ones, of a width fixed per dtype and CPU (on AVX2, 16 and 8 windows
  of float32, 8 and 4 of float64).  Forward, rows of fewer windows than a
  narrow block (float32 maps of 15 columns or less pooled 2x2) run as one
  *virtual* row per plane: with ``Wv = SH * W / SW``, window
  ``t`` of one plain loop starts at ``SW * t``, which is window
  ``(t // Wv, t % Wv)`` of the plane; the ``t % Wv >= OW`` ones are computed
  and thrown away, and the rest is copied to the output.  That loop is written
  for LLVM's loop vectoriser: unsigned (``np.uint64``) offsets from a slice, so
  no negative-index wraparound, and affine loads;
* a *border* of windows that touch the padding or run past the end, handled
  tap by tap from the plan's tables.

Semantics are the generic kernels', bit for bit, for max and average pooling:
taps are scanned in order (H, then W), a tap wins when it is the window's
first, greater, or NaN; sums add the taps in that order; backward adds
contributions in output order into rows zeroed just before their first use,
or, when the windows tile the input exactly, writes each element once.

Used when: ``C == 1`` (channels-first), the D axis only indexes planes
(kernel 1, stride 1, no padding), H and W have strided windows, W has
dilation 1, ``(KH, KW, SW)`` is specialised, and ``nan_policy="propagate"``.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple

import numpy as np
from numba import njit

from ...core import threads as _threads
from ...core.plan import Plan
from .jit import Kernel, kernel
from .kernels import takes_over
from .simd import AVG, MAX, MIN, NARROW, WIDE, block_width, grad_add_block, grad_tile_block, pool_block

U = np.uint64

# (KH, KW, SW): 2x2/2 and 3x3/2 are the classic CNN poolings, 3x3/1 the "same" pooling of
# Inception blocks, 2x2/1 the chapter's stride-1 example; KH == 1 covers 1-D pooling.
_PAIRS = ((2, 2), (3, 2), (3, 1), (2, 1), (3, 3), (4, 4))
SPECIALISED = tuple((kh, kw, sw) for kw, sw in _PAIRS for kh in (kw, 1))



@njit(inline="always")
def _max_run(xs, T, rs, vm, vk, KH, KW, SW, OP):
    # T windows, SW apart, rows rs apart, from xs[0]: max (min for OP == MIN) into vm, winning tap into vk.
    for t in range(U(T)):
        i = t * U(SW)
        m = xs[i]
        k = np.int32(0)                          # 32-bit: keeps vector lanes narrow
        for jh in range(KH):
            for jw in range(KW):
                v = xs[i + U(jh) * rs + U(jw)]
                c = takes_over(v, m, OP)                 # better, or NaN: PyTorch's rule
                m = v if c else m
                k = np.int32(jh * KW + jw) if c else k
        vm[t] = m
        vk[t] = k


@njit(inline="always")
def _sum_run(xs, T, rs, vm, dv, KH, KW, SW):
    for t in range(U(T)):
        i = t * U(SW)
        s = dv - dv                  # 0 in the data's dtype (dv is a finite divisor of that dtype)
        for jh in range(KH):
            for jw in range(KW):
                s += xs[i + U(jh) * rs + U(jw)]
        vm[t] = s / dv



@njit(inline="always")
def _run(xs, T, rs, vm, vk, dv, KH, KW, SW, OP):
    # OP is a compile-time constant: the other branch is never compiled into the kernel.
    if OP != AVG:
        _max_run(xs, T, rs, vm, vk, KH, KW, SW, OP)
    else:
        _sum_run(xs, T, rs, vm, dv, KH, KW, SW)


@njit(inline="always")
def _tile_grad_scalar(plane, gs, ks, r0, n, dv, zero, KH, KW, SW, OP):
    # The same for rows of fewer windows than a narrow block, element by element.
    for jh in range(KH):
        gr = plane[r0 + jh]
        for t in range(U(n)):
            gv = zero + gs[t] if OP == MAX else zero + gs[t] / dv
            i = t * U(SW)
            for jw in range(KW):
                if OP == MAX:
                    gr[i + U(jw)] = gv if ks[t] == jh * KW + jw else zero
                else:
                    gr[i + U(jw)] = gv


@njit(inline="always")
def _add_grad_row(g1, k1, o0, gx1, x0, rs, n, dv, KH, KW, SW, OP):
    # Backward of n >= narrow windows SW apart that may overlap, added in vector blocks from
    # the left. A last block moved back skips the windows already added (adding twice counts twice).
    wide, narrow = block_width(g1, WIDE), block_width(g1, NARROW)
    c = 0
    while n - c >= wide:
        grad_add_block(g1, k1, o0 + c, gx1, x0 + c * SW, rs, dv, 0, KH, KW, SW, WIDE, OP)
        c += wide
    while c < n:
        b = min(c, n - narrow)
        grad_add_block(g1, k1, o0 + b, gx1, x0 + b * SW, rs, dv, c - b, KH, KW, SW, NARROW, OP)
        c = b + narrow


@njit(inline="always")
def _compact_rows(src, dst, src2, dst2, row0, nrows, owa, owb, Wv):
    # Virtual row -> output rows row0.. of 2-D (rows, OW) arrays (one plane, or several planes
    # viewed as one): row r of the interior is src[r*Wv : r*Wv + ncol]. Two arrays share the
    # loop (values and offsets).
    n = U(owb - owa)
    for r in range(nrows):
        s = U(r) * U(Wv)
        row = dst[row0 + r, owa:owb]
        row2 = dst2[row0 + r, owa:owb]
        for c in range(n):
            row[c] = src[s + c]
            row2[c] = src2[s + c]


@njit(inline="always")
def _max_window(xp, th, tw, oh, ow, DH, sentinel, lowest, KW, OP):
    # One border window, tap by tap: (max, offset) with the generic kernels' rule (min for OP == MIN,
    # where ``lowest`` is the top of the dtype).
    m = lowest
    k = sentinel
    for jh in range(th[1, oh], th[2, oh]):
        ph = th[0, oh] + jh * DH
        for jw in range(tw[1, ow], tw[2, ow]):
            v = xp[ph, tw[0, ow] + jw]
            if k == sentinel or takes_over(v, m, OP):
                m = v
                k = jh * KW + jw
    return m, k


@njit(inline="always")
def _mean_window(xp, th, tw, oh, ow, DH, divisor, zero):
    # One border window: sum in scan order, then divide; a window wholly in padding gives 0.
    s = zero
    for jh in range(th[1, oh], th[2, oh]):
        ph = th[0, oh] + jh * DH
        for jw in range(tw[1, ow], tw[2, ow]):
            s += xp[ph, tw[0, ow] + jw]
    if th[2, oh] > th[1, oh] and tw[2, ow] > tw[1, ow]:
        s = s / divisor[oh, ow]
    return s


@njit(inline="always")
def _border_window(xp, out, off, p, th, tw, oh, ow, DH, sentinel, lowest, divisor, KW, OP):
    # One output outside the interior, tap by tap.
    if OP != AVG:
        out[p, oh, ow], off[p, oh, ow] = _max_window(xp, th, tw, oh, ow, DH, sentinel, lowest, KW, OP)
    else:
        out[p, oh, ow] = _mean_window(xp, th, tw, oh, ow, DH, divisor, divisor[0, 0] - divisor[0, 0])


@njit(inline="always")
def _border_columns(oh, oha, ohb, owa, owb, OW):
    """The outputs of row ``oh`` outside the interior, as two ranges ``[0, a)`` and ``[b, OW)``."""
    if oha <= oh < ohb and owa < owb:
        return owa, owb
    return OW, OW                                    # whole row is border: [0, OW) and nothing


@njit(inline="always")
def _zero_rows_until(plane, done, last, W):
    # Zero gradient rows done..last (those not reached yet); return the new `done`.
    while done <= last:
        row = plane[done]
        for c in range(U(W)):
            row[c] = 0
        done += 1
    return done


@njit(inline="always")
def _zero_tail(plane, row0, nrows, c0, W):
    # Columns c0.. of rows row0..row0+nrows: past the last window of an exact tiling.
    if c0 >= W:
        return
    for r in range(row0, row0 + nrows):
        row = plane[r]
        for c in range(c0, W):
            row[c] = 0


@njit(inline="always")
def _zero_rows_from(plane, first, H, W):
    for r in range(first, H):
        row = plane[r]
        for c in range(U(W)):
            row[c] = 0


@njit(inline="always")
def _spread(plane, th, tw, oh, ow, DH, share):
    # Average backward of one border window: its share to each of its taps inside the input.
    for jh in range(th[1, oh], th[2, oh]):
        ph = th[0, oh] + jh * DH
        for jw in range(tw[1, ow], tw[2, ow]):
            plane[ph, tw[0, ow] + jw] += share


@njit(inline="always")
def _grad_window(plane, g, off, p, th, tw, oh, ow, DH, sentinel, divisor, KW, OP):
    # Backward of one window, tap by tap: max adds its gradient at its winner, average its
    # share at each tap inside the input. Returns 1 for a max offset that is not a tap of
    # the window inside the input (skipped: no content of `off` writes out of bounds).
    if OP == MAX:
        k = np.int64(off[p, oh, ow])
        if k != sentinel:
            jh, jw = k // KW, k % KW
            if k < 0 or jh < th[1, oh] or jh >= th[2, oh] or jw < tw[1, ow] or jw >= tw[2, ow]:
                return 1
            plane[th[0, oh] + jh * DH, tw[0, ow] + jw] += g[p, oh, ow]
    else:
        _spread(plane, th, tw, oh, ow, DH, g[p, oh, ow] / divisor[oh, ow])
    return 0


@njit(inline="always")
def _count_invalid(k1, i0, n, volume, sentinel):
    # Offsets in k1[i0:i0+n] that are neither a tap (0 <= k < volume) nor the sentinel: the
    # vector blocks select taps by equality, so such an offset would silently drop a gradient.
    # Unsigned indices (no negative-index wraparound check) let LLVM vectorise the loop.
    good = 0
    ks = k1[i0:i0 + n]
    for i in range(U(n)):
        k = ks[i]
        good += (k >= 0) & (k < volume) | (k == sentinel)
    return n - good


@njit(inline="always")
def _last_row(th, oh, DH):
    return th[0, oh] + (th[2, oh] - 1) * DH if th[2, oh] > th[1, oh] else -1


def _make(KH: int, KW: int, SW: int) -> Dict[str, Kernel]:
    """One kernel set with the window shape baked in as compile-time constants.

    The kernels capture only the three ints, so Numba's on-disk cache can key them.
    ``geo`` is ``[DH, oha, ohb, owa, owb, Wv, tile, joined]``: dilation along H, the
    interior windows ``[oha, ohb) x [owa, owb)``, the virtual row width (0: no virtual
    row fits), whether the windows tile the input exactly, and whether one virtual row
    can run through consecutive planes (see :func:`_qualify`).  Forward takes the
    virtual row when one fits and the rows are shorter than a narrow block, whose width
    is known once the dtype is (:func:`._simd.block_width`).
    """

    def make_forward(OP):
        """The forward kernel of reduction OP (MAX, MIN or AVG, a compile-time constant).

        Max and min write values and winning taps (``off``); average divides the sums by
        the interior's divisor ``divisor[oha, owa]`` and leaves ``off`` alone.
        """

        @kernel
        def forward(lo, hi, x, out, off, th, tw, geo, divisor, sentinel, lowest):
            """Planes ``[lo, hi)`` of ``x`` pooled into ``out`` (and ``off``)."""
            P, H, W = x.shape
            OH, OW = out.shape[1], out.shape[2]
            DH, oha, ohb, owa, owb, Wv = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
            nrow, ncol = ohb - oha, owb - owa
            rs = U(DH * W)
            narrow, wide = block_width(x, NARROW), block_width(x, WIDE)
            virtual = Wv > 0 and nrow > 0 and 0 < ncol < narrow
            T = (nrow - 1) * Wv + ncol if virtual else 0
            dv = divisor[0, 0]
            if OP == AVG and nrow > 0 and ncol > 0:
                dv = divisor[oha, owa]                      # the same for every interior window
            border = nrow * ncol < OH * OW
            if virtual and geo[7]:
                # Planes follow each other with no rows left over: one virtual row runs
                # through all the planes of a chunk (longer loops, no per-plane set-up).
                xflat = x.reshape(P * H * W)
                o2 = out.reshape(P * OH, OW)
                k2 = off.reshape(P * OH, OW) if OP != AVG else off.reshape(1, 1)
                c0 = tw[0, owa]
                Tc = ((hi - lo) * OH - 1) * Wv + ncol
                vm = np.empty(Tc, dtype=x.dtype)
                vk = np.empty(Tc if OP != AVG else 0, dtype=off.dtype)
                _run(xflat[lo * H * W + c0:], Tc, rs, vm, vk, dv, KH, KW, SW, OP)
                if OP != AVG:
                    _compact_rows(vm, o2, vk, k2, lo * OH, (hi - lo) * OH, owa, owb, Wv)
                else:
                    _compact_rows(vm, o2, vm, o2, lo * OH, (hi - lo) * OH, owa, owb, Wv)
                if not border:
                    return
                T = 0                                       # interior done: borders only below
                ncol = 0
            x1 = x.reshape(P * H * W)
            o1 = out.reshape(P * OH * OW)
            k1 = off.reshape(P * OH * OW) if OP != AVG else off.reshape(1)
            vm = np.empty(T, dtype=x.dtype)
            vk = np.empty(T if OP != AVG else 0, dtype=off.dtype)
            for p in range(lo, hi):
                if T > 0:
                    xf = x[p].reshape(H * W)
                    _run(xf[th[0, oha] * W + tw[0, owa]:], T, rs, vm, vk, dv, KH, KW, SW, OP)
                    if OP != AVG:
                        _compact_rows(vm, out[p], vk, off[p], oha, ohb - oha, owa, owb, Wv)
                    else:
                        _compact_rows(vm, out[p], vm, out[p], oha, ohb - oha, owa, owb, Wv)
                elif ncol >= narrow:
                    # Rows of vector blocks; the last block of a row moves back to end at ncol (it
                    # recomputes a few outputs, with the same result). The blocks are called from
                    # here: an inlined helper that loops takes a reference on each array it is
                    # given (two atomic operations per array and row, which Numba cannot prune
                    # across the loop), and atomics on one array from two threads contend.
                    for oh in range(oha, ohb):
                        x0 = (p * H + th[0, oh]) * W + tw[0, owa]
                        o0 = (p * OH + oh) * OW + owa
                        if ncol >= wide:
                            for b in range(0, ncol, wide):
                                c = min(b, ncol - wide)
                                pool_block(x1, x0 + c * SW, rs, o1, k1, o0 + c, dv, KH, KW, SW, WIDE, OP)
                        else:
                            for b in range(0, ncol, narrow):
                                c = min(b, ncol - narrow)
                                pool_block(x1, x0 + c * SW, rs, o1, k1, o0 + c, dv, KH, KW, SW, NARROW, OP)
                elif ncol > 0:
                    xf = x[p].reshape(H * W)
                    for oh in range(oha, ohb):
                        kr = off[p, oh, owa:owb] if OP != AVG else vk
                        _run(xf[th[0, oh] * W + tw[0, owa]:], ncol, rs, out[p, oh, owa:owb], kr, dv,
                             KH, KW, SW, OP)
                if not border:
                    continue
                xp = x[p]
                for oh in range(OH):
                    a, b = _border_columns(oh, oha, ohb, owa, owb, OW)
                    for ow in range(a):
                        _border_window(xp, out, off, p, th, tw, oh, ow, DH, sentinel, lowest, divisor, KW, OP)
                    for ow in range(b, OW):
                        _border_window(xp, out, off, p, th, tw, oh, ow, DH, sentinel, lowest, divisor, KW, OP)

        return forward

    max_forward, avg_forward = make_forward(MAX), make_forward(AVG)
    min_forward = make_forward(MIN)          # compiled on its first call only, like every kernel

    def make_backward(OP):
        """The backward kernel of reduction OP: gradient ``g`` (and winners ``off`` for max) -> ``gx``.

        Planes in parallel. Exact tiling: every gradient element belongs to one window tap,
        so it is written once. Otherwise rows are zeroed just before the first output that
        reaches them, and each output adds its gradient (max: at its winner; average: its
        share at every tap), in output order.
        """

        @kernel
        def backward(lo, hi, g, off, gx, th, tw, geo, divisor, sentinel, zero, bad, check):
            """Gradients of planes ``[lo, hi)``; invalid max offsets are counted in ``bad[p]``.

            The vector blocks pick taps by equality, so an offset outside the window only
            drops its gradient there; ``check`` scans every offset first to report it (the
            caller passes False for offsets forward sealed). Border windows check theirs
            whatever ``check`` says: they compute positions from them.
            """
            P, H, W = gx.shape
            OH, OW = g.shape[1], g.shape[2]
            DH, oha, ohb, owa, owb, tile = geo[0], geo[1], geo[2], geo[3], geo[4], geo[6]
            g1, gx1 = g.reshape(P * OH * OW), gx.reshape(P * H * W)
            k1 = off.reshape(P * OH * OW) if OP == MAX else off.reshape(1)
            dv = divisor[0, 0]
            if OP == AVG and ohb > oha and owb > owa:
                dv = divisor[oha, owa]                      # the same for every interior window
            narrow, wide = block_width(g1, NARROW), block_width(g1, WIDE)
            if OP == MAX and check:                         # one scan over the chunk's offsets
                bad[lo] = _count_invalid(k1, lo * OH * OW, (hi - lo) * OH * OW, KH * KW, sentinel)
            for p in range(lo, hi):
                plane = gx[p]
                if tile:
                    # Rows of vector blocks, as in forward (the overlapping last block writes
                    # some elements twice, which changes nothing: they are written, not added);
                    # the helpers only where they have something to do.
                    for oh in range(OH):
                        o0 = (p * OH + oh) * OW
                        x0 = (p * H + th[0, oh]) * W
                        if OW >= wide:
                            for b in range(0, OW, wide):
                                c = min(b, OW - wide)
                                grad_tile_block(g1, k1, o0 + c, gx1, x0 + c * KW, W, dv, KH, KW, WIDE, OP)
                        elif OW >= narrow:
                            for b in range(0, OW, narrow):
                                c = min(b, OW - narrow)
                                grad_tile_block(g1, k1, o0 + c, gx1, x0 + c * KW, W, dv, KH, KW, NARROW, OP)
                        else:
                            _tile_grad_scalar(plane, g[p, oh], off[p, oh] if OP == MAX else g[p, oh], th[0, oh],
                                              OW, dv, zero, KH, KW, SW, OP)
                        if OW * SW < W:
                            _zero_tail(plane, th[0, oh], KH, OW * SW, W)
                    if OH * KH < H:
                        _zero_rows_from(plane, OH * KH, H, W)
                    continue
                done = 0
                for oh in range(OH):
                    if th[2, oh] <= th[1, oh]:
                        continue                            # every window of the row lies in padding
                    done = _zero_rows_until(plane, done, _last_row(th, oh, DH), W)
                    # outputs in order: left border, interior blocks, the rest
                    a, b = _border_columns(oh, oha, ohb, owa, owb, OW)
                    for ow in range(a):
                        r = _grad_window(plane, g, off, p, th, tw, oh, ow, DH, sentinel, divisor, KW, OP)
                        if OP == MAX:
                            bad[p] += r
                    c = a
                    if b - a >= narrow:
                        _add_grad_row(g1, k1, (p * OH + oh) * OW + a, gx1, (p * H + th[0, oh]) * W + tw[0, a],
                                      DH * W, b - a, dv, KH, KW, SW, OP)
                        c = b
                    for ow in range(c, OW):
                        r = _grad_window(plane, g, off, p, th, tw, oh, ow, DH, sentinel, divisor, KW, OP)
                        if OP == MAX:
                            bad[p] += r
                _zero_rows_from(plane, done, H, W)

        return backward

    max_backward, avg_backward = make_backward(MAX), make_backward(AVG)

    # min pooling's winners go back exactly as max pooling's: it shares max_backward
    return {"max_forward": max_forward, "min_forward": min_forward, "avg_forward": avg_forward,
            "max_backward": max_backward, "avg_backward": avg_backward}


_KERNELS: Dict[Tuple[int, int, int], Dict[str, Kernel]] = {}
# The forward kernel of each variant (``Reduction.kernel``; a plan reaching here has one) in a kernel set.
_FORWARD: Dict[Optional[int], str] = {MAX: "max_forward", MIN: "min_forward", AVG: "avg_forward"}


def _setup(plan: Plan):
    """``(kernels, (th, tw, geo))`` for a plan these kernels handle, else None (cached on the plan)."""
    try:
        return plan.scratch["fast"]
    except KeyError:
        result = plan.scratch["fast"] = _qualify(plan)
        return result


def _qualify(plan: Plan):
    if plan.in_shape[4] != 1 or plan.nan_ignore or not all(a.regular for a in plan.axes):
        return None
    ad, ah, aw = plan.axes
    if ad.window != (1, 1, 0, 0):
        return None
    kh, sh, ph, _ = ah.window
    kw, sw, pw, _ = aw.window
    key = (kh, kw, sw)
    if aw.step != 1 or key not in SPECIALISED:
        return None
    kernels = _KERNELS.get(key)
    if kernels is None:
        kernels = _KERNELS[key] = _make(*key)
    th = np.ascontiguousarray(plan.table[1, :3, : ah.out])
    tw = np.ascontiguousarray(plan.table[2, :3, : aw.out])
    oha, ohb = ah.interior
    owa, owb = aw.interior
    # A virtual row fits when a plane's rows, strung together, keep the windows SW apart;
    # the kernels take it for rows shorter than their dtype's narrow block.
    virtual = (sh * aw.size) % sw == 0
    wv = sh * aw.size // sw if virtual else 0
    # Exact tiling: windows as tall and wide as their strides, no dilation or padding, every
    # window inside the input -- each input element is in at most one window.
    tile = (kh == sh and kw == sw and ah.step == 1 and ph == 0 and pw == 0
            and (oha, ohb, owa, owb) == (0, ah.out, 0, aw.out))
    # Planes joined into one virtual row: the row pattern repeats from plane to plane.
    joined = (virtual and (oha, ohb) == (0, ah.out) and int(ah.start[0]) == 0
              and ah.size == ah.out * sh and owb > owa)
    geo = np.array([ah.step, oha, ohb, owa, owb, wv, int(tile), int(joined)], dtype=np.int64)
    planes = plan.in_shape[0] * plan.in_shape[1]           # D only indexes planes here
    shapes = ((planes, ah.size, aw.size), (planes, ah.out, aw.out))
    return kernels, (th, tw, geo), shapes


def _nchunks(planes: int, parallel: bool) -> int:
    # Two chunks per thread: planes differ in cost (borders), so the threads even out.
    return 2 * _threads.current_threads() if parallel else 1


@functools.lru_cache(maxsize=None)
def _zero(dtype):
    return dtype.type(0)


@functools.lru_cache(maxsize=None)
def _unit(dtype):
    """The divisor argument of a max kernel (unused there): a 1x1 array of ones."""
    return np.ones((1, 1), dtype=dtype)


def max_forward(x: np.ndarray, plan: Plan, parallel: bool):
    s = _setup(plan)
    if s is None:
        return None
    kernels, (th, tw, geo), (pin, pout) = s
    out = np.empty(plan.out_shape, dtype=x.dtype)
    off = np.empty(plan.out_shape, dtype=plan.off_dtype)
    red = plan.reduction
    kernels[_FORWARD[red.kernel]](pin[0], _nchunks(pin[0], parallel), x.reshape(pin), out.reshape(pout),
                                  off.reshape(pout), th, tw, geo, _unit(x.dtype), plan.sentinel, red.padding(x.dtype))
    return out, off


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan, parallel: bool, sealed: bool = False):
    """``(gx, bad)``: the gradient and the number of invalid offsets met (0 unless ``off`` was altered)."""
    s = _setup(plan)
    if s is None:
        return None
    kernels, (th, tw, geo), (pin, pout) = s
    gx = np.empty(plan.in_shape, dtype=grad.dtype)
    bad = np.zeros(pin[0], dtype=np.int64)
    kernels["max_backward"](pin[0], _nchunks(pin[0], parallel), grad.reshape(pout), off.reshape(pout),
                            gx.reshape(pin), th, tw, geo, _unit(grad.dtype), plan.sentinel, _zero(grad.dtype), bad,
                            not sealed)
    return gx, int(np.count_nonzero(bad))


def avg_forward(x: np.ndarray, plan: Plan, parallel: bool):
    s = _setup(plan)
    if s is None:
        return None
    kernels, (th, tw, geo), (pin, pout) = s
    out = np.empty(plan.out_shape, dtype=x.dtype)
    kernels["avg_forward"](pin[0], _nchunks(pin[0], parallel), x.reshape(pin), out.reshape(pout), _NO_OFFSETS,
                           th, tw, geo, _divisor(plan, x.dtype), 0, plan.reduction.padding(x.dtype))
    return out


def avg_backward(grad: np.ndarray, plan: Plan, parallel: bool):
    s = _setup(plan)
    if s is None:
        return None
    kernels, (th, tw, geo), (pin, pout) = s
    gx = np.empty(plan.in_shape, dtype=grad.dtype)
    kernels["avg_backward"](pin[0], _nchunks(pin[0], parallel), grad.reshape(pout), _NO_OFFSETS, gx.reshape(pin),
                            th, tw, geo, _divisor(plan, grad.dtype), 0, _zero(grad.dtype), _NO_COUNT, False)
    return gx


# Average pooling keeps no offsets and counts none: stand-ins keep the kernels' argument types fixed.
_NO_COUNT = np.zeros(1, dtype=np.int64)
# Average pooling keeps no offsets: a 1-plane stand-in keeps the kernel's argument types fixed.
_NO_OFFSETS = np.zeros((1, 1, 1), dtype=np.uint8)


def _divisor(plan: Plan, dtype) -> np.ndarray:
    """``(OH, OW)`` divisors in ``dtype`` (the D axis has windows of 1 here), cached on the plan."""
    key = ("fast-divisor", dtype)
    d = plan.scratch.get(key)
    if d is None:
        d = plan.scratch[key] = np.ascontiguousarray(plan.base_divisor[0].astype(dtype))
    return d
