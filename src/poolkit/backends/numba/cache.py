"""Where compiled kernels are kept on disk, and how several processes share them.

Compiled kernels go to one folder, the first of these that can be written:

1. ``POOLKIT_CACHE_DIR``, when set;
2. ``NUMBA_CACHE_DIR``, when set (Numba's own setting);
3. the package's ``backends/numba/__pycache__`` folder (a writable install, a source checkout);
4. the user's cache folder (``~/.cache/poolkit`` on Linux, the platform's convention
   elsewhere, from :mod:`platformdirs`): system and container installs, HPC modules.

If none can be written, kernels are compiled in memory, once per process.

Inside it, kernels live in ``kernels-<hash>``, the hash taken over the kernel
sources (every module of ``poolkit.backends``).  Numba keys its cache by the
source file of each function only, so a kernel that calls into another module
could otherwise be loaded stale after an upgrade; a new hash is a new folder.

Several processes may compile into one folder at once (Dask workers, test
runners): each cache file is written to a temporary name and renamed, and the
index that maps signatures to files is updated under a file lock, so no
process loses another's entry or reads half a file.  A kernel is compiled
under a lock of its own (:func:`compile_lock`, files in ``locks/``): the
first process compiles it, the others wait and then load it, so each kernel is
compiled once per folder however many processes need it at the same time.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import os
import tempfile
from typing import Callable, List, Optional, Tuple

import filelock
from numba.core import caching

__all__ = ["cache_folder", "use_folder", "function_cache", "cached_kernels", "compile_lock", "SOURCE_HASH"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(_HERE, "*.py"))):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


SOURCE_HASH = _source_hash()


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _candidates() -> List[Tuple[str, str]]:
    """``(where, folder)`` pairs in order of preference (see the module docstring)."""
    out = []
    for var in ("POOLKIT_CACHE_DIR", "NUMBA_CACHE_DIR"):
        value = os.environ.get(var, "").strip()
        if value:
            out.append((var, os.path.abspath(os.path.expanduser(value))))
    out.append(("package", os.path.join(_HERE, "__pycache__")))
    try:
        import platformdirs
        out.append(("user", platformdirs.user_cache_dir("poolkit", appauthor=False)))
    except ImportError:                                  # pragma: no cover - a declared dependency
        pass
    return out


@functools.lru_cache(maxsize=None)
def cache_folder() -> Tuple[str, Optional[str]]:
    """``(where, folder)``: where compiled kernels are kept in this process.

    ``where`` is ``"POOLKIT_CACHE_DIR"``, ``"NUMBA_CACHE_DIR"``, ``"package"``,
    ``"user"`` or ``"memory"`` (no folder could be written; ``folder`` is None).
    Decided once per process, at the first kernel.
    """
    if _CHOSEN is not None:
        return _CHOSEN
    for where, root in _candidates():
        folder = os.path.join(root, f"kernels-{SOURCE_HASH}")
        if _writable(folder):
            return where, folder
    return "memory", None


_CHOSEN: Optional[Tuple[str, Optional[str]]] = None


def use_folder(chosen: Optional[Tuple[str, Optional[str]]]) -> None:
    """Use ``chosen`` (a :func:`cache_folder` result) instead of deciding: a compile worker takes
    its caller's folder, or none when the caller has none. Call before the first kernel."""
    global _CHOSEN
    _CHOSEN = None if chosen is None else (str(chosen[0]), None if chosen[1] is None else str(chosen[1]))
    cache_folder.cache_clear()


def compile_lock(name: str):
    """A lock, shared by every process using the cache folder, held while kernel ``name`` compiles.

    ``name`` says which kernel and signature (any string: it is hashed). The first process
    to take it compiles and saves; the others wait, then find the kernel in the cache. A
    no-op lock when kernels stay in memory (nothing to share) or the lock file cannot be made.
    """
    folder = cache_folder()[1]
    if folder is None:
        return contextlib.nullcontext()
    locks = os.path.join(folder, "locks")
    try:
        os.makedirs(locks, exist_ok=True)
    except OSError:
        return contextlib.nullcontext()
    digest = hashlib.sha256(name.encode()).hexdigest()[:24]
    return _QuietLock(os.path.join(locks, f"{digest}.lock"))


class _QuietLock:
    """``filelock.FileLock`` that becomes a no-op when its file cannot be opened (read-only folder)."""

    def __init__(self, path: str):
        self._lock = filelock.FileLock(path)
        self._held = False

    def __enter__(self):
        try:
            self._lock.acquire()
            self._held = True
        except OSError:
            self._held = False
        return self

    def __exit__(self, *exc):
        if self._held:
            self._lock.release()
        return False


def cached_kernels() -> int:
    """Compiled kernels (one per function and signature) in the cache folder."""
    folder = cache_folder()[1]
    return 0 if folder is None else len(glob.glob(os.path.join(folder, "*.nbc")))


class _Locator(caching.UserProvidedCacheLocator):
    """Numba's locator for a user-provided folder, pointed at :func:`cache_folder`."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = cache_folder()[1]

    @classmethod
    def from_function(cls, py_func, py_file):
        if cache_folder()[1] is None:
            return None
        # skip UserProvidedCacheLocator's check of NUMBA_CACHE_DIR: the folder is ours
        return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]


class _LockedCache(caching.FunctionCache):
    """Numba's function cache whose index updates hold a file lock shared by all processes."""

    _impl_class = _Impl

    def save_overload(self, sig, data):
        with filelock.FileLock(os.path.join(self.cache_path, "index.lock")):
            super().save_overload(sig, data)


def function_cache(py_func: Callable) -> Optional[caching.FunctionCache]:
    """An on-disk cache for the Numba kernel of ``py_func``, or None (kernels stay in memory)."""
    if cache_folder()[1] is None:
        return None
    try:
        return _LockedCache(py_func)
    except RuntimeError:        # "no locator available": the folder went away or became read-only
        return None
