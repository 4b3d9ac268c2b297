"""The reference backend: plain Python loops over output positions and window taps.

Slow and obviously correct; the tests use it as the oracle for the fast
backends.  Each window is read straight from its definition -- tap ``j`` of
window ``o`` sits at ``start[o] + j * step`` and counts only inside the input --
and scanned in order (D, then H, then W), with NumPy only vectorising over the
batch and channel axes.

Max rule (PyTorch's CPU kernels): a tap replaces the running winner when it is
greater, or when it is NaN; the first valid tap always starts the scan.  So
ties go to the first maximum and a NaN window reports its last NaN.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..core.plan import Plan, check_offsets, divs_dtype, ignored_mask, invalid_offsets

name = "reference"


def _window(plan: Plan, o):
    """(offset, (pd, ph, pw)) for each tap of window ``o`` inside the input, in scan order."""
    kd, kh, kw = plan.taps
    taps = []
    # only the taps the geometry puts inside the input (a window may have 2**31 taps, most in
    # padding); each position is still checked against the input below
    spans = [range(int(a.lo[oi]), int(a.hi[oi])) for a, oi in zip(plan.axes, o)]
    for j in itertools.product(*spans):
        pos = []
        for a, oi, ji in zip(plan.axes, o, j):
            length = a.window[0] if a.regular else int(a.hi[oi])     # adaptive windows vary
            p = int(a.start[oi]) + ji * a.step
            if ji >= length or not 0 <= p < a.size:
                break
            pos.append(p)
        else:
            taps.append(((j[0] * kh + j[1]) * kw + j[2], tuple(pos)))
    return taps


def _padded_count(plan: Plan, o) -> int:
    """Taps of window ``o`` inside the padded extent (PyTorch's count_include_pad divisor)."""
    n = 1
    for a, oi in zip(plan.axes, o):
        if not a.regular:
            n *= int(a.hi[oi])
            continue
        kernel, _, pad_before, pad_after = a.window
        # the taps j in [0, kernel) with -pad_before <= start + j*step < size + pad_after: the
        # first and the stop of that run by ceiling division (a window may have 2**31 taps)
        start = int(a.start[oi])
        first = max(0, -((start + pad_before) // a.step))
        stop = min(kernel, -((start - a.size - pad_after) // a.step))
        n *= max(0, stop - first)
    return n


def _outputs(plan: Plan):
    return itertools.product(*(range(a.out) for a in plan.axes))


def max_forward(x: np.ndarray, plan: Plan, skip=None):
    """Max pooling, or min pooling (``plan.reduction.order`` -1): the same rule with the order reversed."""
    out = np.empty(plan.out_shape, dtype=x.dtype)
    off = np.empty(plan.out_shape, dtype=plan.off_dtype)
    B, C = x.shape[0], x.shape[4]
    red = plan.reduction
    better = red.better
    for o in _outputs(plan):
        best = np.full((B, C), red.padding(x.dtype), dtype=x.dtype)
        best_k = np.full((B, C), plan.sentinel, dtype=np.int64)
        taps = _window(plan, o)
        for k, (pd, ph, pw) in taps:
            v = x[:, pd, ph, pw, :]
            isnan = v != v
            ignored = (isnan if plan.nan_ignore else np.zeros_like(isnan)) | (
                False if skip is None else skip[:, pd, ph, pw, :])
            none_yet = best_k == plan.sentinel
            take = ~ignored & (none_yet | better(v, best) | isnan)
            best = np.where(take, v, best)
            best_k = np.where(take, k, best_k)
        if (plan.nan_ignore or skip is not None) and taps:
            # every input element of the window ignored: no winner
            best = np.where(best_k == plan.sentinel, red.empty(x.dtype), best)
        out[(slice(None),) + o] = best
        off[(slice(None),) + o] = best_k
    return out, off


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan, sealed: bool = False) -> np.ndarray:
    check_offsets(invalid_offsets(off, plan))              # the oracle checks even sealed offsets
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    bi, ci = np.meshgrid(np.arange(grad.shape[0]), np.arange(grad.shape[4]), indexing="ij")
    for o in _outputs(plan):
        for k, pos in _window(plan, o):
            hit = off[(slice(None),) + o] == k                      # (B, C)
            g = grad[(slice(None),) + o]
            gx[(bi[hit],) + pos + (ci[hit],)] += g[hit]
    return gx


def avg_forward(x: np.ndarray, plan: Plan, skip=None):
    ignoring = plan.nan_ignore or skip is not None
    out = np.empty(plan.out_shape, dtype=x.dtype)
    divisors = np.empty(plan.out_shape if ignoring else (0,), dtype=divs_dtype(x.dtype))   # kept for backward
    B, C = x.shape[0], x.shape[4]
    for o in _outputs(plan):
        taps = _window(plan, o)
        total = np.zeros((B, C), dtype=x.dtype)
        ignored = np.zeros((B, C), dtype=np.int64)
        for _, (pd, ph, pw) in taps:
            v = x[:, pd, ph, pw, :]
            ign = np.zeros((B, C), dtype=bool)
            if plan.nan_ignore and x.dtype.kind == "f":
                ign |= np.isnan(v)
            if skip is not None:
                ign |= skip[:, pd, ph, pw, :]
            ignored += ign
            total = total + np.where(ign, 0, v)
        if not plan.divide:
            div = np.ones((B, C))
        elif plan.divisor_override is not None:
            div = np.full((B, C), float(plan.divisor_override))
        else:
            n = _padded_count(plan, o) if plan.count_include_pad else len(taps)
            div = np.full((B, C), float(n))
            if ignoring:
                div = div - ignored
        empty = (ignored == len(taps)) & (len(taps) > 0)        # every input element ignored
        if ignoring:
            # such a window has no mean (and no gradient)
            divisors[(slice(None),) + o] = np.where(empty, np.nan, div)
        if not taps:
            res = np.zeros((B, C), dtype=x.dtype)          # window wholly in padding
        elif not plan.divide:
            res = total                                    # a sum (0 when nothing is left)
        else:
            res = np.where(empty, plan.reduction.empty(x.dtype), total / np.where(empty, 1, div).astype(x.dtype))
        out[(slice(None),) + o] = res
    saved = (divisors, ignored_mask(x, plan, skip)) if ignoring else None
    return out, saved


def avg_backward(grad: np.ndarray, saved, plan: Plan) -> np.ndarray:
    gx = np.zeros(plan.in_shape, dtype=grad.dtype)
    for o in _outputs(plan):
        taps = _window(plan, o)
        if not taps:
            continue
        g = grad[(slice(None),) + o]
        if saved is not None:
            divisors, ignored = saved
            div = divisors[(slice(None),) + o]
            share = np.where(np.isnan(div), 0, g / np.where(np.isnan(div), 1, div).astype(grad.dtype))
        elif not plan.divide:
            share = g
        elif plan.divisor_override is not None:
            share = g / grad.dtype.type(plan.divisor_override)
        else:
            n = _padded_count(plan, o) if plan.count_include_pad else len(taps)
            share = g / grad.dtype.type(n)
        for _, pos in taps:
            idx = (slice(None),) + pos
            if saved is not None:
                gx[idx] += np.where(ignored[idx], 0, share)
            else:
                gx[idx] += share
    return gx


def scatter(values: np.ndarray, idx: np.ndarray, size: int, accumulate: bool) -> np.ndarray:
    """``out[b, idx[b, p, c], c] (+)= values[b, p, c]`` in order; (B, P, C) -> (B, size, C)."""
    B, P, C = values.shape
    out = np.zeros((B, size, C), dtype=values.dtype)
    for b in range(B):
        for p in range(P):
            for c in range(C):
                i = idx[b, p, c]
                if i < 0:
                    continue
                if accumulate:
                    out[b, i, c] += values[b, p, c]
                else:
                    out[b, i, c] = values[b, p, c]
    return out
