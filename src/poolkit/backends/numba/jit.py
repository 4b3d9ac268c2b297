"""Numba kernels: written once as serial loops, threaded by a thin driver, compiled where they stall nobody.

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
* ``wait=False`` -- the ``"auto"`` backend -- loads the kernel at once when the
  on-disk cache has it (milliseconds: warm processes run at kernel speed from
  their first call), else hands it to the compile worker, a separate process
  (:mod:`.worker`) whose compiler holds nobody's GIL, and re-raises: the call
  is served by NumPy.  A later call installs the machine code the worker sent
  back (:func:`install`, milliseconds) and runs the kernel.

``POOLKIT_COMPILE=foreground`` makes ``"auto"`` wait as well;
``POOLKIT_COMPILE=thread`` compiles in a thread of this process instead of the
worker (as poolkit 0.1 did: the thread holds the GIL while it compiles, and
calls slow down meanwhile), which is also what happens where no worker can be
used (no ``sys.executable``, a platform without POSIX pipes, a worker that
cannot start or runs another poolkit).  Kernels are cached on disk where a
folder can be written (:mod:`.cache`); where none can, the worker's machine
code still reaches the caller through the pipe, and lasts for the process.
No fast-math flags: the kernels must see NaN.

Loading machine code (from the cache or the worker) here skips the part of
Numba's set-up that only compiling needs (half a second per process: the
typing and lowering registries); it initialises Numba's runtime, which
the kernels' allocations use.  Compiling, when it happens in this process,
sets up the rest as usual.

Fork: a child forked while Numba's compiler lock is held (a compile or load in
another thread) could never take it, so such a child compiles and loads
nothing: kernels ready at the fork still run, the rest is served by NumPy.
Any other child closes its copies of the parent's pipes to the worker and
starts a worker of its own when it needs one.
"""
from __future__ import annotations

import atexit
import functools
import itertools
import marshal
import os
import queue
import subprocess
import sys
import threading
import time
import types as pytypes
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import numba
import numpy as np
from numba import prange
from numba.core.compiler_lock import global_compiler_lock

from . import cache as _cache
from . import worker as _worker

__all__ = ["Kernel", "kernel", "NotCompiled", "call", "background_wait", "background_status", "COMPILE_MODE",
           "install", "load_cached", "spec_of", "target_key"]

_OPTIONS = dict(nogil=True, boundscheck=False, error_model="numpy")


class NotCompiled(Exception):
    """A kernel was called with argument types it has no machine code for yet."""

    def __init__(self, dispatcher, argtypes: Tuple, key: Optional["_Key"] = None):
        super().__init__()
        self.dispatcher = dispatcher
        self.argtypes = argtypes
        self._key = key

    def __str__(self):
        return f"{self.dispatcher.py_func.__qualname__}{self.argtypes} is not compiled"

    @property
    def key(self) -> "_Key":
        if self._key is None:
            self._key = _Key(self.dispatcher, self.argtypes)
        return self._key

    @property
    def ready(self) -> bool:
        """Whether the dispatcher has machine code for these argument types now."""
        return tuple(self.argtypes) in self.dispatcher.overloads

    def compile(self) -> None:
        """Load the kernel from the disk cache, or compile it, in this thread; blocks.

        The compile holds the cache folder's lock for this kernel (:func:`._cache.compile_lock`):
        when another process is compiling it, this one waits and loads the result.
        """
        if load_cached(self.dispatcher, self.argtypes, blocking=True):
            return
        hook = getattr(self.dispatcher, "_compilation_chain_init_hook", None)
        if hook is not None:
            hook()
        with _cache.compile_lock(_lock_name(self.dispatcher, self.argtypes)):
            self.dispatcher.compile(self.argtypes)


class _Key:
    """A dispatcher and argument types, hashed once (Numba types hash recursively, on every lookup)."""

    __slots__ = ("ident", "argtypes", "_hash")

    def __init__(self, dispatcher, argtypes: Tuple):
        self.ident = id(dispatcher)
        self.argtypes = tuple(argtypes)
        self._hash = hash((self.ident, self.argtypes))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, _Key) and self.ident == other.ident
                                 and self.argtypes == other.argtypes)


def _fingerprint(args: Tuple) -> Optional[tuple]:
    """What decides the Numba types of ``args``, cheaply (a tuple), or None for values it does not know.

    Arrays: dtype, rank, contiguity, writeable, aligned (Numba's dtype, ndim, layout,
    readonly, aligned); Python and NumPy scalars by their type (ints also by whether they
    fit int64); tuples element by element.
    """
    out: list = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            dt = a.dtype
            if dt.fields is not None or dt.kind in "mMOSUV":
                return None
            f = a.flags
            out.append((dt.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned))
        elif t is tuple:
            inner = _fingerprint(a)
            if inner is None:
                return None
            out.append(inner)
        elif t is int:
            out.append((t, -(1 << 63) <= a < (1 << 63)))
        elif t is bool or t is float or (isinstance(a, np.generic) and a.dtype.kind in "biuf"):
            out.append(t)
        else:
            return None
    return tuple(out)


def _not_compiled(dispatcher, *args, **kws):
    # Replaces the dispatcher's ``_compile_for_args``, which Numba calls only for argument
    # types that have no machine code yet: typing the arguments is all it does. Typing takes
    # a few hundred microseconds for a kernel's dozen arguments, and while a kernel compiles
    # elsewhere every call of it comes here: the types are remembered per fingerprint.
    fp = _fingerprint(args)
    known = dispatcher._poolkit_typed if fp is not None else None
    hit = known.get(fp) if known is not None else None
    if hit is None:
        argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
        hit = (argtypes, _Key(dispatcher, argtypes))
        if known is not None:
            if len(known) > 64:
                known.clear()
            known[fp] = hit
    raise NotCompiled(dispatcher, hit[0], hit[1])


def _jit(fn: Callable, parallel=False):
    # Only explicit prange loops run in parallel: no array-expression or fusion passes.
    par = {"prange": True, "comprehension": False, "reduction": False, "setitem": False,
           "numpy": False, "stencil": False, "fusion": False, "inplace_binop": False} if parallel else False
    disp = numba.njit(cache=False, parallel=par, **_OPTIONS)(fn)
    cache = _cache.function_cache(fn)
    if cache is not None:
        disp._cache = cache                  # what ``cache=True`` sets, with poolkit's folder and lock
    disp._compile_for_args = functools.partial(_not_compiled, disp)
    disp._poolkit_typed = {}                 # argument fingerprint -> (types, key), see _not_compiled
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
    disp = _jit(fn, parallel=True)
    disp._poolkit_spec = ("driver", body._poolkit_spec, tag)
    return disp


def spec_of(fn: Callable) -> tuple:
    """What a compile worker needs to rebuild the kernel function ``fn``: ``("fn", module, code, name,
    qualname, cells, rebound)``.

    The code object travels as ``marshal`` bytes (the worker runs the same Python), the
    closure as its values (numbers and strings here), and the globals are the module's,
    imported by name in the worker; so the rebuilt function has the same Numba cache key.
    A kernel made with globals of its own (one helper per variant bound under a shared
    name, as the pyramid kernels' row function) lists them in ``rebound``: pairs of the
    name it uses and the module-level name of the object bound to it.
    """
    cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
    module = sys.modules[fn.__module__].__dict__
    rebound = []
    if fn.__globals__ is not module:
        for name in fn.__code__.co_names:
            if name not in fn.__globals__ or module.get(name, _MISSING) is fn.__globals__[name]:
                continue
            value = fn.__globals__[name]
            found = [k for k, v in module.items() if v is value]
            if not found:
                raise TypeError(f"kernel {fn.__qualname__}: its global {name!r} is no object of "
                                f"{fn.__module__}, so a compile worker could not rebuild it")
            rebound.append((name, found[0]))
    return ("fn", fn.__module__, marshal.dumps(fn.__code__), fn.__name__, fn.__qualname__, cells,
            tuple(rebound))


_MISSING = object()


class _Choice:
    """Whether calls of one size run faster on Numba's threads or on the calling thread, measured.

    Threads pay off only with cores to run them: where another thread pool holds the
    cores (a BLAS library's spinning threads, another process), a parallel region waits
    for threads that cannot run: a threaded chapter-case kernel took 300-600 us instead of
    20-30 us while one of the machine's 2 cores was busy. So each way keeps its last
    :data:`_SAMPLES` times and the way with the faster best time wins: a slow spell must
    last :data:`_SAMPLES` threaded calls to send calls to one thread (a passing one does
    not), and one fast threaded call brings them back. Now and then a call runs the other
    way, to notice when things change: one in :data:`_PROBE`, or fewer when that way is
    much slower (its probes cost at most about 1/:data:`_PROBE_SHARE` of the time), but
    at least one in :data:`_PROBE_MAX`. The first two calls run threaded and the next two
    not; the first of each way is not timed (it may have loaded its kernel or started the
    thread pool).
    """

    __slots__ = ("times", "calls", "seen", "best", "every")

    def __init__(self):
        self.times: Tuple[list, list] = ([], [])     # serial, threaded
        self.seen = [False, False]                    # the first call of a way is not timed
        self.calls = 0
        self.best: Optional[bool] = None              # threaded? (None: not both ways timed yet)
        self.every = _PROBE

    def threaded(self) -> bool:
        self.calls += 1
        if self.best is None:
            return not self.times[1]
        return self.best if self.calls % self.every else not self.best

    def record(self, threaded: bool, seconds: float) -> None:
        if not self.seen[threaded]:           # it may have loaded the kernel or started the threads
            self.seen[threaded] = True
            return
        times = self.times[threaded]
        times.append(seconds)
        if len(times) > _SAMPLES:
            del times[0]
        serial, par = self.times
        if serial and par:
            t, s = min(par), min(serial)
            self.best = t <= s
            # probe the other way less often the worse it is (probes cost at most ~1/_PROBE_SHARE),
            # but at least once in _PROBE_MAX calls
            self.every = min(_PROBE_MAX, max(_PROBE, int(_PROBE_SHARE * max(t, s) / max(min(t, s), 1e-9))))


_SAMPLES = 5
_PROBE = 64
_PROBE_SHARE = 20
_PROBE_MAX = 256


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
        self.body._poolkit_spec = spec_of(fn)
        self._driver = None
        self._choices: Dict[tuple, _Choice] = {}      # call size -> threaded or not, measured
        self.__doc__ = fn.__doc__

    @property
    def driver(self):
        if self._driver is None:
            self._driver = _make_driver(self.body, self.tag)
        return self._driver

    def __call__(self, n: int, nchunks: int, *args):
        """Run the body over work items ``[0, n)`` in ``nchunks`` chunks (1: in this thread).

        With several chunks the call runs on Numba's threads only while that measures
        faster than this thread alone, for calls of this size (:class:`_Choice`); the
        result is the same either way.
        """
        if nchunks <= 1 or n <= 1:
            return _run(self.body, (0, n) + args)
        key = (n, nchunks, getattr(args[0], "shape", None))
        choice = self._choices.get(key)
        if choice is None:
            if len(self._choices) >= 256:
                self._choices.clear()
            choice = self._choices[key] = _Choice()
        threaded = choice.threaded()
        t = time.perf_counter()
        if not threaded:
            try:
                out = _run(self.body, (0, n) + args)
            except NotCompiled:          # the serial body is not here yet: the threaded one is
                threaded = True
            else:
                choice.record(False, time.perf_counter() - t)
                return out
            t = time.perf_counter()
        out = _run(self.driver, (n, min(nchunks, n), args))
        choice.record(True, time.perf_counter() - t)
        return out

    def __repr__(self):
        return f"<poolkit kernel {self.tag}>"


def kernel(fn: Callable) -> Kernel:
    """Decorator: ``fn(lo, hi, *args)`` becomes a :class:`Kernel`."""
    return Kernel(fn)


# --------------------------------------------------------------------------- #
# machine code without compiling: from the disk cache, or from the worker
# --------------------------------------------------------------------------- #
def target_key() -> tuple:
    """The target Numba compiles for here (triple, CPU name, features): a worker must match it."""
    from numba.core.registry import cpu_target

    return tuple(cpu_target.target_context.codegen().magic_tuple())


def _lock_name(dispatcher, argtypes) -> str:
    return f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}{tuple(argtypes)!r}{target_key()!r}"


class _CompilerLock:
    """Numba's compiler lock, taken without waiting (``blocking=False``) or waiting."""

    def __init__(self, blocking: bool):
        self.blocking = blocking
        self.held = False

    def __enter__(self) -> bool:
        self.held = global_compiler_lock._lock.acquire(self.blocking)
        return self.held

    def __exit__(self, *exc):
        if self.held:
            global_compiler_lock._lock.release()
        return False


def _runtime(targetctx) -> None:
    # Numba's runtime (its allocator: the kernels make scratch arrays); idempotent and cheap
    # after the first call. This is the part of Numba's per-process set-up that running
    # loaded machine code needs.
    from numba.core.runtime import rtsys

    rtsys.initialize(targetctx)


def _add(dispatcher, cres) -> None:
    # What Numba's Dispatcher.compile does with a compile result it loaded from its cache.
    if not cres.objectmode:
        dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
    dispatcher.add_overload(cres)


def load_cached(dispatcher, argtypes, blocking: bool = False) -> bool:
    """Load the machine code of ``dispatcher`` for ``argtypes`` from the disk cache, if it is there.

    Returns True when the dispatcher has it now. Costs a look at the cache index when the
    kernel is not there, and milliseconds when it is (plus Numba's runtime set-up, once per
    process). ``blocking=False``: when Numba's compiler lock is busy (a compile in another
    thread), give up at once instead of waiting (False).
    """
    argtypes = tuple(argtypes)
    if argtypes in dispatcher.overloads:
        return True
    cache = getattr(dispatcher, "_cache", None)
    if not isinstance(cache, _cache._LockedCache):
        return False
    ctx = dispatcher.targetctx
    try:
        key = cache._index_key(argtypes, ctx.codegen())
        if key not in cache._cache_file._load_index():
            return False
    except Exception:                       # an unreadable index: as if empty
        return False
    with _CompilerLock(blocking) as held:
        if not held:
            return False
        if argtypes in dispatcher.overloads:
            return True
        _runtime(ctx)
        try:
            cres = cache._load_overload(argtypes, ctx)
        except Exception:
            return False
        if cres is None:
            return False
        dispatcher._cache_hits[argtypes] += 1
        _add(dispatcher, cres)
    return True


def install(dispatcher, argtypes, payload: bytes, blocking: bool = False) -> bool:
    """Add machine code the worker compiled (``payload``: a pickled, reduced compile result).

    Returns True when the dispatcher has it now; False when Numba's compiler lock was
    busy and ``blocking`` is False (try again later). Raises what rebuilding raises.
    """
    import pickle

    from numba.core import compiler

    argtypes = tuple(argtypes)
    with _CompilerLock(blocking) as held:
        if not held:
            return False
        if argtypes in dispatcher.overloads:
            return True
        ctx = dispatcher.targetctx
        _runtime(ctx)
        cres = compiler.CompileResult._rebuild(ctx, *pickle.loads(payload))
        _add(dispatcher, cres)
    return True


_BUILT: Dict[bytes, Any] = {}          # in a worker: the dispatchers rebuilt from specs


def _build(spec: tuple):
    """The dispatcher a spec describes (:func:`spec_of`; ``("driver", body_spec, tag)``), made once."""
    import importlib
    import pickle

    memo = pickle.dumps(spec)
    disp = _BUILT.get(memo)
    if disp is not None:
        return disp
    if spec[0] == "driver":
        disp = _make_driver(_build(spec[1]), spec[2])
    else:
        _, module, code, name, qualname, cells, rebound = spec
        scope = importlib.import_module(module).__dict__
        if rebound:
            scope = dict(scope, **{k: scope[v] for k, v in rebound})
        fn = pytypes.FunctionType(marshal.loads(code), scope, name, None,
                                  tuple(pytypes.CellType(c) for c in cells) or None)
        fn.__qualname__ = qualname
        disp = _jit(fn)
        disp._poolkit_spec = spec
    _BUILT[memo] = disp
    return disp


def compile_payload(spec: tuple, argtypes: tuple) -> bytes:
    """In the worker: compile the kernel of ``spec`` for ``argtypes`` (or take it from the disk cache,
    where another process may have put it) and return its machine code for :func:`install`."""
    from numba.core.serialize import dumps

    disp = _build(spec)
    argtypes = tuple(argtypes)
    with _cache.compile_lock(_lock_name(disp, argtypes)):
        cache = getattr(disp, "_cache", None)
        if isinstance(cache, _cache._LockedCache) and argtypes not in disp.overloads:
            try:
                data = cache._cache_file.load(cache._index_key(argtypes, disp.targetctx.codegen()))
            except Exception:
                data = None
            if data is not None:            # compiled by another process meanwhile: send its bytes
                return dumps(data)
        disp._compilation_chain_init_hook()
        disp.compile(argtypes)
    return dumps(disp.overloads[argtypes]._reduce())


# --------------------------------------------------------------------------- #
# compiling away from the caller
# --------------------------------------------------------------------------- #
def _compile_mode() -> str:
    mode = os.environ.get("POOLKIT_COMPILE", "").strip().lower() or "background"
    if mode not in ("background", "thread", "foreground"):
        warnings.warn(f"POOLKIT_COMPILE must be 'background', 'thread' or 'foreground', but got {mode!r}; "
                      f"using 'background'.", RuntimeWarning)
        mode = "background"
    return mode


#: ``"background"`` (the default: a compile worker process), ``"thread"`` or ``"foreground"``: how
#: the ``"auto"`` backend gets a kernel that is not compiled yet. Read from ``POOLKIT_COMPILE`` when
#: poolkit is imported.
COMPILE_MODE = _compile_mode()

#: A compile that killed its worker this many times is given up (its calls stay with NumPy).
_MAX_TRIES = 2


class _Compiles:
    """The kernels this process has handed off to compile, and who compiles them.

    ``compiler`` is ``"process"`` (the worker, :mod:`.worker`) or ``"thread"`` (a daemon
    thread here). One per process; a forked child makes its own.
    """

    def __init__(self, disabled: bool = False):
        self.lock = threading.RLock()
        self.disabled = disabled                 # forked while Numba's compiler lock was held
        self.pending: Dict[Any, NotCompiled] = {}
        self.failed: Dict[Any, str] = {}
        self.compiler = "process" if COMPILE_MODE == "background" and _worker.available() else "thread"
        self.why_thread: Optional[str] = None
        # the worker
        self.client: Optional[_worker.Client] = None
        self.hello: Optional[dict] = None
        self.bye = False
        self.sent: Dict[int, Any] = {}          # request id -> key
        self.delivered: Dict[Any, bytes] = {}   # key -> machine code not installed yet
        self.tries: Dict[Any, int] = {}
        self.start_failures = 0
        self.ids = itertools.count(1)
        # the thread
        self.queue: "queue.Queue" = queue.Queue()
        self.thread: Optional[threading.Thread] = None
        self.busy = False

    # -- what a call asks ------------------------------------------------------------------ #
    def obtain(self, exc: NotCompiled) -> bool:
        """True if ``exc``'s kernel can run now (installed just now), else False: it is being compiled
        elsewhere, or failed, and the call is served another way."""
        with self.lock:
            if self.disabled:
                return False
            self._collect()
            if exc.ready:
                return True
            key = exc.key
            if key in self.pending or key in self.failed:
                return False
            if load_cached(exc.dispatcher, exc.argtypes):        # a warm start: milliseconds
                return True
            self.pending[key] = exc
            if self.compiler == "process" and hasattr(exc.dispatcher, "_poolkit_spec"):
                self._send(key)
            else:
                self._to_thread(key)
            return False

    def waiting(self, key) -> bool:
        """Whether the kernel of ``key`` cannot run now: it is compiling elsewhere, failed, or this
        process compiles nothing (checks the worker's answers first)."""
        with self.lock:
            if self.disabled:
                return True
            self._collect()
            return key in self.pending or key in self.failed

    def wait(self, timeout: Optional[float]) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                self._collect()
                if not self.pending:
                    return True
                if self.disabled:
                    return False
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def status(self) -> dict:
        with self.lock:
            self._collect()
            return {"pending": len(self.pending), "failed": len(self.failed), "disabled": self.disabled,
                    "compiler": self.compiler, "worker_pid": None if self.client is None else self.client.pid}

    # -- the worker ------------------------------------------------------------------------- #
    def _send(self, key) -> None:
        if self.client is None:
            try:
                self.client = _worker.Client({"cache": _cache.cache_folder(), "idle_s": _worker.IDLE_S})
            except (OSError, ValueError, subprocess.SubprocessError) as err:
                self._use_thread(f"the compile worker could not start ({type(err).__name__}: {err})")
                return
            self.hello, self.bye = None, False
        exc = self.pending[key]
        rid = next(self.ids)
        self.sent[rid] = key
        self.client.send(("compile", rid, exc.dispatcher._poolkit_spec, tuple(exc.argtypes)))

    def _collect(self) -> None:
        # The worker's answers so far; install what it delivered (without waiting for Numba's lock).
        client = self.client
        if client is not None:
            for message in client.receive(0.0):
                self._handle(message)
            if client.dead and self.client is client:
                self._worker_gone()
        for key in list(self.delivered):
            exc = self.pending.get(key)
            if exc is None:
                del self.delivered[key]
                continue
            try:
                done = install(exc.dispatcher, exc.argtypes, self.delivered[key])
            except Exception:                    # not expected: compile it in this process instead
                del self.delivered[key]
                self._to_thread(key)
                continue
            if done:
                del self.delivered[key]
                del self.pending[key]

    def _handle(self, message) -> None:
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "hello":
            self.hello = message[1]
            why = _mismatch(self.hello)
            if why:
                self._use_thread(why)
        elif kind in ("done", "failed"):
            for category, text in message[3] if len(message) > 3 else ():
                warnings.warn(f"poolkit compile worker: {text}", _warning_class(category), stacklevel=5)
            key = self.sent.pop(message[1], None)
            if key is not None and key in self.pending:
                if kind == "done":
                    self.delivered[key] = message[2]
                else:
                    self._fail(key, message[2])
        elif kind == "bye":
            self.bye = True

    def _worker_gone(self) -> None:
        # The worker's output ended: it exited after idling ("bye"), or it died. Whatever it was
        # asked and did not answer goes to a new worker (a compile that kills two is given up).
        client, self.client = self.client, None
        if client is not None:
            client.close()
        started, idle = self.hello is not None, self.bye
        lost = list(self.sent.values())
        self.sent.clear()
        if not started and not idle:
            self.start_failures += 1
            if self.start_failures >= _MAX_TRIES:
                self._use_thread("the compile worker exited before it could compile (twice)")
                return
        for key in lost:
            if key not in self.pending:
                continue
            if started and not idle:
                self.tries[key] = self.tries.get(key, 0) + 1
                if self.tries[key] >= _MAX_TRIES:
                    self._fail(key, f"the compile worker died compiling it ({_MAX_TRIES} times)")
                    continue
            self._send(key)
            if self.compiler != "process":
                return

    def _use_thread(self, why: str) -> None:
        # No worker for this process: compile in a thread from now on (and say so once).
        if self.compiler == "thread":
            return
        self.compiler, self.why_thread = "thread", why
        warnings.warn(f"poolkit: {why}; compiling kernels in a thread of this process instead, which "
                      f"slows calls down while it compiles.", RuntimeWarning, stacklevel=4)
        if self.client is not None:
            self.client.close()
            self.client = None
        self.sent.clear()
        for key in list(self.pending):
            if key not in self.delivered:
                self._to_thread(key)

    def _fail(self, key, why: str) -> None:
        exc = self.pending.pop(key, None)
        self.delivered.pop(key, None)
        self.failed[key] = why
        name = exc.dispatcher.py_func.__qualname__ if exc is not None else "a kernel"
        warnings.warn(f"poolkit: compiling {name} failed ({why}); those calls are served by the NumPy "
                      f"backend.", RuntimeWarning, stacklevel=4)

    # -- the thread ------------------------------------------------------------------------- #
    def _to_thread(self, key) -> None:
        self.queue.put(self.pending[key])
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name="poolkit-compile", daemon=True)
            self.thread.start()

    def _work(self) -> None:
        while True:
            exc: NotCompiled = self.queue.get()
            with self.lock:
                if self.pending.get(exc.key) is not exc:
                    continue                          # done meanwhile (the worker, or a foreground call)
            self.busy = True
            try:
                exc.compile()
            except Exception as err:                  # a kernel bug: keep serving with NumPy, say so once
                with self.lock:
                    self._fail(exc.key, f"{type(err).__name__}: {err}")
            finally:
                self.busy = False
                with self.lock:
                    if exc.ready:
                        self.pending.pop(exc.key, None)
                        self.delivered.pop(exc.key, None)


def _warning_class(name: str) -> type:
    """The warning class called ``name`` (Python's or Numba's), else RuntimeWarning."""
    import builtins

    from numba.core import errors

    cls = getattr(builtins, name, None) or getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Warning) else RuntimeWarning


def _mismatch(hello: dict) -> Optional[str]:
    """Why a worker that said ``hello`` cannot compile for this process (None: it can)."""
    if hello.get("protocol") != _worker.PROTOCOL:
        return f"the compile worker speaks protocol {hello.get('protocol')!r}, not {_worker.PROTOCOL}"
    if hello.get("source_hash") != _cache.SOURCE_HASH:
        return "the compile worker imported other poolkit kernel sources than this process"
    if tuple(hello.get("target", ())) != target_key():
        return "the compile worker compiles for another CPU target than this process"
    return None


_COMPILES = _Compiles()


def _before_fork() -> None:
    # Whether Numba's compiler lock is free now, as seen by the forking thread: a child that
    # inherits it held by a thread that does not exist there must never take it.
    global _LOCK_FREE_AT_FORK
    free = global_compiler_lock._lock.acquire(False)
    if free:
        global_compiler_lock._lock.release()
    _LOCK_FREE_AT_FORK = free and not _COMPILES.busy


def _after_fork_in_child() -> None:
    global _COMPILES
    old = _COMPILES
    if old.client is not None:
        old.client.abandon()
    _COMPILES = _Compiles(disabled=old.disabled or not _LOCK_FREE_AT_FORK)


_LOCK_FREE_AT_FORK = True
os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    # Close this process's end of the worker's pipes: the worker finishes what it was asked
    # (into the cache folder) and exits; this process does not wait for it.
    client = _COMPILES.client
    if client is not None:
        client.close()


atexit.register(_at_exit)

_LOCAL = threading.local()          # .wait: may kernel calls in this thread compile in the foreground?


def _run(dispatcher, args: Tuple):
    # Call a kernel dispatcher; compile first (this thread waits) or obtain it without waiting,
    # re-raising NotCompiled when it is not ready (see :func:`call`).
    try:
        return dispatcher(*args)
    except NotCompiled as exc:
        if not getattr(_LOCAL, "wait", True):
            if not _COMPILES.obtain(exc):
                raise
        elif _COMPILES.disabled:
            raise
        else:
            exc.compile()
    return dispatcher(*args)


def call(fn: Callable, args: Tuple, wait: bool):
    """``fn(*args)``, whose kernel calls compile first (``wait``) or are handed off to compile,
    :class:`NotCompiled` then reaching the caller (who serves the call another way)."""
    prev = getattr(_LOCAL, "wait", True)
    _LOCAL.wait = wait
    try:
        return fn(*args)
    finally:
        _LOCAL.wait = prev


def waiting(key) -> bool:
    """Whether the kernel of a :class:`NotCompiled` ``key`` still cannot run (compiling elsewhere,
    failed, or this process compiles nothing): the ``"auto"`` backend then skips trying it."""
    return _COMPILES.waiting(key)


def background_wait(timeout: Optional[float] = None) -> bool:
    """Wait until every kernel handed off to compile is installed here (True), or at most ``timeout``
    seconds (False)."""
    return _COMPILES.wait(timeout)


def background_status() -> dict:
    """What the compiles handed off are doing: ``pending`` (not installed yet), ``failed``,
    ``disabled`` (a forked child that compiles nothing), ``compiler`` ("process" or "thread")
    and ``worker_pid`` (the compile worker's process id, None when none runs)."""
    return _COMPILES.status()
