"""``poolkit explain``'s command line: its options, and one run of it.

This module's job is the interface :mod:`poolkit.cli` uses:
:func:`add_arguments` adds the options to an argparse subparser and
:func:`run` turns parsed options into output (text or JSON on stdout, PNG
files or the interactive HTML page on request) and an exit code.  Bad values end in a usage error that
names the option, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from . import figures
from .compute import explain_results
from .html import render_html
from .jsonout import render_json
from .options import add_value_options
from .parse import ExplainError
from .text import render_text
from .words import LANGS, TEXT, words_for

__all__ = ["CLI_NAMES", "add_arguments", "run"]

#: How the command line names :func:`poolkit.explain_pooling`'s arguments in error messages.
CLI_NAMES = {"input": "--input", "grad": "--grad", "kernel_size": "--kernel", "stride": "--stride",
             "padding": "--padding", "dilation": "--dilation", "ceil_mode": "--ceil-mode", "mode": "--mode",
             "norm_type": "--norm-type", "lang": "--lang", "html": "--html"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``poolkit explain``'s options to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Usually ``subparsers.add_parser("explain", ...)``; :func:`run` then
        takes what it parses.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="poolkit explain")
    >>> add_arguments(p)
    >>> p.parse_args(["--kernel", "3", "--lang", "zh"]).kernel
    '3'
    """
    add_value_options(parser, [
        ("--mode", "{max,avg,min,sum,lp,both}", "both",
         "which pooling to show: max, avg (or mean), min, sum, lp (Lp, power-average) "
         "or both: max and avg (default: both)"),
        ("--norm-type", "P", None,
         "--mode lp: the power p, any number but 0, or inf or -inf (default 2; inf is max "
         "pooling of |x|, -inf min pooling of |x|; write --norm-type=-inf)"),
        ("--kernel", "F", None,
         "window size: 2, or 2,3 for height,width (default 2)"),
        ("--stride", "S", None,
         "step between windows (default: --kernel)"),
        ("--padding", "P", None,
         "padding on each side (default 0)"),
        ("--dilation", "D", None,
         "spacing between window taps (default 1)"),
    ])
    parser.add_argument("--ceil-mode", action="store_true", help="round the output size up, as PyTorch's ceil_mode")
    parser.add_argument("--exclude-pad", action="store_true",
                        help="mean pooling: divide by the taps inside the input (count_include_pad=False)")
    add_value_options(parser, [
        ("--input", "MATRIX", None,
         'input plane: "1 3 2 1; 4 2 1 5; ..." or a .npy file (default: the chapter\'s 4x4 grid)'),
        ("--grad", "MATRIX", None,
         "upstream gradient, shaped like the output (default: 1, 2, ..., n; "
         "for a 2x2 output the chapter's [[1,2],[3,4]])"),
    ])
    parser.add_argument("--lang", default="en", choices=LANGS, help="language of the text (zh: Chinese)")
    parser.add_argument("--format", default=None, choices=("text", "json"), dest="format",
                        help="text (default; with --html only when asked for) or json: one object per mode, "
                             "a list for both")
    add_value_options(parser, [
        ("--png", "DIR", None,
         "also write figures (PNG) into DIR; needs matplotlib"),
        ("--html", "FILE", None,
         "write the walk-through as one interactive page (self-contained HTML: open it "
         "in a browser, no network needed; '-' for stdout), with the chapter's figures "
         "as presets; FILE#selftest checks it"),
    ])
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
    """Run ``poolkit explain`` for options parsed by a parser that :func:`add_arguments` set up.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    code : int
        0 when done, 2 after a usage error (written to stderr, naming the option).
    """
    if args.png is not None:
        try:
            importlib.import_module("matplotlib")      # only to learn, before any work, that --png can draw
        except ImportError:
            sys.stderr.write(figures.PLOT_HINT + "\n")
            return 2
    geometry_given = any(getattr(args, name) is not None for name in ("kernel", "stride", "padding", "dilation")) \
        or args.ceil_mode
    mode, norm_type = args.mode, args.norm_type
    count_include_pad = not args.exclude_pad
    html_file = getattr(args, "html", None)
    # With --html the page is the walk-through: the text only when --format asks for it.
    out_format = args.format or (None if html_file is not None else "text")
    page = None
    try:
        results = explain_results(args.input, 2 if args.kernel is None else args.kernel, args.stride,
                                  0 if args.padding is None else args.padding,
                                  1 if args.dilation is None else args.dilation, bool(args.ceil_mode), mode,
                                  args.grad, count_include_pad, norm_type, args.lang, CLI_NAMES,
                                  steps=html_file is not None)
        if html_file is not None:
            try:
                page = render_html(results, lang=args.lang)
            except ExplainError as exc:
                raise ExplainError(f"{CLI_NAMES['html']}: {exc}") from None
        compare = None
        if not geometry_given and out_format == "text":
            # The tour: the chapter's stride-1 case on the same input (17.5.2), forward only.
            try:
                compare = explain_results(args.input, 2, 1, 0, 1, False, mode, None, count_include_pad,
                                          norm_type, args.lang, CLI_NAMES)
            except ExplainError:
                compare = None
    except ExplainError as exc:
        return _usage_error(args, str(exc))

    words = words_for(TEXT, args.lang, CLI_NAMES["lang"])
    notes = sys.stderr if out_format == "json" or html_file == "-" else sys.stdout
    written = None
    if page is not None and html_file is not None:        # written first: a bad path fails before any output
        if html_file == "-":
            sys.stdout.write(page)
        else:
            written = Path(html_file)
            try:
                written.write_text(page, encoding="utf-8")
            except OSError as exc:
                return _usage_error(args, f"{CLI_NAMES['html']}: cannot write {html_file!r} ({exc.strerror or exc}).")
    if out_format == "json":
        sys.stdout.write(render_json(results) + "\n")
    elif out_format == "text":
        sys.stdout.write(render_text(results, compare=compare, color=_use_color(args), width=max(args.width, 40)))
    if written is not None:
        notes.write(words["page"].format(path=written) + "\n" +
                    words["page_hint"].format(url=written.resolve().as_uri()) + "\n")
    if args.png is not None:
        paths = figures.save_figures(results, args.png, lang=args.lang)
        if args.lang == "zh" and figures.cjk_font() is None:
            notes.write(words["figure_font"] + "\n")
        notes.write(words["figures"] + "\n" + "".join(f"  {p}\n" for p in paths))
    return 0
