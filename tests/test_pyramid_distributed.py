"""pyramid and write_pyramid on a real dask.distributed LocalCluster (2 worker processes).

The cluster runs in a subprocess with a timeout: a hung cluster cannot hang the suite.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

SCRIPT = textwrap.dedent(r'''
    import os, subprocess, sys
    import numpy as np
    import dask.array as da
    import distributed, zarr
    import poolkit

    def levels_of(path):
        g = zarr.open_group(path, mode="r")
        return [g[d["path"]][...] for d in g.attrs["ome"]["multiscales"][0]["datasets"]]

    tmp = sys.argv[1]
    rng = np.random.default_rng(8)
    image = rng.standard_normal((45, 61)).astype(np.float32)
    labels = rng.integers(0, 5, (13, 21, 18)).astype(np.uint16)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        # The Dask-array API, computed on the workers.
        for x, method, d in [(image, "mean", da.from_array(image, chunks=(7, 10))),
                             (labels, "mode", da.from_array(labels, chunks=(5, 4, 6)))]:
            want = poolkit.pyramid(x, 3, method=method)
            got = client.compute(poolkit.pyramid(d, 3, method=method, max_block_bytes=512), sync=True)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)
        # write_pyramid with the client active: region tasks on the cluster, from a Zarr input on disk.
        src = zarr.create_array(os.path.join(tmp, "in.zarr"), shape=labels.shape, chunks=(4, 8, 8), dtype=labels.dtype)
        src[...] = labels
        out = os.path.join(tmp, "img.ome.zarr")
        shapes = poolkit.write_pyramid(src, out, method="mode", chunks=4, memory=2**21)
        want = poolkit.pyramid(labels, len(shapes) - 1, method="mode")
        for g, w in zip(levels_of(out), want):
            np.testing.assert_array_equal(g, w)
        # The tasks ran on the workers: they imported poolkit's region module.
        assert all(client.run(lambda: "poolkit.multiscale.regions" in sys.modules).values())
        # The CLI on the same cluster, by address.
        out2 = os.path.join(tmp, "cli.ome.zarr")
        proc = subprocess.run([sys.executable, "-m", "poolkit.cli", "pyramid", os.path.join(tmp, "in.zarr"), out2,
                               "--method", "mode", "--chunks", "4", "--memory", "2M", "--quiet",
                               "--scheduler", cluster.scheduler_address], capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr
        for g, w in zip(levels_of(out2), want):
            np.testing.assert_array_equal(g, w)
    print("ok")
''')


def test_local_cluster(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=400, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
