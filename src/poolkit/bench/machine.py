"""The machine a benchmark ran on: the header of every report, and how busy the machine was.

Numba compiles poolkit's kernels for the host CPU, so a time means little
without the CPU's vector extensions (AVX2 and AVX-512 on x86, NEON and SVE on
Arm) beside its model name; they come from ``/proc/cpuinfo`` or, where that is
missing, from LLVM's view of the host (the CPU Numba compiles for).
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import time
from typing import Dict, List, Optional, Tuple

__all__ = ["BUSY_FRACTION", "CpuWatch", "cpu_line", "cpu_model", "git_commit", "git_text", "machine_info",
           "machine_line", "now_utc", "vector_extensions"]

BUSY_FRACTION = 0.05        # other processes used more than this share of the CPUs: the run is noisy
_CPUINFO = "/proc/cpuinfo"

# (name in reports, /proc/cpuinfo flags that mean it, LLVM feature that means it); the
# extensions that decide how many lanes the compiled kernels get.
_VECTOR_EXTENSIONS: Tuple[Tuple[str, Tuple[str, ...], str], ...] = (
    ("SSE4.2", ("sse4_2",), "sse4.2"),
    ("AVX", ("avx",), "avx"),
    ("AVX2", ("avx2",), "avx2"),
    ("FMA", ("fma",), "fma"),
    ("AVX-512F", ("avx512f",), "avx512f"),
    ("AVX-512BW", ("avx512bw",), "avx512bw"),
    ("AVX-512VL", ("avx512vl",), "avx512vl"),
    ("NEON", ("asimd", "neon"), "neon"),          # "asimd" on AArch64, "neon" on 32-bit Arm
    ("SVE", ("sve",), "sve"),
    ("SVE2", ("sve2",), "sve2"),
)


def _cpuinfo_field(*names: str) -> Optional[str]:
    """The first ``name : value`` line of /proc/cpuinfo whose name is one of ``names`` (lower case)."""
    try:
        with open(_CPUINFO) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip().lower() in names and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13"), or the best the platform tells."""
    # x86: "model name"; Arm: "model name" on newer kernels, else "Hardware" or "CPU part" only.
    name = _cpuinfo_field("model name", "hardware")
    return name or platform.processor() or platform.machine() or "unknown CPU"


def vector_extensions() -> Tuple[List[str], str]:
    """The CPU's SIMD extensions among SSE4.2, AVX, AVX2, FMA, AVX-512F/BW/VL, NEON, SVE, SVE2.

    Returns the names found and where they came from: ``"/proc/cpuinfo"``,
    ``"llvm"`` (llvmlite's host features, where /proc is missing) or
    ``"unknown"``.
    """
    flags = _cpuinfo_field("flags", "features")      # x86: "flags"; Arm: "Features"
    if flags is not None:
        have = set(flags.split())
        return [name for name, proc, _ in _VECTOR_EXTENSIONS if have.intersection(proc)], "/proc/cpuinfo"
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
    except (ImportError, RuntimeError):
        return [], "unknown"
    return [name for name, _, feature in _VECTOR_EXTENSIONS if features.get(feature)], "llvm"


def _llvm_cpu() -> Optional[str]:
    """The CPU name LLVM (so Numba) compiles for, e.g. "znver3" or "skylake-avx512"."""
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except (ImportError, RuntimeError):
        return None


def git_commit() -> Optional[Dict[str, object]]:
    """The commit of poolkit's source: ``{"commit": sha, "dirty": bool}``, or None outside a git checkout.

    Asked in the folder of the imported package, and only when git tracks that
    folder, so an installed copy inside some other repository (a venv in a
    checkout) reports None rather than that repository's commit.
    """
    import poolkit

    folder = os.path.dirname(os.path.abspath(poolkit.__file__))

    def git(*args: str) -> Optional[str]:
        try:
            proc = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    if not git("ls-files", "--error-unmatch", "__init__.py"):
        return None
    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "dirty": bool(status)}


def git_text(commit: Optional[Dict[str, object]]) -> Optional[str]:
    """``"2191abd"`` or ``"2191abd with uncommitted changes"`` (None stays None)."""
    if not commit:
        return None
    return str(commit["commit"])[:7] + (" with uncommitted changes" if commit["dirty"] else "")


def now_utc() -> str:
    """The date and time of a report: ``2026-11-27 02:40 UTC``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, vector extensions, cores, load, versions, git commit and poolkit settings (a report header)."""
    from .. import info

    d = info()
    try:
        usable: Optional[int] = len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        usable = os.cpu_count()
    try:
        load: Optional[List[float]] = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    vector, source = vector_extensions()
    d.update({
        "cpu": cpu_model(),
        "vector_extensions": vector,
        "vector_extensions_from": source,
        "llvm_cpu": _llvm_cpu(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load,
        "git": git_commit(),
        "torch": _version("torch"),
        "jax": _version("jax"),
    })
    return d


def cpu_line(m: dict) -> str:
    """``AMD EPYC 7B13 (AVX, AVX2, FMA; LLVM target znver3), 2 cores (2 usable)``."""
    vector = ", ".join(m.get("vector_extensions") or []) or "vector extensions unknown"
    if m.get("llvm_cpu"):
        vector += f"; LLVM target {m['llvm_cpu']}"
    return f"{m['cpu']} ({vector}), {m['cores']} cores ({m['usable_cores']} usable)"


def machine_line(m: dict) -> str:
    """The machine in one line: CPU, load, versions, git commit and kernel cache."""
    versions = [f"Python {m['python']}", f"poolkit {m['poolkit']}"]
    if m.get("git"):
        versions[-1] += f" (git {git_text(m['git'])})"
    versions += [f"numpy {m['numpy']}", f"numba {m['numba']}"]
    versions += [f"{k} {m[k]}" for k in ("torch", "jax") if m.get(k)]
    load = f"; load {m['load_average'][0]}" if m.get("load_average") else ""
    return f"{cpu_line(m)}{load}; " + ", ".join(versions) + f"; Numba kernel cache: {m['kernel_cache']}"


class CpuWatch:
    """How much CPU *other* processes used while we ran: machine busy time (/proc/stat) minus ours.

    This is the noise indicator of a run: on a 2-core machine a second busy process slows
    multi-threaded kernels several times over.  ``stop()`` returns None where /proc/stat is missing.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> Optional[Dict[str, float]]:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        t = os.times()
        return {"busy": user + nice + system + irq + softirq, "steal": steal, "wall": time.monotonic(),
                "own": t.user + t.system}

    def stop(self) -> Optional[Dict[str, float]]:
        """``wall_s``, ``own_cpu_s``, ``others`` and ``steal`` (shares of all CPUs) since the start."""
        end = self._sample()
        if self.start is None or end is None or end["wall"] <= self.start["wall"]:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        wall = end["wall"] - self.start["wall"]
        cores = os.cpu_count() or 1
        busy = (end["busy"] - self.start["busy"]) / hz
        own = end["own"] - self.start["own"]
        steal = (end["steal"] - self.start["steal"]) / hz
        return {"wall_s": round(wall, 2), "own_cpu_s": round(own, 2),
                "others": round(max(0.0, busy - own) / (wall * cores), 3),
                "steal": round(steal / (wall * cores), 3)}
