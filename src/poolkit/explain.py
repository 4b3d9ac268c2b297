"""Show what pooling does, forward and backward: the chapter's figures, live.

With no options, walks through section 17.5's examples on its 4x4 grid: each
2x2 window in turn, max and mean pooling side by side, the output-size
formula with the numbers filled in, the same with stride 1, and backward for
the upstream gradient [[1,2],[3,4]] -- where max pooling routes each value
and how mean pooling shares it out. Any of --kernel, --stride, --padding,
--dilation or --ceil-mode shows that one configuration instead of the tour.

examples:
  poolkit explain
  poolkit explain --lang zh
  poolkit explain --input "1 3 2 1; 4 2 1 5; 3 1 1 0; 1 2 2 4" --format json
  poolkit explain --stride 1 --mode max --grad "1 0 0; 0 0 0; 0 0 1"
  poolkit explain --input x.npy --kernel 3 --stride 2 --padding 1 --ceil-mode
  poolkit explain --png figures/

Matrices: rows separated by ';', values by spaces or commas (or a JSON list
such as [[1,2],[3,4]], or a .npy file holding one 2-D plane). Without --grad
the upstream gradient is 1, 2, ..., n in row-major order over the output (for
a 2x2 output that is the chapter's [[1,2],[3,4]]).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._geometry import PoolSpec, dim_names, explain_axis
from .functional import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, output_shape

__all__ = [
    "CHAPTER_INPUT", "CHAPTER_GRAD", "ExplainError",
    "explain_pooling", "explain", "parse_matrix", "render_text", "render_json", "save_figures",
    "add_arguments", "run",
]

#: The 4x4 grid of the chapter's figures 17-32 to 17-34 (as given in the issue).
CHAPTER_INPUT = ((1, 3, 2, 1), (4, 2, 1, 5), (3, 1, 1, 0), (1, 2, 2, 4))
#: The upstream gradient of figure 17-34.
CHAPTER_GRAD = ((1, 2), (3, 4))

_MODES = ("max", "avg")
_MODE_ALIASES = {"max": ("max",), "avg": ("avg",), "mean": ("avg",), "both": ("max", "avg")}
_PLOT_HINT = "--png needs matplotlib: pip install 'poolkit[plot]'"


class ExplainError(ValueError):
    """A bad argument to :func:`explain_pooling` or ``poolkit explain``; the message names it."""


# --------------------------------------------------------------------------- #
# argument parsing
# --------------------------------------------------------------------------- #
_PY_NAMES = {"input": "input", "grad": "grad", "kernel_size": "kernel_size", "stride": "stride",
             "padding": "padding", "dilation": "dilation", "ceil_mode": "ceil_mode", "mode": "mode",
             "lang": "lang"}
_CLI_NAMES = {"input": "--input", "grad": "--grad", "kernel_size": "--kernel", "stride": "--stride",
              "padding": "--padding", "dilation": "--dilation", "ceil_mode": "--ceil-mode", "mode": "--mode",
              "lang": "--lang"}


def _as_plane(a: np.ndarray, option: str, shown: str) -> np.ndarray:
    """One 2-D float64 plane: 1-D becomes one row, leading size-1 axes are dropped."""
    if a.dtype.kind not in "biuf":
        raise ExplainError(f"{option}: expected numbers, but got dtype {a.dtype} from {shown}.")
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ExplainError(f"{option}: explain shows one 2-D plane, but {shown} has shape {a.shape}; "
                           f"pass one (H, W) plane such as x[0, 0].")
    if a.size == 0:
        raise ExplainError(f"{option}: the matrix is empty (shape {a.shape}) in {shown}.")
    return a.astype(np.float64)


def parse_matrix(value, option: str = "--input") -> np.ndarray:
    """Read a matrix given inline, as a JSON list, as a ``.npy`` file or as an array.

    Parameters
    ----------
    value : str or array_like
        ``"1 3 2 1; 4 2 1 5"`` (rows split by ``;``, values by spaces or
        commas), ``"[[1, 3], [4, 2]]"``, a path to a ``.npy`` file, or an array.
    option : str
        The option's name, used in error messages.

    Returns
    -------
    plane : ndarray of float64, shape (H, W)
        A 1-D value becomes one row; leading size-1 axes are dropped.

    Raises
    ------
    ExplainError
        Naming ``option`` and the bad value.

    Examples
    --------
    >>> parse_matrix("1 3; 4, 2")
    array([[1., 3.],
           [4., 2.]])
    """
    if not isinstance(value, (str, os.PathLike)):
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ExplainError(f"{option}: cannot read {value!r} as a matrix ({exc}).") from None
        return _as_plane(a, option, "the given array")
    text = os.fspath(value).strip()
    if not text:
        raise ExplainError(f"{option}: expected a matrix such as \"1 3; 4 2\" or a .npy file, but got {value!r}.")
    if text.lower().endswith(".npy") or os.path.isfile(text):
        if not os.path.isfile(text):
            raise ExplainError(f"{option}: no such file: {text!r}.")
        try:
            a = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ExplainError(f"{option}: cannot load {text!r} as a .npy array ({exc}).") from None
        if not isinstance(a, np.ndarray):
            raise ExplainError(f"{option}: {text!r} holds several arrays; save one plane with np.save.")
        return _as_plane(a, option, repr(text))
    if text.startswith("["):
        try:
            a = np.asarray(json.loads(text), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ExplainError(f"{option}: cannot read {value!r} as a nested list of numbers ({exc}).") from None
        return _as_plane(a, option, repr(value))
    rows = [r for r in text.split(";")]
    if rows and not rows[-1].strip():
        rows = rows[:-1]                        # allow a trailing ';'
    parsed = []
    for i, row in enumerate(rows):
        tokens = [t for t in re.split(r"[,\s]+", row.strip()) if t]
        if not tokens:
            raise ExplainError(f"{option}: row {i + 1} is empty in {value!r}.")
        values = []
        for t in tokens:
            try:
                values.append(float(t))
            except ValueError:
                raise ExplainError(f"{option}: {t!r} in row {i + 1} is not a number (in {value!r}).") from None
        parsed.append(values)
    lengths = [len(r) for r in parsed]
    if len(set(lengths)) > 1:
        raise ExplainError(f"{option}: rows have different lengths {tuple(lengths)} in {value!r}; "
                           f"every row needs the same number of values.")
    return _as_plane(np.array(parsed, dtype=np.float64), option, repr(value))


def _parse_pair(value, option: str, minimum: int):
    """An int or two ints ("2", "2,1", "2x1", (2, 1)) -> a pair of ints >= minimum."""
    kind = "a positive integer" if minimum == 1 else "a non-negative integer"
    bad = ExplainError(f"{option}: expected {kind} or two of them (e.g. 2 or 2,1), but got {value!r}.")
    if isinstance(value, str):
        tokens = [t for t in re.split(r"[,\sx×]+", value.strip().strip("()[]")) if t]
        try:
            values = [int(t) for t in tokens]
        except ValueError:
            raise bad from None
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        values = [int(value)]
    elif isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
        values = [int(v) for v in value]
    else:
        raise bad
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or any(v < minimum for v in values):
        raise bad
    return tuple(values)


def _parse_modes(mode, option: str):
    key = str(mode).strip().lower() if isinstance(mode, str) else mode
    if key not in _MODE_ALIASES:
        raise ExplainError(f"{option}: expected max, avg (or mean) or both, but got {mode!r}.")
    return _MODE_ALIASES[key]


# --------------------------------------------------------------------------- #
# the computation: every number comes from poolkit's public functions
# --------------------------------------------------------------------------- #
def _tolist(a: np.ndarray):
    """Nested lists of Python floats; NaN and infinities become None (JSON has no such numbers)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        v = float(a)
        return v if math.isfinite(v) else None
    return [_tolist(r) for r in a]


def _explanation(sizes, k, s, p, d, ceil, lang):
    """Per-axis plain-words lines: the text of ``poolkit.output_shape(..., explain=True)``, in ``lang``.

    Built from the same :func:`explain_axis` so that a rejected configuration
    (for which ``output_shape`` raises) is explained too.
    """
    names = dim_names(2)
    return "\n".join(explain_axis(nm, n, kk, ss, dd, pp, pp, ceil, lang=lang)
                     for nm, n, kk, ss, dd, pp in zip(names, sizes, k, s, d, p)).splitlines()


def _show(name: str, value) -> str:
    if isinstance(value, tuple):
        value = value[0] if value[0] == value[1] else ",".join(map(str, value))
    return f"{name} {value}" if name.startswith("--") else f"{name}={value!r}"


def _explain(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad,
             lang, names, backend="img2col") -> List[dict]:
    if lang not in _WORDS:
        raise ExplainError(f"{names['lang']}: expected en or zh, but got {lang!r}.")
    modes = _parse_modes(mode, names["mode"])
    x = parse_matrix(CHAPTER_INPUT if input is None else input, names["input"])
    k = _parse_pair(kernel_size, names["kernel_size"], 1)
    s = k if stride is None else _parse_pair(stride, names["stride"], 1)
    p = _parse_pair(padding, names["padding"], 0)
    d = _parse_pair(dilation, names["dilation"], 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ExplainError(f"{names['ceil_mode']}: expected True or False, but got {ceil_mode!r}.")
    ceil = bool(ceil_mode)
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
    try:
        out_shape = output_shape(sizes, k, s, p, d, ceil)
    except ValueError as exc:
        why = "\n".join("  " + line for line in _explanation(sizes, k, s, p, d, ceil, lang))
        raise ExplainError(f"invalid configuration ({config}): {exc}\n{why}") from None
    explanation = _explanation(sizes, k, s, p, d, ceil, lang)
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

    window_rows = [[int(axes[0].start[o] + j * axes[0].step) for j in range(axes[0].taps)]
                   for o in range(axes[0].out)]
    window_cols = [[int(axes[1].start[o] + j * axes[1].step) for j in range(axes[1].taps)]
                   for o in range(axes[1].out)]
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
            # Divisor per window: taps inside the padded input (PyTorch's default) or inside the input.
            fh = axes[0].padded if count_include_pad else axes[0].valid
            fw = axes[1].padded if count_include_pad else axes[1].valid
            r["divisor"] = np.outer(fh, fw).astype(int).tolist()
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
    return _explain(input, kernel_size, stride, padding, dilation, ceil_mode, mode, grad, count_include_pad,
                    lang, _PY_NAMES, backend)


#: Short name inside this module: ``poolkit.explain.explain(...)``.
explain = explain_pooling


# --------------------------------------------------------------------------- #
# JSON
# --------------------------------------------------------------------------- #
def _depth(obj) -> int:
    if isinstance(obj, (list, tuple)):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def _json(obj, indent: int = 0, inline: bool = False) -> str:
    """JSON with one matrix row per line (and ``[row, col]`` pairs kept whole)."""
    pad = "  " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, (list, tuple)):
        depth = _depth(obj)
        if inline or depth <= 1 and not any(isinstance(v, dict) or isinstance(v, str) and len(v) > 30
                                            for v in obj):
            return "[" + ", ".join(_json(v, indent + 1, True) for v in obj) + "]"
        # A matrix: one row per line; a matrix of pairs (argmax): one row of pairs per line.
        rows = [pad + _json(v, indent + 1, inline=depth == 3) for v in obj]
        return "[\n" + ",\n".join(rows) + "\n" + "  " * indent + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        return "null"
    return json.dumps(obj, ensure_ascii=False)


def render_json(results: Sequence[dict]) -> str:
    """One JSON object for one mode, a list of them for several."""
    return _json(results[0] if len(results) == 1 else list(results))


# --------------------------------------------------------------------------- #
# text
# --------------------------------------------------------------------------- #
_WORDS = {
    "en": {
        "title": "poolkit explain: pooling forward and backward (textbook section 17.5)",
        "sp": " ", "sep": ";  ", "end": ".",
        "max": "max pooling", "avg": "mean pooling", "max_short": "max", "avg_short": "mean",
        "and": " and ",
        "config": "{modes}: window (F) {k}, stride (S) {s}, padding {p}",
        "dilation": ", dilation {d}", "ceil": ", ceil_mode", "nopad": ", count_include_pad=False",
        "input": "Input x ({h}x{w}):",
        "pad_note": "(. = outside the input, as padding: it never wins a max and adds 0 to a mean)",
        "forward": "Forward: each window [in brackets] gives one output y[i,j].",
        "example": "For example y[0,0]:",
        "ex_max": "max({vals}) = {res}",
        "ex_avg": "mean = ({vals})/{div} = {res}",
        "ex_avg_pad": "(padding counts as 0 and in the divisor)",
        "ex_max_pad": "(padding never wins)",
        "ex_avg_nopad": "(divisor {div}: taps inside the input only)",
        "size": "Output size (17.5.2):",
        "depth": "D2 = D1: pooling keeps the depth (the number of channels).",
        "detail": "Per axis, as poolkit.output_shape(..., explain=True) tells it:",
        "output": "Output y ({oh}x{ow}):",
        "compare": "The same with stride 1 (17.5.2): the {k} windows now overlap.",
        "repeats": "Overlapping windows repeat the same maxima:",
        "repeat": "{v} at x[{r},{c}] wins {n} windows",
        "repeat_tail": "The output is bigger but says less; that is why stride = window size "
                       "is the usual choice.",
        "backward": "Backward (17.5.3): δ, the gradient (residual) from the next layer, {oh}x{ow}:",
        "grad_chapter": "(not given: the chapter's example, 1..4)",
        "grad_ramp": "(not given: 1..{n} in row-major order)",
        "max_rule": "Max pooling: δ goes back to where its window's maximum was; the rest get 0.",
        "max_route": "δ[{i},{j}] = {g} → x[{r},{c}] (the max, {v})",
        "max_none": "δ[{i},{j}] = {g} → nowhere (no input in this window)",
        "avg_rule": "Mean pooling: δ is shared out equally, δ/{div} to every tap of its window.",
        "avg_rule_var": "Mean pooling: δ is shared out equally, δ/divisor to every tap of its window.",
        "avg_route": "δ[{i},{j}] = {g} → {g}/{div} = {share} to each of x[{rs}, {cs}]",
        "avg_route_one": "δ[{i},{j}] = {g} → {g}/{div} = {share} to x[{rs},{cs}]",
        "avg_lost": "; {n} share(s) fall on padding",
        "avg_none": "δ[{i},{j}] = {g} → nowhere (no input in this window)",
        "more": "... and {n} more",
        "grad_x": "Gradient for x ({mode}):",
        "adds": "Where windows overlap the gradients add up, e.g. x[{r},{c}] gets {terms} = {total}.",
        "sum": "Σ grad x = {a}   (Σ δ = {b})",
        "no_params": "Pooling has no parameters to learn: backward only passes the error on.",
        "too_many": "({n} windows: too many to draw one by one; try --png or --format json)",
        "too_wide": "({h}x{w}: too wide to draw at {width} columns; try --png or --format json)",
        "figures": "Figures written:",
        "figure_font": "note: no font with Chinese characters was found; figure labels are in English.",
    },
    "zh": {
        "title": "poolkit explain：池化层的正向计算与反向传播（教材 17.5 节）",
        "sp": "", "sep": "；", "end": "。",
        "max": "最大值池化", "avg": "平均值池化", "max_short": "最大值", "avg_short": "平均值",
        "and": "与",
        "config": "{modes}：池化尺寸（F）{k}，步长（S）{s}，填充 {p}",
        "dilation": "，膨胀 {d}", "ceil": "，ceil_mode（向上取整）", "nopad": "，count_include_pad=False",
        "input": "输入 x（{h}×{w}）：",
        "pad_note": "（. 表示输入之外的填充位置：取最大值时它不会胜出，求平均值时按 0 计入）",
        "forward": "正向计算：每个池化窗口（方括号内）得出一个输出 y[i,j]。",
        "example": "例如 y[0,0]：",
        "ex_max": "max({vals}) = {res}",
        "ex_avg": "平均值 = ({vals})/{div} = {res}",
        "ex_avg_pad": "（填充按 0 计入，也计入除数）",
        "ex_max_pad": "（填充不会胜出）",
        "ex_avg_nopad": "（除数 {div}：只计输入内的位置）",
        "size": "输出尺寸（17.5.2 节）：",
        "depth": "D2 = D1：池化层不会改变图片的深度（通道数）。",
        "detail": "逐轴说明（poolkit.output_shape(..., explain=True) 的解释）：",
        "output": "输出 y（{oh}×{ow}）：",
        "compare": "同样的输入，步长为 1（17.5.2 节）：{k} 的窗口相互重叠。",
        "repeats": "窗口重叠，同一个最大值被重复输出：",
        "repeat": "x[{r},{c}] 处的 {v} 在 {n} 个窗口中都是最大值",
        "repeat_tail": "输出变大了，却满是重复的值，基本分不开了，所以一般让步长与池化尺寸相同。",
        "backward": "反向传播（17.5.3 节）：δ 是上一层网络回传的残差（梯度），{oh}×{ow}：",
        "grad_chapter": "（未给出 --grad：使用教材中的例子 1..4）",
        "grad_ramp": "（未给出 --grad：按行依次取 1..{n}）",
        "max_rule": "最大值池化：残差回传到当初最大值所在的位置，窗口中其它位置的残差都是 0。",
        "max_route": "δ[{i},{j}] = {g} → x[{r},{c}]（最大值 {v} 所在位置）",
        "max_none": "δ[{i},{j}] = {g} → 无处回传（窗口中没有输入元素）",
        "avg_rule": "平均值池化：残差平均分配到窗口的每个位置，每个位置得到 δ/{div}。",
        "avg_rule_var": "平均值池化：残差平均分配到窗口的每个位置，每个位置得到 δ/除数。",
        "avg_route": "δ[{i},{j}] = {g} → x[{rs}, {cs}] 的每个位置各得 {g}/{div} = {share}",
        "avg_route_one": "δ[{i},{j}] = {g} → x[{rs},{cs}] 得到 {g}/{div} = {share}",
        "avg_lost": "；落在填充上的 {n} 份被丢弃",
        "avg_none": "δ[{i},{j}] = {g} → 无处回传（窗口中没有输入元素）",
        "more": "……另有 {n} 个",
        "grad_x": "x 的梯度（{mode}）：",
        "adds": "窗口重叠处的梯度相加，例如 x[{r},{c}] 得到 {terms} = {total}。",
        "sum": "Σ x 的梯度 = {a}   （Σ δ = {b}）",
        "no_params": "池化层没有要学习的参数，反向传播时只需把误差项向后传递。",
        "too_many": "（共 {n} 个窗口，无法逐一画出；可用 --png 或 --format json 查看）",
        "too_wide": "（{h}×{w}：超出 {width} 列，无法画出；可用 --png 或 --format json 查看）",
        "figures": "已生成图片：",
        "figure_font": "提示：没有找到含中文字符的字体，图中的文字使用英文。",
    },
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CJK_PUNCT = set("，。；：）、！？》」")
_HL, _WIN, _BOLD, _RESET = "\x1b[30;43m", "\x1b[1;31;43m", "\x1b[1m", "\x1b[0m"


def _dw(s: str) -> int:
    """Display width in a terminal: East Asian wide characters take two columns."""
    s = _ANSI.sub("", s)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in s)


def _ljust(s: str, width: int) -> str:
    return s + " " * max(0, width - _dw(s))


def _wrap(text: str, width: int, indent: str = "", cont: str = "    ") -> List[str]:
    """Greedy wrap by display width: break at spaces, or between Chinese characters."""
    tokens: List[str] = []                     # words, single CJK characters, and " " separators
    word = ""
    for ch in text:
        wide = unicodedata.east_asian_width(ch) in "WF"
        if ch == " ":
            if word:
                tokens.append(word)
                word = ""
            tokens.append(" ")
        elif wide and ch in _CJK_PUNCT:
            if word:
                word += ch
            elif tokens and tokens[-1] != " ":
                tokens[-1] += ch
            else:
                tokens.append(ch)
        elif wide:
            if word:
                tokens.append(word)
            word = ch
            tokens.append(word)
            word = ""
        else:
            word += ch
    if word:
        tokens.append(word)
    lines, line = [], indent
    for t in tokens:
        if t == " " and line.strip() == "":
            continue
        if _dw(line) + _dw(t) > width and line.strip():
            lines.append(line.rstrip())
            line = indent + cont
            if t == " ":
                continue
        line += t
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _fmt(v) -> str:
    if v is None:
        return "nan"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return np.format_float_positional(v, precision=4, trim="-")


def _pair_txt(pair) -> str:
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _grid(cells: List[List[str]], marks=frozenset(), winner=None, color=False) -> List[str]:
    """Lines of a grid of strings; cells in ``marks`` are bracketed (and coloured)."""
    w = max(_dw(c) for row in cells for c in row)
    lines = []
    for r, row in enumerate(cells):
        out = []
        for c, text in enumerate(row):
            inside, before = (r, c) in marks, (r, c - 1) in marks
            if inside and before:
                out.append(_HL + "  " + _RESET if color else "  ")    # inside a run of window cells
            else:
                out.append(" [" if inside else "] " if before else "  ")
            cell = " " * (w - _dw(text)) + text
            if color and inside:
                cell = (_WIN if (r, c) == winner else _HL) + cell + _RESET
            out.append(cell)
        if (r, len(row) - 1) in marks:
            out.append("]")
        lines.append("".join(out).rstrip())
    return lines


def _side_by_side(blocks: List[List[str]], width: int, gap: int = 4, indent: str = "  ") -> List[str]:
    """Blocks of lines placed left to right, wrapping to a new band when the next does not fit."""
    lines: List[str] = []
    band: List[List[str]] = []
    band_w = 0

    def flush():
        if not band:
            return
        widths = [max(_dw(s) for s in b) for b in band]
        for i in range(max(len(b) for b in band)):
            parts = [_ljust(b[i] if i < len(b) else "", w) for b, w in zip(band, widths)]
            lines.append((indent + (" " * gap).join(parts)).rstrip())
        if lines_sep:
            lines.append("")

    lines_sep = False
    for b in blocks:
        bw = max(_dw(s) for s in b)
        if band and _dw(indent) + band_w + gap + bw > width:
            lines_sep = True
            flush()
            band, band_w = [], 0
        band.append(b)
        band_w += (gap if band_w else 0) + bw
    lines_sep = False
    flush()
    return lines


class _View:
    """What the renderers need from one result dict, as arrays."""

    def __init__(self, r: dict):
        self.r = r
        self.x = np.array([[np.nan if v is None else v for v in row] for row in r["input"]])
        self.H, self.W = self.x.shape
        self.rows, self.cols = r["window_rows"], r["window_cols"]
        self.oh, self.ow = r["output_shape"]
        # Extent drawn: the input, its padding, and any ceil_mode window running past the padding.
        ph, pw = r["padding"]
        self.r0 = min(-ph, min(min(t) for t in self.rows))
        self.r1 = max(self.H + ph, max(max(t) for t in self.rows) + 1)
        self.c0 = min(-pw, min(min(t) for t in self.cols))
        self.c1 = max(self.W + pw, max(max(t) for t in self.cols) + 1)

    def inside(self, r, c):
        return 0 <= r < self.H and 0 <= c < self.W

    def cells(self):
        """Formatted input over the drawn extent; '.' for padding."""
        return [[_fmt(float(self.x[r, c])) if self.inside(r, c) else "." for c in range(self.c0, self.c1)]
                for r in range(self.r0, self.r1)]

    def marks(self, i, j):
        """Window (i, j) in drawn-grid coordinates."""
        return {(r - self.r0, c - self.c0) for r in self.rows[i] for c in self.cols[j]}

    def taps_inside(self, i, j):
        return [(r, c) for r in self.rows[i] for c in self.cols[j] if self.inside(r, c)]


def _matrix_block(title: str, values, color=False) -> List[str]:
    cells = [[_fmt(v) for v in row] for row in values]
    return [title] + _grid(cells, color=color)


def _config_line(results: Sequence[dict], words: dict) -> str:
    r = results[0]
    modes = [x["mode"] for x in results]
    text = words["config"].format(modes=words["and"].join(words[m] for m in modes),
                                  k="x".join(map(str, r["kernel_size"])), s=_pair_txt(r["stride"]),
                                  p=_pair_txt(r["padding"]))
    if r["dilation"] != [1, 1]:
        text += words["dilation"].format(d=_pair_txt(r["dilation"]))
    if r["ceil_mode"]:
        text += words["ceil"]
    if any(not x.get("count_include_pad", True) for x in results):
        text += words["nopad"]
    return text


def _formula_lines(r: dict) -> List[str]:
    """The chapter's W2 = (W1 - F)/S + 1, generalised, with this configuration's numbers."""
    lines = []
    for axis, (n1, n2) in enumerate((("H1", "H2"), ("W1", "W2"))):
        n = r["input_shape"][axis]
        f, s, p, d = r["kernel_size"][axis], r["stride"][axis], r["padding"][axis], r["dilation"][axis]
        out = r["output_shape"][axis]
        rnd = "ceil" if r["ceil_mode"] else "floor"
        if d != 1:
            span = d * (f - 1) + 1
            sym = f"{rnd}(({n1} + 2P - D*(F-1) - 1)/S) + 1"
            num = f"{rnd}(({n} + {2 * p} - {d}*({f}-1) - 1)/{s}) + 1"
            lines.append(f"{n2} = {sym}")
            lines.append(f"{' ' * len(n2)} = {num} = {out}   (span {span})")
            continue
        top = f"{n1} + 2P - F" if p else f"{n1} - F"
        top_n = f"{n} + {2 * p} - {f}" if p else f"{n} - {f}"
        total = n + 2 * p - f
        value = (-(-total // s) if r["ceil_mode"] else total // s) + 1
        # ceil_mode drops a last window that would start past the input (the explanation says so).
        res = f"{value}" if value == out else f"{value} → {out}"
        if total % s == 0 and total >= 0:
            lines.append(f"{n2} = ({top})/S + 1 = ({top_n})/{s} + 1 = {res}")
        else:
            lines.append(f"{n2} = {rnd}(({top})/S) + 1 = {rnd}(({top_n})/{s}) + 1 = {res}")
    return lines


def _filmstrip(views_results, words, width, color) -> List[str]:
    """Every window in turn, one band per output row, with each mode's result under it."""
    v = _View(views_results[0])
    n = v.oh * v.ow
    grid_w = _dw(_grid(v.cells())[0]) + 1
    if n > 16:
        return ["  " + words["too_many"].format(n=n)]
    if grid_w + 2 > width:
        return ["  " + words["too_wide"].format(h=v.H, w=v.W, width=width)]
    cells = v.cells()
    lines = []
    for i in range(v.oh):
        blocks = []
        for j in range(v.ow):
            winner = None
            for r in views_results:
                if r["mode"] == "max" and r["argmax"][i][j] is not None:
                    ar, ac = r["argmax"][i][j]
                    winner = (ar - v.r0, ac - v.c0)
            block = [f"y[{i},{j}]"] + _grid(cells, v.marks(i, j), winner, color)
            for r in views_results:
                block.append(f"{words[r['mode'] + '_short']} {_fmt(r['output'][i][j])}")
            blocks.append(block)
        lines += _side_by_side(blocks, width)
        lines.append("")
    return lines[:-1]


def _example_lines(results, words, width) -> List[str]:
    """The first window worked out by hand: max(a, b, e, f) and (a + b + e + f)/4, as in 17.5.3."""
    v = _View(results[0])
    ph, pw = results[0]["padding"]
    taps = [(r, c) for r in v.rows[0] for c in v.cols[0]]
    vals = [float(v.x[r, c]) for r, c in taps if v.inside(r, c)]
    in_pad = len(taps) - len(vals)
    parts = []
    for r in results:
        if r["mode"] == "max":
            text = words["ex_max"].format(vals=", ".join(map(_fmt, vals)), res=_fmt(r["output"][0][0]))
            if in_pad:
                text += words["sp"] + words["ex_max_pad"]
            parts.append(text)
        else:
            div = r["divisor"][0][0]
            if r["count_include_pad"]:
                # Every tap inside the padded input, in scan order; padding adds 0.
                shown = [_fmt(float(v.x[a, b])) if v.inside(a, b) else "0" for a, b in taps
                         if -ph <= a < v.H + ph and -pw <= b < v.W + pw]
            else:
                shown = [_fmt(x) for x in vals]
            text = words["ex_avg"].format(vals=" + ".join(shown), div=div, res=_fmt(r["output"][0][0]))
            if in_pad:
                text += words["sp"] + (words["ex_avg_pad"] if r["count_include_pad"]
                                       else words["ex_avg_nopad"].format(div=div))
            parts.append(text)
    return _wrap(words["example"] + words["sp"] + words["sep"].join(parts), width, "  ")


def _forward_section(results, words, width, color) -> List[str]:
    lines = [words["forward"]]
    lines += _filmstrip(results, words, width, color) + [""]
    lines += _example_lines(results, words, width)
    return lines


def _input_block(r, words, width) -> List[str]:
    v = _View(r)
    lines = [words["input"].format(h=v.H, w=v.W)]
    grid = _grid(v.cells())
    if _dw(grid[0]) + 2 > width:
        lines.append("  " + words["too_wide"].format(h=v.H, w=v.W, width=width))
    else:
        lines += ["  " + g for g in grid]
    if v.r0 < 0 or v.c0 < 0 or v.r1 > v.H or v.c1 > v.W:
        lines += _wrap(words["pad_note"], width, "  ")
    return lines


def _size_section(r, words, width) -> List[str]:
    lines = [words["size"]]
    lines += ["  " + s for s in _formula_lines(r)]
    lines += _wrap(words["depth"], width, "  ")
    lines.append(words["detail"])
    for s in r["explanation"]:
        lines += _wrap(s, width, "  ")
    return lines


def _outputs_block(results, words, width, color) -> List[str]:
    oh, ow = results[0]["output_shape"]
    lines = [words["output"].format(oh=oh, ow=ow)]
    blocks = [_matrix_block(words[r["mode"]], r["output"]) for r in results]
    if max(_dw(s) for b in blocks for s in b) + 2 > width:
        return lines + ["  " + words["too_wide"].format(h=oh, w=ow, width=width)]
    return lines + _side_by_side(blocks, width)


def _repeat_lines(r, words, width) -> List[str]:
    """For max pooling: the inputs that win more than one window."""
    wins: Dict[tuple, int] = {}
    for row in r["argmax"]:
        for a in row:
            if a is not None:
                wins[tuple(a)] = wins.get(tuple(a), 0) + 1
    many = [(n, rc) for rc, n in wins.items() if n > 1]
    if not many:
        return []
    many.sort(key=lambda t: (-t[0], t[1]))
    items = [words["repeat"].format(v=_fmt(r["input"][rc[0]][rc[1]]), r=rc[0], c=rc[1], n=n) for n, rc in many]
    text = words["repeats"] + words["sp"] + words["sep"].join(items) + words["end"] + words["sp"]
    return _wrap(text + words["repeat_tail"], width, "  ")


def _routes(r, words, limit=16) -> List[str]:
    v = _View(r)
    lines = []
    oh, ow = r["output_shape"]
    for i in range(oh):
        for j in range(ow):
            g = _fmt(r["grad_output"][i][j])
            if r["mode"] == "max":
                a = r["argmax"][i][j]
                if a is None:
                    lines.append(words["max_none"].format(i=i, j=j, g=g))
                else:
                    lines.append(words["max_route"].format(i=i, j=j, g=g, r=a[0], c=a[1],
                                                           v=_fmt(r["input"][a[0]][a[1]])))
            else:
                taps = v.taps_inside(i, j)
                div = r["divisor"][i][j]
                if not taps or div == 0:
                    lines.append(words["avg_none"].format(i=i, j=j, g=g))
                    continue
                rr = sorted({t[0] for t in taps})
                cc = sorted({t[1] for t in taps})
                rs = f"{rr[0]}" if len(rr) == 1 else f"{rr[0]}:{rr[-1] + 1}"
                cs = f"{cc[0]}" if len(cc) == 1 else f"{cc[0]}:{cc[-1] + 1}"
                share = r["grad_output"][i][j]
                share = None if share is None else share / div
                text = words["avg_route" if len(taps) > 1 else "avg_route_one"].format(i=i, j=j, g=g, div=div, share=_fmt(share), rs=rs, cs=cs)
                lost = len(v.rows[i]) * len(v.cols[j]) - len(taps)
                # Only the taps inside the padded extent take a share (count_include_pad=True).
                lost = min(lost, div - len(taps)) if r["count_include_pad"] else 0
                if lost > 0:
                    text += words["avg_lost"].format(n=lost)
                lines.append(text)
    if len(lines) > limit:
        lines = lines[:limit] + [words["more"].format(n=len(lines) - limit)]
    return lines


def _adds_line(r, words, width) -> List[str]:
    """For max pooling: one input that receives gradient from several windows."""
    if r["mode"] != "max":
        return []
    got: Dict[tuple, list] = {}
    for i, row in enumerate(r["argmax"]):
        for j, a in enumerate(row):
            if a is not None:
                got.setdefault(tuple(a), []).append(r["grad_output"][i][j])
    many = [(rc, gs) for rc, gs in got.items() if len(gs) > 1]
    if not many:
        return []
    rc, gs = max(many, key=lambda t: (len(t[1]), sum(abs(g) for g in t[1] if g is not None)))
    total = r["grad_input"][rc[0]][rc[1]]
    return _wrap(words["adds"].format(r=rc[0], c=rc[1], terms=" + ".join(map(_fmt, gs)), total=_fmt(total)),
                 width, "  ")


def _backward_section(results, words, width, color) -> List[str]:
    r0 = results[0]
    oh, ow = r0["output_shape"]
    n = oh * ow
    lines = _wrap(words["backward"].format(oh=oh, ow=ow), width)
    grid = _grid([[_fmt(v) for v in row] for row in r0["grad_output"]])
    lines += ["  " + g for g in grid] if _dw(grid[0]) + 2 <= width else \
        ["  " + words["too_wide"].format(h=oh, w=ow, width=width)]
    if r0["grad_source"] == "ramp":
        note = words["grad_chapter"] if (oh, ow) == (2, 2) else words["grad_ramp"].format(n=n)
        lines += _wrap(note, width, "  ")
    for r in results:
        lines.append("")
        if r["mode"] == "max":
            rule = words["max_rule"]
        else:
            divs = {d for row in r["divisor"] for d in row}
            rule = words["avg_rule"].format(div=divs.pop()) if len(divs) == 1 else words["avg_rule_var"]
        lines += _wrap(rule, width)
        for s in _routes(r, words):
            lines += _wrap(s, width, "  ")
        v = _View(r)
        block = _matrix_block(words["grad_x"].format(mode=words[r["mode"]]), r["grad_input"])
        if _dw(block[1]) + 2 <= width:
            lines += _side_by_side([block], width)
        else:
            lines += [block[0], "  " + words["too_wide"].format(h=v.H, w=v.W, width=width)]
        lines += _adds_line(r, words, width)
        gi = np.array([[np.nan if a is None else a for a in row] for row in r["grad_input"]])
        go = np.array([[np.nan if a is None else a for a in row] for row in r["grad_output"]])
        lines.append("  " + words["sum"].format(a=_fmt(float(gi.sum())), b=_fmt(float(go.sum()))))
    lines.append("")
    lines += _wrap(words["no_params"], width)
    return lines


def render_text(results: Sequence[dict], *, compare: Optional[Sequence[dict]] = None, lang: Optional[str] = None,
                color: bool = False, width: int = 80) -> str:
    """The walk-through as terminal text.

    Parameters
    ----------
    results : list of dict
        From :func:`explain_pooling`.
    compare : list of dict, optional
        A second configuration of the same input (the tour passes stride 1),
        shown forward only after the first.
    lang : {"en", "zh"}, optional
        Default: the language the results were made in.
    color : bool
        Highlight windows with ANSI colours (brackets stay either way).
    width : int
        Columns to fit; grids too wide for it are described instead of drawn.
    """
    lang = lang or results[0].get("lang", "en")
    if lang not in _WORDS:
        raise ExplainError(f"lang: expected en or zh, but got {lang!r}.")
    words = _WORDS[lang]
    b = (lambda s: _BOLD + s + _RESET) if color else (lambda s: s)
    r0 = results[0]
    out = [b(words["title"])] + _wrap(_config_line(results, words), width) + [""]
    out += _input_block(r0, words, width) + [""]
    out += _forward_section(results, words, width, color) + [""]
    out += _size_section(r0, words, width) + [""]
    out += _outputs_block(results, words, width, color) + [""]
    if compare:
        c0 = compare[0]
        out += [b(_wrap(words["compare"].format(k="x".join(map(str, c0["kernel_size"]))), width)[0])]
        out += _wrap(_config_line(compare, words), width, "  ") + [""]
        out += _filmstrip(compare, words, width, color) + [""]
        out += ["  " + s for s in _formula_lines(c0)] + [""]
        out += _outputs_block(compare, words, width, color)
        for r in compare:
            if r["mode"] == "max":
                out += _repeat_lines(r, words, width)
        out.append("")
    out += _backward_section(results, words, width, color)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #
_FIG_WORDS = {
    "en": {"input": "input x", "output": "output y", "grad_out": "upstream gradient δ", "grad_in": "gradient for x",
           "max": "max pooling", "avg": "mean pooling", "window": "window {k}, stride {s}, padding {p}",
           "forward": "{mode}: forward", "backward": "{mode}: backward",
           "max_rule": "each δ goes back to where its window's maximum was; the other taps get 0",
           "avg_rule": "each δ is shared out equally: δ/divisor to every tap of its window",
           "max_op": "max", "avg_op": "mean", "avg_op_back": "δ ÷ divisor"},
    "zh": {"input": "输入 x", "output": "输出 y", "grad_out": "回传的残差 δ", "grad_in": "x 的梯度",
           "max": "最大值池化", "avg": "平均值池化", "window": "池化尺寸 {k}，步长 {s}，填充 {p}",
           "forward": "{mode}：正向计算", "backward": "{mode}：反向传播",
           "max_rule": "残差回传到当初最大值的位置，其它位置为 0",
           "avg_rule": "残差平均分配到窗口的每个位置：δ/除数",
           "max_op": "取最大值", "avg_op": "取平均值", "avg_op_back": "δ ÷ 除数"},
}

_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
            "#CCB974", "#64B5CD"]


def _cjk_font() -> Optional[str]:
    """A font that can draw Chinese, if matplotlib knows one."""
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK", "Noto Serif CJK", "Source Han", "WenQuanYi", "SimHei", "Microsoft YaHei",
              "PingFang", "Heiti", "Hiragino Sans GB", "AR PL", "Droid Sans Fallback", "Songti")
    for f in font_manager.fontManager.ttflist:
        if any(f.name.startswith(w) for w in wanted):
            return f.name
    return None


def _mix(hex_colors: List[str]) -> str:
    rgb = np.mean([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in hex_colors], axis=0)
    return "#" + "".join(f"{int(round(c)):02x}" for c in rgb)


def _light(hex_color: str, amount: float = 0.75) -> str:
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    rgb = rgb + (255 - rgb) * amount
    return "#" + "".join(f"{int(round(c)):02x}" for c in rgb)


def _draw_grid(ax, values, x0, y0, *, r0=0, c0=0, inside=None, fills=None, bold=(), pad_text="",
               corner=None, title=None, fontsize=13):
    """Draw a matrix of numbers as unit cells with its top-left corner at (x0, y0); y grows downwards.

    ``r0``/``c0`` are the matrix indices of the first row/column (negative in
    the padding); ``inside(r, c)`` says which cells are real (others are drawn
    grey with ``pad_text``); ``corner`` gives small grey text for a cell's corner.
    """
    from matplotlib.patches import Rectangle

    nrows, ncols = len(values), len(values[0])
    for r in range(nrows):
        for c in range(ncols):
            is_in = inside is None or inside(r + r0, c + c0)
            face = (fills or {}).get((r, c), "white" if is_in else "#EFEFEF")
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=face, edgecolor="#A0A0A0",
                                   linewidth=0.8, zorder=1))
            if is_in:
                text = _fmt(values[r][c])
                ax.text(x0 + c + 0.5, y0 + r + 0.52, text, ha="center", va="center", zorder=7,
                        fontsize=fontsize if len(text) < 5 else fontsize * 0.72,
                        fontweight="bold" if (r, c) in bold else "normal", color="#1F1F1F")
                if corner is not None and (r, c) in corner:
                    ax.text(x0 + c + 0.08, y0 + r + 0.1, corner[(r, c)], ha="left", va="top",
                            fontsize=fontsize * 0.5, color="#8A8A8A", zorder=7)
            elif pad_text:
                ax.text(x0 + c + 0.5, y0 + r + 0.52, pad_text, ha="center", va="center",
                        fontsize=fontsize * 0.7, color="#A8A8A8", zorder=5)
    # Matrix indices along the top and the left, small and grey.
    for r in range(nrows):
        ax.text(x0 - 0.15, y0 + r + 0.5, str(r + r0), ha="right", va="center", fontsize=8, color="#909090")
    for c in range(ncols):
        ax.text(x0 + c + 0.5, y0 - 0.12, str(c + c0), ha="center", va="bottom", fontsize=8, color="#909090")
    if title:
        ax.text(x0 + ncols / 2, y0 - 0.55, title, ha="center", va="bottom", fontsize=12, color="#1F1F1F")


def _overlap(taps: List[List[int]]) -> bool:
    """Do neighbouring windows along an axis share a position?"""
    return any(nxt[0] <= prev[-1] for prev, nxt in zip(taps[:-1], taps[1:]))


def _window_boxes(ax, v: _View, x0: float, y0: float, colors, *, fill: bool):
    """Outline every window (inset a little more for each one when windows overlap)."""
    from matplotlib.patches import FancyBboxPatch

    n = v.oh * v.ow
    overlap = _overlap(v.rows) or _overlap(v.cols)
    for i in range(v.oh):
        for j in range(v.ow):
            k = i * v.ow + j
            rows = [r - v.r0 for r in v.rows[i]]
            cols = [c - v.c0 for c in v.cols[j]]
            inset = 0.07 + (0.2 * k / max(n - 1, 1) if overlap else 0.0)
            ax.add_patch(FancyBboxPatch(
                (x0 + min(cols) + inset, y0 + min(rows) + inset),
                max(cols) + 1 - min(cols) - 2 * inset, max(rows) + 1 - min(rows) - 2 * inset,
                boxstyle="round,pad=0,rounding_size=0.12",
                facecolor=_light(colors[k], 0.82) if fill and not overlap else "none",
                edgecolor=colors[k], linewidth=2.2, zorder=0.5 if fill and not overlap else 3))


def _window_colors(n: int) -> List[str]:
    return [_PALETTE[k % len(_PALETTE)] for k in range(n)]


def _new_figure(width_cells: float, height_cells: float, titles=(), bottom: float = 1.5, unit: float = 0.58):
    """A figure whose one axes is measured in grid cells, wide enough for the panel titles.

    Built on the Agg canvas directly (no pyplot), so it neither needs a display
    nor changes the caller's matplotlib backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    left, right = -0.9, width_cells + 0.3
    for centre, text in titles:
        half = 0.1 * _dw(text) + 0.2            # about 0.2 cell per character at 12 pt
        left, right = min(left, centre - half), max(right, centre + half)
    fig = Figure(figsize=(unit * (right - left), unit * (height_cells + 2.0 + bottom)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    ax.set_xlim(left, right)
    ax.set_ylim(height_cells + bottom, -2.0)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _big_arrow(ax, x_from, x_to, y, label, sub=None):
    ax.annotate("", xy=(x_to, y), xytext=(x_from, y),
                arrowprops=dict(arrowstyle="-|>", lw=2.2, color="#444444", mutation_scale=20))
    ax.text((x_from + x_to) / 2, y - 0.2, label, ha="center", va="bottom", fontsize=12, color="#333333")
    if sub:
        ax.text((x_from + x_to) / 2, y + 0.25, sub, ha="center", va="top", fontsize=9, color="#555555")


def _figure_forward(r: dict, words: dict):
    from matplotlib.patches import Circle

    v = _View(r)
    ext_h, ext_w = v.r1 - v.r0, v.c1 - v.c0
    gap = 3.0
    total_h = max(ext_h, v.oh)
    in_y = (total_h - ext_h) / 2
    out_x, out_y = ext_w + gap, (total_h - v.oh) / 2
    fig, ax = _new_figure(out_x + v.ow, total_h, titles=((ext_w / 2, f"{words['input']} ({v.H}×{v.W})"),
                                                          (out_x + v.ow / 2, f"{words['output']} ({v.oh}×{v.ow})")))
    colors = _window_colors(v.oh * v.ow)
    grid = [[float(v.x[a, b]) if v.inside(a, b) else 0.0 for b in range(v.c0, v.c1)] for a in range(v.r0, v.r1)]
    winners = set()
    if r["mode"] == "max":
        winners = {(a[0] - v.r0, a[1] - v.c0) for row in r["argmax"] for a in row if a is not None}
    cell_fill = {}
    if not (_overlap(v.rows) or _overlap(v.cols)):
        for i in range(v.oh):
            for j in range(v.ow):
                for a in v.rows[i]:
                    for b in v.cols[j]:
                        cell_fill[(a - v.r0, b - v.c0)] = _light(colors[i * v.ow + j], 0.85 if v.inside(a, b) else 0.7)
    _draw_grid(ax, grid, 0, in_y, r0=v.r0, c0=v.c0, inside=v.inside, bold=winners, fills=cell_fill,
               pad_text="−∞" if r["mode"] == "max" else "0", title=f"{words['input']} ({v.H}×{v.W})")
    _window_boxes(ax, v, 0, in_y, colors, fill=False)
    if r["mode"] == "max":
        for i in range(v.oh):
            for j in range(v.ow):
                a = r["argmax"][i][j]
                if a is not None:
                    ax.add_patch(Circle((a[1] - v.c0 + 0.5, in_y + a[0] - v.r0 + 0.5), 0.31, fill=False,
                                        edgecolor=colors[i * v.ow + j], linewidth=1.8, zorder=4))
    fills = {(i, j): _light(colors[i * v.ow + j], 0.55) for i in range(v.oh) for j in range(v.ow)}
    _draw_grid(ax, r["output"], out_x, out_y, fills=fills, title=f"{words['output']} ({v.oh}×{v.ow})")
    cfg = words["window"].format(k="×".join(map(str, r["kernel_size"])), s=_pair_txt(r["stride"]),
                                 p=_pair_txt(r["padding"]))
    _big_arrow(ax, ext_w + 0.35, out_x - 0.35, total_h / 2, words[r["mode"] + "_op"])
    ax.text((out_x + v.ow - 0.9) / 2, -1.75, words["forward"].format(mode=words[r["mode"]]),
            ha="center", va="top", fontsize=14, fontweight="bold", color="#1F1F1F")
    ax.text((out_x + v.ow - 0.9) / 2, total_h + 0.45, cfg, ha="center", va="top", fontsize=10, color="#333333")
    formulas = _formula_lines(r)
    joined = "   ".join(formulas) if sum(len(f) for f in formulas) < 70 else "\n".join(formulas)
    ax.text((out_x + v.ow - 0.9) / 2, total_h + 1.0, joined, ha="center", va="top", fontsize=9,
            color="#555555", linespacing=1.5)
    return fig


def _figure_backward(r: dict, words: dict):
    from matplotlib import patheffects
    from matplotlib.patches import FancyArrowPatch

    v = _View(r)
    ext_h, ext_w = v.r1 - v.r0, v.c1 - v.c0
    gap = 3.0
    total_h = max(ext_h, v.oh)
    g_y = (total_h - v.oh) / 2
    x_x, x_y = v.ow + gap, (total_h - ext_h) / 2
    fig, ax = _new_figure(x_x + ext_w, total_h, titles=((v.ow / 2, f"{words['grad_out']} ({v.oh}×{v.ow})"),
                                                        (x_x + ext_w / 2, f"{words['grad_in']} ({v.H}×{v.W})")),
                          bottom=1.0)
    colors = _window_colors(v.oh * v.ow)
    fills_g = {(i, j): _light(colors[i * v.ow + j], 0.55) for i in range(v.oh) for j in range(v.ow)}
    _draw_grid(ax, r["grad_output"], 0, g_y, fills=fills_g, title=f"{words['grad_out']} ({v.oh}×{v.ow})")
    # Which windows send gradient to which input cell.
    senders: Dict[tuple, List[int]] = {}
    for i in range(v.oh):
        for j in range(v.ow):
            if r["mode"] == "max":
                a = r["argmax"][i][j]
                targets = [] if a is None else [tuple(a)]
            else:
                targets = v.taps_inside(i, j)
            for t in targets:
                senders.setdefault((t[0] - v.r0, t[1] - v.c0), []).append(i * v.ow + j)
    fills_x = {cell: _light(_mix([colors[k] for k in ks]), 0.55) for cell, ks in senders.items()}
    grid = [[(r["grad_input"][a][b] if v.inside(a, b) else 0.0) for b in range(v.c0, v.c1)]
            for a in range(v.r0, v.r1)]
    if r["mode"] == "max":
        # The input values in each cell's corner, so one sees that δ lands on the maximum.
        corner = {(a - v.r0, b - v.c0): f"x={_fmt(float(v.x[a, b]))}" for a in range(v.H) for b in range(v.W)}
        _draw_grid(ax, grid, x_x, x_y, r0=v.r0, c0=v.c0, inside=v.inside, fills=fills_x, bold=set(senders),
                   corner=corner, title=f"{words['grad_in']} ({v.H}×{v.W})")
    else:
        _draw_grid(ax, grid, x_x, x_y, r0=v.r0, c0=v.c0, inside=v.inside, fills=fills_x,
                   title=f"{words['grad_in']} ({v.H}×{v.W})")
        _window_boxes(ax, v, x_x, x_y, colors, fill=False)
        for i in range(v.oh):
            for j in range(v.ow):
                ax.text(j + 0.5, g_y + i + 0.86, f"÷{r['divisor'][i][j]}", ha="center", va="center",
                        fontsize=8, color="#444444", zorder=6)
        _big_arrow(ax, v.ow + 0.35, x_x - 0.45, total_h / 2, words["avg_op_back"])
    # Max pooling: one arrow per δ, from the right edge of the δ grid to the winner.
    if r["mode"] == "max" and v.oh * v.ow <= 36:
        for i in range(v.oh):
            for j in range(v.ow):
                a = r["argmax"][i][j]
                if a is None:
                    continue
                k = i * v.ow + j
                start = (v.ow + 0.08, g_y + i + (j + 1) / (v.ow + 1))
                end = (x_x + a[1] - v.c0 + 0.5, x_y + a[0] - v.r0 + 0.5)
                arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colors[k], lw=1.8,
                                        shrinkA=0, shrinkB=12, zorder=6 - 0.01 * (a[1] - v.c0),
                                        connectionstyle=f"arc3,rad={-0.06 - 0.05 * (a[1] - v.c0) / max(ext_w, 1)}")
                arrow.set_path_effects([patheffects.withStroke(linewidth=4, foreground="white")])
                ax.add_patch(arrow)
    ax.text((x_x + ext_w - 0.9) / 2, -1.75, words["backward"].format(mode=words[r["mode"]]),
            ha="center", va="top", fontsize=14, fontweight="bold", color="#1F1F1F")
    ax.text((x_x + ext_w - 0.9) / 2, total_h + 0.45, words[r["mode"] + "_rule"], ha="center", va="top",
            fontsize=10, color="#333333")
    return fig


def save_figures(results: Sequence[dict], directory, *, lang: Optional[str] = None, dpi: int = 150) -> List[Path]:
    """Write the forward and backward figures of each mode as PNG files.

    Files: ``{mode}-forward.png`` (the input with every window drawn, and the
    output) and ``{mode}-backward.png`` (the upstream gradient routed back to
    the input), for ``mode`` in max, avg. ``directory`` is created if needed.
    Needs matplotlib (``pip install 'poolkit[plot]'``); Chinese labels need a
    CJK font, else the labels are in English.

    Returns
    -------
    paths : list of pathlib.Path
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(_PLOT_HINT) from None

    lang = lang or results[0].get("lang", "en")
    font = _cjk_font() if lang == "zh" else None
    words = _FIG_WORDS[lang if (lang == "en" or font) else "en"]
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    rc = {"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"], "axes.unicode_minus": False}
    # A CJK font often has no bold face; matplotlib would log a warning for each bold title.
    font_log = logging.getLogger("matplotlib.font_manager")
    level = font_log.level
    font_log.setLevel(logging.ERROR)
    try:
        with matplotlib.rc_context(rc):
            paths = _save_all(results, words, out_dir, dpi)
    finally:
        font_log.setLevel(level)
    return paths


def _save_all(results, words, out_dir: Path, dpi: int) -> List[Path]:
    paths = []
    for r in results:
        for kind, make in (("forward", _figure_forward), ("backward", _figure_backward)):
            fig = make(r, words)
            path = out_dir / f"{r['mode']}-{kind}.png"
            fig.savefig(path, dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.15)
            paths.append(path)
    return paths


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #
def add_arguments(parser) -> None:
    """Add ``poolkit explain``'s options to an argparse (sub)parser."""
    parser.add_argument("--mode", default=None, metavar="{max,avg,both}",
                        help="which pooling to show: max, avg (or mean) or both (default: both; "
                             "max alone when --dilation is given)")
    parser.add_argument("--kernel", default=None, metavar="F",
                        help="window size: 2, or 2,3 for height,width (default 2)")
    parser.add_argument("--stride", default=None, metavar="S", help="step between windows (default: --kernel)")
    parser.add_argument("--padding", default=None, metavar="P", help="padding on each side (default 0)")
    parser.add_argument("--dilation", default=None, metavar="D",
                        help="spacing between window taps, max pooling only (default 1)")
    parser.add_argument("--ceil-mode", action="store_true", help="round the output size up, as PyTorch's ceil_mode")
    parser.add_argument("--exclude-pad", action="store_true",
                        help="mean pooling: divide by the taps inside the input (count_include_pad=False)")
    parser.add_argument("--input", default=None, metavar="MATRIX",
                        help='input plane: "1 3 2 1; 4 2 1 5; ..." or a .npy file (default: the chapter\'s 4x4 grid)')
    parser.add_argument("--grad", default=None, metavar="MATRIX",
                        help="upstream gradient, shaped like the output (default: 1, 2, ..., n; "
                             "for a 2x2 output the chapter's [[1,2],[3,4]])")
    parser.add_argument("--lang", default="en", choices=("en", "zh"), help="language of the text (zh: Chinese)")
    parser.add_argument("--format", default="text", choices=("text", "json"), dest="format",
                        help="text (default) or json: one object per mode, a list for both")
    parser.add_argument("--png", default=None, metavar="DIR", help="also write figures (PNG) into DIR; needs matplotlib")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours (also off when NO_COLOR is set "
                                                                 "or the output is not a terminal)")
    parser.add_argument("--width", type=int, default=80, help=argparse.SUPPRESS)
    parser.set_defaults(_explain_parser=parser)


def _use_color(args) -> bool:
    if getattr(args, "no_color", False) or os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def _usage_error(args, message: str) -> int:
    parser = getattr(args, "_explain_parser", None)
    prog = parser.prog if parser is not None else "poolkit explain"
    if parser is not None:
        sys.stderr.write(parser.format_usage())
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def run(args) -> int:
    """Run ``poolkit explain`` for parsed arguments; returns the exit code (0 ok, 2 usage error)."""
    if args.png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write(_PLOT_HINT + "\n")
            return 2
    geometry_given = any(getattr(args, name) is not None for name in ("kernel", "stride", "padding", "dilation")) \
        or args.ceil_mode
    mode = args.mode
    if mode is None:
        mode = "max" if args.dilation is not None and args.dilation.strip() not in ("1", "1,1") else "both"
    kw = dict(kernel_size=2 if args.kernel is None else args.kernel,
              stride=args.stride,
              padding=0 if args.padding is None else args.padding,
              dilation=1 if args.dilation is None else args.dilation,
              ceil_mode=bool(args.ceil_mode), mode=mode, count_include_pad=not args.exclude_pad,
              lang=args.lang)
    try:
        results = _explain(args.input, kw["kernel_size"], kw["stride"], kw["padding"], kw["dilation"],
                           kw["ceil_mode"], kw["mode"], args.grad, kw["count_include_pad"], kw["lang"], _CLI_NAMES)
        compare = None
        if not geometry_given and args.format == "text":
            # The tour: the chapter's stride-1 case on the same input (17.5.2), forward only.
            try:
                compare = _explain(args.input, 2, 1, 0, 1, False, kw["mode"], None, kw["count_include_pad"],
                                   kw["lang"], _CLI_NAMES)
            except ExplainError:
                compare = None
    except ExplainError as exc:
        return _usage_error(args, str(exc))

    if args.format == "json":
        sys.stdout.write(render_json(results) + "\n")
    else:
        sys.stdout.write(render_text(results, compare=compare, color=_use_color(args), width=max(args.width, 40)))
    if args.png is not None:
        words = _WORDS[args.lang]
        paths = save_figures(results, args.png, lang=args.lang)
        stream = sys.stderr if args.format == "json" else sys.stdout
        if args.lang == "zh" and _cjk_font() is None:
            stream.write(words["figure_font"] + "\n")
        stream.write(words["figures"] + "\n" + "".join(f"  {p}\n" for p in paths))
    return 0
