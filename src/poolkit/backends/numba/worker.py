"""The compile worker: a separate Python process that compiles kernels, so that the caller's GIL stays free.

Numba's compiler is Python code: a thread that compiles holds the GIL for
seconds, and the calls of the caller's threads crawl meanwhile.  So the
``"auto"`` backend hands a kernel that is not compiled yet to a worker
process (:class:`Client`), serves the call with NumPy, and installs the
machine code the worker sends back (:func:`.jit.install`), which takes
milliseconds.  The worker writes what it compiles to the kernel cache
folder too, for later processes.

How the worker learns what to compile: a kernel is a closure made per
variant (window shape, reduction), which cannot be pickled; but its code
object can (``marshal``), and its closure holds only numbers and strings.
A request carries the kernel's *spec* -- module, code, qualified name and
closure values, see :func:`.jit.spec_of` -- and the Numba argument types,
which pickle.  The worker rebuilds the very same function in the very same
module (same code, cells and globals, hence the same Numba cache key) and
compiles it for those types.

The worker process (its loop: :mod:`.worker_main`, which imports the
compiler's side of :mod:`.jit`; this module is the caller's side and the
messages, and :mod:`.jit` imports it)

* is started with ``subprocess`` (fork + exec of ``sys.executable``), not
  ``multiprocessing``: it never imports the caller's ``__main__`` (a script
  without an ``if __name__ == "__main__"`` guard would run again), works
  from daemonic processes (Dask workers), and its start-up -- Python,
  NumPy, Numba, poolkit, about 0.6 s -- overlaps the first calls, which
  NumPy serves;
* gets the caller's ``sys.path`` and kernel cache folder, and says hello
  with its kernel-source hash and Numba's target (CPU name and features):
  a mismatch (a different poolkit or CPU target) makes the caller compile
  in a thread instead;
* runs at a lower priority (``nice`` +10) than the caller, so that on a
  busy machine the caller's work goes first;
* compiles one request at a time, in order, each under a per-kernel file
  lock in the cache folder: processes that share the folder (Dask workers,
  test runners) compile each kernel once, the others load it;
* exits when it has had nothing to do for :data:`IDLE_S` seconds (the
  caller starts a new one when needed), and when the caller's end of the
  pipe closes (the caller exited or was killed): at once when there is no
  cache folder, else after the compiles already asked for, so that the
  next process finds them in the cache.

Messages are pickles, each preceded by its length (8 bytes), over the
worker's stdin and stdout; the worker points its own fd 1 at stderr, so a
stray print cannot corrupt them.  Its stderr goes to ``/dev/null``: an
inherited stderr would keep the caller's output pipe open after the caller
exits (``subprocess.run(..., capture_output=True)`` of a script that pooled
would wait for the worker); the warnings of a compile travel with its answer
and the caller shows them.  The caller never blocks on the pipes: it
polls (``select`` with a zero timeout) when a call meets a kernel that is not
ready, so it needs no thread of its own either, which keeps ``fork`` simple.
"""
from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import warnings
from typing import Any, List, Optional

__all__ = ["Client", "available", "IDLE_S", "NICE", "PROTOCOL"]

#: Bumped when the messages change: a worker that says another protocol is not used.
PROTOCOL = 1
#: A worker with nothing to do for this many seconds exits (the caller starts another when needed).
IDLE_S = 30.0
#: The worker's priority below the caller's (``os.nice``).
NICE = 10

_HEADER = struct.Struct("<Q")

# The worker's first lines run before poolkit can be imported: they set sys.path to the caller's.
# It lowers its priority first of all: its imports (0.6 s) must not slow the caller's first calls.
_BOOT = (f"import os\ntry:\n    os.nice({NICE})\nexcept (AttributeError, OSError):\n    pass\n"
         "import sys, json; sys.path[:] = json.loads(sys.argv[1])\n"
         "from poolkit.backends.numba.worker_main import main; main()")


def available() -> bool:
    """Whether this platform can run a compile worker (POSIX pipes and ``select``; a Python executable)."""
    return os.name == "posix" and bool(sys.executable) and hasattr(select, "select")


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Reader:
    """Frames out of a byte stream that arrives in pieces."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes) -> List[Any]:
        self.buffer += data
        out = []
        while len(self.buffer) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + n:
                break
            out.append(pickle.loads(bytes(self.buffer[_HEADER.size:_HEADER.size + n])))
            del self.buffer[:_HEADER.size + n]
        return out


# --------------------------------------------------------------------------- #
# the caller's side
# --------------------------------------------------------------------------- #
class Client:
    """One compile worker process, seen from the process that uses it.

    ``config``: what the worker needs before its first request (``cache``: the cache folder,
    a :func:`.cache.cache_folder` pair; ``idle_s``: when to exit idle, default :data:`IDLE_S`).
    :meth:`send` queues a message without blocking; :meth:`receive` returns the
    worker's messages that have arrived (waiting at most ``timeout`` seconds for
    the first).  ``dead`` is True once the worker's output has ended.
    """

    def __init__(self, config: dict):
        self.dead = False
        self._reader = _Reader()
        self._out = bytearray()
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _json_path()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, close_fds=True, bufsize=0)
        self.pid = self.proc.pid
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._win = self.proc.stdin.fileno()
        self._rin = self.proc.stdout.fileno()
        os.set_blocking(self._win, False)
        os.set_blocking(self._rin, False)
        self.send(("config", dict(config, protocol=PROTOCOL)))

    def send(self, message: Any) -> None:
        """Queue ``message`` for the worker and write what the pipe takes now."""
        if not self.dead:
            self._out += _frame(message)
            self._flush()

    def _flush(self) -> None:
        while self._out and not self.dead:
            try:
                n = os.write(self._win, self._out)
            except BlockingIOError:
                return
            except OSError:                     # the worker is gone: receive() will find out
                self._out.clear()
                return
            del self._out[:n]

    def receive(self, timeout: float = 0.0) -> List[Any]:
        """The messages that have arrived; waits up to ``timeout`` seconds if none has."""
        if self.dead:
            return []
        self._flush()
        out: List[Any] = []
        wait = timeout
        while True:
            try:
                ready, _, _ = select.select([self._rin], [], [], wait)
            except (OSError, ValueError):
                ready = []
                self.dead = True
            if not ready:
                return out
            try:
                data = os.read(self._rin, 1 << 20)
            except BlockingIOError:
                return out
            except OSError:
                data = b""
            if not data:
                self.dead = True
                self._reap()
                return out
            out += self._reader.feed(data)
            wait = 0.0

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:      # output closed but not exited yet: leave it
                pass

    def _detach(self):
        """Mark this client dead and close this process's ends of the pipes; the process object, if any."""
        self.dead = True
        proc, self.proc = self.proc, None
        if proc is not None:
            for f in (proc.stdin, proc.stdout):
                try:
                    if f is not None:
                        f.close()          # this process's copies only: a fork's parent keeps its own
                except OSError:
                    pass
        return proc

    def close(self) -> None:
        """Close this process's ends of the pipes; the worker finishes what it was asked, then exits."""
        proc = self._detach()
        if proc is None:
            return
        # A worker still finishing its compiles is not an error: no "still running" warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del proc

    def abandon(self) -> None:
        """In a forked child: the worker is the parent's. Close the inherited pipe ends, touch nothing else."""
        proc = self._detach()
        if proc is not None:
            proc.returncode = 0            # not this process's child: never wait for it here


def _json_path() -> str:
    import json

    return json.dumps([p for p in sys.path if isinstance(p, str)])


# --------------------------------------------------------------------------- #
# the worker's side
# --------------------------------------------------------------------------- #
def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError:                    # the caller is gone
            return False
        view = view[n:]
    return True


def _read_frames(fd: int, reader: _Reader, inbox: list, cond: threading.Condition) -> None:
    """The worker's reader thread: requests into ``inbox``; None last, when the caller's end closes."""
    while True:
        try:
            data = os.read(fd, 1 << 20)
        except OSError:
            data = b""
        with cond:
            if not data:
                inbox.append(None)
                cond.notify()
                return
            inbox.extend(reader.feed(data))
            cond.notify()
