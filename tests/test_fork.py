"""Pooling in child processes after the parent pooled on several threads.

The pool's worker threads do not survive ``os.fork``: before the fix, a forked
child that pooled a large input was killed (GNU OpenMP) and ``multiprocessing``
with "fork" hung.  Each scenario runs in its own interpreter, so that a hang or
a killed process fails the test instead of ending the run; every child's result
must equal the parent's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import multiprocessing, os, pickle, sys
    import numpy as np
    import poolkit

    def work(seed):
        # >= 1 << 15 elements: the numba backend's parallel path when threads allow it
        x = np.random.default_rng(seed).standard_normal((4, 8, 32, 64))
        layer = poolkit.MaxPool2d(3, 2, 1)
        y = layer(x)
        gx = layer.backward(np.ones_like(y))
        return y, gx, poolkit.avg_pool2d(x, 2), poolkit.get_num_threads()

    def same(a, b):
        return all(np.array_equal(u, v) for u, v in zip(a[:3], b[:3]))

    if __name__ == "__main__":
        how = sys.argv[1]
        with poolkit.threads(2):
            expected = work(0)                 # the parent's pool is now running
        assert expected[3] == poolkit.get_num_threads()
        if how == "os.fork":
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    with poolkit.threads(2):   # asked for 2: a forked child still runs on 1
                        os.write(w, pickle.dumps(work(0)))
                finally:
                    os._exit(0)
            os.close(w)
            data = b""
            while chunk := os.read(r, 1 << 20):
                data += chunk
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            got = pickle.loads(data)
            assert got[3] == 1, got[3]
        else:
            with multiprocessing.get_context(how).Pool(2) as workers:
                results = workers.map_async(work, [0, 0]).get(timeout=120)
            got = results[0]
            assert same(results[1], expected)
        assert same(got, expected)
        with poolkit.threads(2):               # and the parent still pools on its threads
            assert same(work(0), expected)
        print("ok", how, got[3])
""")


@pytest.mark.parametrize("how", ["os.fork", "fork", "spawn", "forkserver"])
def test_child_process_pools_like_the_parent(tmp_path, how):
    if how != "spawn" and not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")           # Windows: spawn only
    script = tmp_path / "scenario.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    env.pop("POOLKIT_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    try:
        run = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True,
                             timeout=300, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{how}: the scenario hung (no answer within 300 s)")
    assert run.returncode == 0, f"{how}: exit code {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert f"ok {how}" in run.stdout
