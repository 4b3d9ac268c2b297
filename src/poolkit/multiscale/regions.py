"""Region tasks: run a :class:`~poolkit.multiscale.plan.Plan` on threads, processes or a Dask cluster.

One task (:func:`run_task`) reads one region, writes level 0 (stage 1), computes its levels
slab by slab with :func:`~poolkit.multiscale.reduce.reduce_levels` and writes them. Tasks are
submitted by :func:`execute`, at most a few per worker at a time (memory stays bounded: no graph
holds chunks), stage after stage (a stage reads what the one before it stored). Every finished
task is appended to a :class:`Journal` after its files are written, so an interrupted run can
skip it when resumed.
"""
from __future__ import annotations

import os
import sys
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Set, Tuple

import numpy as np

from .chunkio import FastReader, FastWriter, chunk_boxes, layout_of
from .plan import Plan, compute_block
from .reduce import reduce_levels

__all__ = ["Job", "run_task", "execute", "Journal", "SCHEDULERS", "task_threads"]

SCHEDULERS = ("threads", "processes", "synchronous")
JOURNAL = "poolkit-journal.txt"


def task_threads() -> int:
    """Kernel threads per task: ``poolkit.engine.lazy.task_threads()`` once Dask is imported, else 1.

    Importing Dask only to read its config would cost ~55 MB of every run's memory; a user who
    set ``dask.config`` ``"poolkit.threads"`` has imported it.
    """
    if "dask" not in sys.modules:
        return 1
    from ..engine.lazy import task_threads as _tt

    return _tt()


@dataclass
class Job:
    """Everything a task needs, picklable: the source, the output directory (or store) and the plan."""

    source: Any
    store: Any                      # a directory path, or a zarr store (threads only)
    plan: Plan
    copy_level0: bool = False
    fsync: bool = False
    direct_io: bool = True          # chunk files written with O_DIRECT where the file system allows it
    threads: int = 1
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class _ZarrWriter:
    """Writes through zarr-python, for stores chunkio does not write directly."""

    def __init__(self, arr):
        self.arr = arr

    def write(self, box, data, raw=None) -> int:
        self.arr[tuple(box)] = data
        return data.nbytes


class _IO:
    """The output levels' readers and writers of one job, opened once per process."""

    def __init__(self, job: Job):
        import zarr

        self.job = job
        self.root = zarr.open_group(job.store, mode="r+")
        self._writers: Dict[int, object] = {}
        self._readers: Dict[int, object] = {}
        self._lock = threading.Lock()

    def _array(self, level: int):
        return self.root[str(level)]

    def writer(self, level: int):
        with self._lock:
            if level not in self._writers:
                arr = self._array(level)
                lay = layout_of(arr)
                self._writers[level] = FastWriter(lay, self.job.fsync, self.job.direct_io) if lay is not None else _ZarrWriter(arr)
            return self._writers[level]

    def reader(self, level: int):
        with self._lock:
            if level not in self._readers:
                arr = self._array(level)
                lay = layout_of(arr)
                self._readers[level] = FastReader(lay, f"level {level}") if lay is not None else arr
            return self._readers[level]

    def read(self, level: int, box):
        r = self.reader(level)
        return r.read(box) if isinstance(r, FastReader) else np.asarray(r[tuple(box)])


_OPEN: Dict[str, _IO] = {}
_OPEN_LOCK = threading.Lock()


def _io(job: Job) -> _IO:
    with _OPEN_LOCK:
        io = _OPEN.get(job.token)
        if io is None:
            if len(_OPEN) > 8:
                _OPEN.clear()
            io = _OPEN[job.token] = _IO(job)
        return io


def release(job: Job) -> None:
    """Forget the job's open arrays in this process."""
    with _OPEN_LOCK:
        _OPEN.pop(job.token, None)


def compute_levels(plan: Plan, stage, data: np.ndarray, threads: int = 1):
    """Levels ``stage.source + 1 .. stage.last`` of the region ``data``, slab by slab."""
    steps = plan.steps[stage.source:stage.last]
    region = tuple(slice(0, n) for n in data.shape)
    span = plan.span(stage.source, stage.last)
    block = compute_block(data.shape, span, steps[0].method)
    if block == data.shape:
        return list(reduce_levels(data, steps, threads=threads))
    outs = []
    shape = data.shape
    for step in steps:
        shape = step.shape_after(shape, 1)
        outs.append(np.empty(shape, dtype=data.dtype))
    for _, part in chunk_boxes(region, block):
        levels = reduce_levels(data[part], steps, threads=threads)
        for j, lv in enumerate(levels, stage.source + 1):
            outs[j - stage.source - 1][plan.level_box(part, stage.source, j)] = lv
    return outs


def run_task(job: Job, stage_index: int, region_index: int) -> int:
    """Run one region task: read it, write what it makes; returns the source elements it read.

    Parameters
    ----------
    job : Job
        The source, the output (its arrays already created) and the plan.
    stage_index, region_index : int
        Which task: region ``region_index`` (C order over the stage's grid) of stage ``stage_index``.

    Returns
    -------
    int
        Elements of the source level the task read (for progress).

    Notes
    -----
    Stage 1's tasks read the input and write level 0 first (copying stored chunks when
    ``job.copy_level0``); later stages read the level the stage before them stored. The levels
    are computed slab by slab (:func:`compute_levels`) and written unit by unit; the task
    returns once every file it writes is closed, so its journal line may follow.
    """
    plan = job.plan
    stage = plan.stages[stage_index]
    io = _io(job)
    box = stage.box(region_index, plan.shapes[stage.source])
    if stage.source == 0:
        if job.copy_level0:
            data, raw = job.source.read_raw(box)
        else:
            data, raw = job.source.read(box), None
        io.writer(0).write(box, data, raw)
        raw = None
    else:
        data = io.read(stage.source, box)
    if stage.last > stage.source:
        levels = compute_levels(plan, stage, data, job.threads)
        del data
        for j, lv in zip(range(stage.source + 1, stage.last + 1), levels):
            io.writer(j).write(plan.level_box(box, stage.source, j), lv)
    return int(np.prod([s.stop - s.start for s in box]))


class Journal:
    """The finished tasks of a run, one ``stage region`` line each, appended after their data is written.

    The first line names the plan (a hash of the run's settings); a line cut by a kill (no
    newline) is ignored. ``fsync=True`` flushes each line to the disk.
    """

    def __init__(self, path: str, key: str, fsync: bool = False):
        self.path, self.key, self.fsync = path, key, fsync
        self._fd: Optional[int] = None

    def start(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"poolkit-journal {self.key}\n".encode())
        if self.fsync:
            os.fsync(fd)
        self._fd = fd

    def load(self) -> Optional[Set[Tuple[int, int]]]:
        """The finished tasks, or None when the journal is missing or belongs to another plan."""
        try:
            with open(self.path, "rb") as f:
                text = f.read().decode("ascii", "replace")
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        if not lines or lines[0] != f"poolkit-journal {self.key}":
            return None
        done = set()
        for line in lines[1:-1]:           # the last piece has no newline: cut, or empty
            parts = line.split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                done.add((int(parts[0]), int(parts[1])))
        return done

    def reopen(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def add(self, stage: int, region: int) -> None:
        assert self._fd is not None, "Journal.add before start() or reopen()"
        os.write(self._fd, f"{stage} {region}\n".encode())
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


_JOBS: Dict[str, Job] = {}


def _install(job: Job) -> None:
    """Process-pool initializer: the job arrives once per worker process, not with every task."""
    _JOBS[job.token] = job


def _run_installed(token: str, stage_index: int, region_index: int) -> int:
    return run_task(_JOBS[token], stage_index, region_index)


def _pool(scheduler, workers: int, job: Job):
    """``(submit(fn, *args) -> future, wait(futures) -> (done, pending), close(), in_flight)``."""
    if scheduler == "threads":
        ex = ThreadPoolExecutor(workers, thread_name_prefix="poolkit-region")
        return ex.submit, lambda fs: wait(fs, return_when=FIRST_COMPLETED), lambda: ex.shutdown(cancel_futures=True), workers
    if scheduler == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: forking a process whose threads (zarr's event loop, Numba's) hold locks can hang.
        pex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_install,
                                  initargs=(job,))

        def submit_installed(fn, job_arg, s, r):
            return pex.submit(_run_installed, job.token, s, r)

        return (submit_installed, lambda fs: wait(fs, return_when=FIRST_COMPLETED), lambda: pex.shutdown(cancel_futures=True),
                2 * workers)
    # a distributed.Client
    from distributed import wait as dwait

    client = scheduler

    def submit_to_cluster(fn, *args):
        return client.submit(fn, *args, pure=False)

    def wait_some(fs):
        done, pending = dwait(fs, return_when="FIRST_COMPLETED")
        return set(done), set(pending)

    return submit_to_cluster, wait_some, lambda: None, 2 * workers


def execute(job: Job, scheduler, workers: int, done: Set[Tuple[int, int]],
            on_done: Callable[[int, int, int], None]) -> None:
    """Run every task of ``job.plan`` not in ``done``, stage by stage; ``on_done(stage, region, elements)``
    after each (in this thread). The first failing task's exception is raised once running ones end."""
    if scheduler == "synchronous":
        for s, r in job.plan.regions():
            if (s, r) not in done:
                on_done(s, r, run_task(job, s, r))
        return
    submit, wait_some, close, in_flight = _pool(scheduler, workers, job)
    arg = job
    if not isinstance(scheduler, str):
        arg = scheduler.scatter(job, broadcast=True)      # sent once, not with every task
    try:
        for s, stage in enumerate(job.plan.stages):
            todo = [r for r in range(stage.count) if (s, r) not in done]
            todo.reverse()
            running: Dict[object, int] = {}
            while todo or running:
                while todo and len(running) < in_flight:
                    r = todo.pop()
                    running[submit(run_task, arg, s, r)] = r
                finished, _ = wait_some(list(running))
                for fut in finished:
                    r = running.pop(fut)
                    n = fut.result()            # raises the task's exception
                    on_done(s, r, n)
    finally:
        close()
        if isinstance(scheduler, str):
            release(job)
