"""The region plan (multiscale.plan): properties by hypothesis, and its memory bound measured."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolkit.multiscale.plan import MemoryTooSmall, make_plan
from poolkit.multiscale.spec import Spec, shapes_of


@st.composite
def plans(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, [400, 120, 40][ndim - 1]), min_size=ndim, max_size=ndim)))
    n_levels = draw(st.integers(0, 4))
    steps = []
    for _ in range(n_levels):
        f = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
        if all(v == 1 for v in f):
            f = (2,) + f[1:]
        steps.append(Spec(f, draw(st.sampled_from(["mean", "mode", "max"])), draw(st.sampled_from(["partial", "trim"]))))
    shapes = shapes_of(shape, steps)
    if any(0 in s for s in shapes):
        steps = [Spec(s.factors, s.method, "partial") for s in steps]
        shapes = shapes_of(shape, steps)
    chunk = tuple(draw(st.integers(2, 16)) for _ in range(ndim))
    chunks = [tuple(max(1, min(c, n)) for c, n in zip(chunk, s)) for s in shapes]
    sharded = draw(st.booleans())
    mult = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    shards = []
    for s, c in zip(shapes, chunks):
        sh = tuple(max(ci, min(ci * m, -(-n // ci) * ci)) for ci, m, n in zip(c, mult, s)) if sharded else None
        shards.append(None if sh == c else sh)
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    memory = draw(st.sampled_from([2**17, 2**19, 2**21, 2**24]))
    workers = draw(st.integers(1, 3))
    read_chunks = tuple(draw(st.integers(1, 50)) for _ in range(ndim)) if draw(st.booleans()) else None
    auto = draw(st.booleans())
    return shapes, steps, chunks, shards, dtype, memory, workers, read_chunks, auto


def covered_units(box, unit, level_shape):
    """The units of ``unit`` that ``box`` covers, checking that it covers them whole."""
    for s, u, n in zip(box, unit, level_shape):
        assert s.start % u == 0, (box, unit)
        assert s.stop % u == 0 or s.stop == n, (box, unit, level_shape)
    import itertools

    return set(itertools.product(*[range(s.start // u, -(-s.stop // u)) for s, u in zip(box, unit)]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_output_unit_has_one_writer_and_tasks_fit(case):
    shapes, steps, chunks, shards, dtype, memory, workers, read_chunks, auto = case
    try:
        plan = make_plan(shapes, steps, chunks, shards, dtype, memory=memory, workers=workers,
                         read_chunks=read_chunks, auto_shards=auto)
    except MemoryTooSmall as exc:
        # The smallest memory the error names does work.
        plan = make_plan(shapes, steps, chunks, shards, dtype, memory=exc.smallest, workers=workers,
                         read_chunks=read_chunks, auto_shards=auto)
        memory = exc.smallest
    # Stages chain: each starts where the one before ended, and together they write every level once.
    assert plan.stages[0].source == 0 and plan.stages[-1].last == len(steps)
    for a, b in zip(plan.stages, plan.stages[1:]):
        assert b.source == a.last
    written = [j for s in plan.stages for j in s.writes]
    assert written == list(range(len(shapes)))
    for stage in plan.stages:
        assert stage.task_bytes <= memory // workers              # no task holds more than the target
        span = plan.span(stage.source, stage.last)
        for j in stage.writes:
            unit = plan.unit(j)
            seen = set()
            for r in range(stage.count):
                box = stage.box(r, shapes[stage.source])
                assert all(s.start % f == 0 for s, f in zip(box, span))      # reduce_levels' block rule
                part = plan.level_box(box, stage.source, j) if j else box
                units = covered_units(part, unit, shapes[j])
                assert not units & seen                         # exactly one writer per unit
                seen |= units
            assert len(seen) == int(np.prod([-(-n // u) for n, u in zip(shapes[j], unit)]))   # all of them


def test_task_memory_stays_below_the_estimate(tmp_path):
    # tracemalloc sees NumPy's allocations: a task's peak, reading, computing and writing.
    zarr = pytest.importorskip("zarr")
    from poolkit.multiscale import ngff
    from poolkit.multiscale.regions import Job, run_task

    rng = np.random.default_rng(1)
    cases = [(rng.integers(0, 4096, (512, 384)).astype(np.uint16), "mean", 64),
             (rng.integers(0, 9, (64, 64, 48)).astype(np.uint8), "mode", 16),
             (rng.standard_normal((300, 200)).astype(np.float32), "max", 32)]
    for k, (x, method, chunk) in enumerate(cases):
        src = zarr.create_array(str(tmp_path / f"in{k}.zarr"), shape=x.shape, chunks=(chunk,) * x.ndim, dtype=x.dtype)
        src[...] = x
        out = tmp_path / f"out{k}.zarr"
        args = dict(ngff._DOC_ARGS, method=method, memory=2**22, workers=1)
        st = ngff._settings(src, **args)
        plan = ngff._plan(st)
        root = zarr.open_group(str(out), mode="w")
        ngff._create_arrays(root, st, 3)
        job = Job(st.source, str(out), plan, copy_level0=st.copy_level0)
        for s, r in plan.regions():
            run_task(job, s, r)                          # warm: kernels compiled, files opened
        for s, r in plan.regions():
            tracemalloc.start()
            run_task(job, s, r)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak <= plan.stages[s].task_bytes, (method, s, r, peak, plan.stages[s].task_bytes)
        g = zarr.open_group(str(out), mode="r")
        import poolkit

        for j, want in enumerate(poolkit.pyramid(x, len(plan.steps), method=method)):
            np.testing.assert_array_equal(g[str(j)][...], want)


@pytest.mark.parametrize("module", ["spec", "plan", "chunkio", "sources", "ngff"])
def test_docstring_examples(module):
    import doctest
    import importlib

    pytest.importorskip("zarr")
    mod = importlib.import_module(f"poolkit.multiscale.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
