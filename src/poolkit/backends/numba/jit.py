"""Numba kernels: written once as serial loops, threaded by a thin driver, compiled when needed.

A kernel is a serial function over a range of work items, ``body(lo, hi, *args)``
(output rows, planes or batch entries; each kernel says which).  It is compiled
once.  A multi-threaded run goes through a small ``parallel=True`` driver that
cuts ``[0, n)`` into chunks and calls the body on each chunk from Numba's thread
pool, so the large body is never compiled a second time for the pool.

Compiling takes seconds, and poolkit's results never depend on which path
served a call: the NumPy backend is bit-identical to the kernels.  So a call
need not wait.  Calling a kernel whose machine code is not ready raises
:class:`NotCompiled` instead of compiling (a hook on the Numba dispatcher; a
ready kernel is called at full speed).  What happens next is the caller's
choice (:func:`call`):

* ``wait=True`` compiles in the calling thread (loading from the on-disk cache
  when it can) and calls again: the ``"numba"`` backend;
* ``wait=False`` hands the signature to one background thread that compiles
  it, and re-raises: the ``"auto"`` backend then serves the call with NumPy,
  and takes the kernel once it is ready.

``POOLKIT_COMPILE=foreground`` makes ``"auto"`` wait as well.  Kernels are
cached on disk where a folder can be written (:mod:`._cache`).  No fast-math
flags: the kernels must see NaN.

Fork: a child forked while the background thread held Numba's compiler lock
could never compile (the lock's owner does not exist there), so such a child
compiles nothing: kernels ready at the fork still run, the rest is served by
NumPy.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
import time
import types as pytypes
import warnings
from typing import Callable, Dict, Optional, Tuple

import numba
from numba import prange

from . import cache as _cache

__all__ = ["Kernel", "kernel", "NotCompiled", "call", "background_wait", "background_status", "COMPILE_MODE"]

_OPTIONS = dict(nogil=True, boundscheck=False, error_model="numpy")


class NotCompiled(Exception):
    """A kernel was called with argument types it has no machine code for yet."""

    def __init__(self, dispatcher, argtypes: Tuple):
        super().__init__(f"{dispatcher.py_func.__qualname__}{argtypes} is not compiled")
        self.dispatcher = dispatcher
        self.argtypes = argtypes

    @property
    def key(self):
        return (id(self.dispatcher), self.argtypes)

    def compile(self) -> None:
        """Compile (or load from the disk cache) in this thread; blocks."""
        hook = getattr(self.dispatcher, "_compilation_chain_init_hook", None)
        if hook is not None:
            hook()
        self.dispatcher.compile(self.argtypes)


def _not_compiled(dispatcher, *args, **kws):
    # Replaces the dispatcher's ``_compile_for_args``, which Numba calls only for argument
    # types that have no machine code yet: typing the arguments is all it does.
    raise NotCompiled(dispatcher, tuple(dispatcher.typeof_pyval(a) for a in args))


def _jit(fn: Callable, parallel=False):
    # Only explicit prange loops run in parallel: no array-expression or fusion passes.
    par = {"prange": True, "comprehension": False, "reduction": False, "setitem": False,
           "numpy": False, "stencil": False, "fusion": False, "inplace_binop": False} if parallel else False
    disp = numba.njit(cache=False, parallel=par, **_OPTIONS)(fn)
    cache = _cache.function_cache(fn)
    if cache is not None:
        disp._cache = cache                  # what ``cache=True`` sets, with poolkit's folder and lock
    disp._compile_for_args = functools.partial(_not_compiled, disp)
    return disp


def _driver_template(tag):
    def driver(n, nchunks, args):
        tag                                  # noqa: B018 - a closure constant: keys the disk cache per body
        per = (n + nchunks - 1) // nchunks
        for ch in prange(nchunks):
            lo = ch * per
            hi = min(n, lo + per)
            if lo < hi:
                _body(lo, hi, *args)         # noqa: F821 - bound per kernel in the driver's globals
    return driver


def _make_driver(body, tag: str):
    """The parallel driver of ``body``: ``driver(n, nchunks, args)`` runs ``body`` on ``nchunks`` chunks.

    The driver's code is shared by every kernel; ``body`` reaches it as a global, and
    ``tag`` (closed over) tells Numba's disk cache the drivers apart.
    """
    proto = _driver_template(tag)
    scope = dict(proto.__globals__, _body=body)
    fn = pytypes.FunctionType(proto.__code__, scope, proto.__name__, None, proto.__closure__)
    fn.__qualname__ = f"{proto.__qualname__}_{body.py_func.__qualname__.rsplit('.', 1)[-1]}"
    return _jit(fn, parallel=True)


class Kernel:
    """A serial Numba kernel ``body(lo, hi, *args)`` over work items, and its parallel driver."""

    def __init__(self, fn: Callable):
        cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
        self.tag = f"{fn.__module__}.{fn.__qualname__}{cells!r}"
        # One name per variant: Numba names machine code after the qualname and a per-process
        # counter, so two variants of one closure (max and average, say) compiled in different
        # processes could get the same symbol, and a driver that links one would run the other
        # once both are loaded from the disk cache.
        fn.__qualname__ += "".join(f"_{c}" for c in cells)
        self.body = _jit(fn)
        self._driver = None
        self.__doc__ = fn.__doc__

    @property
    def driver(self):
        if self._driver is None:
            self._driver = _make_driver(self.body, self.tag)
        return self._driver

    def __call__(self, n: int, nchunks: int, *args):
        """Run the body over work items ``[0, n)`` in ``nchunks`` chunks (1: in this thread)."""
        if nchunks > 1 and n > 1:
            return _run(self.driver, (n, min(nchunks, n), args))
        return _run(self.body, (0, n) + args)

    def __repr__(self):
        return f"<poolkit kernel {self.tag}>"


def kernel(fn: Callable) -> Kernel:
    """Decorator: ``fn(lo, hi, *args)`` becomes a :class:`Kernel`."""
    return Kernel(fn)


class _Background:
    """One daemon thread that compiles the signatures handed to it, in order."""

    def __init__(self):
        self.queue: "queue.Queue" = queue.Queue()
        self.pending: set = set()
        self.failed: Dict = {}
        self.thread: Optional[threading.Thread] = None
        self.busy = False
        self.disabled = False                      # forked while compiling: never compile here
        self.lock = threading.Lock()

    def submit(self, exc: NotCompiled) -> None:
        with self.lock:
            if self.disabled or exc.key in self.pending or exc.key in self.failed:
                return
            self.pending.add(exc.key)
            self.queue.put(exc)
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name="poolkit-compile", daemon=True)
                self.thread.start()

    def _work(self) -> None:
        while True:
            exc = self.queue.get()
            self.busy = True
            try:
                exc.compile()
            except Exception as err:                 # a kernel bug: keep serving with NumPy, say so once
                self.failed[exc.key] = err
                warnings.warn(f"poolkit: compiling {exc} failed ({type(err).__name__}: {err}); "
                              f"those calls are served by the NumPy backend.", RuntimeWarning)
            finally:
                self.busy = False
                with self.lock:
                    self.pending.discard(exc.key)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing is queued or compiling (True), or ``timeout`` seconds pass (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.pending:
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True


_BACKGROUND = _Background()


def _after_fork_in_child() -> None:
    global _BACKGROUND
    busy = _BACKGROUND.busy
    _BACKGROUND = _Background()
    _BACKGROUND.disabled = busy


os.register_at_fork(after_in_child=_after_fork_in_child)


def _compile_mode() -> str:
    mode = os.environ.get("POOLKIT_COMPILE", "").strip().lower() or "background"
    if mode not in ("background", "foreground"):
        warnings.warn(f"POOLKIT_COMPILE must be 'background' or 'foreground', but got {mode!r}; "
                      f"using 'background'.", RuntimeWarning)
        mode = "background"
    return mode


#: ``"background"`` (the default) or ``"foreground"``: may the ``"auto"`` backend serve calls with
#: NumPy while their kernels compile? Read from ``POOLKIT_COMPILE`` when poolkit is imported.
COMPILE_MODE = _compile_mode()

_LOCAL = threading.local()          # .wait: may kernel calls in this thread compile in the foreground?


def _run(dispatcher, args: Tuple):
    # Call a kernel dispatcher; compile first (this thread waits) or hand it to the background
    # thread and re-raise (see :func:`call`).
    try:
        return dispatcher(*args)
    except NotCompiled as exc:
        if not getattr(_LOCAL, "wait", True):
            _BACKGROUND.submit(exc)
            raise
        if _BACKGROUND.disabled:
            raise
        exc.compile()
    return dispatcher(*args)


def call(fn: Callable, args: Tuple, wait: bool):
    """``fn(*args)``, whose kernel calls compile first (``wait``) or are handed to the background
    thread, :class:`NotCompiled` then reaching the caller (who serves the call another way)."""
    prev = getattr(_LOCAL, "wait", True)
    _LOCAL.wait = wait
    try:
        return fn(*args)
    finally:
        _LOCAL.wait = prev


def background_wait(timeout: Optional[float] = None) -> bool:
    """Wait for the background compiles to finish (True), or at most ``timeout`` seconds (False)."""
    return _BACKGROUND.wait(timeout)


def background_status() -> dict:
    """What the background compiler is doing: queued signatures, failures, whether it may compile."""
    b = _BACKGROUND
    return {"pending": len(b.pending), "failed": len(b.failed), "disabled": b.disabled}
