"""Whatever serves a call -- a kernel still compiling, a compiled or cached kernel, NumPy -- the bits are the same.

The ``"auto"`` backend answers a call whose Numba kernel is not compiled yet
with the ``img2col`` backend while a compile worker process compiles the
kernel (``backends/served.py``, ``backends/numba/jit.py``, ``worker.py``).
These tests check that

* ``img2col`` and the Numba kernels (generic and specialised, serial and
  threaded) give identical values, indices and gradients, for max *and*
  average pooling, over a table of configurations, at 1 and 2 threads;
* in a fresh process with an empty cache the first calls are served by NumPy,
  later ones by the kernels the worker compiled, a warm process runs the
  kernels from its first call, and a training loop's numbers are the same
  bits on every serving path: NumPy, kernels from the worker, from the disk
  cache, through the pipe with no writable cache folder, compiled in a
  thread, compiled in the foreground;
* with no writable cache folder the worker's kernels reach the caller
  through the pipe;
* kernels land in the user's cache folder when the package folder is
  read-only, and a second process finds them there;
* two processes compiling into one cache folder at once both work and leave
  a cache that a third process loads without compiling;
* a child forked while the compile worker compiles gets its own worker and
  leaves the parent's alone; a child forked while a compile *thread* runs
  (``POOLKIT_COMPILE=thread``) does not hang;
* a worker killed mid-compile is replaced, a worker that cannot start makes
  the process compile in a thread, and a process that exits while its worker
  compiles does not wait for it: the worker finishes into the cache;
* a kernel's saved offsets can be altered without any out-of-bounds write.

Everything that compiles in a fresh process or could hang runs in a
subprocess with a timeout.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import poolkit
from poolkit.backends.numba import cache as _cache, loops as numba_loops
from helpers import assert_identical, make_input

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
SRC = os.path.dirname(os.path.dirname(os.path.abspath(poolkit.__file__)))


# (op, rank, data_format, keyword arguments): the configurations a first call is promised
# for (the chapter's, strided 1-D/2-D/3-D, padding, NCHW and NHWC), and the options that take
# the generic kernels (dilation, ceil_mode, per-side padding, nan_policy, adaptive).
CONFIGS = [
    ("max", 2, "NCHW", dict(kernel_size=2, stride=2)),
    ("avg", 2, "NCHW", dict(kernel_size=2, stride=2)),
    ("max", 2, "NCHW", dict(kernel_size=3, stride=2, padding=1)),
    ("avg", 2, "NCHW", dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("max", 2, "NHWC", dict(kernel_size=2, stride=2)),
    ("avg", 2, "NHWC", dict(kernel_size=3, stride=2, padding=1)),
    ("max", 1, "NCL", dict(kernel_size=3, stride=2, padding=1)),
    ("avg", 1, "NLC", dict(kernel_size=2, stride=2)),
    ("max", 3, "NCDHW", dict(kernel_size=2, stride=2)),
    ("avg", 3, "NDHWC", dict(kernel_size=2, stride=1, padding=1)),
    ("max", 2, "NCHW", dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True)),
    ("max", 2, "NCHW", dict(kernel_size=2, stride=2, padding=((1, 0), (0, 1)), nan_policy="ignore")),
    ("avg", 2, "NCHW", dict(kernel_size=3, stride=2, padding="same", nan_policy="ignore")),
    ("avg", 2, "NCHW", dict(kernel_size=2, stride=2, ceil_mode=True, divisor_override=3)),
]


def _id(c):
    op, rank, fmt, kw = c
    return f"{op}{rank}d-{fmt}-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")


def _shape(rank, fmt, big):
    spatial = {1: (29,), 2: (13, 14), 3: (6, 7, 8)}[rank]
    planes = 3
    if big:                     # enough elements for the threaded kernels
        planes = -(-numba_loops.PARALLEL_MIN_ELEMENTS // int(np.prod(spatial))) + 1
    n, c = (2, -(-planes // 2))
    return (n,) + spatial + (c,) if fmt.endswith("C") else (n, c) + spatial


def _run(op, rank, fmt, kw, x, g, backend):
    fn = getattr(poolkit, f"{op}_pool{rank}d")
    back = getattr(poolkit, f"{op}_pool{rank}d_backward")
    if op == "max":
        y, idx = fn(x, **kw, return_indices=True, data_format=fmt, backend=backend)
        # (max backward takes no nan_policy: the indices say where each gradient goes)
        return y, idx, back(g(y), idx, x.shape, data_format=fmt, backend=backend)
    y = fn(x, **kw, data_format=fmt, backend=backend)
    extra = {k: v for k, v in kw.items() if k != "nan_policy"}
    nan = dict(nan_policy=kw["nan_policy"], x=x) if "nan_policy" in kw else {}
    return y, None, back(g(y), x.shape, **extra, data_format=fmt, backend=backend, **nan)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_numpy_and_kernels_give_the_same_bits(cfg, dtype, threads):
    op, rank, fmt, kw = cfg
    big = threads > 1
    rng = np.random.default_rng([CONFIGS.index(cfg), np.dtype(dtype).itemsize, threads])
    x = make_input(rng, _shape(rank, fmt, big), dtype, "nan" if "nan_policy" in kw else "ties")
    if big:
        assert x.size >= numba_loops.PARALLEL_MIN_ELEMENTS
    grads = {}

    def g(y):
        if "g" not in grads:
            grads["g"] = make_input(rng, y.shape, dtype, "normal")
            grads["g"].ravel()[::5] = -0.0
        return grads["g"]

    with poolkit.threads(threads):
        kernel = _run(op, rank, fmt, kw, x, g, "numba")
        numpy_ = _run(op, rank, fmt, kw, x, g, "img2col")
    for name, a, b in zip(("output", "indices", "gradient"), kernel, numpy_):
        if a is not None:
            assert_identical(a, b, f"{_id(cfg)} {np.dtype(dtype).name} at {threads} threads: {name}")


def _python(code: str, env: dict, timeout: float = 600, prefix=()) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, returned as a dict."""
    full = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("POOLKIT_CACHE_DIR", "NUMBA_CACHE_DIR", "POOLKIT_COMPILE"):
        full.pop(k, None)
    full.update(env)
    proc = subprocess.run(list(prefix) + [sys.executable, "-c", textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


TRAIN = """
import hashlib, json, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit
from poolkit.backends import served
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 3, 28, 28))
w = rng.standard_normal((16, 3, 14, 14))
layers = [poolkit.MaxPool2d(2, 2), poolkit.AvgPool2d(3, 2, 1), poolkit.MaxPool2d(3, 1, 1, data_format="NHWC")]
def step(x):
    # a toy training step: loss = sum(w * pool(x)), x -= 0.1 * dloss/dx, through three layers
    for layer in layers:
        xin = x if layer.data_format != "NHWC" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        y = layer(xin)
        gy = np.resize(w, y.shape)
        gx = layer.backward(gy)
        if layer.data_format == "NHWC":
            gx = np.ascontiguousarray(gx.transpose(0, 3, 1, 2))
        x = x - 0.1 * gx
    return x
first_fallbacks = None
for i in range(WAIT_AT + 4):
    x = step(x)
    if i == 0:
        first_fallbacks = served.AUTO.fallbacks
    if i == WAIT_AT:
        assert _jit.background_wait(timeout=550), "background compile did not finish"
        before = served.AUTO.fallbacks
after = served.AUTO.fallbacks
print(json.dumps({"sum": float(x.sum()), "sha256": hashlib.sha256(x.tobytes()).hexdigest(),
                  "first_fallbacks": first_fallbacks, "fallbacks_after_wait": after - before,
                  "status": _jit.background_status()}))
"""


def _numpy_only(code: str) -> str:
    return (code.replace("poolkit.MaxPool2d(2, 2)", "poolkit.MaxPool2d(2, 2, backend='img2col')")
            .replace("poolkit.AvgPool2d(3, 2, 1)", "poolkit.AvgPool2d(3, 2, 1, backend='img2col')")
            .replace('data_format="NHWC")', 'data_format="NHWC", backend="img2col")'))


def test_training_numbers_do_not_change_when_the_compile_finishes(tmp_path):
    """Fresh process, empty cache: NumPy serves the first steps, the worker's kernels the last ones;
    a warm process runs the kernels from its first step; the same bits every way."""
    code = TRAIN.replace("WAIT_AT", "1")
    served = _python(code, {"POOLKIT_CACHE_DIR": str(tmp_path / "a")})
    assert served["first_fallbacks"] > 0, "the first step should have been served while compiling"
    assert served["fallbacks_after_wait"] == 0, "after the compile, the kernels must serve"
    assert served["status"]["failed"] == 0 and served["status"]["compiler"] == "process"
    warm = _python(code, {"POOLKIT_CACHE_DIR": str(tmp_path / "a")})
    assert warm["first_fallbacks"] == 0, "a warm process loads its kernels at once: no call served by NumPy"
    waited = _python(code, {"POOLKIT_CACHE_DIR": str(tmp_path / "b"), "POOLKIT_COMPILE": "foreground"})
    assert waited["first_fallbacks"] == 0
    numpy_only = _python(_numpy_only(code), {})
    for other in (warm, waited, numpy_only):
        assert other["sha256"] == served["sha256"]


# One layer, one kernel pair, serial: the serving paths that compile again stay cheap.
SMALL = """
import hashlib, json, os, numpy as np, poolkit
from poolkit.backends.numba import cache as _cache, jit as _jit
from poolkit.backends import served
PRELUDE
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 12, 12))
layer = poolkit.MaxPool2d(2, 2)
outs = []
y = layer(x); gx = layer.backward(np.ones_like(y) * 0.5)
outs += [y, gx]
first = served.AUTO.fallbacks
ready = _jit.background_wait(timeout=550)
before = served.AUTO.fallbacks
y = layer(x); gx = layer.backward(np.ones_like(y) * 0.5)
outs += [y, gx]
ref = poolkit.MaxPool2d(2, 2, backend="img2col")
yr = ref(x); gr = ref.backward(np.ones_like(yr) * 0.5)
print(json.dumps({"same": all(np.array_equal(a, b) for a, b in zip(outs, [yr, gr, yr, gr])),
                  "sha256": hashlib.sha256(b"".join(a.tobytes() for a in outs)).hexdigest(),
                  "first_fallbacks": first, "ready": ready, "after": served.AUTO.fallbacks - before,
                  "where": _cache.cache_folder()[0], "kernels": _cache.cached_kernels(),
                  "status": _jit.background_status(), "info": {k: poolkit.info()[k] for k in
                  ("kernel_cache", "compile_mode", "compiling")}}))
"""


def _small(prelude: str = "") -> str:
    return SMALL.replace("PRELUDE", prelude)


def test_no_writable_cache_folder_the_worker_sends_the_kernels(tmp_path):
    """Nothing can be written: the worker compiles in memory and its machine code comes through the pipe."""
    package = os.path.dirname(os.path.abspath(poolkit.__file__))
    prefix = _read_only_prefix(package)
    (tmp_path / "file").write_text("")
    env = {"POOLKIT_CACHE_DIR": str(tmp_path / "file" / "cache"), "XDG_CACHE_HOME": str(tmp_path / "file" / "xdg")}
    if prefix is None:
        # No private read-only mount here (not root, or no unshare): choose "memory" the way a
        # process that found no folder does, before its first kernel.
        res = _python(_small("_cache.use_folder(('memory', None))"), env)
    else:
        res = _python(_small(), env, prefix=prefix)
    assert res["where"] == "memory" and res["info"]["kernel_cache"] == "memory" and res["kernels"] == 0
    assert res["first_fallbacks"] > 0 and res["ready"] and res["after"] == 0, res
    assert res["status"]["compiler"] == "process" and res["status"]["failed"] == 0
    assert res["same"]
    numpy_only = _python(_small().replace("poolkit.MaxPool2d(2, 2)\nouts", "poolkit.MaxPool2d(2, 2, backend='img2col')\nouts"), {})
    assert numpy_only["sha256"] == res["sha256"]


def test_thread_mode_gives_the_same_bits(tmp_path):
    """``POOLKIT_COMPILE=thread``: compiled in a thread of the process, as before the worker."""
    res = _python(_small(), {"POOLKIT_CACHE_DIR": str(tmp_path), "POOLKIT_COMPILE": "thread"})
    assert res["status"]["compiler"] == "thread" and res["info"]["compile_mode"] == "thread"
    assert res["first_fallbacks"] > 0 and res["ready"] and res["after"] == 0 and res["same"]


def test_a_worker_that_cannot_start_leaves_compiling_to_a_thread(tmp_path):
    res = _python(_small("import sys, warnings; warnings.simplefilter('always'); "
                         "sys.executable = os.path.join(os.path.dirname(sys.executable), 'no-such-python')"),
                  {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert res["status"]["compiler"] == "thread"
    assert res["ready"] and res["after"] == 0 and res["same"]


def test_a_worker_from_other_kernel_sources_is_not_used(tmp_path):
    """The worker says which kernel sources it imported; a process with others compiles in a thread."""
    res = _python(_small("_cache.SOURCE_HASH = 'not-the-same'"), {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert res["status"]["compiler"] == "thread"
    assert res["ready"] and res["after"] == 0 and res["same"]


KILL_WORKER = """
import json, os, signal, time, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit
from poolkit.backends import served
x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
ref = poolkit.max_pool2d(x, 2, backend="img2col")
y = poolkit.max_pool2d(x, 2)                       # served by NumPy; the worker starts compiling
first = _jit.background_status()["worker_pid"]
deadline = time.monotonic() + 120
while _jit._COMPILES.hello is None and time.monotonic() < deadline:
    _jit.background_status()                       # reads the worker's hello: it is compiling now
    time.sleep(0.01)
os.kill(first, signal.SIGKILL)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:                 # the next calls notice, and ask a new worker
    z = poolkit.max_pool2d(x, 2)
    assert np.array_equal(z, ref)
    pid = _jit.background_status()["worker_pid"]
    if pid not in (None, first):
        break
    time.sleep(0.05)
ready = _jit.background_wait(timeout=550)
before = served.AUTO.fallbacks
z = poolkit.max_pool2d(x, 2)
print(json.dumps({"first": first, "second": pid, "ready": ready, "after": served.AUTO.fallbacks - before,
                  "same": bool(np.array_equal(y, ref) and np.array_equal(z, ref)),
                  "status": _jit.background_status()}))
"""


def test_a_worker_killed_mid_compile_is_replaced(tmp_path):
    res = _python(KILL_WORKER, {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert res["second"] not in (None, res["first"]), "a new worker must take over the lost compile"
    assert res["ready"] and res["after"] == 0 and res["same"]
    assert res["status"]["failed"] == 0


IDLE_WORKER = """
import json, time, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit, worker as _worker
_worker.IDLE_S = 0.5                               # before the first worker starts
x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
poolkit.max_pool2d(x, 2)
first = _jit.background_status()["worker_pid"]
assert _jit.background_wait(timeout=550)
deadline = time.monotonic() + 60
while _jit.background_status()["worker_pid"] is not None and time.monotonic() < deadline:
    time.sleep(0.05)                               # it says "bye" after idling, and exits
gone = _jit.background_status()["worker_pid"]
y = poolkit.avg_pool2d(x, 2)                       # a new kernel: a new worker
second = _jit.background_status()["worker_pid"]
ready = _jit.background_wait(timeout=550)
print(json.dumps({"first": first, "gone": gone, "second": second, "ready": ready,
                  "same": bool(np.array_equal(y, poolkit.avg_pool2d(x, 2, backend="img2col"))),
                  "status": _jit.background_status()}))
"""


def test_an_idle_worker_exits_and_a_new_one_starts(tmp_path):
    res = _python(IDLE_WORKER, {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert res["first"] is not None and res["gone"] is None, "an idle worker must exit"
    assert res["second"] not in (None, res["first"])
    assert res["ready"] and res["same"] and res["status"]["failed"] == 0


EXIT_WHILE_COMPILING = """
import json, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit
x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
poolkit.max_pool2d(x, 2)                           # served by NumPy; the worker starts compiling
print(json.dumps({"worker": _jit.background_status()["worker_pid"]}))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exit_while_the_worker_compiles_leaves_the_kernel_in_the_cache(tmp_path):
    """The process exits at once; its worker finishes the compile into the cache, then exits."""
    import time

    res = _python(EXIT_WHILE_COMPILING, {"POOLKIT_CACHE_DIR": str(tmp_path)})
    pid = res["worker"]
    deadline = time.monotonic() + 550
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker must exit once its compile is done"
    probe = _python(CACHE_PROBE.replace('backend="numba"', 'backend="auto"'), {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert probe["hits"] == 1 and probe["misses"] == 0, "the kernel the worker finished must be in the cache"


CACHE_PROBE = """
import json, numpy as np, poolkit
from poolkit.backends.numba import cache as _cache, fast as _fast
x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
y = poolkit.max_pool2d(x, 2, backend="numba")
k = _fast._KERNELS[(2, 2, 2)]["max_forward"].body
print(json.dumps({"where": _cache.cache_folder()[0], "folder": _cache.cache_folder()[1],
                  "kernels": _cache.cached_kernels(), "hits": sum(k.stats.cache_hits.values()),
                  "misses": sum(k.stats.cache_misses.values()), "y": float(y.sum())}))
"""


def _read_only_prefix(folder: str):
    """A command prefix that runs its command with ``folder`` mounted read-only (root), or None."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True)
    return ("unshare", "-m", "sh", "-c", script, "sh") if probe.returncode == 0 else None


def test_read_only_package_folder_caches_in_the_user_folder(tmp_path):
    package = os.path.dirname(os.path.abspath(poolkit.__file__))
    prefix = _read_only_prefix(package)
    if prefix is None:
        if os.geteuid() == 0:
            pytest.skip("needs `unshare -m` to make the package folder read-only for root")
        os.chmod(package, 0o555)                 # pragma: no cover - non-root machines
        prefix = ()
    try:
        env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
        first = _python(CACHE_PROBE, env, prefix=prefix)
        second = _python(CACHE_PROBE, env, prefix=prefix)
    finally:
        if not prefix:
            os.chmod(package, 0o755)             # pragma: no cover
    assert first["where"] == "user" and first["folder"].startswith(str(tmp_path / "xdg"))
    assert first["misses"] == 1 and first["kernels"] >= 1
    assert second["hits"] == 1 and second["misses"] == 0, "the second process must load, not compile"
    assert second["y"] == first["y"]


def test_cache_folder_order(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLKIT_CACHE_DIR", str(tmp_path / "p"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "n"))
    assert [w for w, _ in _cache._candidates()][:3] == ["POOLKIT_CACHE_DIR", "NUMBA_CACHE_DIR", "package"]
    probe = _python(CACHE_PROBE, {"NUMBA_CACHE_DIR": str(tmp_path / "n")})
    assert probe["where"] == "NUMBA_CACHE_DIR" and probe["folder"].startswith(str(tmp_path / "n"))
    # a folder that cannot exist (below a regular file): the next candidate is taken
    (tmp_path / "file").write_text("")
    probe = _python(CACHE_PROBE, {"POOLKIT_CACHE_DIR": str(tmp_path / "file" / "x"),
                                  "NUMBA_CACHE_DIR": str(tmp_path / "n")})
    assert probe["where"] == "NUMBA_CACHE_DIR" and probe["hits"] == 1


COMPILE_MANY = """
import json, numpy as np, poolkit
from poolkit.backends.numba import cache as _cache
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 13, 13)).astype(DTYPE)
out = []
for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 1)):
    y, i = poolkit.max_pool2d(x, k, s, p, return_indices=True, backend="numba")
    gx = poolkit.max_pool2d_backward(np.ones_like(y), i, x.shape, backend="numba")
    a = poolkit.avg_pool2d(x, k, s, p, backend="numba")
    out.append(float(y.sum() + gx.sum() + a.sum()))
from poolkit.backends.numba import fast as _fast, kernels as _kernels
bodies = [kk.body for ks in _fast._KERNELS.values() for kk in ks.values()]
misses = sum(sum(d.stats.cache_misses.values()) for d in bodies)
hits = sum(sum(d.stats.cache_hits.values()) for d in bodies)
print(json.dumps({"out": out, "misses": misses, "hits": hits, "kernels": _cache.cached_kernels()}))
"""


def test_two_processes_compile_into_one_cache_at_once(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC, POOLKIT_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    code = textwrap.dedent(COMPILE_MANY.replace("DTYPE", "'float32'"))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["out"] == results[1]["out"]
    # Each kernel is compiled under a lock of its own in the folder: one process compiles it,
    # the other waits and loads it.
    assert results[0]["misses"] + results[1]["misses"] == results[0]["misses"] + results[0]["hits"]
    third = _python(COMPILE_MANY.replace("DTYPE", "'float32'"), {"POOLKIT_CACHE_DIR": str(tmp_path)})
    assert third["misses"] == 0, "every kernel the two wrote must load in a third process"
    assert third["out"] == results[0]["out"]


FORK_WHILE_COMPILING = """
import json, os, time, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit
from poolkit.backends import served
x = np.random.default_rng(0).standard_normal((4, 3, 20, 20))
ref = poolkit.max_pool2d(x, 3, 2, 1, backend="img2col")
y = poolkit.max_pool2d(x, 3, 2, 1)             # served by NumPy, compiles in the worker
parent_worker = _jit.background_status()["worker_pid"]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    out = {}
    try:
        z = poolkit.avg_pool2d(x, 2) + 0            # a new kernel: the child's own worker compiles it
        m = poolkit.max_pool2d(x, 3, 2, 1)
        st = _jit.background_status()
        out = {"ok": bool(np.array_equal(m, ref)),
               "avg": bool(np.array_equal(z, poolkit.avg_pool2d(x, 2, backend="img2col"))),
               "disabled": st["disabled"], "worker": st["worker_pid"], "compiler": st["compiler"],
               "ready": _jit.background_wait(timeout=500)}
        m = poolkit.max_pool2d(x, 3, 2, 1)
        out["ok_after"] = bool(np.array_equal(m, ref))
    finally:
        os.write(w, json.dumps(out).encode())
        os._exit(0)
os.close(w)
child = json.loads(os.read(r, 10000).decode())
os.waitpid(pid, 0)
alive = True
try:
    os.kill(parent_worker, 0)
except ProcessLookupError:
    alive = False
before = served.AUTO.fallbacks
ready = _jit.background_wait(timeout=500)
y2 = poolkit.max_pool2d(x, 3, 2, 1)
print(json.dumps({"child": child, "parent_worker": parent_worker, "parent_worker_alive": alive,
                  "ready": ready, "parent_ok": bool(np.array_equal(y, ref) and np.array_equal(y2, ref)),
                  "status": _jit.background_status()}))
"""


def test_fork_while_the_compile_worker_runs(tmp_path):
    """The child gets its own worker (the parent's is left alone), both get their kernels, same bits."""
    res = _python(FORK_WHILE_COMPILING, {"POOLKIT_CACHE_DIR": str(tmp_path)}, timeout=900)
    child = res["child"]
    assert child["ok"] and child["avg"] and child["ok_after"] and child["ready"]
    assert not child["disabled"] and child["compiler"] == "process"
    assert child["worker"] not in (None, res["parent_worker"]), "the child must not use the parent's worker"
    assert res["ready"] and res["parent_ok"] and res["status"]["failed"] == 0


FORK_WHILE_THREAD_COMPILES = """
import json, os, numpy as np, poolkit
from poolkit.backends.numba import jit as _jit
x = np.random.default_rng(0).standard_normal((4, 3, 20, 20))
ref = poolkit.max_pool2d(x, 3, 2, 1, backend="img2col")
y = poolkit.max_pool2d(x, 3, 2, 1)             # served by NumPy, compiles in the background thread
import time
deadline = time.monotonic() + 30
while not _jit._COMPILES.busy and time.monotonic() < deadline:
    time.sleep(0.001)
busy = _jit._COMPILES.busy
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    z = poolkit.avg_pool2d(x, 2) + 0            # a new kernel: must not wait for the dead compiler
    m = poolkit.max_pool2d(x, 3, 2, 1)
    os.write(w, json.dumps({"ok": bool(np.array_equal(m, ref)),
                            "avg": bool(np.array_equal(z, poolkit.avg_pool2d(x, 2, backend="img2col"))),
                            "disabled": _jit.background_status()["disabled"]}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 10000).decode())
os.waitpid(pid, 0)
print(json.dumps({"busy": busy, "child": child, "parent_ok": bool(np.array_equal(y, ref))}))
"""


def test_fork_while_a_compile_thread_runs_does_not_hang(tmp_path):
    res = _python(FORK_WHILE_THREAD_COMPILES, {"POOLKIT_CACHE_DIR": str(tmp_path), "POOLKIT_COMPILE": "thread"},
                  timeout=300)
    assert res["parent_ok"] and res["child"]["ok"] and res["child"]["avg"]
    if res["busy"]:
        assert res["child"]["disabled"], "a child forked mid-compile must not compile"


def test_bad_compile_mode_warns_and_uses_background():
    res = _python("""
        import json, warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            from poolkit.backends.numba import jit as _jit
        print(json.dumps({"mode": _jit.COMPILE_MODE, "warned": any("POOLKIT_COMPILE" in str(x.message) for x in w)}))
    """, {"POOLKIT_COMPILE": "later"})
    assert res == {"mode": "background", "warned": True}


ALTERED = """
import json, numpy as np, poolkit
x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
out = {}
for backend in ("numba", "img2col", "reference"):
    for fill, dtype in ((200, None), (-3, "int64"), (7, None)):
        layer = poolkit.MaxPool2d(3, 2, 1, backend=backend)
        y = layer(x)
        off = layer._ctx.saved.copy()        # forward seals its offsets read-only
        if dtype:
            off = off.astype(dtype)
        off[0, 0, 0, 0, 0] = fill            # the top-left window's tap 7 lies inside; 0..5 of row -1 do not
        off[0, 0, 0, 1, 0] = 0 if fill == 7 else fill    # a tap in the padding row
        layer._ctx.saved = off
        try:
            layer.backward(np.ones_like(y))
            out[f"{backend}-{fill}"] = "no error"
        except ValueError as e:
            out[f"{backend}-{fill}"] = "ValueError: " + str(e)[:60]
print(json.dumps(out))
"""


def test_altered_offsets_raise_and_never_write_out_of_bounds():
    res = _python(ALTERED, {"POOLKIT_COMPILE": "foreground"})
    for key, msg in res.items():
        assert msg.startswith("ValueError"), (key, msg)


VARIANTS = """
import json, numpy as np, poolkit
x = np.random.default_rng(0).standard_normal((8, 8, 28, 28))          # threaded kernels
ops = OPS
ok = {}
with poolkit.threads(2):
    for op in ops:
        fn, back = getattr(poolkit, op + "_pool2d"), getattr(poolkit, op + "_pool2d_backward")
        for backend in ("numba", "img2col"):
            if op == "max":
                y, i = fn(x, 2, return_indices=True, backend=backend)
                g = back(np.ones_like(y), i, x.shape, backend=backend)
            else:
                y = fn(x, 2, backend=backend)
                g = back(np.ones_like(y), x.shape, 2, backend=backend)
            ok.setdefault(op, []).append((y, g))
print(json.dumps({op: bool(np.array_equal(r[0][0], r[1][0]) and np.array_equal(r[0][1], r[1][1]))
                  for op, r in ok.items()}))
"""


def test_variants_compiled_in_different_processes_load_together(tmp_path):
    """Max and average kernels (one closure, two variants) written by two processes, loaded by a third.

    Numba names machine code after the function and a per-process counter; variants that shared
    a name ran each other's code once loaded together (the kernels are renamed per variant).
    """
    env = {"POOLKIT_CACHE_DIR": str(tmp_path), "POOLKIT_COMPILE": "foreground"}
    assert _python(VARIANTS.replace("OPS", '["max"]'), env) == {"max": True}
    assert _python(VARIANTS.replace("OPS", '["avg"]'), env) == {"avg": True}
    assert _python(VARIANTS.replace("OPS", '["max", "avg"]'), env) == {"max": True, "avg": True}
    assert _python(VARIANTS.replace("OPS", '["avg", "max"]'), env) == {"avg": True, "max": True}
