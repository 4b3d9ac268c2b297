"""Backends: interchangeable implementations of one small contract.

Every backend is a module or object with these functions, all on canonical
``(B, D, H, W, C)`` C-contiguous arrays in the compute dtype (see
:class:`poolkit.core.plan.Plan`; which function runs a reduction is its
record's ``forward``/``backward``, :mod:`poolkit.core.reductions`):

``max_forward(x, plan, skip=None) -> (out, off)``
    Max of each window and the offset of the winning tap (``plan.off_dtype``,
    ``plan.sentinel`` when there is none).  ``skip`` (bool, x's shape, or None):
    masked elements, left out of their windows like NaN under ``nan_policy="ignore"``.
``max_backward(grad, off, plan, sealed=False) -> grad_input``
    Every offset is checked against its window (a ``ValueError`` when one is not
    a tap of it) unless ``sealed``: ``off`` is the read-only array forward made.
``avg_forward(x, plan, skip=None) -> (out, saved)``
    Window means, or sums when ``plan.divide`` is False.  ``saved`` is None, or
    when elements are ignored (``nan_policy="ignore"`` or ``skip``) the pair
    ``(divisors, ignored)`` that backward needs.
``avg_backward(grad, saved, plan) -> grad_input``
``scatter(values, idx, size, accumulate) -> out``
    ``(B, P, C)`` values sent to flat positions ``idx`` of ``(B, size, C)``, in
    order (``+=`` or last-write-wins); negative indices are skipped.

A reduction with kernels of its own (its record's ``kernels``, a module with
``reference``, ``img2col`` and ``numba`` objects) runs through
:func:`implementation`, which serves its ``"numba"`` and ``"auto"`` calls as
:mod:`.served` does (the kernel, or img2col while it compiles).  Such a
reduction that keeps nothing for backward returns its output alone.

Backends:

``"auto"``
    Numba kernels once compiled; until then (the first call of each kernel in
    a process with an empty cache, seconds) a background thread compiles and
    ``"img2col"`` serves the call, with the same bits (:mod:`.served`).
``"numba"``
    The chapter's method 1: loop kernels compiled with Numba, multi-threaded,
    with specialised kernels for common windows.  A call whose kernel is not
    compiled yet waits for the compiler.
``"img2col"``
    The chapter's method 2: vectorised NumPy over strided window views.
``"reference"``
    Plain Python loops, slow and obviously correct: the tests' oracle.

Every backend gives the same bits for the same call, except ``"reference"``
for averages: it sums in the input's dtype as the others do, but is written
for clarity rather than to match their order of additions, so the tests
compare its averages within rounding.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

from . import img2col, reference
from .numba import jit as _jit
from .served import AUTO, NUMBA

BACKENDS: dict = {"auto": AUTO, "numba": NUMBA, "img2col": img2col, "reference": reference}
NAMES = tuple(BACKENDS)


def get_backend(name) -> Any:
    """The backend for ``name`` ("auto", "numba", "img2col" or "reference")."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"`backend` must be one of {', '.join(map(repr, NAMES))}, "
                         f"but got backend={name!r}.") from None


def served_call(name: str, kernel: Callable, fallback: Callable, args: tuple):
    """``kernel(*args)`` as the served backend ``name`` ("numba" or "auto") runs it: the numba backend waits
    for a missing kernel's compile, "auto" hands it to the background and lets ``fallback`` (NumPy, the
    same bits) serve the call meanwhile, counted in that backend's ``fallbacks``."""
    served = get_backend(name)
    try:
        return _jit.call(kernel, args, served.wait)
    except _jit.NotCompiled:
        served.fallbacks += 1
        return fallback(*args)


class _OwnKernels:
    """A reduction's own kernels (``numba``) served as the backend ``name`` serves the shared ones."""

    def __init__(self, name: str, module):
        self.name, self._module = name, module

    def __getattr__(self, fn: str):
        kernel, fallback = getattr(self._module.numba, fn), getattr(self._module.img2col, fn)
        return lambda *args: served_call(self.name, kernel, fallback, args)


@functools.lru_cache(maxsize=None)
def _own(name: str, module_name: str) -> Any:
    module = importlib.import_module(module_name)
    return getattr(module, name) if name in ("reference", "img2col") else _OwnKernels(name, module)


def implementation(name: str, reduction) -> Any:
    """The object whose contract functions run ``reduction`` on backend ``name`` (a checked name)."""
    if reduction.kernels is None:
        return BACKENDS[name]
    return _own(name, reduction.kernels)
