"""The ``"numba"`` and ``"auto"`` backends: Numba kernels, with NumPy standing in while they compile.

Both run the kernels of :mod:`.numba_loops` once they are compiled.  They
differ in what a call does when its kernel is not ready yet:

``"numba"``
    compiles it first, in the calling thread (seconds, once per kernel and
    argument types; then loaded from the disk cache in later processes);
``"auto"``
    hands it to a background thread and serves the call with the ``img2col``
    backend meanwhile, so no call waits for a compiler
    (``POOLKIT_COMPILE=foreground`` makes it wait like ``"numba"``).

Both backends give the same bits -- values, offsets and gradients, for max,
min, sum and average pooling, with or without masks -- so a result never depends on which one served a call
or on when a compile finished (the tests check this on every path).
"""
from __future__ import annotations

from .numba import jit as _jit, loops as numba_loops
from . import img2col

__all__ = ["Served", "NUMBA", "AUTO"]


class Served:
    """A backend that runs :mod:`.numba_loops`, or ``img2col`` while a kernel is not compiled.

    ``wait``: compile a missing kernel in the calling thread (True) or in the
    background (False).  ``fallbacks`` counts the calls that ``img2col`` served.
    """

    def __init__(self, name: str, wait: bool):
        self.name = name
        self.wait = wait
        self.fallbacks = 0

    def _serve(self, op: str, args):
        try:
            if self.wait:                    # kernel calls compile in this thread unless told otherwise
                return getattr(numba_loops, op)(*args)
            return _jit.call(getattr(numba_loops, op), args, False)
        except _jit.NotCompiled:
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


NUMBA = Served("numba", wait=True)
AUTO = Served("auto", wait=_jit.COMPILE_MODE == "foreground")
