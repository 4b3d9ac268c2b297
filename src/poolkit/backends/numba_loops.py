"""The numba backend: the chapter's method 1, loop kernels compiled with Numba.

Generic kernels (``_kernels``) handle every geometry; specialised kernels
(``_fast``) take over for the common channels-first strided windows.  Inputs
below :data:`PARALLEL_MIN_ELEMENTS` run on one thread, larger ones on Numba's
thread pool (see :func:`poolkit.set_num_threads`).
"""
from __future__ import annotations

import numpy as np

from .. import _threads
from .._plan import Plan
from . import _fast
from . import _kernels as K

name = "numba"

# Below this many input elements one thread is faster than waking the pool (measured on a
# 2-core machine: the parallel launch costs about 5 microseconds).
PARALLEL_MIN_ELEMENTS = 1 << 15


def _parallel(n: int) -> bool:
    return n >= PARALLEL_MIN_ELEMENTS and _threads.current_threads() > 1


def _lowest(dtype: np.dtype):
    return dtype.type(-np.inf) if dtype.kind == "f" else dtype.type(np.iinfo(dtype).min)


def _nan(dtype: np.dtype):
    return dtype.type(np.nan) if dtype.kind == "f" else _lowest(dtype)


def _dummy(dtype) -> np.ndarray:
    """A 1-element 5-D stand-in for arrays a kernel reads only in another mode (keeps types stable)."""
    return np.zeros((1, 1, 1, 1, 1), dtype=dtype)


def max_forward(x: np.ndarray, plan: Plan):
    par = _parallel(x.size)
    fast = _fast.max_forward(x, plan, par)
    if fast is not None:
        return fast
    out = np.empty(plan.out_shape, dtype=x.dtype)
    off = np.empty(plan.out_shape, dtype=plan.off_dtype)
    _, kh, kw = plan.taps
    K.max_forward(par, x, out, off, plan.table, kh, kw, plan.nan_ignore and x.dtype.kind == "f",
                  plan.sentinel, _lowest(x.dtype), _nan(x.dtype))
    return out, off


def max_backward(grad: np.ndarray, off: np.ndarray, plan: Plan) -> np.ndarray:
    par = _parallel(plan.in_size)
    fast = _fast.max_backward(grad, off, plan, par)
    if fast is not None:
        return fast
    gx = np.empty(plan.in_shape, dtype=grad.dtype)
    _, kh, kw = plan.taps
    K.max_backward(par, grad, off, gx, plan.table, kh, kw, plan.sentinel)
    return gx


def _base_divisor(plan: Plan, dtype) -> np.ndarray:
    """The divisor before NaN elements are taken off (NaN-ignore), or the divisor itself."""
    return plan.base_divisor.astype(dtype)


def avg_forward(x: np.ndarray, plan: Plan):
    par = _parallel(x.size)
    if not plan.nan_ignore:
        fast = _fast.avg_forward(x, plan, par)
        if fast is not None:
            return fast, None
    out = np.empty(plan.out_shape, dtype=x.dtype)
    divs = np.empty(plan.out_shape, dtype=x.dtype) if plan.nan_ignore else _dummy(x.dtype)
    K.avg_forward(par, x, out, plan.table, _base_divisor(plan, x.dtype), plan.nan_ignore,
                  plan.divisor_override is None, divs, _nan(x.dtype))
    return out, ((divs, np.isnan(x)) if plan.nan_ignore else None)


def avg_backward(grad: np.ndarray, saved, plan: Plan) -> np.ndarray:
    par = _parallel(plan.in_size)
    if not plan.nan_ignore:
        fast = _fast.avg_backward(grad, plan, par)
        if fast is not None:
            return fast
    gx = np.empty(plan.in_shape, dtype=grad.dtype)
    divs, nan_mask = saved if plan.nan_ignore else (_dummy(grad.dtype), _dummy(np.bool_))
    K.avg_backward(par, grad, gx, plan.table, _base_divisor(plan, grad.dtype), plan.nan_ignore, divs, nan_mask)
    return gx


def scatter(values: np.ndarray, idx: np.ndarray, size: int, accumulate: bool) -> np.ndarray:
    out = np.zeros((values.shape[0], size, values.shape[2]), dtype=values.dtype)
    K.scatter(_parallel(values.size), values, idx, out, accumulate)
    return out
