"""The argparse boilerplate that ``poolkit explain``, ``poolkit bench`` and ``poolkit pyramid`` share.

This module's job is one way to declare the options that take a value: most
of each command line's options are a flag, a metavar, a default and a help
text, and :func:`add_value_options` adds them from rows of those four, so that
the rows read as a table and ``parser.add_argument(..., default=...,
metavar=..., help=...)`` is written once.  It lives in the lowest tooling
layer so that :mod:`poolkit.bench` and :mod:`poolkit.cli` may import it too
(tests/test_architecture.py).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence, Tuple

__all__ = ["ValueOption", "add_value_options"]

#: ``(flag, metavar, default, help)``: an option that takes one value.
ValueOption = Tuple[str, str, Optional[str], str]


def add_value_options(parser: argparse._ActionsContainer, options: Sequence[ValueOption]) -> None:
    """Add options that take one value to a parser (or an argument group), in the order given.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where ``parser.add_argument`` adds them.
    options : sequence of (flag, metavar, default, help)
        One row per option; ``default`` is what the option holds when not given.

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="demo")
    >>> add_value_options(p, [("--kernel", "F", None, "window size (default 2)"),
    ...                       ("--codec", "NAME", "zstd", "chunk compression")])
    >>> p.parse_args(["--kernel", "3"])
    Namespace(kernel='3', codec='zstd')
    >>> p.format_usage()
    'usage: demo [-h] [--kernel F] [--codec NAME]\\n'
    """
    for flag, metavar, default, help_text in options:
        parser.add_argument(flag, default=default, metavar=metavar, help=help_text)
