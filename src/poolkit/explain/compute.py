"""The computation behind ``poolkit explain``: one plane pooled forward and backward.

This module's job is the numbers: it reads the arguments (through
:mod:`.parse`), asks poolkit's own public functions for max and mean
pooling's output, argmax, gradients and output shape, works min, sum and Lp
pooling out from the window values directly (in NumPy, by their definitions),
and keeps every step -- the windows, the divisors, the per-axis explanation
-- in one plain dict per mode.  The renderers (:mod:`.text`, :mod:`.figures`,
:mod:`.jsonout`) only read those dicts.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Tuple, cast

import numpy as np

from ..core.geometry import Axis, PoolSpec
from ..core.plan import make_plan
from ..core.reductions import AVG
from ..functional import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, output_shape
from .parse import ExplainError, parse_flag, parse_matrix, parse_modes, parse_norm_type, parse_pair
from .words import TEXT, explain_shape, words_for

__all__ = ["CHAPTER_INPUT", "CHAPTER_GRAD", "PY_NAMES", "explain_pooling", "explain", "explain_results"]

#: The 4x4 grid of the chapter's figures 17-32 to 17-34 (as given in the issue).
CHAPTER_INPUT = ((1, 3, 2, 1), (4, 2, 1, 5), (3, 1, 1, 0), (1, 2, 2, 4))
#: The upstream gradient of figure 17-34.
CHAPTER_GRAD = ((1, 2), (3, 4))

#: How :func:`explain_pooling` names its arguments in error messages (the CLI has its own).
PY_NAMES = {"input": "input", "grad": "grad", "kernel_size": "kernel_size", "stride": "stride",
            "padding": "padding", "dilation": "dilation", "ceil_mode": "ceil_mode", "mode": "mode",
            "norm_type": "norm_type", "lang": "lang"}

#: Lp pooling's default ``p``.
DEFAULT_NORM_TYPE = 2.0


def _tolist(a: np.ndarray):
    """Nested lists of Python floats; NaN and infinities become None (JSON has no such numbers)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        v = float(a)
        return v if math.isfinite(v) else None
    return [_tolist(r) for r in a]


def _window_taps(axis: Axis) -> List[List[int]]:
    """Input positions of every tap of every window along ``axis``, padding included."""
    return [[int(axis.start[o] + j * axis.step) for j in range(axis.taps)] for o in range(axis.out)]


def _window_positions(axes: Tuple[Axis, Axis], sizes: Tuple[int, int]) -> np.ndarray:
    """Flat position in the plane of every tap of every window, -1 for padding: int64 (OH, OW, KH*KW).

    Taps in scan order, row by row over the window: the order max pooling
    scans them in, so "first" and "last" mean the same for every mode.
    """
    h, w = sizes
    rows = np.array(_window_taps(axes[0]), dtype=np.int64)[:, None, :, None]     # (OH, 1, KH, 1)
    cols = np.array(_window_taps(axes[1]), dtype=np.int64)[None, :, None, :]     # (1, OW, 1, KW)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)                  # (OH, OW, KH, KW)
    flat = np.where(inside, rows * w + cols, -1)
    return flat.reshape(flat.shape[0], flat.shape[1], -1)                        # (OH, OW, K)


def _tap_values(x: np.ndarray, flat: np.ndarray, fill: float) -> np.ndarray:
    """The input under each tap of ``flat`` (:func:`_window_positions`), ``fill`` on padding."""
    return np.where(flat >= 0, x.ravel()[np.maximum(flat, 0)], fill)


def _scatter(grads: np.ndarray, flat: np.ndarray, shape) -> np.ndarray:
    """Backward's last step: add each tap's gradient into its input position; padding's is dropped."""
    gi = np.zeros(int(np.prod(shape)), dtype=np.float64)
    np.add.at(gi, flat[flat >= 0], grads[flat >= 0])
    return gi.reshape(shape)


def _min_pool(x: np.ndarray, flat: np.ndarray):
    """Min pooling of one plane: ``(y, indices)``, (OH, OW) each, indices flat in the plane.

    Padding never wins (it acts as +inf).  The first tap inside the input
    starts the scan and a later one takes over when smaller or NaN: ties go
    to the first minimum and a window with NaN reports its last NaN, mirroring
    max pooling's rule.  A window wholly in padding gives +inf and index -1.
    """
    y = np.full(flat.shape[:2], np.inf)
    idx = np.full(flat.shape[:2], -1, dtype=np.int64)
    vals = _tap_values(x, flat, np.inf)
    for k in range(flat.shape[2]):
        f, v = flat[..., k], vals[..., k]
        take = (f >= 0) & ((idx < 0) | (v < y) | np.isnan(v))
        y, idx = np.where(take, v, y), np.where(take, f, idx)
    return y, idx


def _lp_pool(x: np.ndarray, flat: np.ndarray, divisor: np.ndarray, p: float, g: np.ndarray):
    """Lp pooling of one plane (finite ``p``) and its gradient: ``(y, grad_input, power_sum, tap_grads)``.

    ``y = (sum of x**p over the window * K / divisor)**(1/p)``: PyTorch's
    ``(avg_pool(x**p, count_include_pad=True) * K)**(1/p)``, with ``K`` the
    window's taps and ``divisor`` average pooling's count of the taps inside
    the padded extent (K, except where a ceil_mode window runs past it).
    Padding adds 0 to the sum (also for a negative ``p``, where ``0**p``
    would be infinite: the library pools ``x**p`` with zero padding).  A
    negative power or sum under a fractional exponent is NaN, as in PyTorch.
    ``power_sum`` is what the root is taken of, ``sum(x**p) * K / divisor``;
    ``tap_grads`` (OH, OW, K) what each tap of each window gets back.
    Backward: tap ``x`` gets ``g * K/divisor * x**(p-1) * y**(1-p)``; a
    window with ``y = 0`` (for ``p > 0``: its sum is 0) sends nothing back: 0,
    where PyTorch's formula gives 0/0 for p > 1 (and 0 for p <= 1), as
    :func:`poolkit.lp_pool_backward` does.  For ``p < 0`` the same rule covers
    a sum of 0 (``y = inf``) and a tap of 0 (``x**p = inf``, so ``y = 0``).
    """
    vals = _tap_values(x, flat, 0.0)                                 # (OH, OW, K)
    scale = flat.shape[2] / divisor                                  # K / divisor, (OH, OW)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        powers = np.where(flat >= 0, np.power(vals, p), 0.0)
        total = powers.sum(axis=-1) * scale
        y = np.power(total, 1.0 / p)
        dy = scale[..., None] * np.power(vals, p - 1) * np.power(y, 1.0 - p)[..., None]
        dy = np.where(((y == 0) | (total == 0))[..., None], 0.0, dy)
        grads = np.where(flat >= 0, g[..., None] * dy, 0.0)
    return y, _scatter(grads, flat, x.shape), total, grads


def _norm_json(p: float):
    """``p`` as the results keep it: a float, or "inf" / "-inf" (JSON has no infinity)."""
    return p if math.isfinite(p) else "inf" if p > 0 else "-inf"


def _show(name: str, value) -> str:
    if isinstance(value, tuple):
        value = value[0] if value[0] == value[1] else ",".join(map(str, value))
    return f"{name} {value}" if name.startswith("--") else f"{name}={value!r}"


def explain_results(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad,
                    norm_type, lang, names: Mapping[str, str], backend="img2col", *, steps=False) -> List[dict]:
    """:func:`explain_pooling` with the arguments named in errors as ``names`` says.

    Parameters
    ----------
    input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad, norm_type, lang, backend
        As for :func:`explain_pooling` (all given, in that order).
    steps : bool
        As for :func:`explain_pooling`.
    names : mapping of str to str
        Each parameter of :func:`explain_pooling` as the caller spells it:
        :data:`PY_NAMES` for Python, the option names for the command line.

    Returns
    -------
    results : list of dict
        As :func:`explain_pooling` returns them.

    Examples
    --------
    >>> explain_results(None, 2, None, 0, 1, False, "median", None, True, None, "en",
    ...                 {**PY_NAMES, "mode": "--mode"})
    Traceback (most recent call last):
    ...
    poolkit.explain.parse.ExplainError: --mode: expected max, avg (or mean), min, sum, lp or both, but got 'median'.
    """
    words_for(TEXT, lang, names["lang"])
    modes = parse_modes(mode, names["mode"])
    if norm_type is not None and "lp" not in modes:
        raise ExplainError(f"{names['norm_type']}: only Lp pooling has a norm type, but got "
                           f"{_show(names['mode'], mode)}; use {_show(names['mode'], 'lp')}.")
    p_norm = parse_norm_type(DEFAULT_NORM_TYPE if norm_type is None else norm_type, names["norm_type"])
    x = parse_matrix(CHAPTER_INPUT if input is None else input, names["input"])
    k = parse_pair(kernel_size, names["kernel_size"], 1)
    s = k if stride is None else parse_pair(stride, names["stride"], 1)
    p = parse_pair(padding, names["padding"], 0)
    d = parse_pair(dilation, names["dilation"], 1)
    ceil = parse_flag(ceil_mode, names["ceil_mode"])
    sizes = (int(x.shape[0]), int(x.shape[1]))
    config = ", ".join([_show(names["kernel_size"], k), _show(names["stride"], s), _show(names["padding"], p),
                        _show(names["dilation"], d), _show(names["ceil_mode"], ceil)] +
                       [f"input shape {sizes}"])
    try:
        spec = PoolSpec.from_args(2, k, s, p, d, ceil)
    except (ValueError, TypeError) as exc:
        raise ExplainError(f"invalid configuration ({config}): {exc}") from None
    # The text of output_shape(..., explain=True), made here too so that a rejected
    # configuration (for which output_shape raises) is explained as well.
    explanation = explain_shape(spec, sizes, lang).splitlines()
    try:
        out_shape = output_shape(sizes, k, s, p, d, ceil)
    except ValueError as exc:
        why = "\n".join("  " + line for line in explanation)
        raise ExplainError(f"invalid configuration ({config}): {exc}\n{why}") from None
    axes = cast(Tuple[Axis, Axis], spec.axes(sizes))   # the windows: one Axis per spatial dimension (H, W)

    n_out = int(np.prod(out_shape))
    if grad is None:
        # The default: 1, 2, ..., n over the output in row-major order ([[1,2],[3,4]] for 2x2).
        g = np.arange(1, n_out + 1, dtype=np.float64).reshape(out_shape)
        grad_source = "ramp"
    else:
        g = parse_matrix(grad, names["grad"])
        if g.shape != tuple(out_shape):
            raise ExplainError(
                f"{names['grad']}: the gradient has shape {g.shape}, but this configuration's output has "
                f"shape {tuple(out_shape)}; give a {out_shape[0]}x{out_shape[1]} matrix, or leave "
                f"{names['grad']} out to use 1..{n_out}.")
        grad_source = "given"

    window_rows, window_cols = _window_taps(axes[0]), _window_taps(axes[1])
    flat = _window_positions(axes, sizes)       # (OH, OW, K): every tap's position, -1 on padding
    x4 = x[None, None]                          # (1, 1, H, W): one sample, one channel
    g4 = g[None, None]                          # (1, 1, H_out, W_out)

    def divisors(include_pad: bool) -> np.ndarray:
        # The divisors the backends use: taps inside the padded input (PyTorch's default) or the input.
        plan = make_plan(AVG, axes, 1, 1, count_include_pad=include_pad)
        return cast(np.ndarray, plan.base_divisor)[0]                   # (OD=1, OH, OW) -> (OH, OW)

    common = {
        "input": _tolist(x), "input_shape": list(sizes),
        "kernel_size": list(k), "stride": list(s), "padding": list(p), "dilation": list(d),
        "ceil_mode": ceil, "output_shape": list(out_shape),
    }
    results = []
    for m in modes:
        r: Dict = {"mode": m, **common}
        if m == "lp":
            r["norm_type"] = _norm_json(p_norm)
        if m == "max" or m == "lp" and p_norm == math.inf:
            # p = inf (the L-infinity norm, as poolkit.lp_pool) is max pooling of |x|; the winner's
            # gradient takes the sign of x there.
            linf = m == "lp"
            y, idx = max_pool2d(np.abs(x4) if linf else x4, k, s, p, d, ceil, return_indices=True, backend=backend)
            gi = max_pool2d_backward(g4, idx, x4.shape, backend=backend)[0, 0] * (np.sign(x) if linf else 1.0)
            r["output"] = _tolist(y[0, 0])
            r["indices"] = idx[0, 0].tolist()
            r["argmax"] = _positions(idx[0, 0], sizes)
            takes = (flat >= 0) & (flat == idx[0, 0][..., None])
            shares = _winner_shares(takes, flat, g, np.sign(x) if linf else None)
        elif m == "min" or m == "lp" and p_norm == -math.inf:
            # p = -inf is min pooling of |x| (as poolkit.lp_pool); the winner's gradient takes the sign of x.
            neg_inf = m == "lp"
            y, idx = _min_pool(np.abs(x) if neg_inf else x, flat)
            gi = _scatter(np.where(flat == idx[..., None], g[..., None], 0.0), flat, sizes) * \
                (np.sign(x) if neg_inf else 1.0)
            r["output"] = _tolist(y)
            r["indices"] = idx.tolist()
            r["argmin"] = _positions(idx, sizes)
            takes = (flat >= 0) & (flat == idx[..., None])
            shares = _winner_shares(takes, flat, g, np.sign(x) if neg_inf else None)
        elif m == "sum":
            r["output"] = _tolist(_tap_values(x, flat, 0.0).sum(axis=-1))
            gi = _scatter(np.broadcast_to(g[..., None], flat.shape), flat, sizes)
            takes = flat >= 0
            shares = np.broadcast_to(g[..., None], flat.shape)
        elif m == "lp":
            divisor = divisors(True)
            y, gi, total, shares = _lp_pool(x, flat, divisor, p_norm, g)
            takes = flat >= 0
            r["output"] = _tolist(y)
            r["divisor"] = divisor.astype(int).tolist()
            r["power_sum"] = _tolist(total)
        else:
            y = avg_pool2d(x4, k, s, p, ceil, count_include_pad, dilation=d, backend=backend)
            gi = avg_pool2d_backward(g4, x4.shape, k, s, p, ceil, count_include_pad, dilation=d,
                                     backend=backend)[0, 0]
            r["output"] = _tolist(y[0, 0])
            r["count_include_pad"] = bool(count_include_pad)
            divisor = divisors(bool(count_include_pad))
            r["divisor"] = divisor.astype(int).tolist()
            takes = flat >= 0
            with np.errstate(invalid="ignore", divide="ignore"):
                shares = np.broadcast_to((g / divisor)[..., None], flat.shape)
        r["grad_output"] = _tolist(g)
        r["grad_source"] = grad_source
        r["grad_input"] = _tolist(gi)
        r["window_rows"] = window_rows
        r["window_cols"] = window_cols
        r["explanation"] = explanation
        r["lang"] = lang
        if steps:
            r["backward_steps"] = _backward_steps(shares, takes, flat, g, sizes)
        results.append(r)
    return results


def _winner_shares(takes: np.ndarray, flat: np.ndarray, g: np.ndarray, sign) -> np.ndarray:
    """Max / min backward per tap: the window's δ on its winner (times sign(x) for Lp with p = ±inf)."""
    shares = np.where(takes, g[..., None], 0.0)
    if sign is not None:
        shares = shares * np.where(flat >= 0, sign.ravel()[np.maximum(flat, 0)], 0.0)
    return shares


def _backward_steps(shares: np.ndarray, takes: np.ndarray, flat: np.ndarray, g: np.ndarray, sizes) -> List[dict]:
    """Backward one window at a time, in row-major order: what each δ sends where, and the sums so far.

    Parameters
    ----------
    shares : ndarray of float64, shape (OH, OW, K)
        What each tap of each window gets back.
    takes : ndarray of bool, shape (OH, OW, K)
        The taps that get something: the winner (max, min), or every tap inside the input.
    flat : ndarray of int64, shape (OH, OW, K)
        The taps' flat positions in the plane (:func:`_window_positions`), -1 on padding.
    g : ndarray, shape (OH, OW)
        The upstream gradient.
    sizes : (H, W)

    Returns
    -------
    steps : list of dict
        One per window: ``window`` ``[i, j]``, ``grad`` (δ[i, j]) and ``to``:
        ``[row, col, share, total]`` per receiving tap, ``total`` being the
        gradient of that input after this step (the running sum, in window
        order; after the last step it is ``grad_input``).
    """
    running = np.zeros(int(np.prod(sizes)), dtype=np.float64)
    steps = []
    for i, j in np.ndindex(*flat.shape[:2]):
        to = []
        for k in np.flatnonzero(takes[i, j]):
            pos = int(flat[i, j, k])
            running[pos] += shares[i, j, k]
            r, c = divmod(pos, sizes[1])
            to.append([r, c, _tolist(shares[i, j, k]), _tolist(running[pos])])
        steps.append({"window": [i, j], "grad": _tolist(g[i, j]), "to": to})
    return steps


def _positions(idx: np.ndarray, sizes) -> list:
    """Flat indices as ``[row, col]`` in the plane, None for -1 (no winner)."""
    return [[list(divmod(int(v), sizes[1])) if v >= 0 else None for v in row] for row in idx]


def explain_pooling(input=None, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False,
                    mode="both", grad=None, *, count_include_pad=True, norm_type=None, lang="en",
                    backend="img2col", steps=False) -> List[Dict]:
    """Pool one 2-D plane forward and backward, keeping every step for display.

    Max and mean pooling's numbers come from poolkit's own functions:
    :func:`poolkit.max_pool2d` (with ``return_indices``),
    :func:`poolkit.max_pool2d_backward`, :func:`poolkit.avg_pool2d`,
    :func:`poolkit.avg_pool2d_backward` and :func:`poolkit.output_shape`.
    Min, sum and Lp pooling are worked out here from each window's values,
    by their definitions:

    - min: the smallest element inside the input (padding never wins); ties
      go to the first in scan order, a NaN wins (the last one), as in max
      pooling. Backward sends each δ to that element.
    - sum: the sum of the elements inside the input (padding adds 0).
      Backward sends the whole δ to every one of them.
    - lp: PyTorch's LPPool, ``y = (Σ x**p · K / divisor)**(1/p)`` with ``K``
      the window's taps and ``divisor`` mean pooling's count of the taps
      inside the padded input (``K`` unless a ``ceil_mode`` window runs past
      it); negative sums under a fractional power give NaN, as in PyTorch.
      ``p = inf`` is max pooling of ``|x|`` (the L-infinity norm) and
      ``p = -inf`` min pooling of ``|x|``, as in :func:`poolkit.lp_pool`. Backward sends ``δ · K/divisor ·
      (x/y)**(p-1)`` to each element (for ``p = inf``: δ times the sign of
      the winner, to the winner); a window with ``y = 0`` sends nothing.

    Parameters
    ----------
    input : array_like or str, shape (H, W), optional
        The plane to pool, or a string for :func:`parse_matrix`. Default: the
        chapter's 4x4 grid :data:`CHAPTER_INPUT`.
    kernel_size, stride, padding, dilation : int or pair of ints
        As for :func:`poolkit.max_pool2d` (``padding`` symmetric; ``stride``
        defaults to ``kernel_size``). Every mode takes ``dilation``; with it,
        ``count_include_pad`` counts the dilated taps that fall in padding.
    ceil_mode : bool
    mode : {"both", "max", "avg", "mean", "min", "sum", "lp"}
        "both" is max and mean pooling.
    grad : array_like or str, shape (H_out, W_out), optional
        Upstream gradient. Default: 1, 2, ..., n in row-major order over the
        output (the chapter's [[1, 2], [3, 4]] for a 2x2 output).
    count_include_pad : bool
        For average pooling, as in :func:`poolkit.avg_pool2d`.
    norm_type : float or str, optional
        Lp pooling's ``p``: any number but 0 (negative too, as :func:`poolkit.lp_pool`
        takes it), or ``inf`` / ``-inf``. Default 2. Only with ``mode="lp"``.
    lang : {"en", "zh"}
        Language of the ``explanation`` lines.
    backend : str
        poolkit backend for max and mean pooling. All give the same numbers;
        the default, "img2col" (plain NumPy), needs no kernel compilation,
        which suits one small plane.
    steps : bool
        Also keep backward window by window (``backward_steps``), as
        ``poolkit explain --html`` steps through it.

    Returns
    -------
    results : list of dict
        One per mode (max first). Keys: ``mode``, ``input``, ``input_shape``,
        ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``ceil_mode``,
        ``output_shape``, ``output``, ``grad_output``, ``grad_source``
        ("given" or "ramp"), ``grad_input``, ``window_rows`` and
        ``window_cols`` (window ``(i, j)`` covers rows ``window_rows[i]`` x
        columns ``window_cols[j]``; positions outside ``[0, H)`` / ``[0, W)``
        are padding), ``explanation`` (list of str), ``lang``; for max also
        ``indices`` (flat, -1 for none) and ``argmax`` (``[row, col]`` or
        None); for min ``indices`` and ``argmin``; for avg also
        ``count_include_pad`` and ``divisor``; for lp ``norm_type`` (a float,
        "inf" or "-inf"), ``divisor`` and ``power_sum`` (``sum(x**p) * K /
        divisor``, what the ``1/p`` power is taken of); with ``p = inf``
        ``indices`` and ``argmax`` (the winners of ``|x|``) instead, with
        ``p = -inf`` ``indices`` and ``argmin``. Arrays are nested lists of floats (NaN and
        infinities as None). With ``steps=True`` also ``backward_steps``: one
        dict per window in row-major order, ``{"window": [i, j], "grad": δ,
        "to": [[row, col, share, total], ...]}``, where ``to`` lists the inputs
        that window sends gradient to (max, min: the winner; the others every
        tap inside the input), what each gets, and its gradient so far; after
        the last window the totals are ``grad_input``.

    Raises
    ------
    ExplainError
        (a ValueError) naming the bad argument; an impossible configuration
        also gets the per-axis explanation of why.

    Examples
    --------
    >>> max_r, avg_r = explain_pooling()
    >>> max_r["output"], avg_r["output"]
    ([[4.0, 5.0], [3.0, 4.0]], [[2.5, 2.25], [1.75, 1.75]])
    >>> max_r["grad_input"][1]
    [1.0, 0.0, 0.0, 2.0]
    >>> explain_pooling(mode="min")[0]["output"], explain_pooling(mode="sum")[0]["output"]
    ([[1.0, 1.0], [1.0, 0.0]], [[10.0, 9.0], [7.0, 7.0]])
    >>> explain_pooling(mode="lp", norm_type=1)[0]["output"]
    [[10.0, 9.0], [7.0, 7.0]]
    >>> explain_pooling(mode="max", steps=True)[0]["backward_steps"][1]      # δ[0,1] = 2 goes to the 5
    {'window': [0, 1], 'grad': 2.0, 'to': [[1, 3, 2.0, 2.0]]}
    """
    return explain_results(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad,
                           count_include_pad, norm_type, lang, PY_NAMES, backend, steps=steps)


#: Short name inside this module: ``poolkit.explain.explain(...)``.
explain = explain_pooling
