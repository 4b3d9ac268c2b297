"""The repository holds source, docs and small data: no binaries, caches or generated outputs over 1 MB."""
from __future__ import annotations

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_BYTES = 1_000_000
# Documented data allowed above MAX_BYTES: path (relative to the repository root) -> what it is and
# where it is documented.  Empty: nothing in poolkit needs a large file.
DOCUMENTED_DATA: dict = {}


def _tracked_files():
    """Files git tracks, as they are in the working tree (those deleted there are leaving: skipped)."""
    try:
        proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"git is not available ({exc})")
    if proc.returncode != 0:
        pytest.skip("not inside a git checkout")
    deleted = subprocess.run(["git", "ls-files", "-z", "--deleted"], cwd=ROOT, capture_output=True,
                             timeout=60).stdout.split(b"\0")
    return [p.decode() for p in proc.stdout.split(b"\0") if p and p not in deleted]


def test_no_large_tracked_files():
    large = {}
    for path in _tracked_files():
        full = os.path.join(ROOT, path)
        if os.path.isfile(full) and not os.path.islink(full) and os.path.getsize(full) > MAX_BYTES:
            large[path] = os.path.getsize(full)
    undocumented = {p: n for p, n in large.items() if p not in DOCUMENTED_DATA}
    stale = [p for p in DOCUMENTED_DATA if p not in large]
    assert not stale, f"DOCUMENTED_DATA lists files that are gone or small now: {stale}; remove those entries."
    assert not undocumented, (
        f"git tracks files over {MAX_BYTES:,} bytes that are not documented data: "
        + ", ".join(f"{p} ({n:,} bytes)" for p, n in sorted(undocumented.items()))
        + ". Remove them (git rm) or, for real data, list them in DOCUMENTED_DATA with where they are documented.")

