"""Backward (and forward) are deterministic: the same bits across runs and thread counts.

Each case runs twice with 1 thread and twice with 2 threads (``poolkit.threads``)
on inputs large enough for the numba backend's parallel kernels (at least 2**16
elements), with overlapping windows so that several windows add into the same
input gradient.  All results must be bit-identical (compared as unsigned ints).
"""
from __future__ import annotations

import re

import numba
import numpy as np
import pytest

import poolkit
from helpers import bits, make_input

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

N_ELEMENTS = 1 << 16

# name: (op, shape (channels-first unless data_format says otherwise), kwargs)
CASES = {
    "max2d-3x3s2-first": ("max", 2, (4, 4, 64, 64), dict(kernel_size=3, stride=2, padding=1)),
    "max2d-same-NHWC": ("max", 2, (4, 64, 64, 4), dict(kernel_size=3, stride=1, padding="same",
                                                      data_format="NHWC")),
    "max3d-pairs-dilated": ("max", 3, (2, 2, 16, 32, 32), dict(kernel_size=(2, 3, 3), stride=(1, 2, 1),
                                                             padding=((1, 2), (0, 3), (2, 2)), dilation=2)),
    "max1d-ignore": ("max", 1, (8, 8, 1024), dict(kernel_size=5, stride=2, padding=2, nan_policy="ignore")),
    "avg2d-3x3s1-first": ("avg", 2, (4, 4, 64, 64), dict(kernel_size=3, stride=1, padding=1)),
    "avg3d-same-NDHWC": ("avg", 3, (2, 16, 32, 32, 2), dict(kernel_size=3, stride=(1, 2, 1), padding="same",
                                                            count_include_pad=False, data_format="NDHWC")),
    "avg1d-pairs-ceil": ("avg", 1, (8, 8, 1024), dict(kernel_size=4, stride=3, padding=((2, 5),),
                                                      ceil_mode=True, count_include_pad=False)),
    "avg2d-ignore-NHWC": ("avg", 2, (4, 64, 64, 4), dict(kernel_size=(3, 2), stride=1, padding=((1, 1), (0, 1)),
                                                        nan_policy="ignore", data_format="NHWC")),
}


def _run(op, rank, x, kw, g_seed=0):
    """Forward and backward through the layer and (max) the functional pair; all results as raw bits."""
    layer_cls = getattr(poolkit, f"{'Max' if op == 'max' else 'Avg'}Pool{rank}d")
    layer = layer_cls(backend="numba", **kw)
    y = layer(x)
    g = np.random.default_rng(g_seed).standard_normal(y.shape).astype(x.dtype)
    out = {"y": bits(y), "layer_grad": bits(layer.backward(g))}
    fmt = {k: v for k, v in kw.items() if k == "data_format"}
    if op == "max":
        _, idx = getattr(poolkit, f"max_pool{rank}d")(x, return_indices=True, backend="numba", **kw)
        out["indices"] = idx
        out["fn_grad"] = bits(getattr(poolkit, f"max_pool{rank}d_backward")(g, idx, x.shape, backend="numba",
                                                                            **fmt))
    elif kw.get("nan_policy", "propagate") == "propagate":
        args = {k: v for k, v in kw.items() if k in ("kernel_size", "stride", "padding", "ceil_mode",
                                                      "count_include_pad", "data_format")}
        out["fn_grad"] = bits(getattr(poolkit, f"avg_pool{rank}d_backward")(g, x.shape, backend="numba", **args))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_same_bits_across_runs_and_threads(name, dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here (NUMBA_NUM_THREADS=1)")
    op, rank, shape, kw = CASES[name]
    values = "nan" if kw.get("nan_policy") == "ignore" else "normal"
    x = make_input(np.random.default_rng(1), shape, dtype, values)
    assert x.size >= N_ELEMENTS
    from poolkit.backends.numba import loops as numba_loops
    assert x.size >= getattr(numba_loops, "PARALLEL_MIN_ELEMENTS", 0), "input too small for the parallel kernels"
    runs = []
    for n in (1, 1, 2, 2):
        with poolkit.threads(n):
            assert poolkit.get_num_threads() == n
            runs.append(_run(op, rank, x, kw))
    first = runs[0]
    for i, r in enumerate(runs[1:], start=1):
        assert r.keys() == first.keys()
        for key in first:
            assert np.array_equal(r[key], first[key]), f"run {i} ({'2' if i >= 2 else '1'} threads): {key} differs"
    # max pooling's gradient is the same bits as the img2col backend's (an independent implementation)
    if op == "max":
        layer = getattr(poolkit, f"MaxPool{rank}d")(backend="img2col", **kw)
        y = layer(x)
        g = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
        assert np.array_equal(bits(layer.backward(g)), first["layer_grad"])


def test_threads_context_restores_the_count():
    before = poolkit.get_num_threads()
    with poolkit.threads(1):
        assert poolkit.get_num_threads() == 1
    assert poolkit.get_num_threads() == before


SPIN_PROBE = """
import json, os, numpy as np, poolkit
with poolkit.threads(2):
    poolkit.max_pool2d(np.ones((4, 4, 64, 64)), 2, backend="numba")   # threaded: the pool starts
print(json.dumps({"layer": __import__("numba").threading_layer(),
                  "left": {k: os.environ.get(k) for k in ("GOMP_SPINCOUNT", "KMP_BLOCKTIME")}}))
"""


@pytest.mark.parametrize("user", [None, "OMP_WAIT_POLICY=active", "GOMP_SPINCOUNT=123"])
def test_openmp_threads_spin_briefly_unless_the_user_says_otherwise(user):
    """poolkit starts Numba's OpenMP runtime with a short spin (README, "Backends and threads"),
    leaves the environment as it was, and keeps a wait policy the user set."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", NUMBA_NUM_THREADS="2", PYTHONPATH=os.pathsep.join(sys.path))
    if user:
        k, v = user.split("=")
        env[k] = v
    proc = subprocess.run([sys.executable, "-c", SPIN_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["layer"] != "omp" or "GOMP_SPINCOUNT" not in proc.stderr:
        pytest.skip(f"Numba's threading layer here is {res['layer']!r}, not GNU OpenMP")
    left = {"GOMP_SPINCOUNT": "123" if user == "GOMP_SPINCOUNT=123" else None, "KMP_BLOCKTIME": None}
    assert res["left"] == left, "the environment must be left as it was"
    shown = re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr).group(1)
    from poolkit.core.threads import SPIN_ENV
    if user is None:
        assert shown == SPIN_ENV["GOMP_SPINCOUNT"]
    elif user == "GOMP_SPINCOUNT=123":
        assert shown == "123"
    else:
        assert shown != SPIN_ENV["GOMP_SPINCOUNT"]     # the runtime's own count for an active policy


def test_threads_are_used_while_they_measure_faster():
    """A kernel call big enough for threads runs threaded first, then serial, then whichever of the
    two measured faster, probing the other way now and then -- less often the slower it is."""
    from poolkit.backends.numba.jit import _PROBE, _PROBE_MAX, _PROBE_SHARE, _Choice

    c = _Choice()
    for way, seconds in ((True, 1.0), (True, 5e-3), (False, 1.0), (False, 1e-3)):
        assert c.threaded() is way             # two calls each way; the first of each is not timed
        c.record(way, seconds)
    # serial 5x faster: serial, with rare threaded probes
    ways = []
    for _ in range(4 * _PROBE_SHARE * 5):
        way = c.threaded()
        c.record(way, 5e-3 if way else 1e-3)
        ways.append(way)
    probes = sum(ways)
    assert 0 < probes <= len(ways) // min(_PROBE_MAX, _PROBE_SHARE * 5) + 1
    for _ in range(2 * 5):                      # threads become fast (the other core freed up)
        c.record(True, 0.2e-3)
    ways = [c.threaded() for _ in range(2 * _PROBE)]
    assert sum(ways) >= len(ways) - 2, "the faster way must win once its times say so"


def test_threaded_and_serial_runs_of_one_call_give_the_same_bits():
    """The same large call, again and again: threaded, serial and probes alike give the same bits."""
    x = make_input(np.random.default_rng(5), (4, 8, 64, 64), np.float64, "ties")
    with poolkit.threads(2):
        runs = []
        for _ in range(6):
            y, idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True, backend="numba")
            gx = poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend="numba")
            runs.append((bits(y), bits(gx)))
    assert all(np.array_equal(a, b) for r in runs[1:] for a, b in zip(r, runs[0]))
    from poolkit.backends.numba import fast
    forward = fast._KERNELS[(3, 3, 2)]["max_forward"]
    assert any(c.times[0] and c.times[1] for c in forward._choices.values()), "both ways must have run"
