"""The computation behind ``poolkit explain``: one plane pooled forward and backward.

This module's job is the numbers: it reads the arguments (through
:mod:`.parse`), asks poolkit's own public functions for the output, the
argmax, the gradients and the output shape, and keeps every step -- the
windows, the divisors, the per-axis explanation -- in one plain dict per
mode.  The renderers (:mod:`.text`, :mod:`.figures`, :mod:`.jsonout`) only
read those dicts.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, cast

import numpy as np

from .._geometry import Axis, PoolSpec
from .._plan import make_plan
from ..functional import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, output_shape
from .parse import ExplainError, parse_flag, parse_matrix, parse_modes, parse_pair
from .words import TEXT, explain_shape, words_for

__all__ = ["CHAPTER_INPUT", "CHAPTER_GRAD", "PY_NAMES", "explain_pooling", "explain", "explain_results"]

#: The 4x4 grid of the chapter's figures 17-32 to 17-34 (as given in the issue).
CHAPTER_INPUT = ((1, 3, 2, 1), (4, 2, 1, 5), (3, 1, 1, 0), (1, 2, 2, 4))
#: The upstream gradient of figure 17-34.
CHAPTER_GRAD = ((1, 2), (3, 4))

#: How :func:`explain_pooling` names its arguments in error messages (the CLI has its own).
PY_NAMES = {"input": "input", "grad": "grad", "kernel_size": "kernel_size", "stride": "stride",
            "padding": "padding", "dilation": "dilation", "ceil_mode": "ceil_mode", "mode": "mode",
            "lang": "lang"}


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


def _show(name: str, value) -> str:
    if isinstance(value, tuple):
        value = value[0] if value[0] == value[1] else ",".join(map(str, value))
    return f"{name} {value}" if name.startswith("--") else f"{name}={value!r}"


def explain_results(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad,
                    lang, names: Mapping[str, str], backend="img2col") -> List[dict]:
    """:func:`explain_pooling` with the arguments named in errors as ``names`` says.

    Parameters
    ----------
    input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad, lang, backend
        As for :func:`explain_pooling` (all given, in that order).
    names : mapping of str to str
        Each parameter of :func:`explain_pooling` as the caller spells it:
        :data:`PY_NAMES` for Python, the option names for the command line.

    Returns
    -------
    results : list of dict
        As :func:`explain_pooling` returns them.

    Examples
    --------
    >>> explain_results(None, 2, None, 0, 1, False, "median", None, True, "en", {**PY_NAMES, "mode": "--mode"})
    Traceback (most recent call last):
    ...
    poolkit.explain.parse.ExplainError: --mode: expected max, avg (or mean) or both, but got 'median'.
    """
    words_for(TEXT, lang, names["lang"])
    modes = parse_modes(mode, names["mode"])
    x = parse_matrix(CHAPTER_INPUT if input is None else input, names["input"])
    k = parse_pair(kernel_size, names["kernel_size"], 1)
    s = k if stride is None else parse_pair(stride, names["stride"], 1)
    p = parse_pair(padding, names["padding"], 0)
    d = parse_pair(dilation, names["dilation"], 1)
    ceil = parse_flag(ceil_mode, names["ceil_mode"])
    if "avg" in modes and d != (1, 1):
        raise ExplainError(f"{names['dilation']}: average pooling has no dilation (as in PyTorch), but got "
                           f"dilation={d}; use {names['mode']} max to see dilated max pooling.")
    sizes = tuple(int(n) for n in x.shape)
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
    axes = spec.axes(sizes)                     # the windows: one Axis per spatial dimension (H, W)

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
    x4 = x[None, None]                          # (1, 1, H, W): one sample, one channel
    g4 = g[None, None]                          # (1, 1, H_out, W_out)
    common = {
        "input": _tolist(x), "input_shape": list(sizes),
        "kernel_size": list(k), "stride": list(s), "padding": list(p), "dilation": list(d),
        "ceil_mode": ceil, "output_shape": list(out_shape),
    }
    results = []
    for m in modes:
        r = {"mode": m, **common}
        if m == "max":
            y, idx = max_pool2d(x4, k, s, p, d, ceil, return_indices=True, backend=backend)
            gi = max_pool2d_backward(g4, idx, x4.shape, backend=backend)
            flat = idx[0, 0]
            r["output"] = _tolist(y[0, 0])
            r["indices"] = flat.tolist()
            r["argmax"] = [[list(divmod(int(v), sizes[1])) if v >= 0 else None for v in row] for row in flat]
        else:
            y = avg_pool2d(x4, k, s, p, ceil, count_include_pad, backend=backend)
            gi = avg_pool2d_backward(g4, x4.shape, k, s, p, ceil, count_include_pad, backend=backend)
            r["output"] = _tolist(y[0, 0])
            r["count_include_pad"] = bool(count_include_pad)
            # The divisors the backends use: taps inside the padded input (PyTorch's default) or the input.
            divisor = cast(np.ndarray, make_plan("avg", axes, 1, 1, count_include_pad=bool(count_include_pad))
                           .base_divisor)                               # set for op "avg"
            r["divisor"] = divisor[0].astype(int).tolist()               # (OD=1, OH, OW) -> (OH, OW)
        r["grad_output"] = _tolist(g)
        r["grad_source"] = grad_source
        r["grad_input"] = _tolist(gi[0, 0])
        r["window_rows"] = window_rows
        r["window_cols"] = window_cols
        r["explanation"] = explanation
        r["lang"] = lang
        results.append(r)
    return results


def explain_pooling(input=None, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False,
                    mode="both", grad=None, *, count_include_pad=True, lang="en",
                    backend="img2col") -> List[Dict]:
    """Pool one 2-D plane forward and backward, keeping every step for display.

    All numbers come from poolkit's own functions: :func:`poolkit.max_pool2d`
    (with ``return_indices``), :func:`poolkit.max_pool2d_backward`,
    :func:`poolkit.avg_pool2d`, :func:`poolkit.avg_pool2d_backward` and
    :func:`poolkit.output_shape`.

    Parameters
    ----------
    input : array_like or str, shape (H, W), optional
        The plane to pool, or a string for :func:`parse_matrix`. Default: the
        chapter's 4x4 grid :data:`CHAPTER_INPUT`.
    kernel_size, stride, padding, dilation : int or pair of ints
        As for :func:`poolkit.max_pool2d` (``padding`` symmetric; ``stride``
        defaults to ``kernel_size``). Average pooling has no ``dilation``.
    ceil_mode : bool
    mode : {"both", "max", "avg", "mean"}
    grad : array_like or str, shape (H_out, W_out), optional
        Upstream gradient. Default: 1, 2, ..., n in row-major order over the
        output (the chapter's [[1, 2], [3, 4]] for a 2x2 output).
    count_include_pad : bool
        For average pooling, as in :func:`poolkit.avg_pool2d`.
    lang : {"en", "zh"}
        Language of the ``explanation`` lines.
    backend : str
        poolkit backend for the computation. All give the same numbers; the
        default, "img2col" (plain NumPy), needs no kernel compilation, which
        suits one small plane.

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
        None); for avg also ``count_include_pad`` and ``divisor``. Arrays are
        nested lists of floats (NaN and infinities as None).

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
    """
    return explain_results(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad,
                           count_include_pad, lang, PY_NAMES, backend)


#: Short name inside this module: ``poolkit.explain.explain(...)``.
explain = explain_pooling
