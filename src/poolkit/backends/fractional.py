"""Fractional max pooling's one backend operation: the winner of windows placed per plane.

Fractional windows differ from one (batch, channel) plane to the next (each
plane draws its own pseudo-random window starts), so the plan-based kernels,
which share one window table across all planes, do not fit.  What the three
backends do here is smaller: given the input and, per plane and pooled axis,
where each window starts, find the flat in-plane index of each window's
maximum, and the maximum itself: the element read at that index, so every
backend gives the same bits.

Contract (canonical ``(B, D, H, W, C)`` layout of :mod:`poolkit.core.layout`)::

    window_argmax(x, starts, kernel, backend, ignore) -> (idx, values)
        x       (B, D, H, W, C), C-contiguous, float32/float64 or integer
        starts  three int64 arrays (B, C, OD), (B, C, OH), (B, C, OW): window
                starts along D, H, W; every start + kernel fits in the input
        kernel  (KD, KH, KW)
        idx     int64 (B, OD, OH, OW, C): ``(d * H + h) * W + w`` of each maximum
        values  x's dtype, same shape: the maxima themselves (the elements at ``idx``)
        ignore  nan_policy="ignore": NaN elements never win; a window of NaN only
                gets index -1 and, as its value, its first element (a NaN)

The max rule is PyTorch's (its fractional and ordinary max pooling kernels):
taps are scanned row-major, the first tap starts as the maximum, a later one
takes over when it is greater or NaN.  So ties go to the first maximum and a
window holding NaN reports its last NaN.
"""
from __future__ import annotations

import itertools
from typing import Sequence, Tuple

import numpy as np

from . import served_call
from .numba.jit import kernel
from .numba.kernels import MAX, takes_over
from .numba.loops import _threads_for

__all__ = ["window_argmax", "reference", "img2col", "numba"]

Starts = Tuple[np.ndarray, np.ndarray, np.ndarray]


def reference(x: np.ndarray, starts: Starts, kernel: Sequence[int],
              ignore: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Plain loops over every plane, output and tap: slow and obviously correct (the tests' oracle)."""
    B, D, H, W, C = x.shape
    kd, kh, kw = kernel
    sd, sh, sw = starts
    OD, OH, OW = sd.shape[2], sh.shape[2], sw.shape[2]
    idx = np.empty((B, OD, OH, OW, C), dtype=np.int64)
    values = np.empty((B, OD, OH, OW, C), dtype=x.dtype)
    for b in range(B):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        first = x[b, sd[b, c, od], sh[b, c, oh], sw[b, c, ow], c]
                        best, best_at = first, -1
                        for d in range(sd[b, c, od], sd[b, c, od] + kd):
                            for h in range(sh[b, c, oh], sh[b, c, oh] + kh):
                                for w in range(sw[b, c, ow], sw[b, c, ow] + kw):
                                    v = x[b, d, h, w, c]
                                    if ignore and v != v:
                                        continue
                                    if best_at < 0 or v > best or v != v:
                                        best, best_at = v, (d * H + h) * W + w
                        idx[b, od, oh, ow, c] = best_at
                        values[b, od, oh, ow, c] = best
    return idx, values


def _origins(x_shape, starts: Starts, kernel: Sequence[int]):
    """Flat in-plane position of each window's first tap, and each tap's offset from it.

    Returns ``base`` int64 (B, OD*OH*OW, C) and ``taps`` int64 (KD*KH*KW,) in scan order.
    """
    B, _, H, W, C = x_shape
    sd, sh, sw = (np.asarray(s, dtype=np.int64).transpose(0, 2, 1) for s in starts)    # each (B, O, C)
    base = (sd[:, :, None, None, :] * H + sh[:, None, :, None, :]) * W + sw[:, None, None, :, :]
    P = base.shape[1] * base.shape[2] * base.shape[3]    # explicit: reshape(B, -1, C) fails for B == 0
    taps = np.array([(jd * H + jh) * W + jw for jd, jh, jw in itertools.product(*map(range, kernel))],
                    dtype=np.int64)
    return np.ascontiguousarray(base.reshape(B, P, C)), taps


def _out_shape(starts: Starts, x_shape) -> Tuple[int, ...]:
    return (x_shape[0], starts[0].shape[2], starts[1].shape[2], starts[2].shape[2], x_shape[4])


def img2col(x: np.ndarray, starts: Starts, kernel: Sequence[int],
            ignore: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Vectorised NumPy: one gather per kernel tap over all windows at once, the max rule across taps."""
    B, D, H, W, C = x.shape
    base, taps = _origins(x.shape, starts, kernel)
    flat = x.reshape(B, D * H * W, C)                     # (B, S, C): planes' elements in flat order
    best_at = base + taps[0]
    best = np.take_along_axis(flat, best_at, axis=1)
    found = best == best                                  # ignore: has the window a number yet
    for t in taps[1:]:
        at = base + t
        v = np.take_along_axis(flat, at, axis=1)
        if ignore:
            number = v == v
            take = number & ((v > best) | ~found)
            found |= number
        else:
            take = (v > best) | (v != v)                  # greater, or NaN: PyTorch's rule
        best = np.where(take, v, best)
        best_at = np.where(take, at, best_at)
    if ignore:
        best_at = np.where(found, best_at, -1)
    shape = _out_shape(starts, x.shape)
    return best_at.reshape(shape), best.reshape(shape)


@kernel
def _argmax_kernel(lo, hi, x, base, taps, ignore, idx, values):
    """``idx[b, p, c]``: flat position of the max of window ``p`` (origin ``base[b, p, c]``), planes ``[lo, hi)``;
    ``values[b, p, c]``: that max.

    ``x`` is (B, S, C); positions are ``base + taps[t]``, scanned in order of ``t``. ``ignore``: NaN never
    wins, and a window of NaN only gets index -1 (its value: its first element).
    """
    P, C, K = base.shape[1], base.shape[2], taps.shape[0]
    for b in range(lo, hi):
        for p in range(P):
            for c in range(C):
                o = base[b, p, c]
                best = x[b, o + taps[0], c]
                k = 0
                nan = best != best
                for t in range(1, K):
                    # branch-free scan (selects, no mispredicted jumps); exact unless NaN is met
                    v = x[b, o + taps[t], c]
                    k = t if v > best else k
                    best = max(v, best)
                    nan |= v != v
                if nan:                                 # rare: rescan with the NaN rule
                    best = x[b, o + taps[0], c]
                    k = -1 if ignore and best != best else 0
                    for t in range(1, K):
                        v = x[b, o + taps[t], c]
                        if ignore:
                            if v == v and (k < 0 or v > best):
                                best = v
                                k = t
                        elif takes_over(v, best, MAX):  # PyTorch's: the last NaN wins
                            best = v
                            k = t
                if k < 0:
                    idx[b, p, c] = -1
                    values[b, p, c] = x[b, o + taps[0], c]
                else:
                    idx[b, p, c] = o + taps[k]
                    values[b, p, c] = x[b, o + taps[k], c]      # the element itself (-0.0 vs 0.0)


def numba(x: np.ndarray, starts: Starts, kernel: Sequence[int], ignore: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """The Numba kernel, over planes ``b`` (threaded for large inputs). May raise ``_jit.NotCompiled``."""
    B, D, H, W, C = x.shape
    base, taps = _origins(x.shape, starts, kernel)
    idx = np.empty(base.shape, dtype=np.int64)
    values = np.empty(base.shape, dtype=x.dtype)
    _argmax_kernel(B, _threads_for(x.size), x.reshape(B, D * H * W, C), base, taps, bool(ignore), idx, values)
    shape = _out_shape(starts, x.shape)
    return idx.reshape(shape), values.reshape(shape)


def window_argmax(x: np.ndarray, starts: Starts, kernel: Sequence[int], backend: str,
                  ignore: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Run the named backend ("reference", "img2col", "numba" or "auto"); see the module docstring.

    "numba" compiles a missing kernel in this thread; "auto" follows the served
    backends (:mod:`.served`): it compiles in the background and lets img2col
    serve the call meanwhile (counted in that backend's ``fallbacks``).
    """
    if backend == "reference":
        return reference(x, starts, kernel, ignore)
    if backend == "img2col":
        return img2col(x, starts, kernel, ignore)
    # "numba" or "auto": the same policy as max_pool's
    return served_call(backend, numba, img2col, (x, starts, kernel, ignore))
