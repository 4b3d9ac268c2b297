"""Argument helpers shared by every module: one way to check an int, a bool, axes or a layout name.

Every public function and layer normalises its scalar arguments here (through
:mod:`.geometry` for the window arguments), so that "an int but not a bool" is
written once, and so are the messages: each names the argument in backticks and
echoes the value it got.

Examples
--------
>>> is_int(3), is_int(True), is_int(3.0)
(True, False, False)
>>> normalize_ints(2, 3, "kernel_size", 1)
(2, 2, 2)
>>> format_kind("NHWC", 2)
'last'
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

__all__ = ["INT64_MAX", "CHANNELS_FIRST", "CHANNELS_LAST", "is_int", "is_real", "as_bool", "normalize_ints",
           "check_axes", "format_kind", "format_rank", "check_data_format", "check_nan_policy",
           "check_divisor_override", "check_input_shape", "check_int64_product", "NAN_POLICIES"]

#: The largest size, position or flat index the kernels and NumPy hold (int64).
INT64_MAX = 2**63 - 1


def is_int(v) -> bool:
    """An integer (Python or NumPy) that is not a bool: the one test every int argument goes through."""
    if type(v) is int:                  # the common case first: the ABC check below is slow
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    """A real number (int or float, Python or NumPy) that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def as_bool(value, name: str) -> bool:
    """Return ``value`` as a bool; only real booleans are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"`{name}` must be True or False, but got {name}={value!r}.")


def normalize_ints(value, rank: int, name: str, minimum: int) -> Tuple[int, ...]:
    """Normalise an int or a sequence of ``rank`` ints to a tuple of ints.

    Raises TypeError for non-integers (floats, bools, strings) and ValueError
    for a wrong length or a value below ``minimum``.
    """
    if is_int(value):
        values = (int(value),) * rank
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        if len(value) == 1 and rank > 1:
            values = (int(value[0]),) * rank
        elif len(value) != rank:
            raise ValueError(
                f"`{name}` must be an int or a sequence of {rank} ints, "
                f"but got {name}={value!r} ({len(value)} values)."
            )
        else:
            values = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"`{name}` must be an int or a sequence of {rank} ints, but got {name}={value!r}."
        )
    for v in values:
        if v < minimum:
            allowed = "positive" if minimum == 1 else f"at least {minimum}"
            raise ValueError(f"`{name}` must be {allowed}, but got {name}={value!r}.")
        if v > INT64_MAX:
            raise ValueError(f"`{name}` must be at most 2**63 - 1 (sizes are int64), but got {name}={value!r}.")
    return values


def check_int64_product(sizes, name: str, value, what: str) -> int:
    """``prod(sizes)`` (exact), or a ValueError naming ``name`` when it overflows int64.

    Sizes, positions and flat indices are int64 in the kernels and NumPy: a
    product past ``2**63 - 1`` would wrap silently there.
    """
    total = 1
    for n in sizes:
        total *= int(n)
    if total > INT64_MAX:
        raise ValueError(f"`{name}`={value!r} makes {what} of {' x '.join(str(int(n)) for n in sizes)} = "
                         f"{total}, more than int64 holds (at most 2**63 - 1).")
    return total


def check_input_shape(input_shape) -> Tuple[int, ...]:
    """A backward function's ``input_shape``: a tuple of non-negative ints whose gradient fits int64."""
    if not isinstance(input_shape, (tuple, list)) or not all(is_int(v) and v >= 0 for v in input_shape):
        raise TypeError(f"`input_shape` must be a tuple of non-negative ints, but got input_shape={input_shape!r}.")
    shape = tuple(int(v) for v in input_shape)
    # The gradient has this shape: up to 8 bytes per element must stay within int64.
    check_int64_product(shape + (8,), "input_shape", input_shape, "a gradient (bytes)")
    return shape


# --------------------------------------------------------------------------- #
# axes and layout names
# --------------------------------------------------------------------------- #
_FORMATS = {
    1: {"NCL": "first", "NLC": "last"},
    2: {"NCHW": "first", "NHWC": "last"},
    3: {"NCDHW": "first", "NDHWC": "last"},
}
_GENERIC = {"CHANNELS_FIRST": "first", "CHANNELS_LAST": "last"}
#: PyTorch's channels-first name per rank: the default ``data_format`` of the fixed-rank API.
CHANNELS_FIRST = {rank: next(k for k, v in names.items() if v == "first") for rank, names in _FORMATS.items()}
#: The channels-last name per rank.
CHANNELS_LAST = {rank: next(k for k, v in names.items() if v == "last") for rank, names in _FORMATS.items()}


def format_rank(data_format) -> Optional[int]:
    """The rank a rank-specific ``data_format`` name ("NCHW", "NLC", ...) fixes; None for others."""
    if isinstance(data_format, str):
        for rank, names in _FORMATS.items():
            if data_format.upper() in names:
                return rank
    return None


def format_kind(data_format, rank: int) -> str:
    """``"first"`` or ``"last"``: where ``data_format`` puts the channels for ``rank``-D pooling, or an error."""
    if not isinstance(data_format, str):
        raise TypeError(f"`data_format` must be a string, but got data_format={data_format!r}.")
    key = data_format.upper()
    kinds = dict(_FORMATS.get(rank, {}), **_GENERIC)
    if key not in kinds:
        allowed = ", ".join(repr(k) for k in list(_FORMATS.get(rank, {})) + ["channels_first", "channels_last"])
        raise ValueError(f"`data_format` must be one of {allowed} for {rank}-D pooling, "
                         f"but got data_format={data_format!r}.")
    return kinds[key]


def check_data_format(data_format, rank: int) -> str:
    """``data_format`` itself once :func:`format_kind` accepts it (layers check it at construction)."""
    format_kind(data_format, rank)
    return data_format


def check_axes(axes, rank: int) -> Tuple[int, ...]:
    """``axes`` as a tuple of ``rank`` ints (an int for rank 1), or a clear error; ranges are checked against
    an array's dimensions by :func:`poolkit.core.layout.resolve_axes`."""
    if is_int(axes):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)) or not all(is_int(a) for a in axes):
        raise TypeError(f"`axes` must be an int or a tuple of ints, but got axes={axes!r}.")
    if len(axes) != rank:
        raise ValueError(f"`axes` must name {rank} axes for {rank}-D pooling, but got axes={tuple(axes)!r}.")
    return tuple(int(a) for a in axes)


# --------------------------------------------------------------------------- #
# options every reduction shares
# --------------------------------------------------------------------------- #
NAN_POLICIES = ("propagate", "ignore")


def check_nan_policy(nan_policy) -> bool:
    """True for ``"ignore"``, False for ``"propagate"``."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"`nan_policy` must be 'propagate' or 'ignore', but got nan_policy={nan_policy!r}.")
    return nan_policy == "ignore"


def check_divisor_override(divisor_override) -> Optional[int]:
    """None, or a non-zero int that divides every window sum."""
    if divisor_override is None:
        return None
    if not is_int(divisor_override):
        raise TypeError(f"`divisor_override` must be None or a non-zero int, "
                        f"but got divisor_override={divisor_override!r}.")
    if divisor_override == 0:
        raise ValueError("`divisor_override` must be non-zero (it divides every window sum), "
                         "but got divisor_override=0.")
    return int(divisor_override)
