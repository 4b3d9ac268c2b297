"""Direct chunk I/O (multiscale.chunkio) against zarr-python: every layout it claims, both ways."""
import os

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from poolkit.multiscale.chunkio import ChunkError, FastReader, FastWriter, layout_of  # noqa: E402

rng = np.random.default_rng(4)


def layouts():
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ZstdCodec

    yield "v3-zstd", dict(zarr_format=3)
    yield "v3-blosc-lz4", dict(zarr_format=3, compressors=BloscCodec(cname="lz4", clevel=3))
    yield "v3-gzip-crc", dict(zarr_format=3, compressors=[GzipCodec(level=1), Crc32cCodec()])
    yield "v3-none-big-endian", dict(zarr_format=3, compressors=None, serializer=BytesCodec(endian="big"))
    yield "v3-sharded", dict(zarr_format=3, shards=(8, 12))
    yield "v3-sharded-zstd5", dict(zarr_format=3, shards=(16, 12), compressors=ZstdCodec(level=5))
    yield "v2-default", dict(zarr_format=2)
    yield "v2-blosc-slash-F", dict(zarr_format=2, chunk_key_encoding={"name": "v2", "separator": "/"},
                                   order="F")
    yield "v2-big-endian", dict(zarr_format=2, dtype=">u2")


LAYOUTS = list(layouts())


@pytest.mark.parametrize("name,kw", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_reader_equals_zarr(tmp_path, name, kw):
    kw = dict(kw)
    dtype = kw.pop("dtype", "uint16")
    x = rng.integers(0, 3000, (21, 30)).astype(dtype)
    x[:8, :8] = 0                                         # an empty chunk: not stored
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, chunks=(4, 6), dtype=dtype, **kw)
    z[...] = x
    lay = layout_of(z)
    assert lay is not None, name
    reader = FastReader(lay, "a.zarr")
    for box in [(slice(0, 21), slice(0, 30)), (slice(3, 17), slice(5, 29)), (slice(20, 21), slice(0, 1))]:
        got = reader.read(box)
        assert got.dtype == np.dtype(dtype).newbyteorder("=")
        np.testing.assert_array_equal(got, x[box])
    got, raw = reader.read((slice(0, 8), slice(0, 12)), raw=True)
    assert sorted(raw) == [(a, b) for a in range(2) for b in range(2)]
    assert raw[(0, 0)] is None and raw[(1, 1)] is not None


@pytest.mark.parametrize("name,kw", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_writer_read_by_zarr(tmp_path, name, kw):
    kw = dict(kw)
    dtype = kw.pop("dtype", "uint16")
    x = rng.integers(0, 3000, (21, 30)).astype(dtype)
    x[:4, :6] = 0
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, chunks=(4, 6), dtype=dtype, fill_value=0, **kw)
    lay = layout_of(z)
    writer = FastWriter(lay)
    unit = lay.unit
    # Two boxes aligned to the stored units, the second one at the far edges.
    cut = unit[0] * (21 // unit[0] // 2 or 1)
    writer.write((slice(0, cut), slice(0, 30)), x[:cut])
    writer.write((slice(cut, 21), slice(0, 30)), x[cut:])
    back = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...]
    np.testing.assert_array_equal(back, x)
    if lay.shards is None:
        assert not os.path.exists(lay.key((0, 0)))        # all zeros: not stored
    # Rewriting with zeros removes what was stored (a stale file of an interrupted run).
    writer.write((slice(0, cut), slice(0, 30)), np.zeros_like(x[:cut]))
    assert not zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[:cut].any()


def test_copied_chunks_equal_encoded_ones(tmp_path):
    x = rng.integers(0, 3000, (16, 16)).astype(np.uint16)
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(8, 8), dtype=x.dtype)
    src[...] = x
    data, raw = FastReader(layout_of(src), "in").read((slice(0, 16), slice(0, 16)), raw=True)
    dst = zarr.create_array(str(tmp_path / "out.zarr"), shape=x.shape, chunks=(4, 8), shards=(8, 8), dtype=x.dtype)
    assert not layout_of(src).codec.same_bytes_as(layout_of(dst).codec)     # other chunks: no copy
    dst = zarr.create_array(str(tmp_path / "out2.zarr"), shape=x.shape, chunks=(8, 8), shards=(16, 16), dtype=x.dtype)
    assert layout_of(src).codec.same_bytes_as(layout_of(dst).codec)
    FastWriter(layout_of(dst)).write((slice(0, 16), slice(0, 16)), data, raw)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out2.zarr"))[...], x)


def test_unsupported_layouts_fall_back():
    from zarr.codecs import TransposeCodec

    mem = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2, 2), dtype="u1")
    assert layout_of(mem) is None
    import tempfile

    t = zarr.create_array(os.path.join(tempfile.mkdtemp(), "t.zarr"), shape=(4, 4), chunks=(2, 2), dtype="u1",
                          filters=[TransposeCodec(order=(1, 0))])
    assert layout_of(t) is None


def test_corrupt_chunk_is_named(tmp_path):
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 8), chunks=(4, 4), dtype="u2")
    z[...] = 7
    with open(tmp_path / "a.zarr" / "c" / "1" / "0", "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ChunkError, match=r"cannot read chunk c/1/0 of a.zarr: "):
        FastReader(layout_of(z), "a.zarr").read((slice(0, 8), slice(0, 8)))
    s = zarr.create_array(str(tmp_path / "s.zarr"), shape=(8, 8), chunks=(4, 4), shards=(8, 8), dtype="u2")
    s[...] = 7
    with open(tmp_path / "s.zarr" / "c" / "0" / "0", "r+b") as f:
        f.truncate(30)
    with pytest.raises(ChunkError, match=r"cannot read chunk \(0, 0\) \(in shard c/0/0\) of s.zarr: shard of 30"):
        FastReader(layout_of(s), "s.zarr").read((slice(0, 8), slice(0, 8)))
