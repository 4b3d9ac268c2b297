"""poolkit.write_pyramid: OME-Zarr round trips checked by independent readers (ome-zarr-py, ome-zarr-models)."""
import json
import os

import numpy as np
import pytest

import poolkit

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
ome_io = pytest.importorskip("ome_zarr.io")
ome_reader = pytest.importorskip("ome_zarr.reader")


def read_with_ome_zarr(path):
    """Levels and the multiscales node as ome-zarr-py sees them (None if it sees no image)."""
    nodes = list(ome_reader.Reader(ome_io.parse_url(str(path)))())
    for node in nodes:
        if any(isinstance(s, ome_reader.Multiscales) for s in node.specs):
            return [np.asarray(d) for d in node.data], node
    return None, None


def validate_with_models(path, version):
    """ome-zarr-models' pydantic validation of the whole image (arrays' shapes, dtypes, metadata)."""
    # Not in the test extra: the checks before this call have run when it skips.
    models = pytest.importorskip(f"ome_zarr_models.v0{version[-1]}")
    return models.Image.from_zarr(zarr.open_group(str(path), mode="r"))


rng = np.random.default_rng(3)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_numpy_round_trip(tmp_path, version):
    x = rng.integers(0, 4000, (37, 45)).astype(np.uint16)
    path = tmp_path / "img.ome.zarr"
    shapes = poolkit.write_pyramid(x, path, chunks=16, version=version, scale=0.5,
                                   units={"y": "micrometer", "x": "micrometer"})
    want = poolkit.pyramid(x, 2)                        # 37x45 -> 19x23 -> 10x12: fits a 16 chunk
    assert shapes == [w.shape for w in want]
    levels, node = read_with_ome_zarr(path)
    assert len(levels) == 3
    for got, w in zip(levels, want):
        np.testing.assert_array_equal(got, w)
        assert got.dtype == w.dtype
    transforms = node.metadata["coordinateTransformations"]
    for k, t in enumerate(transforms):
        assert t[0] == {"type": "scale", "scale": [0.5 * 2**k] * 2}
        assert t[1] == {"type": "translation", "translation": [0.5 * (2**k - 1) / 2] * 2}
    assert [a["name"] for a in node.metadata["axes"]] == ["y", "x"]
    assert node.metadata["axes"][0]["unit"] == "micrometer"
    image = validate_with_models(path, version)
    assert image is not None
    assert zarr.open_array(str(path / "1"), mode="r").chunks == (16, 16)


def test_dask_round_trip_with_channels(tmp_path):
    x = rng.standard_normal((2, 9, 21, 26)).astype(np.float32)          # (C, Z, Y, X)
    d = da.from_array(x, chunks=(1, 4, 7, 9))
    path = tmp_path / "vol.ome.zarr"
    # A small memory target: many region tasks, in three stages.
    shapes = poolkit.write_pyramid(d, path, axes_names="czyx", chunks=(1, 4, 8, 8), memory=2**19, workers=2)
    want = poolkit.pyramid(x, len(shapes) - 1, axes=(1, 2, 3))
    assert shapes[-1][1:] == (3, 6, 7)                  # the first level with z <= 4 and y, x <= 8
    levels, node = read_with_ome_zarr(path)
    for got, w in zip(levels, want):
        np.testing.assert_array_equal(got, w)           # bit for bit: the same kernels per window
    assert [a["type"] for a in node.metadata["axes"]] == ["channel", "space", "space", "space"]
    t1 = node.metadata["coordinateTransformations"][1]
    assert t1[0]["scale"] == [1.0, 2.0, 2.0, 2.0] and t1[1]["translation"] == [0.0, 0.5, 0.5, 0.5]
    validate_with_models(path, "0.5")
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["attributes"]["ome"]["version"] == "0.5"


def test_nearest_has_no_shift_and_labels_keep_dtype(tmp_path):
    labels = rng.integers(0, 5, (20, 30)).astype(np.uint32)
    path = tmp_path / "labels.ome.zarr"
    poolkit.write_pyramid(labels, path, method="nearest", chunks=8)
    levels, node = read_with_ome_zarr(path)
    for k, t in enumerate(node.metadata["coordinateTransformations"]):
        assert t[1]["translation"] == [0.0, 0.0]
    np.testing.assert_array_equal(levels[1], labels[::2, ::2])
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    assert attrs["ome"]["multiscales"][0]["type"] == "nearest"


def test_metadata_is_written_last(tmp_path, monkeypatch):
    x = rng.integers(0, 9, (12, 12)).astype(np.uint8)
    path = tmp_path / "cut.ome.zarr"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    # Every array is written; the process dies as it is about to write the metadata.
    monkeypatch.setattr(poolkit.multiscale.ngff, "_multiscales", interrupted)
    with pytest.raises(KeyboardInterrupt):
        poolkit.write_pyramid(x, path, chunks=4)
    monkeypatch.undo()
    assert (path / "0").exists() and (path / "1").exists()
    assert read_with_ome_zarr(path) == (None, None)                 # not mistaken for an image
    assert "ome" not in json.loads((path / "zarr.json").read_text())["attributes"]
    # A re-run must say what to do with the interrupted write: resume it (or overwrite it).
    with pytest.raises(FileExistsError, match=r"holds an interrupted write_pyramid; pass resume=True"):
        poolkit.write_pyramid(x, path, chunks=4)
    poolkit.write_pyramid(x, path, chunks=4, resume=True)
    levels, _ = read_with_ome_zarr(path)
    np.testing.assert_array_equal(levels[1], poolkit.pyramid(x, 1)[1])
    assert "poolkit_incomplete" not in json.loads((path / "zarr.json").read_text())["attributes"]
    assert not (path / "poolkit-journal.txt").exists()
    # Other settings cannot resume it.
    monkeypatch.setattr(poolkit.multiscale.ngff, "_multiscales", interrupted)
    with pytest.raises(KeyboardInterrupt):
        poolkit.write_pyramid(x, path, chunks=4, overwrite=True)
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match=r"other settings \(factors: .*chunks: "):
        poolkit.write_pyramid(x, path, chunks=6, resume=True)


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "img.ome.zarr"
    poolkit.write_pyramid(np.zeros((8, 8), np.uint8), path, chunks=4)
    with pytest.raises(FileExistsError, match=r"already holds a complete OME-Zarr image; pass overwrite=True"):
        poolkit.write_pyramid(np.ones((8, 8), np.uint8), path, chunks=4)
    poolkit.write_pyramid(np.ones((6, 6), np.uint8), path, chunks=4, overwrite=True, levels=1)
    levels, _ = read_with_ome_zarr(path)
    assert [a.shape for a in levels] == [(6, 6), (3, 3)]
    assert not (path / "2").exists()                    # the old level 2 went with the old image
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already holds data"):
        poolkit.write_pyramid(np.zeros((8, 8), np.uint8), other)
    assert (other / "a.txt").read_text() == "mine"


X = np.zeros((8, 8), np.uint8)
ERRORS = [
    (dict(x=np.zeros(8)), ValueError, r"OME-NGFF images have 2 to 5 axes, but `x` has ndim=1"),
    (dict(axes_names="xy"), ValueError, r"`axes_names` must name .*axes_names='xy'"),
    (dict(axes_names="cx"), ValueError, r"at least two of z, y, x .*axes_names='cx'"),
    (dict(x=np.zeros((2, 8, 8)), axes_names="cyx", axes=(0, 1)), ValueError, r"`axes` must not pool a channel axis, but got axes=\(0, 1\)"),
    (dict(axes=5), ValueError, r"`axes` must lie in \[-2, 2\)"),
    (dict(version="0.3"), ValueError, r"`version` must be one of \('0.4', '0.5'\), but got version='0.3'"),
    (dict(chunks=(4, 0)), ValueError, r"`chunks` must be a positive number or one per axis \(2\), but got chunks=\(4, 0\)"),
    (dict(chunks=2.5), ValueError, r"`chunks` must be ints, but got chunks=2.5"),
    (dict(scale=(1.0,)), ValueError, r"`scale` .*one per axis \(2\), but got scale=\(1.0,\)"),
    (dict(units={"q": "m"}), ValueError, r"`units` must map axis names of 'yx' .*units=\{'q': 'm'\}"),
    (dict(overwrite="yes"), TypeError, r"`overwrite` must be a bool, but got overwrite='yes'"),
    (dict(resume=1), TypeError, r"`resume` must be a bool, but got resume=1"),
    (dict(resume=True, overwrite=True), ValueError, r"`overwrite` and `resume` exclude each other"),
    (dict(name=3), TypeError, r"`name` must be a str, but got name=3"),
    (dict(method="median"), ValueError, r"`method` must be one of"),
    (dict(codec="lzma"), ValueError, r"`codec` must be one of \('zstd', .*but got codec='lzma'"),
    (dict(codec="zstd:99"), ValueError, r"but got codec='zstd:99'"),
    (dict(shards=(3, 4), chunks=2), ValueError, r"`shards` must be multiples of the chunks \(2, 2\), but got shards=\(3, 4\)"),
    (dict(shards="big"), ValueError, r"`shards` must be 'auto', None or an int or one per axis \(2\)"),
    (dict(shards=4, version="0.4"), ValueError, r"`shards` need Zarr format 3 \(version='0.5'\)"),
    (dict(memory=0), ValueError, r"`memory` must be a number of bytes >= 1, but got memory=0"),
    (dict(x=np.zeros((64, 64), np.uint8), chunks=8, memory=1000), ValueError, r"`memory`=1000 \(1000 B\) is too small for one region of level 0 \(the "
                                    r"input\) with 1 workers: a task needs .*; the smallest memory that fits every level is "
                                    r"\d+ \(\d+\.\d KiB\)"),
    (dict(workers=0), ValueError, r"`workers` must be an int >= 1, but got workers=0"),
    (dict(scheduler="mpi"), ValueError, r"`scheduler` must be one of \('threads', 'processes', 'synchronous'\)"),
    (dict(scheduler=3), TypeError, r"`scheduler` must be a str or a distributed.Client, but got scheduler=3"),
    (dict(factors=[(2, 2, 2)]), ValueError, r"`factors` entry 0 must be an int >= 1 or 2 of them"),
]


@pytest.mark.parametrize("kwargs,exc,match", ERRORS, ids=[m[:30] for _, _, m in ERRORS])
def test_errors(tmp_path, kwargs, exc, match):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X)
    kwargs.setdefault("workers", 1)
    with pytest.raises(exc, match=match):
        poolkit.write_pyramid(x, tmp_path / "out.ome.zarr", **kwargs)
    assert not os.path.exists(tmp_path / "out.ome.zarr")       # nothing written before validation
