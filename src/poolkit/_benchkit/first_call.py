"""First-call latency: the chapter's case in a fresh Python process, with a cold and a warm kernel cache.

A child process imports poolkit and times the first forward+backward pass of
``poolkit.MaxPool2d(2, 2)`` on the chapter's batch (64x3x28x28 float64, 2x2
stride 2): compilation when the cache is cold, loading from disk when it is
warm.  ``full=True`` also times the first ``AvgPool2d(2, 2)`` pass, the
steady state (the best of ten max passes) and checks the result against the
reference backend.

The cache folder is set through both ``POOLKIT_CACHE_DIR`` (poolkit's own
setting) and ``NUMBA_CACHE_DIR`` (Numba's), so the child finds it whichever
one poolkit's kernel cache reads.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional

__all__ = ["CHILD", "cache_env", "cache_files", "cold_and_warm", "run_child"]

CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
import poolkit
full = sys.argv[1:] == ["full"]
out = {"import_s": time.perf_counter() - t0}
x = np.random.default_rng(0).standard_normal((64, 3, 28, 28))
g = np.random.default_rng(1).random((64, 3, 14, 14))
for mode, cls in (("max", poolkit.MaxPool2d), ("avg", poolkit.AvgPool2d))[:2 if full else 1]:
    layer = cls(2, 2)
    t = time.perf_counter()
    layer.forward(x)
    layer.backward(g)
    out["first_" + mode + "_s"] = time.perf_counter() - t
if full:
    layer = poolkit.MaxPool2d(2, 2)
    steady = []
    for _ in range(10):
        t = time.perf_counter()
        layer.backward(layer.forward(x))
        steady.append(time.perf_counter() - t)
    out["steady_max_s"] = min(steady)
    ref = poolkit.MaxPool2d(2, 2, backend="reference")
    out["correct"] = bool(np.array_equal(layer.forward(x), ref.forward(x))
                          and np.array_equal(layer.backward(g), ref.backward(g)))
info = poolkit.info()
out["kernel_cache"] = info["kernel_cache"]
out["threads"] = info["threads"]
out["poolkit_file"] = poolkit.__file__
out["total_in_process_s"] = time.perf_counter() - t0
print("RESULT " + json.dumps(out))
"""


def cache_env(folder: str) -> Dict[str, str]:
    """Environment variables that point poolkit's kernel cache (and Numba's) at ``folder``."""
    return {"POOLKIT_CACHE_DIR": folder, "NUMBA_CACHE_DIR": folder}


def cache_files(folder: str) -> int:
    """Numba cache files (``.nbi`` index, ``.nbc`` code) below ``folder``."""
    return sum(name.endswith((".nbi", ".nbc")) for _, _, names in os.walk(folder) for name in names)


def run_child(env_extra: Mapping[str, str], *, full: bool = True, restrict: bool = True,
              timeout: float = 600) -> dict:
    """Run :data:`CHILD` in a fresh interpreter; its numbers plus ``ok``, ``wall_s`` (the whole process).

    ``restrict`` lets Numba use no cache folder but the one given
    (``NUMBA_CACHE_LOCATOR_CLASSES=UserProvidedCacheLocator``, Numba >= 0.61),
    which simulates a read-only install in a writable checkout.
    """
    env = dict(os.environ)
    env.update(env_extra)
    if restrict:
        env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, "full" if full else "first"], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "wall_s": time.perf_counter() - t, "error": f"no result after {timeout:g} s"}
    wall = time.perf_counter() - t
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"ok": False, "wall_s": wall, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    out = json.loads(line[len("RESULT "):])
    out.update(ok=True, wall_s=wall, warnings=[ln for ln in proc.stderr.splitlines() if "Warning" in ln][:3])
    return out


def cold_and_warm(*, full: bool = True, env_extra: Optional[Mapping[str, str]] = None) -> List[dict]:
    """Two fresh processes on one new, empty cache folder: cold (compiles) then warm (loads).

    Each row has ``scenario`` ("cold" or "warm") and ``cache_files``; a warm row
    that added cache files gets a ``note``: some kernel missed the cache.  The
    folder is removed afterwards.
    """
    folder = tempfile.mkdtemp(prefix="poolkit-first-call-")
    try:
        env = dict(env_extra or {}, **cache_env(folder))
        cold = dict(run_child(env, full=full), scenario="cold", cache_files=cache_files(folder))
        warm = dict(run_child(env, full=full), scenario="warm")
        warm["cache_files"] = cache_files(folder)
        if warm["cache_files"] > cold["cache_files"]:
            warm["note"] = (f"{warm['cache_files'] - cold['cache_files']} more cache files: some kernel "
                            f"missed the cache and was compiled again")
        return [cold, warm]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
