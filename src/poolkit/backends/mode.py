"""Mode pooling's backend operation: the most frequent value of each window, three ways.

Contract (canonical ``(B, D, H, W, C)`` layout of :mod:`poolkit.core.layout`)::

    mode_forward(x, plan, skip) -> out
        x      (B, D, H, W, C), C-contiguous, bool or an integer dtype of up to 64 bits
        plan   a poolkit.core.plan.Plan: the windows along D, H and W (any kernel, stride,
               padding, dilation, ceil_mode; plan.op is not read)
        skip   None, or bool of x's shape: elements left out of their windows (a mask)
        out    x's dtype, plan.out_shape

Rules, the same bits on every backend:

* a window's elements are its taps inside the input that ``skip`` does not mark; padding
  is never counted (there is no padding value);
* the mode is the value that occurs most often among them; on a tie, the smallest value
  (in the dtype's own order: -3 before 2 for signed integers; False before True);
* a window with no element (wholly in padding, or every element masked) gives the dtype's
  minimum, :data:`EMPTY`: 0 for unsigned integers, False for bool, ``iinfo.min`` for signed
  ones -- the value integer max pooling gives such a window.

The three implementations: :data:`reference` (loops and ``np.unique``, the tests' oracle),
:data:`img2col` (vectorised NumPy over gathered windows) and :data:`numba` (the compiled
kernel of :mod:`.numba.mode`, which may raise ``NotCompiled``: the "numba" and "auto"
backends serve it as they serve the shared kernels, :func:`poolkit.backends.implementation`).
"""
from __future__ import annotations

import itertools
from typing import Optional

import numpy as np

from ..core.plan import Plan
from .numba import jit as _jit

__all__ = ["reference", "img2col", "numba", "EMPTY", "check_dtype", "longest_runs"]


def EMPTY(dtype) -> np.generic:
    """The value of a window with no element: the dtype's minimum (False for bool)."""
    dtype = np.dtype(dtype)
    return np.False_ if dtype == np.bool_ else dtype.type(np.iinfo(dtype).min)


def check_dtype(dtype) -> None:
    """A TypeError naming the dtype unless it is bool or an integer of up to 64 bits."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu":
        raise TypeError(f"mode pooling needs bool or integer input (labels), but got dtype={dtype}: "
                        f"the most frequent value of floats is rarely meaningful. Pool intensities "
                        f"with avg_pool or max_pool.")


def _unsigned(x: np.ndarray):
    """``x`` as an unsigned view of its width, and the key bias that keeps its order (see numba.mode)."""
    u = np.dtype(f"u{x.dtype.itemsize}")
    signed = x.dtype.kind == "i"
    return x.view(u), u.type(1 << (8 * x.dtype.itemsize - 1)) if signed else u.type(0)


def _empty_bits(dtype) -> np.generic:
    """:func:`EMPTY` as the unsigned integer of the same bits."""
    dtype = np.dtype(dtype)
    u = np.dtype(f"u{dtype.itemsize}")
    return u.type(np.array(EMPTY(dtype), dtype=dtype).view(u).item())


def _tap_positions(axis):
    """``pos`` int64 (out, taps) of each tap and ``inside`` bool (out, taps): is the tap in the input."""
    j = np.arange(axis.taps)
    pos = axis.start[:, None] + j[None, :] * axis.step
    inside = (j[None, :] >= axis.lo[:, None]) & (j[None, :] < axis.hi[:, None])
    return np.where(inside, pos, 0), inside


class _Reference:
    """Plain loops over windows and ``np.unique``: slow and obviously correct."""

    name = "reference"

    @staticmethod
    def mode_forward(x: np.ndarray, plan: Plan, skip: Optional[np.ndarray] = None) -> np.ndarray:
        check_dtype(x.dtype)
        out = np.empty(plan.out_shape, dtype=x.dtype)
        B, _, _, _, C = x.shape
        ad, ah, aw = plan.axes
        for b, od, oh, ow, c in itertools.product(range(B), range(ad.out), range(ah.out), range(aw.out), range(C)):
            values = [x[b, ad.start[od] + jd * ad.step, ah.start[oh] + jh * ah.step, aw.start[ow] + jw * aw.step, c]
                      for jd in range(ad.lo[od], ad.hi[od])
                      for jh in range(ah.lo[oh], ah.hi[oh])
                      for jw in range(aw.lo[ow], aw.hi[ow])
                      if skip is None or not skip[b, ad.start[od] + jd * ad.step, ah.start[oh] + jh * ah.step,
                                                  aw.start[ow] + jw * aw.step, c]]
            if not values:
                out[b, od, oh, ow, c] = EMPTY(x.dtype)
                continue
            uniq, counts = np.unique(np.array(values, dtype=x.dtype), return_counts=True)
            out[b, od, oh, ow, c] = uniq[np.argmax(counts)]        # sorted: the first maximum is the smallest
        return out


class _Img2col:
    """Vectorised NumPy: every window gathered as a row of taps, sorted, its longest run found."""

    name = "img2col"

    @staticmethod
    def mode_forward(x: np.ndarray, plan: Plan, skip: Optional[np.ndarray] = None) -> np.ndarray:
        check_dtype(x.dtype)
        u, bias = _unsigned(x)
        B, D, H, W, C = x.shape
        (pd, id_), (ph, ih), (pw, iw) = (_tap_positions(a) for a in plan.axes)
        OD, OH, OW = pd.shape[0], ph.shape[0], pw.shape[0]
        # flat in-plane position and validity of every (output, tap): (OD, OH, OW, TD, TH, TW)
        flat = ((pd[:, None, None, :, None, None] * H + ph[None, :, None, None, :, None]) * W
                + pw[None, None, :, None, None, :])
        valid = id_[:, None, None, :, None, None] & ih[None, :, None, None, :, None] & iw[None, None, :, None, None, :]
        T = plan.window_volume
        flat = flat.reshape(OD * OH * OW, T)
        valid = np.broadcast_to(valid, (OD, OH, OW) + valid.shape[3:]).reshape(OD * OH * OW, T)
        # keys (B, positions, C) -> windows (B, OD*OH*OW, C, T); the order of keys is the order of values
        keys = (u ^ bias).reshape(B, D * H * W, C)
        rows = np.moveaxis(keys[:, flat, :], 3, 2)                   # (B, P, C, T)
        ok = np.broadcast_to(valid[None, :, None, :], rows.shape)
        if skip is not None:
            s = skip.reshape(B, D * H * W, C)
            ok = ok & ~np.moveaxis(s[:, flat, :], 3, 2)
        top = np.iinfo(u.dtype).max
        # Left-out taps become the largest key: they sort last, inside the last run of the row,
        # from whose length their count is then taken.
        rows = np.sort(np.where(ok, rows, u.dtype.type(top)), axis=-1).reshape(-1, T)
        n_out = ok.reshape(-1, T).sum(axis=1)
        empty_key = _empty_bits(x.dtype) ^ bias
        res = np.where(n_out > 0, longest_runs(rows, T - n_out), empty_key) ^ bias
        return res.astype(u.dtype).view(x.dtype).reshape(plan.out_shape)


def longest_runs(rows: np.ndarray, n_pad: np.ndarray) -> np.ndarray:
    """First longest run of each sorted row of ``rows`` (M, T), its last ``n_pad[m]`` entries left out."""
    m, w = rows.shape
    if m == 0:
        return np.empty(0, dtype=rows.dtype)
    flat = rows.reshape(-1)
    is_start = np.ones(flat.size, dtype=bool)
    is_start[1:] = flat[1:] != flat[:-1]
    is_start[::w] = True                                   # a run never spans two rows
    starts = np.flatnonzero(is_start)
    lengths = np.diff(np.append(starts, flat.size))
    row = starts // w
    last_of_row = np.append(row[1:] != row[:-1], True)
    lengths = lengths - np.where(last_of_row, n_pad[row], 0)   # the left-out taps sit in the last run
    offset = starts - row * w
    # longest run wins; among equals the earliest, i.e. the smallest key (rows are sorted)
    key = lengths * (w + 1) + (w - offset)
    first_of_row = np.flatnonzero(np.append(True, row[1:] != row[:-1]))
    best = np.maximum.reduceat(key, first_of_row)
    return rows[np.arange(m), w - best % (w + 1)]


class _Numba:
    """The compiled kernel (:data:`poolkit.backends.numba.mode.forward`); may raise ``NotCompiled``."""

    name = "numba"

    @staticmethod
    def mode_forward(x: np.ndarray, plan: Plan, skip: Optional[np.ndarray] = None) -> np.ndarray:
        from .numba import mode as _mode
        from .numba.loops import _dummy, _threads_for

        check_dtype(x.dtype)
        u, bias = _unsigned(x)
        out = np.empty(plan.out_shape, dtype=u.dtype)
        empty = _empty_bits(x.dtype)
        B, OD, OH = plan.out_shape[:3]
        sk = (_dummy(np.bool_), False) if skip is None else (skip, True)
        _mode.forward(B * OD * OH, _threads_for(x.size), u, out, plan.table, sk[0], sk[1], bias, empty)
        return out.view(x.dtype)


reference, img2col, numba = _Reference(), _Img2col(), _Numba()
