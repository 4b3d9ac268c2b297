"""Backends: interchangeable implementations of one small contract.

Every backend is a module or object with these functions, all on canonical
``(B, D, H, W, C)`` C-contiguous arrays in the compute dtype (see
:class:`poolkit.core.plan.Plan`):

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
for averages (it sums in float64; the tests compare it within rounding).
"""
from __future__ import annotations

from typing import Any

from . import img2col, reference
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
