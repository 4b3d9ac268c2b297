"""Thread count of the numba backend, and how its threads share the cores.

Numba's own setting rules (``NUMBA_NUM_THREADS`` caps the pool when Numba
starts).  On import poolkit also honours ``POOLKIT_NUM_THREADS`` and, failing
that, ``OMP_NUM_THREADS``, the variable most numerical libraries read.
Like Numba's, the setting is per calling thread.

Sharing the cores: OpenMP runtimes keep their threads spinning after a
parallel region, waiting for the next one -- GNU OpenMP for about 3.5 ms
(``GOMP_SPINCOUNT`` 300,000), Intel's for 200 ms (``KMP_BLOCKTIME``) --
and OpenBLAS's threads for about 50 ms after each call.  A spinning thread
holds its core, so when poolkit's kernels and a BLAS call alternate (a
training step: convolution, pooling, convolution), each waits for the other's
idle spinners and both slow down many times over.  poolkit's policy: its
threads spin for about 0.1 ms (``GOMP_SPINCOUNT=10000``, ``KMP_BLOCKTIME=0``
while Numba's OpenMP runtime starts, unless the user set ``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``), long enough to bridge the gap between
a forward and a backward kernel, too short to fight a BLAS call; BLAS's own
threads are left as the user set them.  An OpenMP runtime that another
library loaded before poolkit's first threaded kernel keeps that library's
settings (Numba then shares it).  :data:`SPIN_ENV` holds what is set.
Where the cores are taken anyway, a kernel runs on one thread: each kernel
measures its threaded and single-thread calls and takes the faster
(:class:`poolkit.backends.numba.jit._Choice`), so the thread count set here is
the most a kernel uses.

Fork: the pool's worker threads do not survive ``os.fork`` (with GNU OpenMP a
forked child that enters a parallel region is killed or hangs).  A process
forked after the pool started therefore runs every kernel on one thread; one
started with "spawn" or "forkserver" has its own pool.
"""
from __future__ import annotations

import contextlib
import numbers
import os
from typing import Callable, Iterator, Optional, Tuple

import numba
import numpy as np

__all__ = ["get_num_threads", "set_num_threads", "threads"]

#: What poolkit puts in the environment while Numba's OpenMP runtime starts (see the module notes),
#: when none of these variables is set and ``OMP_WAIT_POLICY`` is not either.
SPIN_ENV = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "0"}

# Numba's C getter and setter of the calling thread's count, once the pool has started: its
# public functions take a process-wide lock on every call (13.6 s instead of 2.7 s for
# `with threads(n)` from 8 Python threads at once).
_raw: Optional[Tuple[Callable[[], int], Callable[[int], None]]] = None
# True in a process forked after the parent's pool started: that pool is unusable here.
_forked_child = False


def _start_pool() -> int:
    """Start Numba's thread pool (if it has not started) with poolkit's spin policy; its thread count."""
    try:
        from numba.np.ufunc import parallel as _parallel
        started = bool(_parallel._is_initialized)
    except (ImportError, AttributeError):
        started = False
    user = ("OMP_WAIT_POLICY",) + tuple(SPIN_ENV)
    if started or any(os.environ.get(v, "").strip() for v in user):
        return numba.get_num_threads()
    # OpenMP runtimes read these once, when they load: set them for that moment only.
    saved = {k: os.environ.get(k) for k in SPIN_ENV}
    os.environ.update(SPIN_ENV)
    try:
        return numba.get_num_threads()                 # loads the threading layer and starts the pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _raw_pair() -> Tuple[Callable[[], int], Callable[[int], None]]:
    global _raw
    if _raw is None:
        n = _start_pool()
        try:
            from numba.np.ufunc import parallel as _parallel
            pair = (_parallel._get_num_threads, _parallel._set_num_threads)
            if pair[0]() != n:
                raise AttributeError
        except (ImportError, AttributeError):           # a Numba without them: the public ones
            pair = (numba.get_num_threads, numba.set_num_threads)
        _raw = pair
    return _raw


def current_threads() -> int:
    """Threads the kernels may use now, without Numba's per-call lock (for hot paths).

    1 in a child forked after the pool started: kernels then take their serial path.
    """
    if _forked_child:
        return 1
    return _raw_pair()[0]()


def get_num_threads() -> int:
    """Threads the numba backend uses for large inputs (1 in a forked child, see the module notes)."""
    return current_threads()


def _check_count(n) -> int:
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or not 1 <= int(n) <= top:
        raise ValueError(f"`n` must be an int from 1 to {top} (NUMBA_NUM_THREADS), but got n={n!r}.")
    return int(n)


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads (an int, 1 to ``numba.config.NUMBA_NUM_THREADS``) for large inputs.

    Results do not depend on it: every output and every input gradient is
    computed by one thread, in a fixed order.  In a child forked after the
    pool started the count is checked and ignored: it stays 1.

    Examples
    --------
    >>> import poolkit
    >>> old = poolkit.get_num_threads()
    >>> poolkit.set_num_threads(1)
    >>> poolkit.get_num_threads()
    1
    >>> poolkit.set_num_threads(old)
    """
    n = _check_count(n)
    if _forked_child:
        return
    get, put = _raw_pair()
    if get() != n:
        put(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Context manager: run the block with ``n`` threads, then restore the previous count.

    Costs two reads of the count and at most two writes, without locks: safe
    and cheap to use from many Python threads at once (the count is per thread).

    Examples
    --------
    >>> import poolkit
    >>> with poolkit.threads(1):
    ...     poolkit.get_num_threads()
    1
    """
    n = _check_count(n)
    if _forked_child:
        yield
        return
    get, put = _raw_pair()
    old = get()
    if n != old:
        put(n)
    try:
        yield
    finally:
        if get() != old:
            put(old)


def _after_fork_in_child() -> None:
    global _forked_child
    try:
        from numba.np.ufunc import parallel as _parallel
        started = bool(_parallel._is_initialized)
    except (ImportError, AttributeError):               # cannot tell: assume the worst
        started = True
    if started:
        _forked_child = True
        if _raw is not None and _raw[1] is not numba.set_num_threads:
            # Numba's own count too (user code), via the C setter: it touches no thread.
            _raw[1](1)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _from_environment() -> None:
    for var in ("POOLKIT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            n = int(value.split(",")[0])
        except ValueError:
            return
        if n >= 1:
            _start_pool()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        return
