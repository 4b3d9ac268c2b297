"""Fuzzing the public boundary and the layers' saved state, every backend, in a child process.

Hypothesis draws pooling arguments -- huge integers (past 2**31, 2**63 and
2**64), per-side padding, dilation, ``ceil_mode`` -- and altered saved state
of layers.  Every call must either give the same result on every backend or
raise a clean ``ValueError``/``TypeError`` (``MemoryError`` for a legal but
enormous output, under an 8 GiB address-space cap).  The fuzzing runs in a
child process, so a crash (a segfault from an out-of-bounds access) fails the
test instead of ending the run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import poolkit

SRC = os.path.dirname(os.path.dirname(os.path.abspath(poolkit.__file__)))

PRELUDE = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
import numpy as np
import poolkit
from hypothesis import HealthCheck, given, settings, strategies as st

BACKENDS = ("reference", "img2col", "numba")
CLEAN = (ValueError, TypeError, MemoryError)
# small values, and values past every integer width the code might use
HUGE = st.sampled_from([2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64, -2**63, -1])
INT = st.one_of(st.integers(0, 4), HUGE)
PAIR = st.one_of(INT, st.tuples(INT, INT))
SIDE = st.one_of(st.integers(0, 3), st.sampled_from([2**30, 2**31, 2**62, 2**63]))
PADDING = st.one_of(PAIR, st.tuples(st.tuples(SIDE, SIDE), st.tuples(SIDE, SIDE)),
                    st.sampled_from(["same", "valid"]))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def outcome(fn):
    try:
        return fn()
    except CLEAN as exc:
        return type(exc)


def same(a, b):
    if isinstance(a, type) or isinstance(b, type):
        # a MemoryError on one backend and a result on another is allowed (different temporaries)
        return a is b or MemoryError in (a, b)
    return all((u is None and v is None) or (u.dtype == v.dtype and np.array_equal(u, v, equal_nan=True))
               for u, v in zip(a, b))
"""

ARGUMENTS = PRELUDE + """
@SETTINGS
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 5), st.integers(1, 5)),
       k=PAIR, s=st.one_of(st.none(), PAIR), p=PADDING, d=PAIR, ceil=st.booleans(),
       op=st.sampled_from(["max", "avg"]), seed=st.integers(0, 2**16))
def check(shape, k, s, p, d, ceil, op, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    x.setflags(write=False)                                  # no backend may write to the input

    def run(backend):
        if op == "max":
            y, idx = poolkit.max_pool2d(x, k, s, p, d, ceil, return_indices=True, backend=backend)
            g = poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend=backend)
            return y, idx, g
        y = poolkit.avg_pool2d(x, k, s, p, ceil, backend=backend)
        g = poolkit.avg_pool2d_backward(np.ones_like(y), x.shape, k, s, p, ceil, backend=backend)
        return y, None, g

    results = [outcome(lambda: run(b)) for b in BACKENDS]
    for b, r in zip(BACKENDS[1:], results[1:]):
        assert same(results[0], r), (b, shape, k, s, p, d, ceil, op, results[0], r)


check()
print("ok")
"""

STATE = PRELUDE + """
@SETTINGS
@given(k=st.integers(1, 4), s=st.integers(1, 3), pad=st.integers(0, 2), backend=st.sampled_from(BACKENDS),
       dtype=st.sampled_from(["uint8", "int32", "int64"]), at=st.integers(0, 10**6),
       value=st.one_of(st.integers(-300, 300), HUGE), seed=st.integers(0, 2**16))
def check(k, s, pad, backend, dtype, at, value, seed):
    pad = min(pad, k // 2)
    x = np.random.default_rng(seed).standard_normal((2, 2, 7, 6))
    layer = poolkit.MaxPool2d(k, s, pad, backend=backend)
    y = layer(x)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    good = layer.backward(g)
    saved = layer._ctx.saved
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        return
    altered = saved.astype(dtype)                            # a wrong dtype is an error of its own
    altered.flat[at % altered.size] = value
    layer._ctx.saved = altered
    res = outcome(lambda: layer.backward(g))
    if altered.dtype != saved.dtype:
        assert res in (ValueError, TypeError), (dtype, saved.dtype, res)
        return
    if np.array_equal(altered, saved):
        assert not isinstance(res, type) and np.array_equal(res, good)
    else:
        # another valid tap of the same window, or a clean error: never a crash or a silent write elsewhere
        assert res is ValueError or (not isinstance(res, type) and res.shape == good.shape), res


check()
print("ok")
"""


def _child(code: str, examples: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               POOLKIT_COMPILE="foreground")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code).replace("EXAMPLES", str(examples))],
                          env=env, capture_output=True, text=True, timeout=1200)


def test_fuzz_arguments_on_every_backend():
    proc = _child(ARGUMENTS, 300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), \
        f"rc {proc.returncode} (negative: killed by a signal)\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def test_fuzz_layer_state_on_every_backend():
    proc = _child(STATE, 300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), \
        f"rc {proc.returncode} (negative: killed by a signal)\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
