"""First-call latency: poolkit's first forward+backward pass in fresh processes, on an empty and a filled kernel cache.

A fresh process runs one :class:`Case` (a pooling configuration and how it is
called: a layer, or the functional pair) and reports, as one JSON line:

``import_s``
    ``import poolkit``, the first thing the process does;
``first_s``, ``served_by``
    the first forward+backward pass (building the layer included), and
    whether the NumPy backend served it while the Numba kernels compiled in
    the background (``"NumPy"``, from ``poolkit.backends.served.AUTO.fallbacks``)
    or the kernels did (``"kernel"``);
``ready_s``
    from the start of that first pass until the background compile is done
    and its kernels are installed in the process (the kernels are compiled,
    or loaded from the cache, and written to the cache folder);
``during``
    (cold processes, ``spec["during"]``) how the loop runs while the kernels
    compile elsewhere: from the first pass until they are installed, the
    process alternates blocks of about :data:`DURING_BLOCK_S` of passes
    through the default backend and through the NumPy backend alone
    (``"img2col"``, the same call), and reports ``ratio``, the NumPy blocks'
    time over the default backend's (1.0: compiling costs the loop nothing;
    the default backend's blocks include installing the compiled kernels),
    ``median_ratio`` (of the block pairs), ``pairs``, ``passes`` and
    ``seconds``.  The blocks that ran after every kernel was installed do not
    count;
``steady_s``, ``steady_served_by``
    the best of ``passes`` more passes once the kernels serve;
``correct``
    every output, index and gradient of the process is ``np.array_equal`` to
    the oracle backend's (``"reference"``; ``"img2col"`` above
    :data:`REFERENCE_MAX_ELEMENTS` input elements, where the reference is slow);
``kernel_cache``, ``kernel_cache_dir``, ``cached_kernels``, ``compile_mode``
    from :func:`poolkit.info`.

The child is this very file, run by path (see :func:`run_child`), so that the
process imports nothing of poolkit before it times ``import poolkit``.

:func:`cold_and_warm` runs a case twice on one new, empty cache folder:
*cold* (everything compiles in the background) then *warm* (the kernels load
from the folder the cold process filled).  ``poolkit bench`` shows the chapter
case this way; ``benchmarks/first_call.py`` runs every case, plus the
``backend="numba"`` cold call (the compile the old default made every first
call wait for) and the cache-folder scenarios of :func:`read_only_package`
and :func:`nothing_writable`.

This module imports nothing but the standard library at the top: poolkit is
imported inside functions, and only by the parent.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["Case", "CASES", "CASE_NAMES", "REFERENCE_MAX_ELEMENTS", "cache_files", "child_spec", "run_child",
           "cold_and_warm", "measure_case", "read_only_prefix", "read_only_package", "nothing_writable",
           "SCENARIOS"]

#: Inputs larger than this (elements) are checked against ``img2col`` instead of the slow reference.
REFERENCE_MAX_ELEMENTS = 4_000_000
#: Length of one block of the during-compile measurement (``spec["during"]``), in seconds.
DURING_BLOCK_S = 0.01
#: The during-compile measurement gives up after this many seconds (the compile may take longer).
DURING_MAX_S = 300.0

#: Variables that choose the kernel cache or the compile mode: a child starts without them
#: (the test suite, for one, sets ``POOLKIT_COMPILE=foreground``), then gets what its scenario says.
_CLEARED = ("POOLKIT_CACHE_DIR", "NUMBA_CACHE_DIR", "POOLKIT_COMPILE", "NUMBA_CACHE_LOCATOR_CLASSES")

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # .../poolkit
_SOURCE_ROOT = os.path.dirname(_PACKAGE)                                    # what holds poolkit/
# Runs this file by path as __main__, with argv [this file, spec]: `python file.py` would put
# bench/ (machine.py, plot.py, ...) first on sys.path, where it could shadow other modules.
_BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


# --------------------------------------------------------------------------- #
# the configurations
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Case:
    """One configuration of the first-call table: what is pooled, and how it is called.

    ``api`` is ``"layer"`` (``MaxPool2d(...)``: forward then backward) or
    ``"functional"`` (``max_pool2d(x, ..., return_indices=True)`` then
    ``max_pool2d_backward``; ``avg_pool2d`` then ``avg_pool2d_backward``).
    ``numba_waits``: also time the cold first call with ``backend="numba"``.
    """

    name: str
    title: str
    op: str
    rank: int
    data_format: str
    shape: Tuple[int, ...]
    dtype: str
    kwargs: Dict[str, Any] = field(default_factory=dict, hash=False)
    api: str = "layer"
    numba_waits: bool = False

    @property
    def channels_last(self) -> bool:
        return self.data_format.endswith("C")

    @property
    def out_shape(self) -> Tuple[int, ...]:
        from poolkit.functional import output_shape

        spatial = self.shape[1:-1] if self.channels_last else self.shape[2:]
        kw = {k: v for k, v in self.kwargs.items() if k in ("kernel_size", "stride", "padding", "dilation",
                                                              "ceil_mode")}
        out = tuple(output_shape(tuple(spatial), **kw))
        n = self.shape[0]
        return (n,) + out + (self.shape[-1],) if self.channels_last else (n, self.shape[1]) + out

    @property
    def oracle(self) -> str:
        size = 1
        for n in self.shape:
            size *= n
        return "reference" if size <= REFERENCE_MAX_ELEMENTS else "img2col"

    @property
    def input_text(self) -> str:
        """``64x3x28x28 float64 NCHW``."""
        return f"{'x'.join(map(str, self.shape))} {self.dtype} {self.data_format}"

    @property
    def call_text(self) -> str:
        """``MaxPool2d(2, 2)`` or ``max_pool2d(x, 3, 2, 1, return_indices=True) + max_pool2d_backward``."""
        kw = dict(self.kwargs)
        args = [repr(kw.pop(k)) for k in ("kernel_size", "stride", "padding") if k in kw]
        args += [f"{k}={v!r}" for k, v in kw.items()]
        if self.channels_last:
            args.append(f"data_format={self.data_format!r}")
        if self.api == "layer":
            return f"{self.op.capitalize()}Pool{self.rank}d({', '.join(args)})"
        fn = f"{self.op}_pool{self.rank}d"
        extra = ", return_indices=True" if self.op == "max" else ""
        return f"{fn}(x, {', '.join(args)}{extra}) + {fn}_backward"


CASES: Tuple[Case, ...] = (
    Case("chapter-max", "chapter, max", "max", 2, "NCHW", (64, 3, 28, 28), "float64",
         dict(kernel_size=2, stride=2), numba_waits=True),
    Case("chapter-avg", "chapter, average", "avg", 2, "NCHW", (64, 3, 28, 28), "float64",
         dict(kernel_size=2, stride=2), numba_waits=True),
    Case("max2d-pad", "2-D max, padding, indices", "max", 2, "NCHW", (8, 32, 56, 56), "float32",
         dict(kernel_size=3, stride=2, padding=1), api="functional"),
    Case("max2d-nhwc", "2-D max, NHWC", "max", 2, "NHWC", (8, 56, 56, 32), "float32",
         dict(kernel_size=2, stride=2)),
    Case("avg2d-nhwc-pad", "2-D average, stride 1, padding, NHWC", "avg", 2, "NHWC", (8, 28, 28, 32), "float64",
         dict(kernel_size=3, stride=1, padding=1)),
    Case("avg2d-exclude-pad", "2-D average, padding not counted", "avg", 2, "NCHW", (8, 32, 28, 28), "float32",
         dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), api="functional"),
    Case("max1d", "1-D max, padding, indices", "max", 1, "NCL", (8, 16, 1000), "float32",
         dict(kernel_size=3, stride=2, padding=1), api="functional"),
    Case("avg1d-nlc", "1-D average, padding, NLC", "avg", 1, "NLC", (8, 1000, 16), "float64",
         dict(kernel_size=4, stride=2, padding=1)),
    Case("max3d", "3-D max, indices", "max", 3, "NCDHW", (2, 4, 16, 32, 32), "float32",
         dict(kernel_size=2, stride=2), api="functional"),
    Case("avg3d-ndhwc", "3-D average, padding, NDHWC", "avg", 3, "NDHWC", (2, 16, 32, 32, 4), "float64",
         dict(kernel_size=3, stride=2, padding=1)),
)
CASE_NAMES = tuple(c.name for c in CASES)


def child_spec(case: Case, *, backend: str = "auto", wait: bool = True, passes: int = 0,
               during: bool = False) -> dict:
    """What a child process runs: ``case`` through ``backend``; ``wait`` for the background compile
    (``during``: measuring the loop meanwhile, see ``during`` above), then ``passes`` more timed
    passes (the steady state)."""
    return dict(asdict(case), out_shape=list(case.out_shape), oracle=case.oracle, backend=backend, wait=wait,
                passes=passes, during=during)


# --------------------------------------------------------------------------- #
# the child: runs in a fresh interpreter (``python -c _BOOT this-file spec``)
# --------------------------------------------------------------------------- #
def _make_step(poolkit, spec: dict, backend: str) -> Callable[[Any, Any], tuple]:
    """``step(x, g) -> arrays``: one forward+backward pass of the case (outputs, indices, gradients)."""
    op, rank, fmt, kw = spec["op"], spec["rank"], spec["data_format"], spec["kwargs"]
    if spec["api"] == "layer":
        layer = getattr(poolkit, f"{op.capitalize()}Pool{rank}d")(**kw, data_format=fmt, backend=backend)
        return lambda x, g: (layer.forward(x), layer.backward(g))
    forward = getattr(poolkit, f"{op}_pool{rank}d")
    backward = getattr(poolkit, f"{op}_pool{rank}d_backward")

    def max_step(x, g):
        y, idx = forward(x, **kw, return_indices=True, data_format=fmt, backend=backend)
        return y, idx, backward(g, idx, x.shape, data_format=fmt, backend=backend)

    def avg_step(x, g):
        y = forward(x, **kw, data_format=fmt, backend=backend)
        return y, backward(g, x.shape, **kw, data_format=fmt, backend=backend)
    return max_step if op == "max" else avg_step


def _child(spec: dict) -> dict:
    t0 = time.perf_counter()
    import poolkit
    out: Dict[str, Any] = {"import_s": time.perf_counter() - t0}
    import numpy as np
    from poolkit.backends.numba import jit as _jit
    from poolkit.backends import get_backend

    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec["shape"]).astype(spec["dtype"])
    g = rng.random(spec["out_shape"]).astype(spec["dtype"])
    served = get_backend(spec["backend"])

    t = time.perf_counter()
    results = [_make_step(poolkit, spec, spec["backend"])(x, g)]
    out["first_s"] = time.perf_counter() - t
    out["fallbacks"] = served.fallbacks
    out["served_by"] = "NumPy" if served.fallbacks else "kernel"
    if spec["wait"] and spec.get("during"):
        out["during"], done = _during(poolkit, spec, x, g, results)
        out["ready"] = done and _jit.background_wait(timeout=600)
        out["ready_s"] = time.perf_counter() - t
    elif spec["wait"]:
        out["ready"] = _jit.background_wait(timeout=600)
        out["ready_s"] = time.perf_counter() - t
    if spec["passes"]:
        step = _make_step(poolkit, spec, spec["backend"])
        results.append(step(x, g))               # a layer's first pass prepares its plan: untimed
        _jit.background_wait(timeout=600)         # in case that pass needed a kernel the first did not
        before, best = served.fallbacks, float("inf")
        for _ in range(spec["passes"]):
            t = time.perf_counter()
            results.append(step(x, g))
            best = min(best, time.perf_counter() - t)
        out["steady_s"] = best
        out["steady_served_by"] = "NumPy" if served.fallbacks > before else "kernel"
    expected = _make_step(poolkit, spec, spec["oracle"])(x, g)
    out["correct"] = (all(len(r) == len(expected) and all(np.array_equal(a, b) for a, b in zip(r, expected))
                          for r in results) and not out.get("during", {}).get("mismatches"))
    out["checked_passes"] = len(results)
    info = poolkit.info()
    for key in ("kernel_cache", "kernel_cache_dir", "cached_kernels", "compile_mode", "compiling", "threads"):
        out[key] = info[key]
    status = _jit.background_status()
    out["compile_failures"] = status["failed"]
    out["compiler"] = status["compiler"]
    return out


def _during(poolkit, spec: dict, x, g, results: list) -> Tuple[dict, bool]:
    """The loop while the kernels compile elsewhere: blocks of passes through the default backend
    and through NumPy alone, alternating, until every kernel is installed (see ``during``).

    Returns the figures and whether the kernels were installed within :data:`DURING_MAX_S`.
    The last result of every block is compared with NumPy's (``mismatches``), and one of each
    kind goes to ``results`` for the check against the oracle.
    """
    import statistics

    import numpy as np
    from poolkit.backends.numba import jit as _jit

    ours = _make_step(poolkit, spec, spec["backend"])
    numpy_ = _make_step(poolkit, spec, "img2col")
    t = time.perf_counter()
    base = numpy_(x, g)
    per = max(time.perf_counter() - t, 1e-6)
    results.append(base)
    k = max(1, int(round(DURING_BLOCK_S / per)))
    pairs: List[Tuple[float, float]] = []
    passes, mismatches, start = 0, 0, time.perf_counter()
    done = False
    last: Any = None
    while time.perf_counter() - start < DURING_MAX_S:
        if not _jit.background_status()["pending"]:
            done = True
            break
        t = time.perf_counter()
        for _ in range(k):
            last = ours(x, g)
        a = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(k):
            numpy_(x, g)
        n = time.perf_counter() - t
        pairs.append((a, n))
        passes += k
        mismatches += not all(np.array_equal(u, v) for u, v in zip(last, base))
    seconds = time.perf_counter() - start
    if last is not None:
        results.append(last)
    out: Dict[str, Any] = {"pairs": len(pairs), "passes": passes, "block_passes": k, "seconds": seconds,
                           "mismatches": mismatches, "ratio": None, "median_ratio": None}
    if pairs:                          # none when the kernels were installed before a block ran
        out.update(ratio=sum(n for _, n in pairs) / sum(a for a, _ in pairs),
                   median_ratio=statistics.median(n / a for a, n in pairs),
                   ours_s=sum(a for a, _ in pairs) / passes, numpy_s=sum(n for _, n in pairs) / passes)
    return out, done


def _child_main() -> None:
    out = _child(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(out), flush=True)
    if out["compiling"]:
        # Compiles still under way (the spec did not wait): leave without finalising the
        # interpreter under a thread that is inside Numba's compiler.
        os._exit(0)


# --------------------------------------------------------------------------- #
# the parent
# --------------------------------------------------------------------------- #
def cache_files(folder: Optional[str]) -> int:
    """Compiled kernels (Numba ``.nbc`` files) below ``folder`` (0 for None or a missing folder)."""
    if not folder:
        return 0
    return sum(name.endswith(".nbc") for _, _, names in os.walk(folder) for name in names)


def run_child(spec: dict, env_extra: Optional[Mapping[str, str]] = None, *, prefix: Sequence[str] = (),
              timeout: float = 900) -> dict:
    """Run ``spec`` (see :func:`child_spec`) in a fresh interpreter.

    The child starts from this environment without the cache and compile-mode
    variables (``POOLKIT_CACHE_DIR``, ``NUMBA_CACHE_DIR``, ``POOLKIT_COMPILE``),
    plus ``env_extra``; it imports the same poolkit as this process.  ``prefix``
    goes before the command (``unshare ...``).  Returns the child's numbers with
    ``ok`` and ``wall_s`` (the whole process), or ``ok=False`` and ``error``.
    """
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    env.update(env_extra or {})
    command = list(prefix) + [sys.executable, "-c", _BOOT, os.path.abspath(__file__), json.dumps(spec)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "wall_s": time.perf_counter() - t, "error": f"no result after {timeout:g} s"}
    wall = time.perf_counter() - t
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}, no result"])[-1]
        return {"ok": False, "wall_s": wall, "error": last}
    out = json.loads(line[len("RESULT "):])
    out.update(ok=True, wall_s=wall, warnings=[ln for ln in proc.stderr.splitlines() if "Warning" in ln][:3])
    return out


def _note(row: dict, text: str) -> None:
    row["note"] = "; ".join(filter(None, (row.get("note"), text)))


def cold_and_warm(case: Case = CASES[0], *, passes: Tuple[int, int] = (0, 0), during: bool = False,
                  env_extra: Optional[Mapping[str, str]] = None, timeout: float = 900) -> List[dict]:
    """Two fresh processes on one new, empty cache folder (``POOLKIT_CACHE_DIR``): cold, then warm.

    Both use the default backend and compile mode and wait for the background
    compile (``during``: the cold one measures the loop meanwhile, see ``during``
    in the module notes); ``passes`` are the steady-state passes of each.  Each row gets
    ``scenario`` ("cold" or "warm") and ``cache_files`` (kernels in the folder
    afterwards); a warm process that added kernels gets a ``note``.  The
    folder is removed afterwards.
    """
    folder = tempfile.mkdtemp(prefix="poolkit-first-call-")
    try:
        env = dict(env_extra or {}, POOLKIT_CACHE_DIR=folder)
        rows = []
        for scenario, n in zip(("cold", "warm"), passes):
            row = run_child(child_spec(case, passes=n, during=during and scenario == "cold"), env, timeout=timeout)
            row.update(scenario=scenario, cache_files=cache_files(folder))
            rows.append(row)
        cold, warm = rows
        if cold["ok"] and warm["ok"]:
            if warm["kernel_cache_dir"] != cold["kernel_cache_dir"]:
                _note(warm, "poolkit's kernel sources changed between the processes (a new cache folder)")
            elif warm["cache_files"] > cold["cache_files"]:
                _note(warm, f"{warm['cache_files'] - cold['cache_files']} more kernels in the cache: some "
                            f"kernel missed the cache and was compiled again")
        for row in rows:
            if row["ok"] and not row.get("ready", True):
                _note(row, "the background compile did not finish within 600 s")
            if row["ok"] and row.get("compile_failures"):
                _note(row, f"{row['compile_failures']} kernels failed to compile (served by NumPy)")
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_case(case: Case, *, env_extra: Optional[Mapping[str, str]] = None, timeout: float = 900) -> dict:
    """Every process of one table row: cold and warm (:func:`cold_and_warm`, with the steady state
    in the warm one and one kernel pass after the compile in the cold one), and for
    ``case.numba_waits`` a cold ``backend="numba"`` process on another empty folder."""
    cold, warm = cold_and_warm(case, passes=(1, 10), during=True, env_extra=env_extra, timeout=timeout)
    numba = None
    if case.numba_waits:
        folder = tempfile.mkdtemp(prefix="poolkit-first-call-")
        try:
            numba = run_child(child_spec(case, backend="numba", wait=False),
                              dict(env_extra or {}, POOLKIT_CACHE_DIR=folder), timeout=timeout)
            numba["scenario"] = "cold, backend='numba'"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    processes = [p for p in (cold, warm, numba) if p is not None]
    return {"name": case.name, "title": case.title, "input": case.input_text, "call": case.call_text,
            "api": case.api, "oracle": case.oracle, "case": asdict(case),
            "cold": cold, "warm": warm, "numba": numba,
            "ok": all(p["ok"] for p in processes),
            "correct": all(p["ok"] and p["correct"] for p in processes)}


# --------------------------------------------------------------------------- #
# cache-folder scenarios
# --------------------------------------------------------------------------- #
def read_only_prefix(folder: str) -> Tuple[Optional[Tuple[str, ...]], str]:
    """``(prefix, why_not)``: a command prefix that runs its command with ``folder`` mounted read-only.

    The mount lives in a private mount namespace (``unshare -m``; ``-r`` as well
    for a regular user, where user namespaces allow it), so no other process
    sees it.  A mode like 0o555 would not do: root writes anyway.  Returns
    ``(None, reason)`` where this cannot be arranged.
    """
    if shutil.which("unshare") is None:
        return None, "`unshare` (util-linux) is not installed"
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && shift && exec "$@"'
    prefix = ("unshare", *flags, "sh", "-c", script, folder, "--")
    probe = subprocess.run(list(prefix) + ["sh", "-c", 'touch "$0/.poolkit-probe" 2>/dev/null && exit 3 || '
                                                    'exit 0', folder], capture_output=True, text=True)
    if probe.returncode == 3:
        try:
            os.remove(os.path.join(folder, ".poolkit-probe"))
        except OSError:
            pass
        return None, f"the read-only mount of {folder} was still writable"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return None, f"`unshare {' '.join(flags)}` with a read-only bind mount failed: {why}"
    return prefix, ""


def _not_run(name: str, title: str, reason: str) -> dict:
    return {"name": name, "title": title, "status": "not run", "reason": reason, "processes": [],
            "ok": True, "correct": True}


def _read_only_run(name: str, title: str, measure: Callable[[Tuple[str, ...], str], dict]) -> dict:
    """The record of one scenario that runs its children with the package folder read-only.

    Parameters
    ----------
    name, title : str
        The scenario's key and its heading.
    measure : callable
        ``measure(prefix, base)`` runs the children behind ``prefix`` (:func:`read_only_prefix`),
        with ``base`` a new scratch folder, and returns the rest of the record: ``expect``,
        ``processes``, ``ok``, ``correct`` and ``as_expected``.

    Returns
    -------
    record : dict
        ``"not run"``, with the reason, where no read-only mount can be made.  The scratch
        folder is removed afterwards, whatever happened.
    """
    prefix, why = read_only_prefix(_PACKAGE)
    if prefix is None:
        return _not_run(name, title, why)
    base = tempfile.mkdtemp(prefix="poolkit-first-call-")
    try:
        return {"name": name, "title": title, "status": "run", **measure(prefix, base)}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def read_only_package(case: Case = CASES[0], *, env_extra: Optional[Mapping[str, str]] = None,
                      timeout: float = 900) -> dict:
    """The package folder read-only, no cache variable set, ``XDG_CACHE_HOME`` a new folder.

    Expected: kernels go to the user cache folder (``kernel_cache == "user"``,
    below ``XDG_CACHE_HOME``), and a second process loads them from there
    without compiling (no kernel added).
    """
    def measure(prefix: Tuple[str, ...], base: str) -> dict:
        xdg = os.path.join(base, "xdg")
        env = dict(env_extra or {}, XDG_CACHE_HOME=xdg)
        processes = []
        for scenario in ("first process", "second process"):
            row = run_child(child_spec(case), env, prefix=prefix, timeout=timeout)
            row.update(scenario=scenario, cache_files=cache_files(xdg))
            processes.append(row)
        first, second = processes
        for row in processes:
            if row["ok"] and (row["kernel_cache"] != "user"
                              or not str(row["kernel_cache_dir"]).startswith(xdg + os.sep)):
                _note(row, f"expected the user cache folder below {xdg}, but got {row['kernel_cache']} "
                           f"({row['kernel_cache_dir']})")
        if first["ok"] and second["ok"]:
            if first["cache_files"] == 0:
                _note(first, "no kernel was written to the user cache folder")
            elif second["cache_files"] == first["cache_files"]:
                _note(second, f"found the {first['cache_files']} kernels of the first process: no compile")
            else:
                _note(second, f"{second['cache_files'] - first['cache_files']} more kernels: "
                              f"some kernel was compiled again")
        return {"expect": "user", "processes": processes, "ok": all(p["ok"] for p in processes),
                "correct": all(p["ok"] and p["correct"] for p in processes),
                "as_expected": all(p["ok"] and p["kernel_cache"] == "user" for p in processes)
                and 0 < first["cache_files"] == second["cache_files"]}

    return _read_only_run("read-only-package", "read-only package folder", measure)


def nothing_writable(case: Case = CASES[0], *, env_extra: Optional[Mapping[str, str]] = None,
                     timeout: float = 900) -> dict:
    """The package folder read-only, and ``POOLKIT_CACHE_DIR`` and ``XDG_CACHE_HOME`` below a regular
    file (folders no one can create): kernels stay in memory (``kernel_cache == "memory"``), and
    results are still correct."""
    def measure(prefix: Tuple[str, ...], base: str) -> dict:
        blocker = os.path.join(base, "a-file")
        with open(blocker, "w") as f:
            f.write("not a folder\n")
        env = dict(env_extra or {}, POOLKIT_CACHE_DIR=os.path.join(blocker, "cache"),
                   XDG_CACHE_HOME=os.path.join(blocker, "xdg"))
        row = run_child(child_spec(case), env, prefix=prefix, timeout=timeout)
        row.update(scenario="only process", cache_files=0)
        if row["ok"] and row["kernel_cache"] != "memory":
            _note(row, f"expected kernel_cache 'memory', but got {row['kernel_cache']} ({row['kernel_cache_dir']})")
        return {"expect": "memory", "processes": [row], "ok": row["ok"], "correct": row["ok"] and row["correct"],
                "as_expected": row["ok"] and row["kernel_cache"] == "memory"}

    return _read_only_run("nothing-writable", "nothing writable", measure)


SCENARIOS = {"read-only-package": read_only_package, "nothing-writable": nothing_writable}


if __name__ == "__main__":
    _child_main()
