"""The img2col backend: the chapter's method 2 in vectorised NumPy.

The chapter lays every window out as a row of a big matrix and reduces each row
at once.  Here the matrix is never built: for each tap ``(jd, jh, jw)`` of the
window, the column of that tap is a strided view of the input (a copy only for
adaptive windows), and the reduction runs across taps with whole-array NumPy
operations.  There is no Python loop over the batch, the channels or the output
positions -- only over the ``KD*KH*KW`` taps -- and no padded copy of the input:
each tap touches only the outputs whose window puts it inside the input.

Results equal the numba backend's bit for bit, for max and average pooling:
taps are scanned in the same order, sums start from 0 and add the taps in that
order before one division, and backward adds contributions in output order.
That is what lets it serve calls while the Numba kernels compile.
"""
from __future__ import annotations

import itertools
from typing import Optional, Tuple

import numpy as np

from ..core.geometry import Axis
from ..core.plan import Plan, check_offsets, divs_dtype, ignored_mask, invalid_offsets, offsets_to_indices

name = "img2col"

_ALL = slice(None)


def _tap(axis: Axis, j: int):
    """Outputs that tap ``j`` of ``axis`` reaches inside the input, and where it reads.

    Returns ``(out_index, in_index, mask)`` or None when no window has this tap inside.
    Regular windows: both indices are slices (the valid outputs are contiguous and
    their inputs evenly spaced). Adaptive windows: every output, clipped input
    positions and a mask of the windows that really have tap ``j``.
    """
    if axis.regular:
        ok = np.flatnonzero((axis.lo <= j) & (j < axis.hi))
        if ok.size == 0:
            return None
        o1, o2 = int(ok[0]), int(ok[-1]) + 1
        p1 = int(axis.start[o1]) + j * axis.step
        stride = axis.window[1]
        return slice(o1, o2), slice(p1, p1 + (o2 - o1 - 1) * stride + 1, stride), None
    mask = j < axis.hi
    if not mask.any():
        return None
    pos = np.minimum(axis.start + j, axis.size - 1)
    return slice(0, axis.out), pos, mask


def _tap_list(plan: Plan):
    """``[(offset, out_region, in_index, mask), ...]`` for every tap reaching the input, in scan order.

    Derived once per plan and kept in ``plan.scratch``.
    """
    taps = plan.scratch.get("img2col")
    if taps is not None:
        return taps
    kd, kh, kw = plan.taps
    taps = []
    # taps outside [min lo, max hi) reach the input in no window (a window may have 2**31 taps)
    spans = [range(int(a.lo.min()), int(a.hi.max())) for a in plan.axes]
    for jd, jh, jw in itertools.product(*spans):
        parts = [_tap(a, j) for a, j in zip(plan.axes, (jd, jh, jw))]
        if any(p is None for p in parts):
            continue
        region = (_ALL,) + tuple(p[0] for p in parts) + (_ALL,)
        mask = None
        if any(p[2] is not None for p in parts):
            m = [p[2] if p[2] is not None else np.ones(p[0].stop - p[0].start, bool) for p in parts]
            mask = (m[0][:, None, None] & m[1][None, :, None] & m[2][None, None, :])[None, ..., None]
        taps.append(((jd * kh + jh) * kw + jw, region, tuple(p[1] for p in parts), mask))
    plan.scratch["img2col"] = taps
    return taps


def _taps(plan: Plan, reverse: bool = False):
    """The taps of :func:`_tap_list`, in scan order or backwards."""
    taps = _tap_list(plan)
    return reversed(taps) if reverse else iter(taps)


def _disjoint(plan: Plan) -> bool:
    """True when no input element lies in two windows (stride >= window span on every axis)."""
    return all(a.regular and a.window[1] >= a.step * (a.window[0] - 1) + 1 for a in plan.axes)


def _gather(x: np.ndarray, index: Tuple) -> np.ndarray:
    """``x[:, d, h, w, :]`` for slices (a view) or integer arrays (a copy), one axis at a time."""
    if all(isinstance(i, slice) for i in index):
        return x[(_ALL,) + index + (_ALL,)]
    for axis, i in enumerate(index, start=1):
        x = x[(_ALL,) * axis + (i,)] if isinstance(i, slice) else np.take(x, i, axis=axis)
    return x


def _has_inputs(plan: Plan) -> np.ndarray:
    """``bool (1, OD, OH, OW, 1)``: windows with at least one tap inside the input."""
    v = [a.valid > 0 for a in plan.axes]
    return (v[0][:, None, None] & v[1][None, :, None] & v[2][None, None, :])[None, ..., None]


def _valid_mask(plan: Plan, region, mask) -> np.ndarray:
    """``bool`` of the output shape (broadcastable): the windows in which this tap is inside."""
    v = np.zeros((1,) + plan.out_shape[1:4] + (1,), dtype=bool)
    v[(slice(None),) + region[1:4] + (slice(None),)] = True if mask is None else mask
    return v


def _columns(x: np.ndarray, plan: Plan, fill):
    """The img2col matrix: ``(K, B, OD, OH, OW, C)``, row ``j`` holding tap ``j`` of every window.

    Taps outside the input hold ``fill``. Returns the matrix, the taps' offsets and,
    per tap, None (inside for every window) or the mask of windows it is inside.
    """
    taps = _tap_list(plan)
    cols = np.empty((len(taps),) + plan.out_shape, dtype=x.dtype)
    valid = plan.scratch.get("img2col-valid")
    if valid is None:
        valid = plan.scratch["img2col-valid"] = [
            None if (mask is None and _covers(plan, region)) else _valid_mask(plan, region, mask)
            for _, region, _, mask in taps]
    for col, (_, region, index, _), ok in zip(cols, taps, valid):
        if ok is None:
            col[...] = _gather(x, index)                  # strided view -> contiguous row
        else:
            col[...] = fill
            col[region] = _gather(x, index)
            np.copyto(col, fill, where=~ok)
    return cols, [k for k, _, _, _ in taps], valid


def _covers(plan: Plan, region) -> bool:
    return all(r.start == 0 and r.stop == n for r, n in zip(region[1:4], plan.out_shape[1:4]))


def _set_where(off: np.ndarray, hit: np.ndarray, k: int) -> None:
    """``off[hit] = k`` without branches: ``off += (k - off) * hit`` in modular integer arithmetic.

    (``np.putmask`` and ``np.where`` branch per element and are several times
    slower on the random masks pooling produces.)
    """
    d = np.subtract(off.dtype.type(k), off)
    d *= hit
    off += d


def _keep_where(values: np.ndarray, hit: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``np.where(hit, values, +0.0)`` without branches: the values' bits, masked, into ``buf``.

    ``buf`` (unsigned ints of the values' width) is reused from tap to tap: fewer
    large temporaries, which glibc would otherwise map and unmap on every call.
    """
    np.copyto(buf, hit, casting="unsafe")
    np.negative(buf, out=buf)                              # all ones where hit, else 0
    np.bitwise_and(values.view(buf.dtype), buf, out=buf)
    return buf.view(values.dtype)


def max_forward(x: np.ndarray, plan: Plan, skip=None):
    """Max (min for ``plan.reduction.order`` -1) over the img2col rows, then each window's winner by equality.

    ``np.maximum.reduce`` lets NaN win (``np.fmax`` skips it for ``nan_ignore``).
    Scanning the taps backwards and keeping the last one equal to the max gives
    the first maximum in scan order; a NaN window's winner is its last NaN (a
    second pass, only when NaN occurs). Masked elements (``skip``) hold the
    value no element loses to and never win.
    """
    red = plan.reduction
    fill = red.padding(x.dtype)
    cols, offsets, valid = _columns(x, plan, fill)
    if not offsets:                                        # no window reaches the input
        return (np.full(plan.out_shape, fill, dtype=x.dtype),
                np.full(plan.out_shape, plan.sentinel, dtype=plan.off_dtype))
    if skip is not None:
        skipped = _columns(skip, plan, True)[0]
        np.copyto(cols, fill, where=skipped)
        valid = [~sk if ok is None else ok & ~sk for ok, sk in zip(valid, skipped)]
    out = red.scan(plan.nan_ignore).reduce(cols, axis=0)
    off = np.full(plan.out_shape, plan.sentinel, dtype=plan.off_dtype)
    for k, col, ok in zip(offsets[::-1], cols[::-1], valid[::-1]):
        hit = col == out
        if ok is not None:
            hit &= ok
        _set_where(off, hit, k)
    if x.dtype.kind == "f" and not plan.nan_ignore:
        nan_out = np.isnan(out)
        if nan_out.any():
            for k, col, ok in zip(offsets, cols, valid):          # forward: the last NaN wins
                hit = np.isnan(col) & nan_out
                if ok is not None:
                    hit &= ok
                _set_where(off, hit, k)
    if plan.nan_ignore or skip is not None:
        # windows with input elements, all of them ignored: no winner
        out[(off == plan.sentinel) & _has_inputs(plan)] = red.empty(x.dtype)
    if x.dtype.kind == "f":
        # The output must be the winning element itself: np.maximum (np.minimum) may return -0.0
        # for a (0.0, -0.0) tie whose first maximum is 0.0, and any NaN for a NaN window. Only
        # zeros and NaN can differ in bits from the winner, so only those are re-read.
        fix = (out == 0) | np.isnan(out)
        if fix.any():
            for k, col in zip(offsets, cols):
                np.copyto(out, col, where=fix & (off == k))
    return out, off


def _add_in_output_order(gx: np.ndarray, flat_idx: np.ndarray, values: np.ndarray):
    """``gx[b, idx, c] += values`` in output order (np.add.at is unbuffered and ordered)."""
    B, C = gx.shape[0], gx.shape[4]
    g2 = gx.reshape(B, -1, C)
    bi = np.arange(B)[:, None, None]
    ci = np.arange(C)[None, None, :]
    np.add.at(g2, (bi, flat_idx.reshape(B, -1, C), ci), values.reshape(B, -1, C))


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan, sealed: bool = False) -> np.ndarray:
    if not sealed:
        check_offsets(invalid_offsets(off, plan))
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    if not all(a.regular for a in plan.axes):
        # Adaptive windows may share a start; add in output order to match the kernels bit for bit.
        idx = offsets_to_indices(off, plan)
        hit = idx >= 0
        _add_in_output_order(gx, np.where(hit, idx, 0), np.where(hit, grad, 0))
        return gx
    if _disjoint(plan):
        # No element is in two windows: each gets its window's gradient (0 + g, as a sum
        # starting from 0 would give) or 0. Build each tap's column contiguously (col2img),
        # then write it into place.
        g0 = grad + grad.dtype.type(0)
        buf = np.empty(grad.shape, dtype=f"u{grad.dtype.itemsize}")
        for k, region, index, _ in _taps(plan):
            col = _keep_where(g0, off == k, buf)
            gx[(_ALL,) + index + (_ALL,)] = col[region]
        return gx
    # A pixel reached by several windows gets their gradients in output order: walking the
    # taps backwards gives exactly that order (a later window reaches it with an earlier tap).
    for k, region, index, _ in _taps(plan, reverse=True):
        contrib = np.where(off[region] == k, grad[region], 0)
        gx[(_ALL,) + index + (_ALL,)] += contrib
    return gx


def _divisor(plan: Plan, dtype) -> np.ndarray:
    return plan.base_divisor.astype(dtype)[None, ..., None]   # (1, OD, OH, OW, 1)


def avg_forward(x: np.ndarray, plan: Plan, skip=None):
    ignoring = plan.nan_ignore or skip is not None
    total = np.zeros(plan.out_shape, dtype=x.dtype)
    ignored = np.zeros(plan.out_shape if ignoring else (1,) * 5, dtype=np.int64)   # per window
    for _, region, index, mask in _taps(plan):
        v = _gather(x, index)
        if ignoring:
            ign = np.isnan(v) if plan.nan_ignore else np.zeros(v.shape, dtype=bool)
            if skip is not None:
                ign |= _gather(skip, index)
            if mask is not None:
                ign &= mask
            ignored[region] += ign
            v = np.where(ign, 0, v)
        if mask is not None:
            v = np.where(mask, v, 0)
        total[region] += v
    divisors = (_divisor(plan, x.dtype) if not ignoring
                else _ignoring_divisor(plan, ignored).astype(divs_dtype(x.dtype)))
    saved = (divisors, ignored_mask(x, plan, skip)) if ignoring else None
    if not plan.divide:
        return total, saved            # a window with no element left sums to 0
    has = _has_inputs(plan)
    if has.all():
        out = total / divisors
    else:
        # windows wholly in padding keep their sum, 0 (their divisor may be 0)
        out = np.zeros_like(total)
        np.divide(total, divisors, out=out, where=has)
    return out, saved


def _ignoring_divisor(plan: Plan, ignored: np.ndarray) -> np.ndarray:
    """Per-output divisor with ignored elements left out; NaN where every input element is ignored."""
    valid = [a.valid.astype(np.float64) for a in plan.axes]
    n_in = (valid[0][:, None, None] * valid[1][None, :, None] * valid[2][None, None, :])[None, ..., None]
    base = plan.base_divisor[None, ..., None]                # (1, OD, OH, OW, 1)
    fixed = plan.divisor_override is not None or not plan.divide
    div = np.broadcast_to(base, plan.out_shape) if fixed else base - ignored
    return np.where((ignored == n_in) & (n_in > 0), np.nan, div)


def avg_backward(grad: np.ndarray, saved, plan: Plan) -> np.ndarray:
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    # Windows wholly in padding reach no input (their divisor may be 0), all-NaN windows
    # (NaN divisor) pass nothing back: their share stays 0 and no division warns.
    live = _has_inputs(plan)
    if saved is not None:
        divisors, nan_mask = saved
        live = live & ~np.isnan(divisors)
    else:
        nan_mask = None
        divisors = _divisor(plan, grad.dtype)
    share = np.zeros_like(grad)
    np.divide(grad, divisors.astype(grad.dtype, copy=False), out=share, where=live)
    if not all(a.regular for a in plan.axes):
        _avg_backward_adaptive(gx, share, nan_mask, plan)
        return gx
    for _, region, index, _ in _taps(plan, reverse=True):
        target = (_ALL,) + index + (_ALL,)
        contrib = share[region]
        if nan_mask is not None:
            contrib = np.where(nan_mask[target], 0, contrib)
        gx[target] += contrib
    return gx


def _avg_backward_adaptive(gx: np.ndarray, share: np.ndarray, nan_mask: Optional[np.ndarray], plan: Plan):
    """Adaptive windows: add every (output, tap) pair with np.add.at, in output order."""
    ad, ah, aw = plan.axes
    kd, kh, kw = plan.taps
    j = np.arange(kd * kh * kw)
    jd, rem = np.divmod(j, kh * kw)
    jh, jw = np.divmod(rem, kw)
    # (OD, OH, OW, K) positions and membership
    pd = ad.start[:, None, None, None] + jd
    ph = ah.start[None, :, None, None] + jh
    pw = aw.start[None, None, :, None] + jw
    inside = ((jd < ad.hi[:, None, None, None]) & (jh < ah.hi[None, :, None, None])
              & (jw < aw.hi[None, None, :, None]))
    flat = (pd * ah.size + ph) * aw.size + pw
    flat = np.where(inside, flat, 0)
    B, C = share.shape[0], share.shape[4]
    vals = np.where(inside.reshape(1, -1, inside.shape[-1], 1), share.reshape(B, -1, 1, C), 0)
    idx = np.broadcast_to(flat.reshape(1, -1, flat.shape[-1], 1), vals.shape)
    if nan_mask is not None:
        nm = nan_mask.reshape(B, -1, C)
        vals = np.where(np.take_along_axis(nm, idx.reshape(B, -1, C), axis=1).reshape(vals.shape), 0, vals)
    _add_in_output_order(gx, idx, vals)


def scatter(values: np.ndarray, idx: np.ndarray, size: int, accumulate: bool) -> np.ndarray:
    """``out[b, idx[b, p, c], c] (+)= values[b, p, c]`` in order; (B, P, C) -> (B, size, C)."""
    B, P, C = values.shape
    out = np.zeros((B, size, C), dtype=values.dtype)
    keep = idx >= 0
    bi = np.broadcast_to(np.arange(B)[:, None, None], idx.shape)[keep]
    ci = np.broadcast_to(np.arange(C)[None, None, :], idx.shape)[keep]
    ii, vv = idx[keep], values[keep]
    if accumulate:
        np.add.at(out, (bi, ii, ci), vv)
    else:
        # Duplicates: the last one in order wins. Keep each target's last occurrence only.
        key = (bi.astype(np.int64) * size + ii) * C + ci
        _, last = np.unique(key[::-1], return_index=True)
        pick = len(key) - 1 - last
        out[bi[pick], ii[pick], ci[pick]] = vv[pick]
    return out
