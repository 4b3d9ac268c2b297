"""First-call latency of poolkit in a fresh process, with and without Numba's on-disk kernel cache.

Usage::

    python benchmarks/first_call.py            # prints a table; --json for the raw numbers

Each scenario starts a new Python process that imports poolkit and runs the
chapter's case (64x3x28x28 float64, 2x2 stride 2) forward+backward through the
layer API, max then average pooling, then more max passes (the steady
state: the best of ten).  Scenarios:

cold
    ``NUMBA_CACHE_DIR`` is a new empty folder: every kernel is compiled (and written there).
warm
    The same folder again: kernels are loaded from the cache.
read-only folder
    ``NUMBA_CACHE_DIR`` is a folder with mode 0o500.  Root ignores that mode,
    so when run as root the cache is written anyway and the table says so.
unwritable folder
    ``NUMBA_CACHE_DIR`` lies below a regular file, so no one, root included,
    can create it: poolkit must fall back to compiling in memory
    (``poolkit.info()["kernel_cache"] == "memory"``) and still work.
default
    The environment as it is (the installed package's own cache).

In the first four, Numba is allowed no other cache location
(``NUMBA_CACHE_LOCATOR_CLASSES=UserProvidedCacheLocator``, Numba >= 0.61), so
a read-only install is simulated even where the source tree is writable.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
import poolkit
t_import = time.perf_counter() - t0
x = np.random.default_rng(0).standard_normal((64, 3, 28, 28))
g = np.random.default_rng(1).random((64, 3, 14, 14))
out = {"import_s": t_import}
for mode, cls in (("max", poolkit.MaxPool2d), ("avg", poolkit.AvgPool2d)):
    layer = cls(2, 2)
    t = time.perf_counter()
    y = layer.forward(x)
    gx = layer.backward(g)
    out["first_" + mode + "_s"] = time.perf_counter() - t
layer = poolkit.MaxPool2d(2, 2)
layer.backward(layer.forward(x))
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


def _files(folder: str) -> int:
    n = 0
    for _, _, names in os.walk(folder):
        n += sum(name.endswith((".nbi", ".nbc")) for name in names)
    return n


def run_child(env_extra: dict, restrict: bool = True) -> dict:
    env = dict(os.environ)
    env.update(env_extra)
    if restrict:
        env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"ok": False, "wall_s": wall, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    out = json.loads(line[len("RESULT "):])
    out.update(ok=True, wall_s=wall, warnings=[ln for ln in proc.stderr.splitlines() if "Warning" in ln][:3])
    return out


def scenarios() -> list:
    base = tempfile.mkdtemp(prefix="poolkit-first-call-")
    rows = []
    try:
        cache = os.path.join(base, "cache")
        os.mkdir(cache)
        r = run_child({"NUMBA_CACHE_DIR": cache})
        r.update(scenario="cold (empty cache folder)", cache_files=_files(cache))
        rows.append(r)
        before = _files(cache)
        r = run_child({"NUMBA_CACHE_DIR": cache})
        r.update(scenario="warm (cache filled)", cache_files=_files(cache))
        if r["cache_files"] > before:
            r["note"] = (f"{r['cache_files'] - before} more cache files: some kernel missed the cache "
                         f"and was compiled again")
        rows.append(r)

        readonly = os.path.join(base, "readonly")
        os.mkdir(readonly)
        os.chmod(readonly, stat.S_IRUSR | stat.S_IXUSR)          # 0o500
        probe = os.path.join(readonly, ".probe")
        try:
            with open(probe, "w"):
                pass
            os.remove(probe)
            enforced = False          # root (or a file system that ignores modes)
        except OSError:
            enforced = True
        r = run_child({"NUMBA_CACHE_DIR": readonly})
        r.update(scenario="read-only folder (chmod 0o500)", cache_files=_files(readonly),
                 note="" if enforced else "permissions not enforced (running as root): the cache was written")
        rows.append(r)

        blocker = os.path.join(base, "a-file")
        with open(blocker, "w") as f:
            f.write("not a folder\n")
        r = run_child({"NUMBA_CACHE_DIR": os.path.join(blocker, "cache")})
        r.update(scenario="unwritable folder (below a file)", cache_files=0,
                 note="" if r.get("kernel_cache") == "memory" else "expected kernel_cache 'memory'")
        rows.append(r)

        r = run_child({}, restrict=False)
        r.update(scenario="default environment", cache_files=None)
        rows.append(r)
    finally:
        readonly = os.path.join(base, "readonly")
        if os.path.isdir(readonly):
            os.chmod(readonly, stat.S_IRWXU)          # so that a regular user can delete it
        shutil.rmtree(base, ignore_errors=True)
    return rows


def table(rows: list) -> str:
    head = ("scenario", "process", "import", "first max", "first avg", "steady max", "cache", "files", "correct",
            "note")
    lines = [head]
    for r in rows:
        if not r["ok"]:
            lines.append((r["scenario"], f"{r['wall_s']:.2f} s", "FAILED", "", "", "", "", "", "", r["error"]))
            continue
        lines.append((r["scenario"], f"{r['wall_s']:.2f} s", f"{r['import_s']:.2f} s", f"{r['first_max_s']:.2f} s",
                      f"{r['first_avg_s']:.2f} s", f"{r['steady_max_s'] * 1e3:.2f} ms", r["kernel_cache"],
                      "-" if r["cache_files"] is None else str(r["cache_files"]),
                      "yes" if r["correct"] else "NO", r.get("note", "")))
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in lines[1:]]
    return "\n".join(out)


def source_stamp() -> float:
    """Latest modification time of poolkit's .py files (Numba keys its cache on the source's)."""
    import importlib.util

    spec = importlib.util.find_spec("poolkit")
    folder = os.path.dirname(spec.origin)
    return max(os.path.getmtime(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names if name.endswith(".py"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="First-call latency of poolkit in fresh processes.")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args(argv)
    before = source_stamp()
    rows = scenarios()
    changed = source_stamp() != before
    if changed:
        print("warning: poolkit's source changed during the run, so Numba's cache was invalidated "
              "between scenarios: warm may look like cold; run again", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("First call in a fresh process: chapter case 64x3x28x28 float64, 2x2 stride 2, forward+backward")
        print(f"(Python {sys.version.split()[0]}; 'process' is the whole child process, start to exit; "
              f"running as {'root' if hasattr(os, 'geteuid') and os.geteuid() == 0 else 'a regular user'})")
        print()
        print(table(rows))
    return 0 if all(r["ok"] and r["correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
