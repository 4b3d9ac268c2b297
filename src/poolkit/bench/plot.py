"""The bar chart of ``poolkit bench --plot`` (matplotlib is imported only here, and only when drawing)."""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

from .machine import cpu_line
from .units import pooling_text

__all__ = ["plot", "plot_problem"]


def plot_problem(path: str) -> Optional[str]:
    """None if ``path`` can be drawn, else why not (checked before a run, not after it)."""
    if importlib.util.find_spec("matplotlib") is None:
        return "needs matplotlib, which is not installed: pip install 'poolkit[plot]'"
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext not in formats:
        return f"{path!r}: the file name must end in one of .{', .'.join(sorted(formats))}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"{path!r}: the folder {folder!r} does not exist"
    return None


def plot(result: dict, path: str) -> None:
    """Bar chart of the time per forward+backward pass of each method in a ``poolkit bench`` result."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = result["methods"]
    cfg = result["config"]
    fig = Figure(figsize=(7.5, 1.8 + 0.45 * len(methods)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ms = [e["per_pass_s"] * 1e3 for e in methods]
    colors = ["tab:blue" if e["kind"] == "poolkit" else "tab:gray" for e in methods]
    bars = ax.barh([e["name"] for e in methods], ms, color=colors)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{v:.3g} ms" for v in ms], padding=3)
    ax.set_xlim(0, max(ms) * 1.25)
    ax.set_xlabel("time per forward+backward pass (ms, lower is better)")
    shape = "x".join(map(str, cfg["input_shape"]))
    pooling = pooling_text(cfg["mode"], cfg["kernel"], cfg["stride"], cfg["padding"])
    ax.set_title(f"{pooling}; {shape} {cfg['dtype']}; "
                 f"{cfg['threads']} threads; {cfg['iterations']} passes", fontsize=9)
    if len({e["kind"] for e in methods}) > 1:
        from matplotlib.patches import Patch
        # below the plot, so it never covers a bar's label
        ax.legend(handles=[Patch(color="tab:blue", label="poolkit"), Patch(color="tab:gray", label="other library")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=8)
    fig.text(0.01, 0.01, cpu_line(result["machine"]), fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
