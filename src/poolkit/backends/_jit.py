"""Numba compilation helpers: on-disk caching that degrades gracefully, serial/parallel twins.

Kernels are cached on disk (``cache=True``) so a second process does not pay
the compile again.  Numba refuses ``cache=True`` outright when it finds no
writable cache folder (read-only installs, locked-down home directories); we
then compile in memory instead of failing.  ``NUMBA_CACHE_DIR`` picks another
folder, as usual for Numba.

Every kernel exists twice: a serial build for small inputs, where starting
threads costs more than it saves, and a ``parallel=True`` build.  The twins
are separate function objects so that their cache entries cannot collide.
No fast-math flags: the kernels must see NaN.
"""
from __future__ import annotations

import types
from typing import Callable, NamedTuple

import numba

__all__ = ["Twin", "twin", "CACHE_STATUS"]

# "disk" when compiled kernels go to an on-disk cache, "memory" when no folder was writable.
CACHE_STATUS = {"mode": "disk"}


def _copy(fn: Callable, suffix: str) -> Callable:
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    g.__doc__ = fn.__doc__
    return g


def _njit(fn: Callable, parallel: bool):
    # Only explicit prange loops run in parallel: no array-expression or fusion passes to run.
    par = {"prange": True, "comprehension": False, "reduction": False, "setitem": False,
           "numpy": False, "stencil": False, "fusion": False, "inplace_binop": False} if parallel else False
    options = dict(nogil=True, parallel=par, boundscheck=False, error_model="numpy")
    if CACHE_STATUS["mode"] == "disk":
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:         # "cannot cache function ...: no locator available"
            if "cache" not in str(exc):
                raise
            CACHE_STATUS["mode"] = "memory"
    return numba.njit(cache=False, **options)(fn)


class Twin(NamedTuple):
    """A kernel compiled twice: ``serial`` and ``parallel`` (Numba threads over its ``prange``)."""

    serial: Callable
    parallel: Callable

    def __call__(self, parallel: bool, *args):
        return (self.parallel if parallel else self.serial)(*args)


def twin(fn: Callable) -> Twin:
    """Decorator: compile ``fn`` as a serial and a parallel Numba kernel."""
    return Twin(_njit(_copy(fn, "_serial"), False), _njit(_copy(fn, "_parallel"), True))
