"""``poolkit explain`` in the terminal: the walk-through as text, 80 columns wide.

This module's job is the terminal layout: grids with the window in brackets
(and ANSI colours when asked), blocks side by side, lines wrapped by display
width so that Chinese fits too, and grids too large to draw described
instead.  It reads :mod:`.compute`'s result dicts and :mod:`.words`' phrases;
it computes no pooling.
"""
from __future__ import annotations

import unicodedata
from typing import Dict, List, Optional, Sequence

from .view import (View, as_array, display_width, fmt, formula_lines, label, norm_text, pair_text, reduction,
    winners)
from .words import TEXT, words_for

__all__ = ["render_text", "config_line", "window_formula", "route_line", "rule_text"]

_CJK_PUNCT = set("，。；：）、！？》」")
_HL, _WIN, _BOLD, _RESET = "\x1b[30;43m", "\x1b[1;31;43m", "\x1b[1m", "\x1b[0m"


def _ljust(s: str, width: int) -> str:
    return s + " " * max(0, width - display_width(s))


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
        if display_width(line) + display_width(t) > width and line.strip():
            lines.append(line.rstrip())
            line = indent + cont
            if t == " ":
                continue
        line += t
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _grid(cells: List[List[str]], marks=frozenset(), winner=None, color=False) -> List[str]:
    """Lines of a grid of strings; cells in ``marks`` are bracketed (and coloured)."""
    w = max(display_width(c) for row in cells for c in row)
    lines = []
    for r, row in enumerate(cells):
        out = []
        for c, text in enumerate(row):
            inside, before = (r, c) in marks, (r, c - 1) in marks
            if inside and before:
                out.append(_HL + "  " + _RESET if color else "  ")    # inside a run of window cells
            else:
                out.append(" [" if inside else "] " if before else "  ")
            cell = " " * (w - display_width(text)) + text
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
        widths = [max(display_width(s) for s in b) for b in band]
        for i in range(max(len(b) for b in band)):
            parts = [_ljust(b[i] if i < len(b) else "", w) for b, w in zip(band, widths)]
            lines.append((indent + (" " * gap).join(parts)).rstrip())
        if lines_sep:
            lines.append("")

    lines_sep = False
    for b in blocks:
        bw = max(display_width(s) for s in b)
        if band and display_width(indent) + band_w + gap + bw > width:
            lines_sep = True
            flush()
            band, band_w = [], 0
        band.append(b)
        band_w += (gap if band_w else 0) + bw
    lines_sep = False
    flush()
    return lines


def _matrix_block(title: str, values, color=False) -> List[str]:
    cells = [[fmt(v) for v in row] for row in values]
    return [title] + _grid(cells, color=color)


def config_line(results: Sequence[dict], words: dict) -> str:
    """The configuration in one line: the modes, window, stride, padding and the rest.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> from poolkit.explain.words import TEXT
    >>> config_line(explain_pooling(stride=1), TEXT["en"])
    'max pooling and mean pooling: window (F) 2x2, stride (S) 1, padding 0'
    """
    r = results[0]
    text = words["config"].format(modes=words["and"].join(label(x, words) for x in results),
                                  k="x".join(map(str, r["kernel_size"])), s=pair_text(r["stride"]),
                                  p=pair_text(r["padding"]))
    if r["dilation"] != [1, 1]:
        text += words["dilation"].format(d=pair_text(r["dilation"]))
    if r["ceil_mode"]:
        text += words["ceil"]
    if any(not x.get("count_include_pad", True) for x in results):
        text += words["nopad"]
    return text


def _filmstrip(views_results, words, width, color) -> List[str]:
    """Every window in turn, one band per output row, with each mode's result under it."""
    v = View(views_results[0])
    n = v.oh * v.ow
    grid_w = display_width(_grid(v.cells())[0]) + 1
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
                won = winners(r)
                if won is not None and won[i][j] is not None:
                    winner = (won[i][j][0] - v.r0, won[i][j][1] - v.c0)
            block = [f"y[{i},{j}]"] + _grid(cells, v.marks(i, j), winner, color)
            for r in views_results:
                block.append(f"{label(r, words, '_short')} {fmt(r['output'][i][j])}")
            blocks.append(block)
        lines += _side_by_side(blocks, width)
        lines.append("")
    return lines[:-1]


def window_formula(r: dict, words: dict, i: int, j: int) -> str:
    """Window ``(i, j)`` of one result worked out by hand, numbers filled in: ``max(1, 3, 4, 2) = 4``.

    Parameters
    ----------
    r : dict
        One result of :func:`poolkit.explain_pooling`.
    words : dict
        :data:`.words.TEXT` in one language.
    i, j : int
        The output position.

    Returns
    -------
    text : str
        The reduction with the window's values (padding as 0 where it counts)
        and the result, then a note on padding or scaling where one applies.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> from poolkit.explain.words import TEXT
    >>> max_r, avg_r = explain_pooling()
    >>> window_formula(max_r, TEXT["en"], 0, 1), window_formula(avg_r, TEXT["en"], 0, 1)
    ('max(2, 1, 1, 5) = 5', 'mean = (2 + 1 + 1 + 5)/4 = 2.25')
    """
    v = View(r)
    ph, pw = r["padding"]
    taps = [(a, b) for a in v.rows[i] for b in v.cols[j]]
    vals = [float(v.x[a, b]) for a, b in taps if v.inside(a, b)]
    # Every tap inside the padded input, in scan order; padding (None) shows as 0.
    padded = [fmt(float(v.x[a, b])) if v.inside(a, b) else None for a, b in taps
              if -ph <= a < v.H + ph and -pw <= b < v.W + pw]
    in_pad = len(taps) - len(vals)
    kind, res = reduction(r), fmt(r["output"][i][j])
    notes = []
    if kind in ("max", "min", "linf", "linf_min"):
        shown = [f"|{fmt(x)}|" for x in vals] if kind.startswith("linf") else [fmt(x) for x in vals]
        text = words["ex_" + kind].format(vals=", ".join(shown), res=res)
        notes = [words["ex_max_pad"]] if in_pad else []
    elif kind == "sum":
        text = words["ex_sum"].format(vals=" + ".join(map(fmt, vals)), res=res)
        notes = [words["ex_pad_zero"]] if in_pad else []
    elif kind == "lp":
        p, k, n = norm_text(r), len(taps), r["divisor"][i][j]
        power = f"({p})" if p.startswith("-") else p

        def term(t):
            if t is None:                      # padding adds 0 to the sum of powers (0**p for p < 0 would not)
                return "0" if power != p else f"0^{p}"
            return f"({t})^{power}" if t.startswith("-") else f"{t}^{power}"

        terms = " + ".join(term(t) for t in padded)
        text = words["ex_lp" if k == n else "ex_lp_scaled"].format(terms=terms, k=k, n=n, p=p, res=res)
        notes = ([words["ex_pad_zero"]] if in_pad else []) + \
            ([words["ex_lp_scale"].format(k=k, n=n)] if k != n else [])
    else:
        div = r["divisor"][i][j]
        shown = [t if t is not None else "0" for t in padded] if r["count_include_pad"] else \
            [fmt(x) for x in vals]
        text = words["ex_avg"].format(vals=" + ".join(shown), div=div, res=res)
        if in_pad:
            notes = [words["ex_avg_pad"] if r["count_include_pad"] else words["ex_avg_nopad"].format(div=div)]
    return words["sp"].join([text] + notes)


def _example_lines(results, words, width) -> List[str]:
    """The first window worked out by hand: max(a, b, e, f) and (a + b + e + f)/4, as in 17.5.3."""
    parts = [window_formula(r, words, 0, 0) for r in results]
    return _wrap(words["example"] + words["sp"] + words["sep"].join(parts), width, "  ")


def _forward_section(results, words, width, color) -> List[str]:
    lines = [words["forward"]]
    lines += _filmstrip(results, words, width, color) + [""]
    lines += _example_lines(results, words, width)
    return lines


def _input_block(results, words, width) -> List[str]:
    v = View(results[0])
    lines = [words["input"].format(h=v.H, w=v.W)]
    grid = _grid(v.cells())
    if display_width(grid[0]) + 2 > width:
        lines.append("  " + words["too_wide"].format(h=v.H, w=v.W, width=width))
    else:
        lines += ["  " + g for g in grid]
    if v.r0 < 0 or v.c0 < 0 or v.r1 > v.H or v.c1 > v.W:
        kinds = list(dict.fromkeys(reduction(x) for x in results))      # each rule once, in order
        rules = words["pad_sep"].join(words["pad_" + k] for k in kinds)
        lines += _wrap(words["pad_note"].format(rules=rules), width, "  ")
    return lines


def _size_section(r, words, width) -> List[str]:
    lines = [words["size"]]
    lines += ["  " + s for s in formula_lines(r)]
    lines += _wrap(words["depth"], width, "  ")
    lines.append(words["detail"])
    for s in r["explanation"]:
        lines += _wrap(s, width, "  ")
    return lines


def _outputs_block(results, words, width, color) -> List[str]:
    oh, ow = results[0]["output_shape"]
    lines = [words["output"].format(oh=oh, ow=ow)]
    blocks = [_matrix_block(label(r, words), r["output"]) for r in results]
    if max(display_width(s) for b in blocks for s in b) + 2 > width:
        return lines + ["  " + words["too_wide"].format(h=oh, w=ow, width=width)]
    return lines + _side_by_side(blocks, width)


def _repeat_lines(r, words, width) -> List[str]:
    """For max and min pooling: the inputs that win more than one window."""
    wins: Dict[tuple, int] = {}
    for row in winners(r):
        for a in row:
            if a is not None:
                wins[tuple(a)] = wins.get(tuple(a), 0) + 1
    many = [(n, rc) for rc, n in wins.items() if n > 1]
    if not many:
        return []
    many.sort(key=lambda t: (-t[0], t[1]))
    kind = reduction(r)
    items = [words["repeat_" + kind].format(v=fmt(r["input"][rc[0]][rc[1]]), r=rc[0], c=rc[1], n=n)
             for n, rc in many]
    text = words["repeats_" + kind] + words["sp"] + words["sep"].join(items) + words["end"] + words["sp"]
    return _wrap(text + words["repeat_tail"], width, "  ")


def _span(taps) -> tuple:
    """``x[rs, cs]``'s two slices ("0:2", "1") covering a window's taps inside the input."""
    rr = sorted({t[0] for t in taps})
    cc = sorted({t[1] for t in taps})
    rs = f"{rr[0]}" if len(rr) == 1 else f"{rr[0]}:{rr[-1] + 1}"
    cs = f"{cc[0]}" if len(cc) == 1 else f"{cc[0]}:{cc[-1] + 1}"
    return rs, cs


def route_line(r: dict, words: dict, i: int, j: int) -> str:
    """Where backward sends ``δ[i, j]``, in words and numbers: ``δ[0,1] = 2 → x[1,3] (the max, 5)``.

    Parameters
    ----------
    r, words : dict
        One result and the phrases of one language, as for :func:`window_formula`.
    i, j : int
        The output position whose upstream gradient is sent back.

    Returns
    -------
    text : str

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> from poolkit.explain.words import TEXT
    >>> max_r, avg_r = explain_pooling()
    >>> route_line(max_r, TEXT["en"], 0, 1)
    'δ[0,1] = 2 → x[1,3] (the max, 5)'
    >>> route_line(avg_r, TEXT["en"], 1, 0)
    'δ[1,0] = 3 → 3/4 = 0.75 to each of x[2:4, 0:2]'
    """
    v = View(r)
    kind = reduction(r)
    won = winners(r)
    g = fmt(r["grad_output"][i][j])
    taps = v.taps_inside(i, j)
    if won is not None:
        a = won[i][j]
        if a is None:
            return words["none"].format(i=i, j=j, g=g)
        v_won = r["input"][a[0]][a[1]]
        g_won = r["grad_output"][i][j]           # L∞: times the sign of x at the winner
        gs = None if g_won is None or v_won is None else g_won * ((v_won > 0) - (v_won < 0))
        return words[kind + "_route"].format(i=i, j=j, g=g, gs=fmt(gs), r=a[0], c=a[1], v=fmt(v_won))
    div = r["divisor"][i][j] if "divisor" in r else len(taps)
    if not taps or div == 0:
        return words["none"].format(i=i, j=j, g=g)
    rs, cs = _span(taps)
    one = "" if len(taps) > 1 else "_one"
    if kind == "avg":
        share = r["grad_output"][i][j]
        share = None if share is None else share / div
        text = words["avg_route" + one].format(i=i, j=j, g=g, div=div, share=fmt(share), rs=rs, cs=cs)
    elif kind == "sum":
        text = words["sum_route" + one].format(i=i, j=j, g=g, rs=rs, cs=cs)
    else:
        y, p = r["output"][i][j], float(r["norm_type"])
        if y is None or y != y:
            # For p < 0 a window whose powers sum to 0 has y = inf and sends nothing; else y is NaN.
            zero_sum = "power_sum" in r and r["power_sum"][i][j] == 0
            return words["lp_inf" if zero_sum else "lp_nan"].format(i=i, j=j, g=g)
        if y == 0:
            return words["lp_zero"].format(i=i, j=j, g=g)
        k = len(v.rows[i]) * len(v.cols[j])
        scale = "" if k == div else f"·{k}/{div}"
        text = words["lp_route" + one].format(i=i, j=j, g=g, y=fmt(y), q=fmt(p - 1), scale=scale, rs=rs, cs=cs)
    lost = len(v.rows[i]) * len(v.cols[j]) - len(taps)
    # Only mean pooling with count_include_pad=True shares δ out to taps in the padding.
    lost = min(lost, div - len(taps)) if kind == "avg" and r["count_include_pad"] else 0
    if lost > 0:
        text += words["pad_lost"].format(n=lost)
    return text


def _routes(r, words, limit=16) -> List[str]:
    oh, ow = r["output_shape"]
    lines = [route_line(r, words, i, j) for i in range(oh) for j in range(ow)]
    if len(lines) > limit:
        lines = lines[:limit] + [words["more"].format(n=len(lines) - limit)]
    return lines


def _adds_line(r, words, width) -> List[str]:
    """For max and min pooling: one input that receives gradient from several windows."""
    if winners(r) is None:
        return []
    got: Dict[tuple, list] = {}
    for i, row in enumerate(winners(r)):
        for j, a in enumerate(row):
            if a is not None:
                got.setdefault(tuple(a), []).append(r["grad_output"][i][j])
    many = [(rc, gs) for rc, gs in got.items() if len(gs) > 1]
    if not many:
        return []
    rc, gs = max(many, key=lambda t: (len(t[1]), sum(abs(g) for g in t[1] if g is not None)))
    total = r["grad_input"][rc[0]][rc[1]]
    return _wrap(words["adds"].format(r=rc[0], c=rc[1], terms=" + ".join(map(fmt, gs)), total=fmt(total)),
                 width, "  ")


def rule_text(r: dict, words: dict) -> str:
    """The sentence that says how a mode sends δ back.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> from poolkit.explain.words import TEXT
    >>> rule_text(explain_pooling(mode="avg")[0], TEXT["en"])
    'Mean pooling: δ is shared out equally, δ/4 to every tap of its window.'
    """
    kind = reduction(r)
    if kind == "avg":
        divs = {d for row in r["divisor"] for d in row}
        return words["avg_rule"].format(div=divs.pop()) if len(divs) == 1 else words["avg_rule_var"]
    if kind != "lp":
        return words[kind + "_rule"]
    p = float(r["norm_type"])
    # (x/y)**(p-1): larger taps get more for p > 1, smaller ones for p < 1 (negative p too), all alike for p = 1.
    tail = words["lp_rule_larger" if p > 1 else "lp_rule_smaller" if p < 1 else "lp_rule_equal"]
    parts = [words["lp_rule"].format(p=norm_text(r), q=fmt(p - 1)) + tail, words["lp_rule_zero"]]
    if p < 0:
        parts.append(words["lp_rule_inf"])
    k = r["kernel_size"][0] * r["kernel_size"][1]
    if any(d != k for row in r["divisor"] for d in row):
        parts.append(words["lp_rule_scaled"])
    return words["sp"].join(parts)


def _backward_section(results, words, width, color) -> List[str]:
    r0 = results[0]
    oh, ow = r0["output_shape"]
    n = oh * ow
    lines = _wrap(words["backward"].format(oh=oh, ow=ow), width)
    grid = _grid([[fmt(v) for v in row] for row in r0["grad_output"]])
    lines += ["  " + g for g in grid] if display_width(grid[0]) + 2 <= width else \
        ["  " + words["too_wide"].format(h=oh, w=ow, width=width)]
    if r0["grad_source"] == "ramp":
        note = words["grad_chapter"] if (oh, ow) == (2, 2) else words["grad_ramp"].format(n=n)
        lines += _wrap(note, width, "  ")
    for r in results:
        lines.append("")
        lines += _wrap(rule_text(r, words), width)
        for s in _routes(r, words):
            lines += _wrap(s, width, "  ")
        v = View(r)
        block = _matrix_block(words["grad_x"].format(mode=label(r, words)), r["grad_input"])
        if display_width(block[1]) + 2 <= width:
            lines += _side_by_side([block], width)
        else:
            lines += [block[0], "  " + words["too_wide"].format(h=v.H, w=v.W, width=width)]
        lines += _adds_line(r, words, width)
        gi, go = as_array(r["grad_input"]), as_array(r["grad_output"])
        lines.append("  " + words["sigma"].format(a=fmt(float(gi.sum())), b=fmt(float(go.sum()))))
    lines.append("")
    lines += _wrap(words["no_params"], width)
    return lines


def render_text(results: Sequence[dict], *, compare: Optional[Sequence[dict]] = None, lang: Optional[str] = None,
                color: bool = False, width: int = 80) -> str:
    """The walk-through as terminal text.

    Parameters
    ----------
    results : list of dict
        From :func:`poolkit.explain_pooling`.
    compare : list of dict, optional
        A second configuration of the same input (the tour passes stride 1),
        shown forward only after the first.
    lang : {"en", "zh"}, optional
        Default: the language the results were made in.
    color : bool
        Highlight windows with ANSI colours (brackets stay either way).
    width : int
        Columns to fit; grids too wide for it are described instead of drawn.

    Returns
    -------
    text : str
        Lines no wider than ``width`` columns (Chinese characters count two),
        ending in a newline.

    Raises
    ------
    ExplainError
        If ``lang`` is not "en" or "zh".

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> print(render_text(explain_pooling(mode="max")).splitlines()[0])
    poolkit explain: pooling forward and backward (textbook section 17.5)
    """
    lang = lang or results[0].get("lang", "en")
    words = words_for(TEXT, lang)
    b = (lambda s: _BOLD + s + _RESET) if color else (lambda s: s)
    r0 = results[0]
    out = [b(words["title"])] + _wrap(config_line(results, words), width) + [""]
    out += _input_block(results, words, width) + [""]
    out += _forward_section(results, words, width, color) + [""]
    out += _size_section(r0, words, width) + [""]
    out += _outputs_block(results, words, width, color) + [""]
    if compare:
        c0 = compare[0]
        out += [b(_wrap(words["compare"].format(k="x".join(map(str, c0["kernel_size"]))), width)[0])]
        out += _wrap(config_line(compare, words), width, "  ") + [""]
        out += _filmstrip(compare, words, width, color) + [""]
        out += ["  " + s for s in formula_lines(c0)] + [""]
        out += _outputs_block(compare, words, width, color)
        for r in compare:
            if winners(r) is not None:
                out += _repeat_lines(r, words, width)
        out.append("")
    out += _backward_section(results, words, width, color)
    return "\n".join(out) + "\n"

