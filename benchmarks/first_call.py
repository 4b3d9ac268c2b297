"""First-call latency of poolkit in a fresh process, with and without Numba's on-disk kernel cache.

Usage::

    python benchmarks/first_call.py            # prints a table, writes results/first_call.{md,json}
    python benchmarks/first_call.py --json     # the raw numbers (also written to results/)
    python benchmarks/first_call.py --out DIR  # write the .md and .json files to DIR instead

Each scenario starts a new Python process that imports poolkit and runs the
chapter's case (64x3x28x28 float64, 2x2 stride 2) forward+backward through the
layer API, max then average pooling, then more max passes (the steady
state: the best of ten).  Scenarios:

cold
    The kernel cache (``POOLKIT_CACHE_DIR`` and ``NUMBA_CACHE_DIR``) is a new
    empty folder: every kernel is compiled (and written there).
warm
    The same folder again: kernels are loaded from the cache.
read-only folder
    The cache folder has mode 0o500.  Root ignores that mode,
    so when run as root the cache is written anyway and the table says so.
unwritable folder
    The cache folder lies below a regular file, so no one, root included,
    can create it: poolkit must fall back to compiling in memory
    (``poolkit.info()["kernel_cache"] == "memory"``) and still work.
default
    The environment as it is (the installed package's own cache).

In the first four, Numba is allowed no other cache location
(``NUMBA_CACHE_LOCATOR_CLASSES=UserProvidedCacheLocator``, Numba >= 0.61), so
a read-only install is simulated even where the source tree is writable.
The report records the machine (CPU model and vector extensions) and the git
commit it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile

from poolkit._benchkit.first_call import cache_env, cache_files, cold_and_warm, run_child
from poolkit._benchkit.machine import machine_info, machine_line, now_utc

HERE = os.path.dirname(os.path.abspath(__file__))


def scenarios() -> list:
    names = {"cold": "cold (empty cache folder)", "warm": "warm (cache filled)"}
    rows = [dict(r, scenario=names[r["scenario"]]) for r in cold_and_warm(full=True)]
    base = tempfile.mkdtemp(prefix="poolkit-first-call-")
    readonly = os.path.join(base, "readonly")
    try:
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
        r = run_child(cache_env(readonly))
        r.update(scenario="read-only folder (chmod 0o500)", cache_files=cache_files(readonly),
                 note="" if enforced else "permissions not enforced (running as root): the cache was written")
        rows.append(r)

        blocker = os.path.join(base, "a-file")
        with open(blocker, "w") as f:
            f.write("not a folder\n")
        r = run_child(cache_env(os.path.join(blocker, "cache")))
        r.update(scenario="unwritable folder (below a file)", cache_files=0,
                 note="" if r.get("kernel_cache") == "memory" else "expected kernel_cache 'memory'")
        rows.append(r)

        r = run_child({}, restrict=False)
        r.update(scenario="default environment", cache_files=None)
        rows.append(r)
    finally:
        if os.path.isdir(readonly):
            os.chmod(readonly, stat.S_IRWXU)          # so that a regular user can delete it
        shutil.rmtree(base, ignore_errors=True)
    return rows


def table(rows: list) -> str:
    head = ("scenario", "process", "import", "first max", "first avg", "steady max", "cache", "files", "correct",
            "note")
    lines = []
    for r in rows:
        if not r["ok"]:
            lines.append((r["scenario"], f"{r['wall_s']:.2f} s", "FAILED", "", "", "", "", "", "", r["error"]))
            continue
        lines.append((r["scenario"], f"{r['wall_s']:.2f} s", f"{r['import_s']:.2f} s", f"{r['first_max_s']:.2f} s",
                      f"{r['first_avg_s']:.2f} s", f"{r['steady_max_s'] * 1e3:.2f} ms", r["kernel_cache"],
                      "-" if r["cache_files"] is None else str(r["cache_files"]),
                      "yes" if r["correct"] else "NO", r.get("note", "")))
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in lines]
    return "\n".join(out)


def markdown(report: dict) -> str:
    return "\n".join([
        "# poolkit first call in a fresh process", "",
        f"- date: {report['date']}",
        f"- machine: {machine_line(report['machine'])}",
        f"- case: chapter case 64x3x28x28 float64, 2x2 stride 2, forward+backward through the layer API; "
        f"'process' is the whole child process, start to exit; running as {report['user']}",
        f"- command: `{report['command']}`", "",
        table(report["scenarios"]), ""])


def source_stamp() -> float:
    """Latest modification time of poolkit's .py files (Numba keys its cache on the source's)."""
    import importlib.util

    spec = importlib.util.find_spec("poolkit")
    folder = os.path.dirname(spec.origin)
    return max(os.path.getmtime(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names if name.endswith(".py"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="First-call latency of poolkit in fresh processes.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="folder for first_call.md and first_call.json (default: benchmarks/results)")
    args = parser.parse_args(argv)
    before = source_stamp()
    machine = machine_info()
    rows = scenarios()
    if source_stamp() != before:
        print("warning: poolkit's source changed during the run, so Numba's cache was invalidated "
              "between scenarios: warm may look like cold; run again", file=sys.stderr)
    report = {
        "date": now_utc(), "machine": machine, "git": machine["git"],
        "user": "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "a regular user",
        "command": "python benchmarks/first_call.py" + "".join(
            " " + a for a in (sys.argv[1:] if argv is None else argv)),
        "scenarios": rows,
    }
    text = markdown(report)
    print(json.dumps(report, indent=2) if args.json else text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "first_call.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "first_call.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'first_call.md')} and .json", file=sys.stderr)
    return 0 if all(r["ok"] and r["correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
