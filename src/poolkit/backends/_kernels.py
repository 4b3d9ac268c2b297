"""Generic Numba loop kernels (the chapter's method 1) for any window geometry.

They work on the canonical ``(B, D, H, W, C)`` layout and read the windows from
a plan's table ``tab`` (``int64 (3, 5, n)``: per axis D/H/W the rows start, lo,
hi, padded count and step; see :class:`poolkit._plan.Plan`), so one kernel
serves 1-D, 2-D and 3-D, strided and adaptive windows, any padding and
dilation, channels-first (``C == 1``) and channels-last data.

Forward kernels run a ``prange`` over output rows ``(b, od, oh)``: every output
is written by exactly one thread, so results do not depend on the thread count.
Backward kernels scatter; they run a ``prange`` over ``b`` and, inside one
``b``, add contributions in output order -- the same order as the reference
backend, hence bit-identical gradients.
"""
from __future__ import annotations

from numba import njit, prange

from ._jit import twin


@njit(inline="always")
def _output_row(r, OD, OH, tab):
    """Output row ``r`` as ``(b, od, oh)``, and where its windows lie along D and H (start, lo, hi)."""
    od = (r // OH) % OD
    oh = r % OH
    return (r // (OD * OH), od, oh, tab[0, 0, od], tab[0, 1, od], tab[0, 2, od],
            tab[1, 0, oh], tab[1, 1, oh], tab[1, 2, oh])


@twin
def max_forward(x, out, off, tab, kh, kw, nan_ignore, sentinel, lowest, nanval):
    """Max over each window: value into ``out``, winning tap offset into ``off``.

    A tap wins when it is the window's first tap inside the input, is greater
    than the winner so far, or is NaN (``nan_ignore``: NaN never wins; a window
    with only NaN gets ``nanval`` and ``sentinel``). Windows wholly in padding
    get ``lowest`` and ``sentinel``.
    """
    B = x.shape[0]
    C = x.shape[4]
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
    for r in prange(B * OD * OH):
        b, od, oh, d0, dlo, dhi, h0, hlo, hhi = _output_row(r, OD, OH, tab)
        for ow in range(OW):
            w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
            for c in range(C):
                out[b, od, oh, ow, c] = lowest
                off[b, od, oh, ow, c] = sentinel
            for jd in range(dlo, dhi):
                pd = d0 + jd * sd
                for jh in range(hlo, hhi):
                    ph = h0 + jh * sh
                    for jw in range(wlo, whi):
                        pw = w0 + jw * sw
                        k = (jd * kh + jh) * kw + jw
                        for c in range(C):
                            v = x[b, pd, ph, pw, c]
                            first = off[b, od, oh, ow, c] == sentinel
                            if nan_ignore:
                                take = v == v and (first or v > out[b, od, oh, ow, c])
                            else:
                                take = first or v > out[b, od, oh, ow, c] or v != v
                            if take:
                                out[b, od, oh, ow, c] = v
                                off[b, od, oh, ow, c] = k
            if nan_ignore and dhi > dlo and hhi > hlo and whi > wlo:
                for c in range(C):
                    if off[b, od, oh, ow, c] == sentinel:
                        out[b, od, oh, ow, c] = nanval


@twin
def max_backward(g, off, gx, tab, kh, kw, sentinel):
    """Scatter ``g`` to the winning taps: ``gx[b, winner] += g``, in output order."""
    B = gx.shape[0]
    C = gx.shape[4]
    OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
    for b in prange(B):
        gx[b] = 0
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    for c in range(C):
                        k = off[b, od, oh, ow, c]
                        if k == sentinel:
                            continue
                        jd = k // (kh * kw)
                        jh = (k // kw) % kh
                        jw = k % kw
                        pd = tab[0, 0, od] + jd * sd
                        ph = tab[1, 0, oh] + jh * sh
                        pw = tab[2, 0, ow] + jw * sw
                        gx[b, pd, ph, pw, c] += g[b, od, oh, ow, c]


@twin
def avg_forward(x, out, tab, divisor, nan_ignore, subtract_nans, divs, nanval):
    """Mean over each window: sum in scan order, then divide by ``divisor[od, oh, ow]``.

    ``divisor`` (OD, OH, OW) is in x's dtype. With ``nan_ignore`` NaN elements
    are skipped; the divisor actually used (less the NaN count when
    ``subtract_nans``, i.e. without ``divisor_override``) is stored per output in
    ``divs``, which also serves as the NaN counter. A window whose elements are
    all NaN gets ``nanval`` in both.
    """
    B = x.shape[0]
    C = x.shape[4]
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
    for r in prange(B * OD * OH):
        b, od, oh, d0, dlo, dhi, h0, hlo, hhi = _output_row(r, OD, OH, tab)
        for ow in range(OW):
            w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
            for c in range(C):
                out[b, od, oh, ow, c] = 0
                if nan_ignore:
                    divs[b, od, oh, ow, c] = 0
            for jd in range(dlo, dhi):
                pd = d0 + jd * sd
                for jh in range(hlo, hhi):
                    ph = h0 + jh * sh
                    for jw in range(wlo, whi):
                        pw = w0 + jw * sw
                        for c in range(C):
                            v = x[b, pd, ph, pw, c]
                            if nan_ignore and v != v:
                                divs[b, od, oh, ow, c] += 1
                            else:
                                out[b, od, oh, ow, c] += v
            n_in = max(dhi - dlo, 0) * max(hhi - hlo, 0) * max(whi - wlo, 0)
            dv = divisor[od, oh, ow]
            for c in range(C):
                if n_in == 0:
                    # window wholly in padding: its sum, 0, stands
                    if nan_ignore:
                        divs[b, od, oh, ow, c] = dv
                elif nan_ignore:
                    nans = divs[b, od, oh, ow, c]
                    if nans == n_in:
                        out[b, od, oh, ow, c] = nanval
                        divs[b, od, oh, ow, c] = nanval
                    else:
                        divs[b, od, oh, ow, c] = dv - nans if subtract_nans else dv
                        out[b, od, oh, ow, c] = out[b, od, oh, ow, c] / divs[b, od, oh, ow, c]
                else:
                    out[b, od, oh, ow, c] = out[b, od, oh, ow, c] / dv


@twin
def avg_backward(g, gx, tab, divisor, nan_ignore, divs, nan_mask):
    """Spread ``g / divisor`` over each window's taps inside the input, in output order.

    With ``nan_ignore`` the per-output divisor comes from ``divs`` (NaN: no
    gradient) and NaN input elements (``nan_mask``) get nothing.
    """
    B = gx.shape[0]
    C = gx.shape[4]
    OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    sd, sh, sw = tab[0, 4, 0], tab[1, 4, 0], tab[2, 4, 0]
    for b in prange(B):
        gx[b] = 0
        for od in range(OD):
            d0, dlo, dhi = tab[0, 0, od], tab[0, 1, od], tab[0, 2, od]
            for oh in range(OH):
                h0, hlo, hhi = tab[1, 0, oh], tab[1, 1, oh], tab[1, 2, oh]
                for ow in range(OW):
                    w0, wlo, whi = tab[2, 0, ow], tab[2, 1, ow], tab[2, 2, ow]
                    for jd in range(dlo, dhi):
                        pd = d0 + jd * sd
                        for jh in range(hlo, hhi):
                            ph = h0 + jh * sh
                            for jw in range(wlo, whi):
                                pw = w0 + jw * sw
                                for c in range(C):
                                    if nan_ignore:
                                        dv = divs[b, od, oh, ow, c]
                                        if dv != dv or nan_mask[b, pd, ph, pw, c]:
                                            continue
                                    else:
                                        dv = divisor[od, oh, ow]
                                    gx[b, pd, ph, pw, c] += g[b, od, oh, ow, c] / dv


@twin
def scatter(values, idx, out, accumulate):
    """``out[b, idx[b, p, c], c] (+)= values[b, p, c]`` in order of ``p``; negative idx skipped."""
    B, P, C = values.shape
    for b in prange(B):
        for p in range(P):
            for c in range(C):
                i = idx[b, p, c]
                if i < 0:
                    continue
                if accumulate:
                    out[b, i, c] += values[b, p, c]
                else:
                    out[b, i, c] = values[b, p, c]
