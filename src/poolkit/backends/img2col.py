"""The img2col backend: the chapter's method 2 in vectorised NumPy.

The chapter lays every window out as a row of a big matrix and reduces each row
at once.  Here the matrix is never built: for each tap ``(jd, jh, jw)`` of the
window, the column of that tap is a strided view of the input (a copy only for
adaptive windows), and the reduction runs across taps with whole-array NumPy
operations.  There is no Python loop over the batch, the channels or the output
positions -- only over the ``KD*KH*KW`` taps -- and no padded copy of the input:
each tap touches only the outputs whose window puts it inside the input.

Results equal the numba backend's: max outputs, offsets and gradients bit for
bit (taps are scanned in the same order, and backward adds contributions in
output order), averages within float rounding.
"""
from __future__ import annotations

import itertools
from typing import Optional, Tuple

import numpy as np

from .._geometry import Axis
from .._plan import Plan, offsets_to_indices

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
        return slice(o1, o2), slice(p1, p1 + (o2 - o1 - 1) * axis.stride + 1, axis.stride), None
    mask = j < axis.hi
    if not mask.any():
        return None
    pos = np.minimum(axis.start + j, axis.size - 1)
    return slice(0, axis.out), pos, mask


def _taps(plan: Plan, reverse: bool = False):
    """Yield ``(offset, out_region, in_index, mask)`` for every tap, in scan order."""
    kd, kh, kw = plan.taps
    order = itertools.product(range(kd), range(kh), range(kw))
    for jd, jh, jw in (reversed(list(order)) if reverse else order):
        parts = [_tap(a, j) for a, j in zip(plan.axes, (jd, jh, jw))]
        if any(p is None for p in parts):
            continue
        region = (_ALL,) + tuple(p[0] for p in parts) + (_ALL,)
        mask = None
        if any(p[2] is not None for p in parts):
            m = [p[2] if p[2] is not None else np.ones(p[0].stop - p[0].start, bool) for p in parts]
            mask = (m[0][:, None, None] & m[1][None, :, None] & m[2][None, None, :])[None, ..., None]
        yield (jd * kh + jh) * kw + jw, region, tuple(p[1] for p in parts), mask


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


def max_forward(x: np.ndarray, plan: Plan):
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    out = np.full(plan.out_shape, lowest, dtype=x.dtype)
    off = np.full(plan.out_shape, plan.sentinel, dtype=plan.off_dtype)
    for k, region, index, mask in _taps(plan):
        v = _gather(x, index)
        m, o = out[region], off[region]                      # views of the outputs this tap reaches
        isnan = v != v
        if plan.nan_ignore:
            take = ~isnan & ((o == plan.sentinel) | (v > m))
        else:
            take = (o == plan.sentinel) | (v > m) | isnan
        if mask is not None:
            take &= mask
        np.copyto(m, v, where=take)
        np.copyto(o, k, where=take, casting="unsafe")
    if plan.nan_ignore and x.dtype.kind == "f":
        out[(off == plan.sentinel) & _has_inputs(plan)] = np.nan
    return out, off


def _add_in_output_order(gx: np.ndarray, flat_idx: np.ndarray, values: np.ndarray):
    """``gx[b, idx, c] += values`` in output order (np.add.at is unbuffered and ordered)."""
    B, C = gx.shape[0], gx.shape[4]
    g2 = gx.reshape(B, -1, C)
    bi = np.arange(B)[:, None, None]
    ci = np.arange(C)[None, None, :]
    np.add.at(g2, (bi, flat_idx.reshape(B, -1, C), ci), values.reshape(B, -1, C))


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan) -> np.ndarray:
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    if not all(a.regular for a in plan.axes):
        # Adaptive windows may share a start; add in output order to match the kernels bit for bit.
        idx = offsets_to_indices(off, plan)
        hit = idx >= 0
        _add_in_output_order(gx, np.where(hit, idx, 0), np.where(hit, grad, 0))
        return gx
    # A pixel reached by several windows gets their gradients in output order: walking the
    # taps backwards gives exactly that order (a later window reaches it with an earlier tap).
    for k, region, index, _ in _taps(plan, reverse=True):
        contrib = np.where(off[region] == k, grad[region], 0)
        gx[(_ALL,) + index + (_ALL,)] += contrib
    return gx


def _divisor(plan: Plan, dtype) -> np.ndarray:
    return plan.divisor.astype(dtype)[None, ..., None]        # (1, OD, OH, OW, 1)


def avg_forward(x: np.ndarray, plan: Plan):
    total = np.zeros(plan.out_shape, dtype=x.dtype)
    nans = np.zeros(plan.out_shape, dtype=np.int64) if plan.nan_ignore else None
    for _, region, index, mask in _taps(plan):
        v = _gather(x, index)
        if plan.nan_ignore:
            isnan = np.isnan(v)
            if mask is not None:
                isnan = isnan & mask
            nans[region] += isnan
            v = np.where(isnan, 0, v)
        if mask is not None:
            v = np.where(mask, v, 0)
        total[region] += v
    divisors = (_divisor(plan, x.dtype) if not plan.nan_ignore
                else _nan_ignore_divisor(plan, nans).astype(x.dtype))
    has = _has_inputs(plan)
    if has.all():
        out = total / divisors
    else:
        # windows wholly in padding keep their sum, 0 (their divisor may be 0)
        out = np.zeros_like(total)
        np.divide(total, divisors, out=out, where=has)
    return out, ((divisors, np.isnan(x)) if plan.nan_ignore else None)


def _nan_ignore_divisor(plan: Plan, nans: np.ndarray) -> np.ndarray:
    """Per-output divisor with NaN elements left out; NaN where every input element is NaN."""
    valid = [a.valid.astype(np.float64) for a in plan.axes]
    n_in = (valid[0][:, None, None] * valid[1][None, :, None] * valid[2][None, None, :])[None, ..., None]
    if plan.divisor_override is not None:
        div = np.full(plan.out_shape, float(plan.divisor_override))
    else:
        f = [(a.padded if plan.count_include_pad else a.valid).astype(np.float64) for a in plan.axes]
        base = (f[0][:, None, None] * f[1][None, :, None] * f[2][None, None, :])[None, ..., None]
        div = base - nans
    return np.where((nans == n_in) & (n_in > 0), np.nan, div)


def avg_backward(grad: np.ndarray, saved, plan: Plan) -> np.ndarray:
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    if plan.nan_ignore:
        divisors, nan_mask = saved
        dead = np.isnan(divisors)
        share = np.where(dead, 0, grad / np.where(dead, 1, divisors).astype(grad.dtype))
    else:
        nan_mask = None
        share = grad / _divisor(plan, grad.dtype)
    share = share.astype(grad.dtype, copy=False)
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
