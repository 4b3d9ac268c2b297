"""The region plan: a pyramid on disk cut into region tasks that fit a memory target.

A *stage* reads one level (0, the input, or the last level an earlier stage stored) region by
region; each *region task* reads its region once, computes as many levels as its region makes
whole output units of, and writes them (stage 1 also writes level 0). Regions are aligned so
that every output unit (a shard, or a chunk when not sharded) of every level a stage writes lies
in exactly one region: one writer per file, so tasks never coordinate. A stage takes the most
levels whose smallest aligned region still fits the per-task budget (``memory / workers``); the
next stage starts from its last level. The task count is the number of regions, about
``N0 * (1 + 1/4**k + ...)`` for ``N0`` regions of level 0 and ``k`` levels per stage in 2-D,
whatever the number of chunks and levels.

Memory of one task (:func:`task_bytes`): its region, the levels it computes, the kernels'
scratch (:func:`kernel_scratch`), two chunks of I/O buffers and, when level-0 chunks are copied
as stored, their bytes. The plan's peak is ``workers`` tasks at once; the process adds a fixed
overhead (the interpreter, NumPy, Numba, zarr: about 0.2 GiB), whatever the input's size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .spec import Spec

__all__ = ["Stage", "Plan", "make_plan", "MemoryTooSmall", "kernel_scratch", "task_bytes", "compute_block",
           "DEFAULT_MEMORY",
           "FIXED_OVERHEAD"]

#: The default memory target: with the interpreter's ~0.2 GiB, peak RSS stays below 0.5 GiB.
DEFAULT_MEMORY = 256 * 2**20
#: What the process holds besides the tasks (measured: Python, NumPy, Numba kernels, zarr).
FIXED_OVERHEAD = 200 * 2**20


class MemoryTooSmall(ValueError):
    """The memory target cannot hold one region; the message names the smallest that works."""

    def __init__(self, message: str, smallest: int):
        super().__init__(message)
        self.smallest = smallest


def kernel_scratch(block_shape: Sequence[int], dtype, steps: Sequence[Spec]) -> int:
    """Bytes ``reduce_levels(block, steps)`` allocates beyond its block and results (an upper bound).

    The bound is that of reduce_levels' NumPy path, which serves the calls whose kernel is not
    compiled yet (measured with tracemalloc): integer means convert the block to float32 and keep
    int64 sums (9x an 8-bit block, 4.5x a 16-bit one, 3.5x wider ones); float means, max, min and
    nearest about a third of the block; mode sorts windows in batches of 2**20 with int64
    bookkeeping, about 45 bytes per element of the batch. The compiled kernels need a few rows
    per thread beyond their outputs.
    tests/test_region_plan.py checks the bound against tracemalloc, so a kernel that needs
    more fails there.
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(block_shape))
    nbytes = n * dtype.itemsize
    method = steps[0].method
    if method == "mean" and dtype.kind in "biu":
        return int(nbytes * {1: 9.0, 2: 4.5}.get(dtype.itemsize, 3.5)) + (1 << 16)
    if method == "mode":
        taps = max(int(np.prod(s.kernel)) for s in steps)
        batch = min(n, (2**20) * taps)
        return int(batch * (40 + 2 * dtype.itemsize)) + nbytes + (1 << 16)
    return nbytes // 2 + (1 << 16)


@dataclass(frozen=True)
class Stage:
    """Regions of level ``source`` that compute levels ``source + 1 .. last`` (and write level 0 too
    when ``source == 0``)."""

    source: int
    last: int
    region: Tuple[int, ...]         # region shape, in elements of the source level (clipped)
    grid: Tuple[int, ...]           # regions per axis
    task_bytes: int                 # estimated peak of one task

    @property
    def count(self) -> int:
        return int(np.prod(self.grid))

    @property
    def writes(self) -> Tuple[int, ...]:
        """The levels this stage writes."""
        first = 0 if self.source == 0 else self.source + 1
        return tuple(range(first, self.last + 1))

    def box(self, index: int, shape: Sequence[int]) -> Tuple[slice, ...]:
        """Region ``index`` (C order over :attr:`grid`), in source-level indices."""
        idx = np.unravel_index(index, self.grid)
        return tuple(slice(int(i) * r, min((int(i) + 1) * r, n)) for i, r, n in zip(idx, self.region, shape))


@dataclass(frozen=True)
class Plan:
    """Stages of region tasks for one pyramid (see the module's docstring)."""

    shapes: Tuple[Tuple[int, ...], ...]               # per level, level 0 first
    steps: Tuple[Spec, ...]                            # level k + 1 = steps[k] of level k
    chunks: Tuple[Tuple[int, ...], ...]               # per level
    shards: Tuple[Optional[Tuple[int, ...]], ...]     # per level (None: not sharded)
    dtype: str
    memory: int
    workers: int
    stages: Tuple[Stage, ...] = field(default=())

    @property
    def tasks(self) -> int:
        return sum(s.count for s in self.stages)

    @property
    def peak(self) -> int:
        """Expected peak of the tasks: ``workers`` of the largest at once."""
        return max((s.task_bytes for s in self.stages), default=0) * min(self.workers, max(
            (s.count for s in self.stages), default=1))

    def unit(self, level: int) -> Tuple[int, ...]:
        return self.shards[level] or self.chunks[level]

    def span(self, source: int, level: int) -> Tuple[int, ...]:
        """Per axis, elements of level ``source`` per element of ``level``."""
        span = [1] * len(self.shapes[0])
        for step in self.steps[source:level]:
            span = [s * f for s, f in zip(span, step.factors)]
        return tuple(span)

    def level_box(self, box: Sequence[slice], source: int, level: int) -> Tuple[slice, ...]:
        """The part of ``level`` computed from ``box`` of level ``source``."""
        start = [s.start for s in box]
        stop = [s.stop for s in box]
        for step in self.steps[source:level]:
            start = [v // f for v, f in zip(start, step.factors)]   # multiples of the factors
            stop = [step.next_length(v, a) for a, v in enumerate(stop)]
        return tuple(slice(a, b) for a, b in zip(start, stop))

    def describe(self) -> str:
        """The plan as ``poolkit pyramid --plan`` prints it."""
        itemsize = np.dtype(self.dtype).itemsize
        shape0 = self.shapes[0]
        lines = [f"plan: {_dims(shape0)} {self.dtype} ({human(int(np.prod(shape0)) * itemsize)}), "
                 f"{len(self.steps)} pooled levels, {self.workers} workers, memory target {human(self.memory)}"]
        for k, st in enumerate(self.stages, 1):
            levels = f"levels {st.source + 1}-{st.last}" if st.last > st.source + 1 else f"level {st.last}"
            if st.last == st.source:
                levels = "no pooled level"
            read = int(np.prod(st.region)) * itemsize
            lines.append(f"  stage {k}: reads level {st.source} in {st.count} regions of {_dims(st.region)} "
                         f"({human(read)} each), computes {levels}, writes levels "
                         f"{', '.join(map(str, st.writes))}; at most {human(st.task_bytes)} per task")
        lines.append(f"  tasks: {self.tasks}; expected peak: {human(self.peak)} for the tasks + about "
                     f"{human(FIXED_OVERHEAD)} for the process")
        for k, shape in enumerate(self.shapes):
            shard = f", shards {_dims(self.shards[k])}" if self.shards[k] else ""
            lines.append(f"  level {k}: {_dims(shape)}, chunks {_dims(self.chunks[k])}{shard}")
        return "\n".join(lines)

    def regions(self) -> Iterator[Tuple[int, int]]:
        """Every task as ``(stage index, region index)``, stage by stage."""
        for s, st in enumerate(self.stages):
            for r in range(st.count):
                yield s, r


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _dims(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def compute_block(region: Sequence[int], span: Sequence[int], method: str) -> Tuple[int, ...]:
    """The piece of a region one ``reduce_levels`` call gets: the region cut along its leading axes
    into slabs of at most ``2**21`` elements (``2**19`` for mode), each a multiple of ``span``
    (so every slab starts at a multiple of the stage's factors), at least ``span`` thick.

    Cutting bounds the kernels' scratch memory by the slab, whatever the region's size; slabs
    of the leading axes are contiguous in a C-order region.
    """
    limit = 2**19 if method == "mode" else 2**21
    block = list(region)
    for a in range(len(block)):
        rest = int(np.prod(block[a + 1:])) if a + 1 < len(block) else 1
        fit = max(1, limit // max(1, rest)) // span[a] * span[a]
        if fit >= block[a]:
            break
        block[a] = max(span[a], fit)
        if rest * block[a] <= limit:
            break
    return tuple(block)


def task_bytes(region: Sequence[int], source: int, last: int, steps, dtype, chunks, copy_level0: bool) -> int:
    """Estimated peak bytes of one task of a stage (see the module's docstring)."""
    itemsize = np.dtype(dtype).itemsize
    elems = int(np.prod(region))
    total = elems * itemsize
    shape = tuple(region)
    for step in steps[source:last]:
        shape = step.shape_after(shape, 1)
        total += int(np.prod(shape)) * itemsize
    if last > source:
        span = [1] * len(region)
        for step in steps[source:last]:
            span = [v * f for v, f in zip(span, step.factors)]
        block = compute_block(region, span, steps[source].method)
        total += int(np.prod(block)) * itemsize * 2          # a slab's levels before they are placed
        total += kernel_scratch(block, dtype, steps[source:last])
    biggest = max(int(np.prod(c)) for c in chunks) * itemsize
    total += 2 * biggest                    # a decoded chunk and an encoded one (shards are streamed)
    if copy_level0 and source == 0:
        total += elems * itemsize           # the stored level-0 chunks, kept to be copied
    return total


def _unit(plan_units, spans, shape, source, last) -> Tuple[int, ...]:
    levels = list(range(source + 1, last + 1)) + ([0] if source == 0 else [])
    out = []
    for a, n in enumerate(shape):
        u = 1
        for j in levels:
            u = math.lcm(u, spans[j][a] * plan_units[j][a])
        out.append(u)
    return tuple(out)


def make_plan(shapes: Sequence[Tuple[int, ...]], steps: Sequence[Spec], chunks, shards, dtype, *,
              memory: int = DEFAULT_MEMORY, workers: int = 1, read_chunks: Optional[Sequence[int]] = None,
              copy_level0: bool = False, auto_shards: bool = False) -> Plan:
    """Cut a pyramid into stages of region tasks (see the module's docstring).

    Parameters
    ----------
    shapes : sequence of tuples
        The level shapes, level 0 first (``len(steps) + 1`` of them).
    steps : sequence of Spec
        One per pooled level.
    chunks, shards : sequences, one per level
        Each level's chunk shape, and shard shape or None (multiples of the chunks).
    dtype : dtype
    memory : int
        Bytes all running tasks together may hold.
    workers : int
        Tasks that run at once (threads, processes or cluster threads).
    read_chunks : tuple of ints, optional
        The input's chunks: stage 1's regions align to them too when that fits, so that each
        input chunk is decoded by one task only.
    copy_level0 : bool
        Level-0 chunks are copied as stored (counted in the tasks' memory).
    auto_shards : bool
        Replace ``shards`` by each stage's region footprint on every level it writes (one shard
        per task and level), where that is more than one chunk.

    Returns
    -------
    Plan

    Raises
    ------
    MemoryTooSmall
        When one aligned region of some stage does not fit ``memory / workers``.

    Examples
    --------
    >>> from poolkit.multiscale.spec import Spec
    >>> step = Spec((2, 2), "mean", "partial")
    >>> shapes = [(8192, 8192), (4096, 4096), (2048, 2048), (1024, 1024)]
    >>> plan = make_plan(shapes, [step] * 3, [(1024, 1024)] * 4, [None] * 4, "float32",
    ...                  memory=2**28, workers=2)
    >>> [(st.source, st.last, st.region, st.count) for st in plan.stages]
    [(0, 2, (4096, 4096), 4), (2, 3, (2048, 2048), 1)]
    """
    shapes = tuple(tuple(int(v) for v in s) for s in shapes)
    steps = tuple(steps)
    chunks = tuple(tuple(int(v) for v in c) for c in chunks)
    shards = tuple(None if s is None else tuple(int(v) for v in s) for s in shards)
    workers = max(1, int(workers))
    budget = memory // workers
    units = [s or c for s, c in zip(shards, chunks)]
    stages: List[Stage] = []
    source = 0
    n_levels = len(steps)
    while True:
        spans = _spans(steps, source, len(shapes), len(shapes[0]))
        best = None
        smallest = None
        fitting = []
        for last in range(source + 1, n_levels + 1) if n_levels else [0]:
            region = _unit(units, spans, shapes[source], source, last)
            if source == 0 and read_chunks is not None:
                aligned = tuple(math.lcm(r, c) for r, c in zip(region, read_chunks))
                cand = [aligned, region]
            else:
                cand = [region]
            fits = None
            for r in cand:
                clipped = tuple(min(v, n) for v, n in zip(r, shapes[source]))
                b = task_bytes(clipped, source, last, steps, dtype, chunks, copy_level0)
                if last == source + 1 or not n_levels:
                    smallest = b if smallest is None else min(smallest, b)
                if b <= budget:
                    fits = (clipped, b)
                    break
            if fits is None:
                break
            fitting.append((last, fits[0], fits[1]))
        # The most levels whose regions still give every worker two tasks (the stage's work spread
        # over all cores), else the most levels.
        spread = [f for f in fitting if int(np.prod([-(-n // r) for n, r in zip(shapes[source], f[1])])) >= 2 * workers]
        best = (spread or fitting)[-1] if fitting else None
        if best is None:
            # Every stage can take one level once each level's smallest region fits: that much works.
            need = _round_up(workers * max(
                task_bytes(tuple(min(v, n) for v, n in zip(_unit(units, _spans(steps, s, len(shapes), len(shapes[0])),
                                                                  shapes[s], s, s + 1), shapes[s])),
                           s, s + 1, steps, dtype, chunks, copy_level0)
                for s in range(max(1, n_levels))) if n_levels else (smallest or 0) * workers)
            what = f"level {source}" + (" (the input)" if source == 0 else "")
            raise MemoryTooSmall(
                f"`memory`={memory} ({human(memory)}) is too small for one region of {what} with "
                f"{workers} workers: a task needs {human(smallest or 0)}; the smallest memory that fits every level is "
                f"{need} ({human(need)}); or use fewer workers, or smaller chunks or shards.", need)
        last, region, b = best
        grid = tuple(-(-n // r) for n, r in zip(shapes[source], region))
        stages.append(Stage(source, last, region, grid, b))
        if last >= n_levels:
            break
        source = last
    plan = Plan(shapes, steps, chunks, shards, str(np.dtype(dtype)), int(memory), workers, tuple(stages))
    if auto_shards:
        plan = _with_auto_shards(plan, copy_level0)
    return plan


def _spans(steps, source: int, n: int, ndim: int):
    """``spans[j]``: elements of level ``source`` per element of level ``j`` (j >= source)."""
    out: list = [None] * n
    cur = [1] * ndim
    for j in range(source, n):
        out[j] = tuple(cur)
        if j < len(steps):
            cur = [c * f for c, f in zip(cur, steps[j].factors)]
    if source:
        out[0] = None
    return out


def _round_up(n: int) -> int:
    """``n`` rounded up to a whole KiB."""
    return -(-n // 1024) * 1024


def _with_auto_shards(plan: Plan, copy_level0: bool) -> Plan:
    """Each written level's shard = the footprint of its stage's region (when more than a chunk)."""
    shards = list(plan.shards)
    for st in plan.stages:
        box = tuple(slice(0, r) for r in st.region)
        for j in st.writes:
            foot = plan.level_box(box, st.source, j) if j else box
            chunk = plan.chunks[j]
            shard = tuple(-(-(s.stop - s.start) // c) * c for s, c in zip(foot, chunk))
            shards[j] = None if shard == chunk else shard
    return Plan(plan.shapes, plan.steps, plan.chunks, tuple(shards), plan.dtype, plan.memory, plan.workers,
                plan.stages)
