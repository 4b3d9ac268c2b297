"""Reading what the user gave ``poolkit explain``: matrices, window sizes, modes, the Lp norm.

This module's job is to turn the values of the command line or of
:func:`poolkit.explain_pooling` into arrays and tuples, and to say which
option was wrong when one cannot be read.  Window sizes and flags go through
:mod:`poolkit.core.geometry`'s own parsers (:func:`~poolkit.core.geometry.normalize_ints`,
:func:`~poolkit.core.geometry.as_bool`), so explain accepts exactly what the
pooling functions accept; only the spelling of a string ("2,1", "2x1") is
read here.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
from typing import Tuple

import numpy as np

from ..core.geometry import as_bool, normalize_ints

__all__ = ["ExplainError", "MODE_ALIASES", "parse_matrix", "parse_pair", "parse_modes", "parse_flag",
           "parse_norm_type"]

#: Accepted ``mode`` values and the poolings each one shows, max first.
MODE_ALIASES = {"max": ("max",), "avg": ("avg",), "mean": ("avg",), "min": ("min",), "sum": ("sum",),
                "lp": ("lp",), "both": ("max", "avg")}
_MODES_TEXT = "max, avg (or mean), min, sum, lp or both"


class ExplainError(ValueError):
    """A bad argument to :func:`poolkit.explain_pooling` or ``poolkit explain``; the message names it."""


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
        Naming ``option`` and the bad value (a file it cannot load, empty or ragged rows,
        a value that is not a number, or more than one 2-D plane).

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



def parse_pair(value, option: str, minimum: int) -> Tuple[int, int]:
    """An int or two ints for the two axes (H, W), as the pooling functions take them.

    Parameters
    ----------
    value : int, pair of ints or str
        ``2``, ``(2, 1)``, or a string such as ``"2"``, ``"2,1"``, ``"2 1"``,
        ``"2x1"`` or ``"(2, 1)"``.
    option : str
        The option's name, used in error messages.
    minimum : int
        The smallest value allowed (1 for sizes, 0 for padding).

    Returns
    -------
    pair : tuple of 2 ints

    Raises
    ------
    ExplainError
        Naming ``option`` and the bad value (not one or two integers of at least ``minimum``).

    Examples
    --------
    >>> parse_pair("2x1", "--kernel", 1), parse_pair(3, "kernel_size", 1)
    ((2, 1), (3, 3))
    """
    kind = "a positive integer" if minimum == 1 else "a non-negative integer"
    bad = ExplainError(f"{option}: expected {kind} or two of them (e.g. 2 or 2,1), but got {value!r}.")
    ints = value
    if isinstance(value, str):
        tokens = [t for t in re.split(r"[,\sx×]+", value.strip().strip("()[]")) if t]
        try:
            ints = [int(t) for t in tokens]
        except ValueError:
            raise bad from None
    try:
        h, w = normalize_ints(ints, 2, option, minimum)
    except (TypeError, ValueError):
        raise bad from None
    return h, w


def parse_flag(value, option: str) -> bool:
    """A real boolean (``ceil_mode``), by :func:`poolkit.core.geometry.as_bool`'s rule.

    Examples
    --------
    >>> parse_flag(True, "ceil_mode")
    True
    """
    try:
        return as_bool(value, option)
    except TypeError:
        raise ExplainError(f"{option}: expected True or False, but got {value!r}.") from None


def parse_modes(mode, option: str) -> Tuple[str, ...]:
    """The poolings to show for ``mode`` (one of :data:`MODE_ALIASES`), max first.

    Examples
    --------
    >>> parse_modes("Both", "--mode")
    ('max', 'avg')
    """
    key = mode.strip().lower() if isinstance(mode, str) else None
    if key not in MODE_ALIASES:
        raise ExplainError(f"{option}: expected {_MODES_TEXT}, but got {mode!r}.")
    return MODE_ALIASES[key]


def parse_norm_type(value, option: str) -> float:
    """Lp pooling's ``p``: what :func:`poolkit.lp_pool` takes, any number but 0 and NaN.

    ``inf`` is max pooling of ``|x|`` and ``-inf`` min pooling of ``|x|``; a
    negative finite ``p`` is the power mean with a negative exponent, as in
    :func:`poolkit.lp_pool` (whose rule, :func:`poolkit.functional.lp.check_norm_type`,
    this follows).

    Parameters
    ----------
    value : int, float or str
        ``2``, ``1.5``, ``-1``, ``float("inf")``, or a string such as ``"3"``,
        ``"-0.5"``, ``"inf"`` or ``"-inf"``.
    option : str
        The option's name, used in error messages.

    Returns
    -------
    p : float
        Non-zero, not NaN; ``inf`` and ``-inf`` allowed.

    Raises
    ------
    ExplainError
        Naming ``option`` and the bad value (0, NaN, a bool, or not a number).

    Examples
    --------
    >>> parse_norm_type("3", "--norm-type"), parse_norm_type("-inf", "--norm-type"), parse_norm_type(-1, "p")
    (3.0, -inf, -1.0)
    >>> parse_norm_type(0, "norm_type")
    Traceback (most recent call last):
    ...
    poolkit.explain.parse.ExplainError: norm_type: expected a non-zero number p (inf and -inf allowed), but got 0.
    """
    bad = ExplainError(f"{option}: expected a non-zero number p (inf and -inf allowed), but got {value!r}.")
    if isinstance(value, str):
        try:
            p = float(value.strip())
        except ValueError:
            raise bad from None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        p = float(value)
    else:
        raise bad
    if math.isnan(p) or p == 0:
        raise bad
    return p
