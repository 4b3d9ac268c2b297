"""Show what pooling does, forward and backward: the chapter's figures, live.

With no options, walks through section 17.5's examples on its 4x4 grid: each
2x2 window in turn, max and mean pooling side by side, the output-size
formula with the numbers filled in, the same with stride 1, and backward for
the upstream gradient [[1,2],[3,4]] -- where max pooling routes each value
and how mean pooling shares it out. Any of --kernel, --stride, --padding,
--dilation or --ceil-mode shows that one configuration instead of the tour.
--mode min, sum or lp (with --norm-type P, default 2) walks through min, sum
or Lp pooling (PyTorch's LPPool) the same way. --html FILE writes it all as
one interactive page instead: hover over an output to see its window and
formula, step through backward, switch to Chinese; it opens from disk with
no network, and FILE#selftest checks it in the browser.

examples:
  poolkit explain
  poolkit explain --lang zh
  poolkit explain --input "1 3 2 1; 4 2 1 5; 3 1 1 0; 1 2 2 4" --format json
  poolkit explain --stride 1 --mode max --grad "1 0 0; 0 0 0; 0 0 1"
  poolkit explain --mode lp --norm-type 3 --padding 1
  poolkit explain --input x.npy --kernel 3 --stride 2 --padding 1 --ceil-mode
  poolkit explain --png figures/
  poolkit explain --html pooling.html
  poolkit explain --html pooling.html --stride 1 --lang zh

Matrices: rows separated by ';', values by spaces or commas (or a JSON list
such as [[1,2],[3,4]], or a .npy file holding one 2-D plane). Without --grad
the upstream gradient is 1, 2, ..., n in row-major order over the output (for
a 2x2 output that is the chapter's [[1,2],[3,4]]).
"""
# The text above is the help of ``poolkit explain`` (poolkit.cli shows this
# docstring).  The package, one module per job:
#   parse     reading matrices, window sizes, modes and the Lp norm; ExplainError
#   axis      the numbers behind an axis's output length (output_size, regular_axis)
#   compute   one plane pooled forward and backward: the result dicts
#   words     every sentence, in English and Chinese
#   view      what the text and the figures share: a result as arrays, numbers, formulas
#   text      the terminal walk-through;  jsonout  --format json;  figures  --png
#   html      --html: the interactive page (template page.html: its CSS and script)
#   cli       add_arguments(parser) and run(args), used by poolkit.cli
#   options   add_value_options: options that take a value, as rows (poolkit bench and pyramid too)
from __future__ import annotations

from .cli import add_arguments, run
from .compute import CHAPTER_GRAD, CHAPTER_INPUT, explain, explain_pooling
from .figures import save_figures
from .html import render_html, save_html
from .jsonout import render_json
from .parse import ExplainError, parse_matrix
from .text import render_text

__all__ = [
    "CHAPTER_INPUT", "CHAPTER_GRAD", "ExplainError",
    "explain_pooling", "explain", "parse_matrix", "render_text", "render_json", "save_figures",
    "render_html", "save_html",
    "add_arguments", "run",
]

# doctest.testmod(poolkit.explain) runs the examples of the functions re-exported here.
__test__ = {name: globals()[name] for name in __all__ if callable(globals()[name]) and name != "explain"}
