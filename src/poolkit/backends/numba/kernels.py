"""Generic Numba loop kernels (the chapter's method 1) for any window geometry.

They work on the canonical ``(B, D, H, W, C)`` layout and read the windows from
a plan's table ``tab`` (``int64 (3, 5, n)``: per axis D/H/W the rows start, lo,
hi, padded count and step; see :class:`poolkit.core.plan.Plan`), so one kernel
serves 1-D, 2-D and 3-D, strided and adaptive windows, any padding and
dilation, channels-first (``C == 1``) and channels-last data.

There is one kernel per traversal -- forward over output rows, backward over
batch entries -- and the reduction (:data:`MAX`, :data:`MIN` or :data:`AVG`,
which also sums: the ``kernel`` variant of a :class:`~poolkit.core.reductions.Reduction`)
is a compile-time constant of each: the branches of the others are never
compiled into it.  :data:`FORWARD` and :data:`BACKWARD` hold them by variant;
min pooling's winners go back through the max backward kernel.  The max rule
itself is one inline function, :func:`takes_over`, shared by every Numba kernel
that picks a winner.

Forward kernels take output rows ``(b, od, oh)`` as work items: every output is
written by exactly one thread, so results do not depend on the thread count.
Backward kernels scatter; their work items are batch entries ``b``, and inside
one ``b`` they add contributions in output order -- the same order as the
reference backend, hence bit-identical gradients.

Max backward never trusts the offsets it is given: one outside the window is
counted in ``bad[b]`` and skipped, so no content of ``off`` makes it write out
of bounds (the caller raises).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...core.reductions import KERNEL_AVG as AVG, KERNEL_MAX as MAX, KERNEL_MIN as MIN
from .jit import kernel

__all__ = ["MAX", "AVG", "MIN", "takes_over", "FORWARD", "BACKWARD", "scatter"]


@njit(inline="always")
def takes_over(v, best, OP):
    """The max rule (PyTorch's): tap ``v`` replaces the running winner ``best`` when it is greater
    (smaller for ``OP == MIN``) or NaN, so ties go to the first winner and a NaN window reports its
    last NaN.  Branch-free (``|``, not ``or``): the specialised kernels' loops stay vectorisable.

    (Numba's disk cache does not see edits to an inlined function from another file: after
    changing this rule, clear the kernel cache.)
    """
    return ((v < best) if OP == MIN else (v > best)) | (v != v)


@njit(inline="always")
def _output_row(r, OD, OH, tab):
    """Output row ``r`` as ``(b, od, oh)``, and where its windows lie along D and H (start, lo, hi)."""
    od = (r // OH) % OD
    oh = r % OH
    return (r // (OD * OH), od, oh, tab[0, 0, od], tab[0, 1, od], tab[0, 2, od],
            tab[1, 0, oh], tab[1, 1, oh], tab[1, 2, oh])


@njit(inline="always")
def _max_tap(out, off, i, v, k, sentinel, OP):
    # The max rule, tap by tap: the first tap considered wins, then one that takes over.
    # Ignored elements never get here.
    if off[i] == sentinel or takes_over(v, out[i], OP):
        out[i] = v
        off[i] = k


def _make_forward(OP):
    @kernel
    def forward(lo, hi, x, out, off, tab, kh, kw, nan_ignore, sentinel, lowest, nanval, divisor, subtract_nans,
                divs, skip, has_skip, divide):
        """Reduce each window of output rows ``[lo, hi)``: max or min (value and winning tap) or sum/mean.

        *Ignored* elements are left out of their windows: NaN when ``nan_ignore``, and
        where ``skip`` is True when ``has_skip`` (a mask; one mechanism for both).
        Max and min: a window wholly in padding gets ``lowest`` (for min: the top of the
        dtype) and ``sentinel``; one whose
        input elements are all ignored gets ``nanval`` and ``sentinel``.
        Sum: the taps are added in scan order, then divided by ``divisor[od, oh, ow]``
        when ``divide`` (a mean). When ignoring, the divisor used (less the ignored
        count when ``subtract_nans``, i.e. without ``divisor_override``) is stored per
        output in ``divs`` (float), which also counts the ignored elements; a window
        whose elements are all ignored gets ``nanval`` and a NaN divisor. ``off``
        (max) and ``divs`` (sum) are unused by the other reduction.
        """
        C = x.shape[4]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
        ignoring = nan_ignore or has_skip
        for r in range(lo, hi):
            b, od, oh, d0, dlo, dhi, h0, hlo, hhi = _output_row(r, OD, OH, tab)
            for ow in range(OW):
                w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
                o = out[b, od, oh, ow]                       # (C,) views of this output
                k = off[b, od, oh, ow] if OP != AVG else off[0, 0, 0, 0]
                for c in range(C):
                    if OP != AVG:
                        o[c] = lowest
                        k[c] = sentinel
                    else:
                        o[c] = 0
                        if ignoring:
                            divs[b, od, oh, ow, c] = 0
                for jd in range(dlo, dhi):
                    pd = d0 + jd * sd
                    for jh in range(hlo, hhi):
                        ph = h0 + jh * sh
                        for jw in range(wlo, whi):
                            pw = w0 + jw * sw
                            xs = x[b, pd, ph, pw]
                            sk = skip[b, pd, ph, pw] if has_skip else skip[0, 0, 0, 0]
                            t = (jd * kh + jh) * kw + jw
                            for c in range(C):
                                v = xs[c]
                                if (nan_ignore and v != v) or (has_skip and sk[c]):
                                    if OP == AVG:
                                        divs[b, od, oh, ow, c] += 1
                                elif OP != AVG:
                                    _max_tap(o, k, c, v, t, sentinel, OP)
                                else:
                                    o[c] += v
                n_in = max(dhi - dlo, 0) * max(hhi - hlo, 0) * max(whi - wlo, 0)
                if OP != AVG:
                    if ignoring and n_in > 0:
                        for c in range(C):
                            if k[c] == sentinel:
                                o[c] = nanval
                    continue
                dv = divisor[od, oh, ow]
                for c in range(C):
                    if n_in == 0:
                        # window wholly in padding: its sum, 0, stands
                        if ignoring:
                            divs[b, od, oh, ow, c] = dv
                    elif ignoring:
                        nans = divs[b, od, oh, ow, c]
                        if nans == n_in:
                            o[c] = nanval
                            divs[b, od, oh, ow, c] = np.nan
                        else:
                            divs[b, od, oh, ow, c] = dv - nans if subtract_nans else dv
                            if divide:
                                o[c] = o[c] / divs[b, od, oh, ow, c]
                    elif divide:
                        o[c] = o[c] / dv

    return forward


def _make_backward(OP):
    @kernel
    def backward(lo, hi, g, off, gx, tab, kh, kw, sentinel, divisor, ignoring, divs, ignored, bad):
        """Gradients of batch entries ``[lo, hi)``, each contribution added in output order.

        Max: ``g`` goes to each window's winning tap (``off``); an offset that is
        neither a tap of the window nor ``sentinel`` is skipped and counted in
        ``bad[b]``. Sum/mean: ``g / divisor`` goes to each tap inside the input; when
        ``ignoring`` the divisor is the output's ``divs`` (NaN: no gradient) and
        ignored input elements (``ignored``) get nothing.
        """
        C = gx.shape[4]
        OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
        sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
        for b in range(lo, hi):
            gx[b] = 0
            for od in range(OD):
                d0, dlo, dhi = tab[0, 0, od], tab[0, 1, od], tab[0, 2, od]
                for oh in range(OH):
                    h0, hlo, hhi = tab[1, 0, oh], tab[1, 1, oh], tab[1, 2, oh]
                    for ow in range(OW):
                        w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
                        if OP == MAX:
                            for c in range(C):
                                k = off[b, od, oh, ow, c]
                                if k == sentinel:
                                    continue
                                jd = k // (kh * kw)
                                jh = (k // kw) % kh
                                jw = k % kw
                                if k < 0 or jd < dlo or jd >= dhi or jh < hlo or jh >= hhi or jw < wlo or jw >= whi:
                                    bad[b] += 1             # not a tap of this window inside the input
                                    continue
                                gx[b, d0 + jd * sd, h0 + jh * sh, w0 + jw * sw, c] += g[b, od, oh, ow, c]
                            continue
                        for jd in range(dlo, dhi):
                            pd = d0 + jd * sd
                            for jh in range(hlo, hhi):
                                ph = h0 + jh * sh
                                for jw in range(wlo, whi):
                                    pw = w0 + jw * sw
                                    for c in range(C):
                                        if ignoring:
                                            dv = divs[b, od, oh, ow, c]
                                            if dv != dv or ignored[b, pd, ph, pw, c]:
                                                continue
                                        else:
                                            dv = divisor[od, oh, ow]
                                        gx[b, pd, ph, pw, c] += g[b, od, oh, ow, c] / dv

    return backward


max_forward, min_forward, avg_forward = _make_forward(MAX), _make_forward(MIN), _make_forward(AVG)
max_backward, avg_backward = _make_backward(MAX), _make_backward(AVG)
#: The kernels by variant (``Reduction.kernel``): min pooling's winners go back as max pooling's.
FORWARD = {MAX: max_forward, MIN: min_forward, AVG: avg_forward}
BACKWARD = {MAX: max_backward, MIN: max_backward, AVG: avg_backward}


@kernel
def scatter(lo, hi, values, idx, out, accumulate):
    """``out[b, idx[b, p, c], c] (+)= values[b, p, c]`` for ``b`` in ``[lo, hi)``, in order of ``p``.

    Negative indices are skipped; the caller checks that none reaches past ``out``.
    """
    P, C = values.shape[1], values.shape[2]
    for b in range(lo, hi):
        for p in range(P):
            for c in range(C):
                i = idx[b, p, c]
                if i < 0:
                    continue
                if accumulate:
                    out[b, i, c] += values[b, p, c]
                else:
                    out[b, i, c] = values[b, p, c]
