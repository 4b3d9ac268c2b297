"""The compile worker's process: read requests, compile, answer (the protocol: :mod:`.worker`).

Kept apart from :mod:`.worker`, the caller's side, because it compiles through
:mod:`.jit`, which imports :mod:`.worker`: the two sides need not import each other.
"""
from __future__ import annotations

import os
import sys
import threading
import warnings

from . import cache as _cache, jit as _jit
from .worker import IDLE_S, PROTOCOL, _frame, _read_frames, _Reader, _write_all

__all__ = ["main"]


def main() -> None:
    """The worker process: read requests from stdin, compile, answer on stdout (see the module notes)."""
    import signal

    out_fd = os.dup(1)
    os.dup2(2, 1)                          # print() and stray output go to stderr, not into the messages
    sys.stdout = sys.stderr
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is for the caller; the pipe tells us
    except (ValueError, OSError):
        pass
    inbox: list = []
    cond = threading.Condition()
    reader = _Reader()
    threading.Thread(target=_read_frames, args=(0, reader, inbox, cond), daemon=True).start()

    def next_message(timeout):
        with cond:
            if not inbox:
                cond.wait(timeout)
            return inbox.pop(0) if inbox else "idle"

    first = next_message(None)
    if not (isinstance(first, tuple) and first[0] == "config"):
        return
    config = first[1]
    idle_s = float(config.get("idle_s", IDLE_S))
    _cache.use_folder(config.get("cache"))
    memory = _cache.cache_folder()[1] is None
    # A caller that is gone already (it exited right after asking) still gets its kernels into the
    # cache folder; with no folder there is nothing left to do.
    caller_gone = not _write_all(out_fd, _frame(("hello", {"protocol": PROTOCOL, "source_hash": _cache.SOURCE_HASH,
                                                           "target": _jit.target_key(), "pid": os.getpid()})))
    if caller_gone and memory:
        return
    eof = False                            # the caller's end of stdin closed: every request is in
    while True:
        # idle: wait IDLE_S; the caller gone: wait for the rest of its requests, then for none
        message = next_message(0 if eof else None if caller_gone else idle_s)
        if message is None:
            if memory:
                return                     # nothing outlives this process: stop now
            caller_gone = eof = True
            continue
        if message == "idle":
            if eof:
                return                     # everything asked for is done
            _write_all(out_fd, _frame(("bye",)))
            return
        if not (isinstance(message, tuple) and message and message[0] == "compile"):
            continue
        _, rid, spec, argtypes = message
        reply: tuple
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                reply = ("done", rid, _jit.compile_payload(spec, argtypes))
            except BaseException as err:   # a kernel bug: the caller keeps serving with NumPy
                reply = ("failed", rid, f"{type(err).__name__}: {err}")
        # the compiler's warnings, for the caller to show (this process's stderr goes nowhere)
        reply += ([(w.category.__name__, str(w.message)) for w in caught],)
        if not _write_all(out_fd, _frame(reply)):
            caller_gone = True
            if memory:
                return
