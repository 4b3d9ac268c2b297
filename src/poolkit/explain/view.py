"""One result of :mod:`.compute` as both renderers see it.

This module's job is what :mod:`.text` and :mod:`.figures` share: a result
dict read back as arrays with the extent to draw (:class:`View`), numbers
written the same way in the terminal and in the figures (:func:`fmt`,
:func:`pair_text`), the display width of a string (Chinese characters take
two columns), and the chapter's output-size formula with a configuration's
numbers in it (:func:`formula_lines`), whose counts come from :mod:`.axis`,
and what kind of reduction a result is (:func:`reduction`, :func:`winners`,
:func:`label`), so that both renderers treat each mode alike.
"""
from __future__ import annotations

import re
import unicodedata
from typing import List

import numpy as np

from ..core.geometry import dim_names
from .axis import count_axis

__all__ = ["View", "as_array", "fmt", "pair_text", "display_width", "formula_lines", "reduction", "winners",
           "norm_text", "label"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def display_width(s: str) -> int:
    """Columns ``s`` takes in a terminal: East Asian wide characters take two, ANSI escapes none.

    Examples
    --------
    >>> display_width("池化 F"), display_width("\x1b[1mab\x1b[0m")
    (6, 2)
    """
    s = _ANSI.sub("", s)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in s)


def fmt(v) -> str:
    """A number as shown: integers without a point, others with at most 4 decimals, None as nan.

    Examples
    --------
    >>> fmt(4.0), fmt(2.25), fmt(1 / 3), fmt(None)
    ('4', '2.25', '0.3333', 'nan')
    """
    if v is None:
        return "nan"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return np.format_float_positional(v, precision=4, trim="-")


def pair_text(pair) -> str:
    """``[2, 2]`` as "2", ``[2, 1]`` as "2x1".

    Examples
    --------
    >>> pair_text([2, 2]), pair_text([2, 1])
    ('2', '2x1')
    """
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def reduction(r: dict) -> str:
    """How a result reduces its windows: "max", "min", "avg", "sum", "lp", "linf" (Lp with p = inf:
    max pooling of ``|x|``) or "linf_min" (p = -inf: min pooling of ``|x|``).

    Examples
    --------
    >>> reduction({"mode": "lp", "norm_type": "inf"}), reduction({"mode": "lp", "norm_type": "-inf"})
    ('linf', 'linf_min')
    >>> reduction({"mode": "lp", "norm_type": -2.0})
    'lp'
    """
    if r["mode"] == "lp" and r["norm_type"] in ("inf", "-inf"):
        return "linf" if r["norm_type"] == "inf" else "linf_min"
    return r["mode"]


def winners(r: dict):
    """A result's winning position per window (``argmax`` or ``argmin``), or None if it has none."""
    return r.get("argmax", r.get("argmin"))


def norm_text(r: dict) -> str:
    """Lp pooling's p as shown ("2", "1.5", "-1", "∞", "-∞"); "" for the other modes.

    Examples
    --------
    >>> norm_text({"mode": "lp", "norm_type": 2.0}), norm_text({"mode": "lp", "norm_type": "-inf"})
    ('2', '-∞')
    """
    if r["mode"] != "lp":
        return ""
    return {"inf": "∞", "-inf": "-∞"}.get(r["norm_type"]) or fmt(float(r["norm_type"]))


def label(r: dict, words: dict, suffix: str = "", *, kind: bool = False) -> str:
    """The phrase ``words[mode + suffix]`` for a result, with Lp pooling's p filled in.

    With ``kind=True`` the phrase is the reduction's (:func:`reduction`):
    Lp pooling with p = inf has phrases of its own ("linf").

    Examples
    --------
    >>> label({"mode": "lp", "norm_type": 3.0}, {"lp": "L{p} pooling"})
    'L3 pooling'
    """
    return words[(reduction(r) if kind else r["mode"]) + suffix].format(p=norm_text(r))


def as_array(nested) -> np.ndarray:
    """A result's nested lists back as a float64 array, None (JSON's null) as NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in nested], dtype=np.float64)


class View:
    """What the renderers need from one result dict, as arrays.

    Parameters
    ----------
    r : dict
        One result of :func:`poolkit.explain_pooling`.

    Attributes
    ----------
    x : ndarray of float64, shape (H, W)
        The input.
    H, W, oh, ow : int
        Input and output sizes.
    rows, cols : list of list of int
        The taps of each window along H and along W (padding included).
    r0, r1, c0, c1 : int
        The extent drawn, in input coordinates: the input, its padding, and
        any ``ceil_mode`` window running past the padding.
    """

    def __init__(self, r: dict):
        self.r = r
        self.x = as_array(r["input"])
        self.H, self.W = self.x.shape
        self.rows, self.cols = r["window_rows"], r["window_cols"]
        self.oh, self.ow = r["output_shape"]
        ph, pw = r["padding"]
        self.r0 = min(-ph, min(min(t) for t in self.rows))
        self.r1 = max(self.H + ph, max(max(t) for t in self.rows) + 1)
        self.c0 = min(-pw, min(min(t) for t in self.cols))
        self.c1 = max(self.W + pw, max(max(t) for t in self.cols) + 1)

    def inside(self, r, c) -> bool:
        """Is input position ``(r, c)`` inside the input (not padding)?"""
        return 0 <= r < self.H and 0 <= c < self.W

    def cells(self) -> List[List[str]]:
        """Formatted input over the drawn extent; '.' for padding."""
        return [[fmt(float(self.x[r, c])) if self.inside(r, c) else "." for c in range(self.c0, self.c1)]
                for r in range(self.r0, self.r1)]

    def marks(self, i, j) -> set:
        """Window (i, j) in drawn-grid coordinates."""
        return {(r - self.r0, c - self.c0) for r in self.rows[i] for c in self.cols[j]}

    def taps_inside(self, i, j) -> List[tuple]:
        """Input positions of window (i, j)'s taps that lie inside the input."""
        return [(r, c) for r in self.rows[i] for c in self.cols[j] if self.inside(r, c)]


def formula_lines(r: dict) -> List[str]:
    """The chapter's ``W2 = (W1 - F)/S + 1``, generalised, with this configuration's numbers.

    The values are :func:`.axis.count_axis`'s, so a window that ``ceil_mode``
    drops shows as ``formula → output`` (the explanation says why).

    Parameters
    ----------
    r : dict
        One result of :func:`poolkit.explain_pooling`.

    Returns
    -------
    lines : list of str
        One line per axis (two with dilation), H first.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> formula_lines(explain_pooling(mode="max", stride=1)[0])
    ['H2 = (H1 - F)/S + 1 = (4 - 2)/1 + 1 = 3', 'W2 = (W1 - F)/S + 1 = (4 - 2)/1 + 1 = 3']
    """
    lines = []
    rnd = "ceil" if r["ceil_mode"] else "floor"
    for axis, name in enumerate(dim_names(2)):
        n1, n2 = name + "1", name + "2"
        n = r["input_shape"][axis]
        f, s, p, d = r["kernel_size"][axis], r["stride"][axis], r["padding"][axis], r["dilation"][axis]
        count = count_axis(n, f, s, d, p, p, r["ceil_mode"])
        if d != 1:
            sym = f"{rnd}(({n1} + 2P - D*(F-1) - 1)/S) + 1"
            num = f"{rnd}(({n} + {2 * p} - {d}*({f}-1) - 1)/{s}) + 1"
            lines.append(f"{n2} = {sym}")
            lines.append(f"{' ' * len(n2)} = {num} = {count.out}   (span {count.span})")
            continue
        top = f"{n1} + 2P - F" if p else f"{n1} - F"
        top_n = f"{n} + {2 * p} - {f}" if p else f"{n} - {f}"
        res = f"{count.formula_out} → {count.out}" if count.dropped else f"{count.out}"
        if count.exact:                          # no rounding: leave floor/ceil out
            lines.append(f"{n2} = ({top})/S + 1 = ({top_n})/{s} + 1 = {res}")
        else:
            lines.append(f"{n2} = {rnd}(({top})/S) + 1 = {rnd}(({top_n})/{s}) + 1 = {res}")
    return lines
