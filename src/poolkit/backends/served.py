"""The ``"numba"`` and ``"auto"`` backends: Numba kernels, with NumPy standing in while they compile.

Both run the kernels of :mod:`.numba.loops` once they are compiled.  They
differ in what a call does when its kernel is not ready yet:

``"numba"``
    compiles it first, in the calling thread (seconds, once per kernel and
    argument types; then loaded from the disk cache in later processes);
``"auto"``
    loads it from the disk cache when it is there (milliseconds), else hands
    it to the compile worker process and serves the call with the ``img2col``
    backend meanwhile, so no call waits for a compiler
    (:mod:`.numba.jit`; ``POOLKIT_COMPILE=foreground`` makes it wait like
    ``"numba"``).

Both backends give the same bits -- values, offsets and gradients, for max,
min, sum and average pooling, with or without masks -- so a result never depends on which one served a call
or on when a compile finished (the tests check this on every path).

While a kernel compiles elsewhere, ``"auto"`` remembers, per kind of call (the
operation, the plan, dtypes, serial or threaded), which kernel it is waiting
for, and sends such calls straight to ``img2col`` until that kernel is
installed: a call that tried the kernel first would type a dozen arguments
and allocate outputs it then drops (the drops make glibc hand memory back to
the system and fault it in again, which measured 3-5 times slower than NumPy
alone on the chapter case).
"""
from __future__ import annotations

from .numba import jit as _jit, loops as numba_loops
from . import img2col

__all__ = ["Served", "NUMBA", "AUTO"]

_MEMO_MAX = 256


class Served:
    """A backend that runs :mod:`.numba.loops`, or ``img2col`` while a kernel is not compiled.

    ``wait``: compile a missing kernel in the calling thread (True) or elsewhere
    (False).  ``fallbacks`` counts the calls that ``img2col`` served.
    """

    def __init__(self, name: str, wait: bool):
        self.name = name
        self.wait = wait
        self.fallbacks = 0
        self._waiting: dict = {}         # kind of call -> the key of the kernel it waits for

    def _serve(self, op: str, args):
        if self.wait:                    # kernel calls compile in this thread unless told otherwise
            try:
                return getattr(numba_loops, op)(*args)
            except _jit.NotCompiled:     # a forked child that may not compile
                self.fallbacks += 1
                return getattr(img2col, op)(*args)
        kind = None
        if self._waiting:                # (nothing waits once every kernel is in: no key to build)
            kind = _kind(op, args)
            key = self._waiting.get(kind)
            if key is not None:
                if _jit.waiting(key):
                    self.fallbacks += 1
                    return getattr(img2col, op)(*args)
                self._waiting.pop(kind, None)
        try:
            return _jit.call(getattr(numba_loops, op), args, False)
        except _jit.NotCompiled as exc:
            if _jit.waiting(exc.key):
                if len(self._waiting) >= _MEMO_MAX:
                    self._waiting.clear()
                self._waiting[kind if kind is not None else _kind(op, args)] = exc.key
            self.fallbacks += 1
            return getattr(img2col, op)(*args)

    def max_forward(self, x, plan, skip=None):
        return self._serve("max_forward", (x, plan, skip))

    def max_backward(self, grad, off, plan, sealed=False):
        return self._serve("max_backward", (grad, off, plan, sealed))

    def avg_forward(self, x, plan, skip=None):
        return self._serve("avg_forward", (x, plan, skip))

    def avg_backward(self, grad, saved, plan):
        return self._serve("avg_backward", (grad, saved, plan))

    def scatter(self, values, idx, size, accumulate):
        return self._serve("scatter", (values, idx, size, accumulate))

    def __reduce__(self):
        # pickled by name: the unpickled backend is this process's own
        from . import get_backend
        return get_backend, (self.name,)

    def __repr__(self):
        return f"<poolkit backend {self.name!r}>"


def _threaded(size: int) -> bool:
    return numba_loops._threads_for(size) > 1


def _kind(op: str, args) -> tuple:
    """The kind of a call, for the memo of kernels waited for: the operation, the plan, the dtypes,
    serial or threaded, and the flags that pick another kernel."""
    if op in ("max_forward", "avg_forward"):
        x, plan, skip = args
        return (op, plan, x.dtype, _threaded(x.size), skip is None)
    if op == "max_backward":
        grad, off, plan, sealed = args
        return (op, plan, grad.dtype, off.dtype, _threaded(plan.in_size), sealed)
    if op == "avg_backward":
        grad, saved, plan = args
        return (op, plan, grad.dtype, _threaded(plan.in_size), saved is None)
    values, idx, size, accumulate = args
    return (op, values.dtype, idx.dtype, _threaded(values.size), bool(accumulate))


NUMBA = Served("numba", wait=True)
AUTO = Served("auto", wait=_jit.COMPILE_MODE == "foreground")
