"""``poolkit explain --png``: the chapter's figures, drawn for any input.

This module's job is drawing: for each mode a forward figure (the input with
every window outlined, and the output) and a backward figure (the upstream
gradient routed back to the input), written as PNG files.  Max and min
pooling (and Lp with p = inf) mark each window's winner and draw one arrow
per δ; mean, sum and Lp pooling outline the windows a δ is spread over.  matplotlib is an
optional extra (``pip install 'poolkit[plot]'``): it is imported inside the
functions that draw, never when this module is imported.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .view import View, display_width, fmt, formula_lines, label, pair_text, reduction, winners
from .words import FIGURE, words_for

__all__ = ["PLOT_HINT", "cjk_font", "save_figures"]

#: What to do when matplotlib is missing.
PLOT_HINT = "--png needs matplotlib: pip install 'poolkit[plot]'"

#: What a padding cell stands for, per reduction: it never wins a max or a min, and adds 0 to the rest.
_PAD_TEXT = {"max": "−∞", "min": "+∞", "linf": "−∞", "linf_min": "+∞"}

_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
            "#CCB974", "#64B5CD"]


def cjk_font() -> Optional[str]:
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
                text = fmt(values[r][c])
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


def _window_boxes(ax, v: View, x0: float, y0: float, colors, *, fill: bool):
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
        half = 0.1 * display_width(text) + 0.2            # about 0.2 cell per character at 12 pt
        left, right = min(left, centre - half), max(right, centre + half)
    fig = Figure(figsize=(unit * (right - left), unit * (height_cells + 2.0 + bottom)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
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


def _panels(r: dict):
    """A result's view, the size of its drawn input (cells), the gap between panels, the height of both."""
    v = View(r)
    ext_h, ext_w = v.r1 - v.r0, v.c1 - v.c0
    return v, ext_h, ext_w, 3.0, max(ext_h, v.oh)


def _figure_forward(r: dict, words: dict):
    from matplotlib.patches import Circle

    v, ext_h, ext_w, gap, total_h = _panels(r)
    in_y = (total_h - ext_h) / 2
    out_x, out_y = ext_w + gap, (total_h - v.oh) / 2
    fig, ax = _new_figure(out_x + v.ow, total_h, titles=((ext_w / 2, f"{words['input']} ({v.H}×{v.W})"),
                                                          (out_x + v.ow / 2, f"{words['output']} ({v.oh}×{v.ow})")))
    colors = _window_colors(v.oh * v.ow)
    grid = [[float(v.x[a, b]) if v.inside(a, b) else 0.0 for b in range(v.c0, v.c1)] for a in range(v.r0, v.r1)]
    won = winners(r)
    bold = set() if won is None else {(a[0] - v.r0, a[1] - v.c0) for row in won for a in row if a is not None}
    cell_fill = {}
    if not (_overlap(v.rows) or _overlap(v.cols)):
        for i in range(v.oh):
            for j in range(v.ow):
                for a in v.rows[i]:
                    for b in v.cols[j]:
                        cell_fill[(a - v.r0, b - v.c0)] = _light(colors[i * v.ow + j], 0.85 if v.inside(a, b) else 0.7)
    _draw_grid(ax, grid, 0, in_y, r0=v.r0, c0=v.c0, inside=v.inside, bold=bold, fills=cell_fill,
               pad_text=_PAD_TEXT.get(reduction(r), "0"), title=f"{words['input']} ({v.H}×{v.W})")
    _window_boxes(ax, v, 0, in_y, colors, fill=False)
    if won is not None:
        for i in range(v.oh):
            for j in range(v.ow):
                a = won[i][j]
                if a is not None:
                    ax.add_patch(Circle((a[1] - v.c0 + 0.5, in_y + a[0] - v.r0 + 0.5), 0.31, fill=False,
                                        edgecolor=colors[i * v.ow + j], linewidth=1.8, zorder=4))
    fills = {(i, j): _light(colors[i * v.ow + j], 0.55) for i in range(v.oh) for j in range(v.ow)}
    _draw_grid(ax, r["output"], out_x, out_y, fills=fills, title=f"{words['output']} ({v.oh}×{v.ow})")
    cfg = words["window"].format(k="×".join(map(str, r["kernel_size"])), s=pair_text(r["stride"]),
                                 p=pair_text(r["padding"]))
    _big_arrow(ax, ext_w + 0.35, out_x - 0.35, total_h / 2, label(r, words, "_op"))
    ax.text((out_x + v.ow - 0.9) / 2, -1.75, words["forward"].format(mode=label(r, words)),
            ha="center", va="top", fontsize=14, fontweight="bold", color="#1F1F1F")
    ax.text((out_x + v.ow - 0.9) / 2, total_h + 0.45, cfg, ha="center", va="top", fontsize=10, color="#333333")
    formulas = formula_lines(r)
    joined = "   ".join(formulas) if sum(len(f) for f in formulas) < 70 else "\n".join(formulas)
    ax.text((out_x + v.ow - 0.9) / 2, total_h + 1.0, joined, ha="center", va="top", fontsize=9,
            color="#555555", linespacing=1.5)
    return fig


def _figure_backward(r: dict, words: dict):
    from matplotlib import patheffects
    from matplotlib.patches import FancyArrowPatch

    v, ext_h, ext_w, gap, total_h = _panels(r)
    g_y = (total_h - v.oh) / 2
    x_x, x_y = v.ow + gap, (total_h - ext_h) / 2
    fig, ax = _new_figure(x_x + ext_w, total_h, titles=((v.ow / 2, f"{words['grad_out']} ({v.oh}×{v.ow})"),
                                                        (x_x + ext_w / 2, f"{words['grad_in']} ({v.H}×{v.W})")),
                          bottom=1.0)
    colors = _window_colors(v.oh * v.ow)
    fills_g = {(i, j): _light(colors[i * v.ow + j], 0.55) for i in range(v.oh) for j in range(v.ow)}
    _draw_grid(ax, r["grad_output"], 0, g_y, fills=fills_g, title=f"{words['grad_out']} ({v.oh}×{v.ow})")
    # Which windows send gradient to which input cell.
    won = winners(r)
    senders: Dict[tuple, List[int]] = {}
    for i in range(v.oh):
        for j in range(v.ow):
            if won is not None:
                a = won[i][j]
                targets = [] if a is None else [tuple(a)]
            else:
                targets = v.taps_inside(i, j)
            for t in targets:
                senders.setdefault((t[0] - v.r0, t[1] - v.c0), []).append(i * v.ow + j)
    fills_x = {cell: _light(_mix([colors[k] for k in ks]), 0.55) for cell, ks in senders.items()}
    grid = [[(r["grad_input"][a][b] if v.inside(a, b) else 0.0) for b in range(v.c0, v.c1)]
            for a in range(v.r0, v.r1)]
    if won is not None:
        # The input values in each cell's corner, so one sees that δ lands on the maximum (minimum).
        corner = {(a - v.r0, b - v.c0): f"x={fmt(float(v.x[a, b]))}" for a in range(v.H) for b in range(v.W)}
        _draw_grid(ax, grid, x_x, x_y, r0=v.r0, c0=v.c0, inside=v.inside, fills=fills_x, bold=set(senders),
                   corner=corner, title=f"{words['grad_in']} ({v.H}×{v.W})")
    else:
        _draw_grid(ax, grid, x_x, x_y, r0=v.r0, c0=v.c0, inside=v.inside, fills=fills_x,
                   title=f"{words['grad_in']} ({v.H}×{v.W})")
        _window_boxes(ax, v, x_x, x_y, colors, fill=False)
        kind = reduction(r)
        for i in range(v.oh):
            for j in range(v.ow):
                # Under each δ what shapes its shares: mean's divisor, Lp's output y (sum has neither).
                if kind == "avg":
                    note, size = f"÷{r['divisor'][i][j]}", 8
                elif kind == "lp":
                    note, size = f"y={fmt(r['output'][i][j])}", 6
                else:
                    continue
                ax.text(j + 0.5, g_y + i + 0.86, note, ha="center", va="center", fontsize=size,
                        color="#444444", zorder=6)
        _big_arrow(ax, v.ow + 0.35, x_x - 0.45, total_h / 2, label(r, words, "_op_back", kind=True))
    # Max and min pooling: one arrow per δ, from the right edge of the δ grid to the winner.
    if won is not None and v.oh * v.ow <= 36:
        for i in range(v.oh):
            for j in range(v.ow):
                a = won[i][j]
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
    ax.text((x_x + ext_w - 0.9) / 2, -1.75, words["backward"].format(mode=label(r, words)),
            ha="center", va="top", fontsize=14, fontweight="bold", color="#1F1F1F")
    ax.text((x_x + ext_w - 0.9) / 2, total_h + 0.45, label(r, words, "_rule", kind=True), ha="center", va="top",
            fontsize=10, color="#333333")
    return fig


def save_figures(results: Sequence[dict], directory, *, lang: Optional[str] = None, dpi: int = 150) -> List[Path]:
    """Write the forward and backward figures of each mode as PNG files.

    Files: ``{mode}-forward.png`` (the input with every window drawn, and the
    output) and ``{mode}-backward.png`` (the upstream gradient routed back to
    the input), for ``mode`` in max, avg, min, sum, lp. ``directory`` is created if needed.
    Needs matplotlib (``pip install 'poolkit[plot]'``); Chinese labels need a
    CJK font, else the labels are in English.

    Parameters
    ----------
    results : list of dict
        From :func:`poolkit.explain_pooling`.
    directory : str or os.PathLike
        Where the files go.
    lang : {"en", "zh"}, optional
        Language of the labels. Default: the language the results were made in.
    dpi : int
        Resolution of the PNG files.

    Returns
    -------
    paths : list of pathlib.Path
        Two files per mode, forward first.

    Raises
    ------
    ImportError
        If matplotlib is not installed; the message says how to install it.

    Examples
    --------
    >>> import tempfile, poolkit
    >>> with tempfile.TemporaryDirectory() as d:                # doctest: +SKIP
    ...     [p.name for p in save_figures(poolkit.explain_pooling(mode="max"), d)]
    ['max-forward.png', 'max-backward.png']
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(PLOT_HINT) from None

    lang = lang or results[0].get("lang", "en")
    words = words_for(FIGURE, lang)
    font = cjk_font() if lang == "zh" else None
    if lang == "zh" and font is None:
        words = FIGURE["en"]                    # no font here can draw the Chinese labels
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A CJK font often has no bold face; matplotlib would log a warning for each bold title.
    font_log = logging.getLogger("matplotlib.font_manager")
    level = font_log.level
    font_log.setLevel(logging.ERROR)
    try:
        with matplotlib.rc_context({"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"],
                                    "axes.unicode_minus": False}):
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

