"""Direct chunk I/O (multiscale.chunkio) against zarr-python: every layout it claims, both ways."""
import os

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import errno  # noqa: E402

from poolkit.multiscale import chunkio  # noqa: E402
from poolkit.multiscale.chunkio import ChunkError, FastReader, FastWriter, FileSink, layout_of  # noqa: E402

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


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("name,kw", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_writer_read_by_zarr(tmp_path, name, kw, direct):
    kw = dict(kw)
    dtype = kw.pop("dtype", "uint16")
    x = rng.integers(0, 3000, (21, 30)).astype(dtype)
    x[:4, :6] = 0
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, chunks=(4, 6), dtype=dtype, fill_value=0, **kw)
    lay = layout_of(z)
    writer = FastWriter(lay, direct=direct)
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


# --------------------------------------------------------------------------- #
# FileSink: O_DIRECT writes with a staging buffer, and their fallbacks
# --------------------------------------------------------------------------- #
STAGE = chunkio._STAGE
PIECES = [[], [b""], [b"x"], [bytes(4095)], [bytes(4096)], [b"a" * 4097],
          [b"b" * (STAGE - 1)], [b"c" * STAGE], [b"d" * (STAGE + 1)],
          [b"e" * 10, b"f" * (STAGE - 10), b"g" * 3, b"h" * (2 * STAGE + 5)]]


@pytest.mark.parametrize("fsync", [False, True])
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("pieces", PIECES, ids=lambda p: "+".join(str(len(b)) for b in p) or "none")
def test_file_sink_writes_exactly_the_bytes(tmp_path, pieces, direct, fsync):
    pieces = [bytes(rng.integers(0, 256, len(b), dtype=np.uint8)) for b in pieces]
    path = str(tmp_path / "f")
    with open(path, "wb") as f:
        f.write(b"stale" * 3000)                          # replaced, not appended to
    sink = FileSink(path, direct=direct, fsync=fsync)
    for b in pieces:
        sink.write(memoryview(b))
    sink.close()
    assert open(path, "rb").read() == b"".join(pieces)
    assert sink.size == sum(map(len, pieces))


def test_file_sink_open_refusal_falls_back(tmp_path, monkeypatch):
    """tmpfs and some network file systems refuse O_DIRECT at open: the file is written plainly."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform: every file is written plainly")
    real = os.open

    def refusing(path, flags, *a):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, *a)

    monkeypatch.setattr(chunkio.os, "open", refusing)
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 8), chunks=(4, 4), dtype="uint16", fill_value=0)
    writer = FastWriter(layout_of(z))
    x = rng.integers(1, 3000, (8, 8)).astype("uint16")
    writer.write((slice(0, 8), slice(0, 8)), x)
    assert writer.direct is False                          # asked once, not again for every file
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...], x)


def test_file_sink_write_refusal_falls_back(tmp_path, monkeypatch):
    """A file system that wants another alignment refuses the write: the rest goes plainly, same bytes."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    import fcntl

    real = os.write
    refused = []

    def refusing(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data)

    monkeypatch.setattr(chunkio.os, "write", refusing)
    data = bytes(rng.integers(0, 256, 2 * STAGE + 77, dtype=np.uint8))
    path = str(tmp_path / "f")
    sink = FileSink(path)
    if not sink.direct:
        pytest.skip("this file system refuses O_DIRECT at open (tmpfs?): the open fallback is tested above")
    sink.write(data[:100])
    sink.write(data[100:])
    sink.close()
    assert refused == [STAGE] and not sink.direct
    assert open(path, "rb").read() == data


def test_file_sink_other_errors_are_raised(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileSink(str(tmp_path / "no" / "such" / "dir" / "f"))
