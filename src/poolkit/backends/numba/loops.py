"""The chapter's method 1: loop kernels compiled with Numba (the kernels' side of the contract).

Generic kernels (``_kernels``) handle every geometry; specialised kernels
(``_fast``) take over for the common channels-first strided windows.  Inputs
below :data:`PARALLEL_MIN_ELEMENTS` run on the calling thread, larger ones on
Numba's thread pool (see :func:`poolkit.set_num_threads`) while that measures
faster than the calling thread alone (:class:`.jit._Choice`).

A kernel that is not compiled yet raises :class:`._jit.NotCompiled` here; the
backends built on this module (``"numba"`` and ``"auto"``, :mod:`.served`)
decide whether to wait for it.
"""
from __future__ import annotations

import functools

import numpy as np

from ...core import threads as _threads
from ...core import plan as _plan
from ...core.plan import Plan, check_offsets
from . import fast as _fast
from . import kernels as K

# Below this many input elements one thread is faster than waking the pool (measured on a
# 2-core machine: the parallel launch costs about 5 microseconds).
PARALLEL_MIN_ELEMENTS = 1 << 15


def _threads_for(n: int) -> int:
    """Chunks of work for an input of ``n`` elements: 1 (this thread) or the thread count."""
    return _threads.current_threads() if n >= PARALLEL_MIN_ELEMENTS else 1


@functools.lru_cache(maxsize=None)
def _dummy(dtype) -> np.ndarray:
    """A 1-element 5-D stand-in for arrays a kernel uses only in another mode (keeps types stable;
    one per dtype, shared by every call, never written)."""
    return np.zeros((1, 1, 1, 1, 1), dtype=dtype)


def _rows(plan: Plan) -> int:
    """Work items of the generic forward kernels: output rows ``(b, od, oh)``."""
    B, OD, OH = plan.out_shape[:3]
    return B * OD * OH


def max_forward(x: np.ndarray, plan: Plan, skip=None):
    """Max or min pooling, as ``plan.reduction`` says (values and winning taps)."""
    nt = _threads_for(x.size)
    fast = _fast.max_forward(x, plan, nt > 1) if skip is None else None      # masks: the generic kernels
    if fast is not None:
        return fast
    out = np.empty(plan.out_shape, dtype=x.dtype)
    off = np.empty(plan.out_shape, dtype=plan.off_dtype)
    _, kh, kw = plan.taps
    red = plan.reduction
    K.FORWARD[red.variant](_rows(plan), nt, x, out, off, plan.table, kh, kw, plan.nan_ignore and x.dtype.kind == "f",
                          plan.sentinel, red.padding(x.dtype), red.empty(x.dtype), _UNIT3, False,
                          _dummy(_plan.divs_dtype(x.dtype)), *_skip_args(skip), True)
    return out, off


def _skip_args(skip):
    """The kernels' ``skip, has_skip`` arguments for a mask of ignored elements (or none)."""
    return (_dummy(np.bool_), False) if skip is None else (skip, True)


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a``, or a read-only view of it: kernels that only read an array take it read-only, so
    that forward's sealed offsets and offsets from elsewhere share one compiled signature."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan, sealed: bool = False) -> np.ndarray:
    nt = _threads_for(plan.in_size)
    off = _read_only(off)
    fast = _fast.max_backward(grad, off, plan, nt > 1, sealed)
    if fast is not None:
        gx, bad = fast
    else:
        gx = np.empty(plan.in_shape, dtype=grad.dtype)
        counts = np.zeros(plan.in_shape[0], dtype=np.int64)
        _, kh, kw = plan.taps
        K.BACKWARD[plan.reduction.variant](plan.in_shape[0], nt, grad, off, gx, plan.table, kh, kw, plan.sentinel,
                                          _UNIT3, False, _dummy(grad.dtype), _dummy(np.bool_), counts)
        bad = int(counts.sum())
    check_offsets(bad)
    return gx


def avg_forward(x: np.ndarray, plan: Plan, skip=None):
    nt = _threads_for(x.size)
    ignoring = plan.nan_ignore or skip is not None
    # The specialised kernels divide in x's dtype: fine for floats (a sum divides by 1.0), not
    # for integer sums past 2**53.
    if not ignoring and x.dtype.kind == "f":
        fast = _fast.avg_forward(x, plan, nt > 1)
        if fast is not None:
            return fast, None
    out = np.empty(plan.out_shape, dtype=x.dtype)
    dd = _plan.divs_dtype(x.dtype)
    divs = np.empty(plan.out_shape, dtype=dd) if ignoring else _dummy(dd)
    red = plan.reduction
    K.FORWARD[red.variant](_rows(plan), nt, x, out, _dummy(np.uint8), plan.table, 1, 1, plan.nan_ignore, 0,
                          red.padding(x.dtype), red.empty(x.dtype), plan.base_divisor.astype(x.dtype),
                          plan.divisor_override is None and red.divides, divs, *_skip_args(skip), red.divides)
    return out, ((divs, _plan.ignored_mask(x, plan, skip)) if ignoring else None)


def avg_backward(grad: np.ndarray, saved, plan: Plan) -> np.ndarray:
    nt = _threads_for(plan.in_size)
    if saved is None:
        fast = _fast.avg_backward(grad, plan, nt > 1)
        if fast is not None:
            return fast
    gx = np.empty(plan.in_shape, dtype=grad.dtype)
    divs, ignored = saved if saved is not None else (_dummy(grad.dtype), _dummy(np.bool_))
    K.BACKWARD[plan.reduction.variant](plan.in_shape[0], nt, grad, _dummy(np.uint8), gx, plan.table, 1, 1, 0,
                                      plan.base_divisor.astype(grad.dtype), saved is not None, divs, ignored,
                                      _NO_COUNT)
    return gx


def scatter(values: np.ndarray, idx: np.ndarray, size: int, accumulate: bool) -> np.ndarray:
    out = np.zeros((values.shape[0], size, values.shape[2]), dtype=values.dtype)
    K.scatter(values.shape[0], _threads_for(values.size), values, idx, out, accumulate)
    return out


# Stand-ins for arguments a kernel reads only in another mode (keep the argument types fixed).
_UNIT3 = np.ones((1, 1, 1), dtype=np.float64)
_NO_COUNT = np.zeros(1, dtype=np.int64)
