"""pyramid and write_pyramid on a real dask.distributed LocalCluster (2 worker processes)."""
import numpy as np
import pytest

import poolkit

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def test_pyramid_and_write_pyramid_on_a_local_cluster(client, tmp_path):
    rng = np.random.default_rng(8)
    image = rng.standard_normal((45, 61)).astype(np.float32)
    labels = rng.integers(0, 5, (13, 21, 18)).astype(np.uint16)
    cases = [(image, "mean", da.from_array(image, chunks=(7, 10))),
             (labels, "mode", da.from_array(labels, chunks=(5, 4, 6)))]
    for x, method, d in cases:
        want = poolkit.pyramid(x, 3, method=method)
        levels = poolkit.pyramid(d, 3, method=method, max_block_bytes=512)
        got = client.compute(levels, sync=True)                 # runs on the workers
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    # write_pyramid with the client active: Dask's default scheduler is the cluster.
    path = tmp_path / "img.ome.zarr"
    shapes = poolkit.write_pyramid(da.from_array(image, chunks=(7, 10)), path, chunks=16)
    group = zarr.open_group(str(path), mode="r")
    want = poolkit.pyramid(image, len(shapes) - 1)
    for k, w in enumerate(want):
        np.testing.assert_array_equal(group[str(k)][...], w)
    assert "multiscales" in group.attrs
    # The work ran on the workers: they computed with poolkit (imported there).
    assert all(client.run(lambda: "poolkit.multiscale" in __import__("sys").modules).values())
