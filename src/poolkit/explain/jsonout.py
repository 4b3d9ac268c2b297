"""``poolkit explain --format json``: the results as JSON, laid out to be read.

This module's job is the JSON text: one object per mode (a list for both),
each matrix row on its own line so that a grid looks like a grid.  The
numbers are :mod:`.compute`'s, unchanged; JSON's missing NaN and infinities
become ``null``.
"""
from __future__ import annotations

import json
import math
from typing import Sequence

__all__ = ["render_json"]


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
    """The results as JSON: one object for one mode, a list of them for several.

    Parameters
    ----------
    results : list of dict
        From :func:`poolkit.explain_pooling`.

    Returns
    -------
    text : str
        Valid JSON (``json.loads`` gives the results back), one matrix row per line.

    Examples
    --------
    >>> from poolkit import explain_pooling
    >>> print(render_json(explain_pooling(mode="max"))[:60])
    {
      "mode": "max",
      "input": [
        [1.0, 3.0, 2.0, 1.0],
    """
    return _json(results[0] if len(results) == 1 else list(results))
