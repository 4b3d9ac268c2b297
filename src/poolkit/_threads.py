"""Thread count of the numba backend.

Numba's own setting rules (``NUMBA_NUM_THREADS`` caps the pool when Numba
starts).  On import poolkit also honours ``POOLKIT_NUM_THREADS`` and, failing
that, ``OMP_NUM_THREADS``, the variable most numerical libraries read.
Like Numba's, the setting is per calling thread.
"""
from __future__ import annotations

import contextlib
import os

import numba

__all__ = ["get_num_threads", "set_num_threads", "threads"]


def get_num_threads() -> int:
    """Threads the numba backend uses for large inputs."""
    return numba.get_num_threads()


_getter = None


def current_threads() -> int:
    """``numba.get_num_threads()`` without its per-call start-up check (~1 µs), for hot paths.

    Numba's public function takes a lock to make sure the thread pool has started;
    once it has, the C getter it wraps answers directly. Falls back to the public
    function if a Numba version lacks the getter.
    """
    global _getter
    if _getter is not None:
        return _getter()
    n = numba.get_num_threads()                    # starts the pool if needed
    try:
        from numba.np.ufunc import parallel as _parallel
        getter = _parallel._get_num_threads
        if getter() != n:
            raise AttributeError
    except (ImportError, AttributeError):
        getter = numba.get_num_threads
    _getter = getter
    return n


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to ``numba.config.NUMBA_NUM_THREADS``) for large inputs.

    Results do not depend on it: every output and every input gradient is
    computed by one thread, in a fixed order.
    """
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        raise ValueError(f"`n` must be an int from 1 to {top} (NUMBA_NUM_THREADS), but got n={n!r}.")
    numba.set_num_threads(n)


@contextlib.contextmanager
def threads(n: int):
    """Context manager: run the block with ``n`` threads, then restore the previous count.

    Examples
    --------
    >>> import poolkit
    >>> with poolkit.threads(1):
    ...     poolkit.get_num_threads()
    1
    """
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


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
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        return
