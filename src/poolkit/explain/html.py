"""``poolkit explain --html``: the walk-through as one interactive page.

This module's job is the page: it puts :func:`poolkit.explain_pooling`'s
results (made with ``steps=True``), the chapter's presets made the same way,
and every sentence the page shows -- each window's formula and each backward
step's route, in English and in Chinese, written by :mod:`.text` and
:mod:`.words` -- into one JSON object, and that object into the template
``page.html`` (package data: the page's CSS and script, inline).  The numbers
are also given as :func:`.view.fmt` writes them, so the page shows the same
digits as the terminal.  The script lays out and highlights what the JSON
holds; it computes no pooling.  Nothing on the page loads from the network: its
Content-Security-Policy allows no source at all besides the inline code.
"""
from __future__ import annotations

import html as _html
import json
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .. import __version__
from ..core.geometry import PoolSpec
from .compute import CHAPTER_INPUT, explain_pooling
from .parse import ExplainError
from .text import config_line, route_line, rule_text, window_formula
from .view import View, fmt, formula_lines, label
from .words import LANGS, PAGE, TEXT, explain_shape, words_for

__all__ = ["MAX_CELLS", "PRESETS", "page_data", "render_html", "save_html"]

#: The largest grid the page draws (cells of the padded input, and windows): the page builds one
#: table cell per number, and its self-test visits every window and every step.
MAX_CELLS = 2500

#: The chapter's figures, embedded as configurations of the chapter's 4x4 grid (max and mean):
#: 2x2 windows with stride 2 (17.5.1), stride 1 (17.5.2) and padding 1.
PRESETS = (("chapter", {"kernel_size": 2}), ("stride1", {"kernel_size": 2, "stride": 1}),
           ("padding1", {"kernel_size": 2, "padding": 1}))

_MARKERS = ("__POOLKIT_LANG__", "__POOLKIT_TITLE__", "__POOLKIT_NOSCRIPT__", "__POOLKIT_DATA__")


def _template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def _grid_text(nested) -> List[List[str]]:
    return [[fmt(v) for v in row] for row in nested]


def _check_size(r: dict) -> None:
    v = View(r)
    h, w = v.r1 - v.r0, v.c1 - v.c0
    if h * w > MAX_CELLS:
        raise ExplainError(f"the page draws at most {MAX_CELLS} cells per grid, but this input with its padding "
                           f"is {h}x{w} = {h * w}; use a smaller input (the terminal text, --png and "
                           f"--format json take any size).")
    if v.oh * v.ow > MAX_CELLS:
        raise ExplainError(f"the page steps through at most {MAX_CELLS} windows, but this configuration has "
                           f"{v.oh}x{v.ow} = {v.oh * v.ow}; use a larger stride or a smaller input.")


def _config(key: str, results: Sequence[dict]) -> Dict:
    """One configuration of the page: the results, their texts in every language, their numbers as shown."""
    for r in results:
        if "backward_steps" not in r:
            raise ValueError("the page needs backward window by window: make the results with "
                             "poolkit.explain_pooling(..., steps=True)")
    r0 = results[0]
    _check_size(r0)
    v = View(r0)
    spec = PoolSpec.from_args(2, r0["kernel_size"], r0["stride"], r0["padding"], r0["dilation"], r0["ceil_mode"])
    text = {}
    for lang in LANGS:
        words = TEXT[lang]
        explanation = r0["explanation"] if lang == r0["lang"] else \
            explain_shape(spec, r0["input_shape"], lang).splitlines()
        modes = []
        for r in results:
            oh, ow = r["output_shape"]
            modes.append({
                "label": label(r, words), "rule": rule_text(r, words),
                "formula": [[window_formula(r, words, i, j) for j in range(ow)] for i in range(oh)],
                "route": [[route_line(r, words, i, j) for j in range(ow)] for i in range(oh)],
            })
        text[lang] = {"config": config_line(results, words), "explanation": explanation, "modes": modes}
    shown = [{"input": _grid_text(r["input"]), "output": _grid_text(r["output"]),
              "grad_output": _grid_text(r["grad_output"]), "grad_input": _grid_text(r["grad_input"]),
              "steps": [[[fmt(share), fmt(total)] for _, _, share, total in st["to"]]
                        for st in r["backward_steps"]]}
             for r in results]
    return {"key": key, "results": list(results), "extent": [v.r0, v.r1, v.c0, v.c1],
            "formula_lines": formula_lines(r0), "text": text, "shown": shown}


def page_data(results: Sequence[dict], *, presets: bool = True, lang: Optional[str] = None) -> Dict:
    """Everything the page shows, as one JSON-ready dict.

    Parameters
    ----------
    results : list of dict
        From :func:`poolkit.explain_pooling` with ``steps=True``.
    presets : bool
        Also the chapter's figures (:data:`PRESETS`, max and mean pooling of
        :data:`~poolkit.explain.CHAPTER_INPUT`); a preset equal to ``results``
        is not repeated.
    lang : {"en", "zh"}, optional
        The language the page opens in. Default: the results'.

    Returns
    -------
    data : dict
        ``lang``, ``version``, ``zero`` (0 as shown), ``words`` (the page's
        phrases per language) and ``configs``: per configuration its ``key``,
        ``results`` (as given), ``extent`` (rows and columns drawn, padding
        included), ``formula_lines``, ``text`` (per language: the
        configuration line, the output-size explanation, and per mode its
        label, backward rule, and each window's formula and route) and
        ``shown`` (the numbers as :func:`.view.fmt` writes them).

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> data = page_data(explain_pooling(steps=True))
    >>> [c["key"] for c in data["configs"]]                # the defaults are the chapter's first figure
    ['chapter', 'stride1', 'padding1']
    >>> data["configs"][0]["text"]["en"]["modes"][0]["formula"][0][1]
    'max(2, 1, 1, 5) = 5'
    >>> data["configs"][0]["text"]["zh"]["modes"][1]["route"][1][0]
    'δ[1,0] = 3 → x[2:4, 0:2] 的每个位置各得 3/4 = 0.75'
    """
    lang = lang or results[0].get("lang", "en")
    words_for(PAGE, lang)
    configs = [_config("yours", results)]
    if presets:
        for key, kwargs in PRESETS:
            preset = explain_pooling(CHAPTER_INPUT, mode="both", steps=True, lang=results[0]["lang"], **kwargs)
            if preset == list(results):
                configs[0]["key"] = key          # the user's options are this figure: one entry, named for it
            else:
                configs.append(_config(key, preset))
    return {"lang": lang, "version": __version__, "zero": fmt(0.0), "words": {k: PAGE[k] for k in LANGS},
            "configs": configs}


def _script_json(data) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` (so no ``</script>``), no NaN."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(results: Sequence[dict], *, presets: bool = True, lang: Optional[str] = None) -> str:
    """The interactive page, as one self-contained HTML document.

    The page shows the input and each mode's output side by side;
    hovering over, clicking or moving (arrow keys) to an output cell
    highlights its window and shows its formula with the numbers, next to
    the output-size formula; a step-through sends each δ back, with the
    running gradient growing to ``grad_input``; buttons switch between
    English and Chinese and between the configurations.  Opened with
    ``#selftest`` after its name, the page drives every hover and every
    step itself, compares what it shows with its JSON, and writes
    ``selftest: N checks passed`` (or what failed) into ``#selftest-result``.

    Parameters
    ----------
    results : list of dict
        From :func:`poolkit.explain_pooling` with ``steps=True``.
    presets : bool
        Also the chapter's figures (see :func:`page_data`).
    lang : {"en", "zh"}, optional
        The language the page opens in. Default: the results'.

    Returns
    -------
    page : str
        HTML with inline CSS and script; it loads nothing.

    Raises
    ------
    ExplainError
        If ``lang`` is unknown, or a grid is larger than :data:`MAX_CELLS`.
    ValueError
        If the results lack ``backward_steps``.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> page = render_html(explain_pooling(steps=True))
    >>> page.startswith("<!DOCTYPE html>"), 'id="selftest-result"' in page
    (True, True)
    """
    data = page_data(results, presets=presets, lang=lang)
    words = PAGE[data["lang"]]
    page = _template()
    for marker in _MARKERS:
        if page.count(marker) != 1:                     # the template and this module go together
            raise RuntimeError(f"page.html must hold {marker} once")
    page = page.replace("__POOLKIT_LANG__", "zh-Hans" if data["lang"] == "zh" else "en")
    page = page.replace("__POOLKIT_TITLE__", _html.escape(words["title"]))
    page = page.replace("__POOLKIT_NOSCRIPT__", _html.escape(words["noscript"]))
    return page.replace("__POOLKIT_DATA__", _script_json(data))


def save_html(results: Sequence[dict], path, *, presets: bool = True, lang: Optional[str] = None) -> Path:
    """Write :func:`render_html`'s page to ``path`` (UTF-8) and return the path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from poolkit import explain_pooling
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_html(explain_pooling(mode="max", steps=True), pathlib.Path(d) / "pooling.html")
    ...     path.read_text(encoding="utf-8").count("<script")
    2
    """
    path = Path(path)
    path.write_text(render_html(results, presets=presets, lang=lang), encoding="utf-8")
    return path
