"""Chunk I/O for region tasks: Zarr chunks decoded and encoded directly, zarr-python for the rest.

A region task reads a box of one array and writes boxes of others. zarr-python 3 can do both
(``arr[box]``), but per chunk it pays for its event loop, buffer prototypes and, on writes, an
empty-chunk comparison; on this project's 2-core machine its region reads cost 1.6x the CPU
time of reading the chunk files and decoding them with numcodecs here, and its region writes
1.3-1.5x (benchmarks/README.md, "Pyramids on disk"). So for the layouts that cover nearly all
real data this module reads and writes the chunk files itself:

- Zarr v3: ``bytes`` (either endianness), optionally one of ``zstd``, ``blosc``, ``gzip``, then
  optionally ``crc32c``; or ``sharding_indexed`` with such a chain inside (index at the start or
  the end, with or without its crc32c);
- Zarr v2: a numcodecs compressor (or none) and numcodecs filters, C or F order;
- on a local directory store, any chunk-key encoding (zarr computes the keys).

Anything else (other codecs, remote or in-memory stores, TIFF files through tifffile's store) is
read and written through zarr-python, unchanged. :func:`layout_of` says which path an array takes.

Written chunks follow zarr's rules: edge chunks are stored whole, padded with the fill value;
chunks (and inner chunks of shards) equal to the fill value everywhere are not stored (a stale
file from an interrupted run is removed); shards hold their inner chunks in C order with the
index at the end, protected by crc32c.

Files are written with ``O_DIRECT`` where the platform and the file system allow it
(:class:`FileSink`): a pyramid's output is written once and not read again soon, and copying it
into the page cache costs kernel CPU time that the codecs need. On this project's machine, 12 GiB
of chunk files cost 1.1 s of system CPU time per GiB buffered against 0.4-0.6 s direct, and the
8 GiB pyramid of benchmarks/README.md ("Direct writes") ran 1.4x faster. Where ``O_DIRECT`` is
missing or refused the same code writes through the page cache.
"""
from __future__ import annotations

import errno
import itertools
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["ChunkError", "Layout", "layout_of", "FastReader", "FastWriter", "FileSink", "chunk_boxes"]

_EMPTY = 2**64 - 1          # a missing inner chunk's offset and length in a shard index
_ALIGN = 4096               # O_DIRECT's alignment of buffers, offsets and lengths (a page: the largest in use)
_STAGE = 4 << 20            # bytes of one thread's aligned staging buffer for direct writes


class ChunkError(OSError):
    """A chunk could not be read or decoded; the message names it."""


@dataclass(frozen=True)
class Codec:
    """One chunk's codec chain, as numcodecs objects: ``encode(array) -> bytes``, ``decode(bytes) -> array``."""

    shape: Tuple[int, ...]          # the chunk's (inner chunk's) shape
    stored: np.dtype                # dtype with the stored byte order
    order: Any                      # "C" or "F" (v2 only)
    compressor: Any                 # a numcodecs codec or None
    filters: Tuple[Any, ...]        # v2 numcodecs filters, applied in order before the compressor
    crc32c: bool                    # v3: a crc32c checksum follows the compressed bytes

    @property
    def native(self) -> np.dtype:
        return self.stored.newbyteorder("=")

    def decode(self, raw, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The chunk's values; with ``out`` (a C-contiguous array of the chunk's shape and stored dtype,
        no filters, C order), decoded into it, saving an allocation and a copy."""
        if self.crc32c:
            raw = _check_crc(memoryview(raw))
        if out is not None and self.compressor is not None and not self.filters and self.order == "C":
            got = self.compressor.decode(raw, out=out.reshape(-1).view(np.uint8))
            if np.asarray(got).nbytes != out.nbytes:
                raise ValueError(f"decoded {np.asarray(got).nbytes} bytes, expected {out.nbytes}")
            return out if self.stored.isnative or self.stored.itemsize == 1 else out.astype(self.native)
        data = self.compressor.decode(raw) if self.compressor is not None else raw
        for f in reversed(self.filters):
            data = f.decode(data)
        a = np.frombuffer(data, dtype=self.stored)
        if a.size != int(np.prod(self.shape)):
            raise ValueError(f"decoded {a.size} elements, expected {int(np.prod(self.shape))}")
        a = a.reshape(self.shape, order=self.order)
        return a if self.stored.isnative or self.stored.itemsize == 1 else a.astype(self.native)

    def encode(self, chunk: np.ndarray) -> bytes:
        a = chunk.astype(self.stored, copy=False) if self.stored != chunk.dtype else chunk
        a = np.asarray(a, order=self.order)
        data = a.reshape(-1, order=self.order).view(np.uint8)
        for f in self.filters:
            data = f.encode(data)
        out = self.compressor.encode(data) if self.compressor is not None else data.tobytes()
        out = bytes(out) if not isinstance(out, bytes) else out
        if self.crc32c:
            out += _crc(out)
        return out

    def same_bytes_as(self, other: "Codec") -> bool:
        """Whether a chunk stored with ``self`` may be copied as is into an array using ``other``."""
        cfg = (lambda c: None if c is None else c.get_config())
        return (self.shape == other.shape and self.stored == other.stored and self.order == other.order
                and cfg(self.compressor) == cfg(other.compressor) and self.crc32c == other.crc32c
                and [cfg(f) for f in self.filters] == [cfg(f) for f in other.filters])


def _crc(data) -> bytes:
    import google_crc32c

    return struct.pack("<I", google_crc32c.value(bytes(data)))


def _check_crc(raw: memoryview) -> memoryview:
    body, tail = raw[:-4], raw[-4:]
    if _crc(body) != bytes(tail):
        raise ValueError("crc32c checksum mismatch")
    return body


@dataclass(frozen=True)
class Layout:
    """Where an array's chunks live on disk and how they are coded."""

    root: str                       # the array's directory
    shape: Tuple[int, ...]
    chunks: Tuple[int, ...]         # the codec's chunks (inner chunks of a sharded array)
    shards: Optional[Tuple[int, ...]]   # None: not sharded
    codec: Codec
    fill: object                    # the fill value, as a native scalar
    index_at_end: bool
    index_crc: bool
    keys: Any                       # the zarr metadata, for its ``encode_chunk_key``

    @property
    def unit(self) -> Tuple[int, ...]:
        """One stored object: a shard, or a chunk when not sharded."""
        return self.shards or self.chunks

    def key(self, coords: Tuple[int, ...]) -> str:
        """Path of the stored object at ``coords`` (in units of :attr:`unit`)."""
        return os.path.join(self.root, *self.keys.encode_chunk_key(tuple(int(c) for c in coords)).split("/"))


def _numcodecs_of(codec) -> Optional[object]:
    """The numcodecs object a zarr v3 bytes-to-bytes codec stands for (None if not one of ours)."""
    import numcodecs  # type: ignore[import-untyped]
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if isinstance(codec, ZstdCodec):
        return numcodecs.Zstd.from_config({"level": codec.level, "checksum": codec.checksum})
    if isinstance(codec, GzipCodec):
        return numcodecs.GZip(level=codec.level)
    if isinstance(codec, BloscCodec):
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[getattr(codec.shuffle, "value", codec.shuffle)]
        return numcodecs.Blosc.from_config({"cname": getattr(codec.cname, "value", codec.cname),
                                            "clevel": codec.clevel, "shuffle": shuffle,
                                            "blocksize": codec.blocksize, "typesize": codec.typesize})
    return None


def _v3_chain(codecs, chunk_shape, dtype: np.dtype) -> Optional[Codec]:
    from zarr.codecs import BytesCodec, Crc32cCodec

    codecs = list(codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    stored = dtype.newbyteorder("<" if endian in (None, "little") else ">") if dtype.itemsize > 1 else dtype
    rest = codecs[1:]
    crc = bool(rest) and isinstance(rest[-1], Crc32cCodec)
    if crc:
        rest = rest[:-1]
    if len(rest) > 1:
        return None
    compressor = None
    if rest:
        compressor = _numcodecs_of(rest[0])
        if compressor is None:
            return None
    return Codec(tuple(chunk_shape), stored, "C", compressor, (), crc)


def layout_of(arr) -> Optional[Layout]:
    """The direct-I/O layout of a ``zarr.Array``, or None when zarr-python must do its I/O.

    Examples
    --------
    >>> import zarr, tempfile, os
    >>> z = zarr.create_array(os.path.join(tempfile.mkdtemp(), "a.zarr"), shape=(5, 5), chunks=(2, 2), dtype="u2")
    >>> layout_of(z).chunks, layout_of(z).codec.compressor
    ((2, 2), Zstd(level=0))
    """
    from zarr.storage import LocalStore

    store = getattr(arr, "store", None)
    if not isinstance(store, LocalStore):
        return None
    meta = arr.metadata
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf":
        return None
    root = os.path.join(str(store.root), *[p for p in (arr.path or "").split("/") if p])
    fill = meta.fill_value
    fill = dtype.type(0 if fill is None else fill)
    if meta.zarr_format == 2:
        if any(not hasattr(f, "get_config") for f in (meta.filters or ())):
            return None
        stored = np.dtype(arr.metadata.dtype.to_native_dtype()) if hasattr(meta.dtype, "to_native_dtype") else dtype
        codec = Codec(tuple(meta.chunks), stored, meta.order, meta.compressor, tuple(meta.filters or ()), False)
        return Layout(root, tuple(arr.shape), tuple(meta.chunks), None, codec, fill, True, False, meta)
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

    grid = tuple(meta.chunk_grid.chunk_shape)
    codecs = list(meta.codecs)
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        sc = codecs[0]
        inner = _v3_chain(sc.codecs, sc.chunk_shape, dtype)
        index = list(sc.index_codecs)
        endian = getattr(index[0].endian, "value", index[0].endian) if index and isinstance(index[0], BytesCodec) else None
        if (inner is None or not index or not isinstance(index[0], BytesCodec) or endian not in (None, "little")
                or len(index) > 2 or (len(index) == 2 and not isinstance(index[1], Crc32cCodec))):
            return None
        at_end = getattr(sc.index_location, "value", sc.index_location) == "end"
        return Layout(root, tuple(arr.shape), tuple(sc.chunk_shape), grid, inner, fill, at_end, len(index) == 2, meta)
    chain = _v3_chain(codecs, grid, dtype)
    if chain is None:
        return None
    return Layout(root, tuple(arr.shape), grid, None, chain, fill, True, False, meta)


def chunk_boxes(box: Sequence[slice], unit: Sequence[int]) -> Iterator[Tuple[Tuple[int, ...], Tuple[slice, ...]]]:
    """``(coords, part)`` for each stored unit that ``box`` touches: its grid coordinates and the
    part of ``box`` it covers (absolute indices)."""
    ranges = [range(s.start // u, -(-s.stop // u)) for s, u in zip(box, unit)]
    for coords in itertools.product(*ranges):
        yield coords, tuple(slice(max(s.start, c * u), min(s.stop, (c + 1) * u))
                            for c, s, u in zip(coords, box, unit))


def _shape(box: Sequence[slice]) -> Tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def _local(part: Sequence[slice], origin: Sequence[int]) -> Tuple[slice, ...]:
    return tuple(slice(p.start - o, p.stop - o) for p, o in zip(part, origin))


_STAGES = threading.local()


def _stage_take() -> mmap.mmap:
    """A free page-aligned staging buffer of this thread (anonymous maps are page-aligned)."""
    free = getattr(_STAGES, "free", None)
    if free is None:
        free = _STAGES.free = []
    return free.pop() if free else mmap.mmap(-1, _STAGE)


def _stage_give(buf: mmap.mmap) -> None:
    _STAGES.free.append(buf)     # kept for the thread's next file: one map per open file at most


class FileSink:
    """One output file written front to back, with ``O_DIRECT`` where it works.

    Bytes are gathered in this thread's aligned staging buffer and written in whole buffers; the
    last piece is padded to the alignment and the file cut back to its length. Where ``O_DIRECT``
    is refused (no such flag, tmpfs, some network file systems: ``EINVAL`` at open or at a write),
    the file falls back to ordinary writes, so the output is the same bytes either way.

    Parameters
    ----------
    path : str
        The file; replaced if it exists.
    direct : bool
        Try ``O_DIRECT``. ``False`` writes through the page cache.
    fsync : bool
        Flush the file to the disk before :meth:`close` returns.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c")
    >>> sink = FileSink(path, direct=True)
    >>> sink.write(b"pooled"); sink.close()
    >>> open(path, "rb").read()
    b'pooled'
    """

    def __init__(self, path: str, direct: bool = True, fsync: bool = False):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        self.direct = bool(direct) and hasattr(os, "O_DIRECT")
        self.fsync = fsync
        self.size = 0
        self._fill = 0
        if self.direct:
            try:
                self.fd = os.open(path, flags | os.O_DIRECT, 0o666)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False
        if not self.direct:
            self.fd = os.open(path, flags, 0o666)
        self._buf = _stage_take() if self.direct else None

    def _put(self, view: memoryview) -> None:
        while len(view):
            try:
                view = view[os.write(self.fd, view):]
            except OSError as exc:
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                self._buffered()     # this file system wants another alignment: write it plainly

    def _buffered(self) -> None:
        import fcntl

        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False

    def write(self, data) -> None:
        """Append ``data`` (any bytes-like object)."""
        view = memoryview(data).cast("B")
        self.size += len(view)
        if not self.direct:
            self._put(view)
            return
        buf = self._buf
        assert buf is not None           # staged: a direct file has its buffer until closed
        while len(view):
            n = min(len(view), _STAGE - self._fill)
            buf[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == _STAGE:
                self._put(memoryview(buf))
                self._fill = 0
                if not self.direct:      # fell back: the rest goes straight through
                    self._put(view)
                    return

    def close(self) -> None:
        """Write what is staged, cut the padding off, flush if asked and close the file."""
        try:
            if self._fill and self._buf is not None:
                n = self._fill
                padded = -(-n // _ALIGN) * _ALIGN
                self._buf[n:padded] = bytes(padded - n)
                self._put(memoryview(self._buf)[:padded])
                self._fill = 0
                if padded != n:
                    os.ftruncate(self.fd, self.size)
            if self.fsync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            if self._buf is not None:
                _stage_give(self._buf)
                self._buf = None


class FastReader:
    """Reads boxes of an array whose :class:`Layout` is known, chunk file by chunk file.

    ``raw=True`` in :meth:`read` also returns the stored bytes of every chunk the box covers
    whole (``{chunk coords: bytes or None for a missing chunk}``), for copying them unchanged.
    """

    def __init__(self, layout: Layout, name: str):
        self.layout, self.name = layout, name
        self._local = threading.local()        # per thread: a decode buffer and a read buffer

    def _buffers(self):
        loc = self._local
        if getattr(loc, "chunk", None) is None:
            loc.chunk = np.empty(self.layout.chunks, dtype=self.layout.codec.stored)
            loc.raw = bytearray(0)
        return loc

    def _read_file(self, f, nbytes: int) -> memoryview:
        loc = self._buffers()
        if len(loc.raw) < nbytes:
            loc.raw = bytearray(nbytes)
        view = memoryview(loc.raw)[:nbytes]
        got = f.readinto(view)
        if got != nbytes:
            raise ValueError(f"read {got} of {nbytes} bytes")
        return view

    def __getstate__(self):
        return {"layout": self.layout, "name": self.name}

    def __setstate__(self, state):
        self.__init__(state["layout"], state["name"])

    def _index(self, f, n_chunks: int) -> np.ndarray:
        lay = self.layout
        size = 16 * n_chunks + (4 if lay.index_crc else 0)
        end = os.fstat(f.fileno()).st_size
        if end < size:
            raise ValueError(f"shard of {end} bytes is shorter than its index ({size} bytes)")
        f.seek(end - size if lay.index_at_end else 0)
        raw = f.read(size)
        body = _check_crc(memoryview(raw)) if lay.index_crc else memoryview(raw)
        return np.frombuffer(body, dtype="<u8").reshape(-1, 2)

    def _chunk_bytes(self, coords, shard_cache: Dict, keep: bool = True):
        lay = self.layout
        if lay.shards is None:
            path = lay.key(coords)
            try:
                raw_file = open(path, "rb", buffering=0)
            except FileNotFoundError:
                return None
            with raw_file as f:
                if not keep:
                    return self._read_file(f, os.fstat(f.fileno()).st_size)
                return f.read()
        per = tuple(s // c for s, c in zip(lay.shards, lay.chunks))
        sc = tuple(c // p for c, p in zip(coords, per))
        if sc not in shard_cache:
            path = lay.key(sc)
            try:
                shard = open(path, "rb")
            except FileNotFoundError:
                shard_cache[sc] = None
            else:
                try:
                    shard_cache[sc] = (shard, self._index(shard, int(np.prod(per))))
                except Exception:
                    shard.close()
                    raise
        entry = shard_cache[sc]
        if entry is None:
            return None
        sf, index = entry
        inner = int(np.ravel_multi_index(tuple(c % p for c, p in zip(coords, per)), per))
        offset, nbytes = (int(v) for v in index[inner])
        if offset == _EMPTY and nbytes == _EMPTY:
            return None
        sf.seek(offset)
        data = sf.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"inner chunk truncated: {len(data)} of {nbytes} bytes")
        return data

    def describe(self, coords) -> str:
        lay = self.layout
        if lay.shards is None:
            return f"chunk {lay.keys.encode_chunk_key(tuple(coords))} of {self.name}"
        per = tuple(s // c for s, c in zip(lay.shards, lay.chunks))
        sc = tuple(c // p for c, p in zip(coords, per))
        return (f"chunk {tuple(int(c) for c in coords)} (in shard {lay.keys.encode_chunk_key(sc)}) "
                f"of {self.name}")

    def read(self, box: Sequence[slice], raw: bool = False):
        lay = self.layout
        out = np.empty(_shape(box), dtype=lay.codec.native)
        kept: Dict[Tuple[int, ...], Optional[bytes]] = {}
        shard_cache: Dict = {}
        origin = [s.start for s in box]
        try:
            for coords, part in chunk_boxes(box, lay.chunks):
                try:
                    # Kept bytes must outlive the next read: only those not kept use the shared buffers.
                    data = self._chunk_bytes(coords, shard_cache, keep=raw)
                    chunk = None if data is None else lay.codec.decode(data, self._buffers().chunk)
                except (OSError, ValueError, RuntimeError, TypeError) as exc:
                    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise ChunkError(f"cannot read {self.describe(coords)}: {msg}") from None
                dst = _local(part, origin)
                if chunk is None:
                    out[dst] = lay.fill
                else:
                    out[dst] = chunk[_local(part, [c * n for c, n in zip(coords, lay.chunks)])]
                if raw and all(p.start == c * n and (p.stop == (c + 1) * n or p.stop == s)
                               for p, c, n, s in zip(part, coords, lay.chunks, lay.shape)):
                    kept[coords] = data
        finally:
            for entry in shard_cache.values():
                if entry is not None:
                    entry[0].close()
        return (out, kept) if raw else out


class FastWriter:
    """Writes boxes aligned to an array's stored units (shards, or chunks when not sharded).

    Each unit has exactly one writer (the region plan sees to it), so no unit is read back.
    ``fsync=True`` flushes each file to the disk before it is closed; ``direct=False`` writes
    through the page cache instead of with ``O_DIRECT`` (:class:`FileSink`).
    """

    def __init__(self, layout: Layout, fsync: bool = False, direct: bool = True):
        self.layout, self.fsync, self.direct = layout, fsync, direct
        self._dirs: set = set()

    def _open(self, path: str) -> FileSink:
        d = os.path.dirname(path)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            self._dirs.add(d)
        sink = FileSink(path, self.direct, self.fsync)
        if self.direct and not sink.direct:
            self.direct = False      # refused once on this array's file system: don't ask again
        return sink

    def _close(self, f: FileSink) -> None:
        f.close()

    def _remove(self, path: str) -> None:
        try:
            os.unlink(path)          # a stale file of an interrupted run
        except FileNotFoundError:
            pass

    def _empty(self, a: np.ndarray) -> bool:
        fill = self.layout.fill
        first, last = (0,) * a.ndim, (-1,) * a.ndim
        if a[first] != fill or a[last] != fill:
            return False             # the common case, decided without a pass over the data
        return not a.any() if fill == 0 else bool(np.all(a == fill))

    def _chunk_of(self, data: np.ndarray, part, origin, coords) -> np.ndarray:
        """The whole chunk at ``coords``: ``data``'s part of it, padded with the fill value at the edge."""
        lay = self.layout
        piece = data[_local(part, origin)]
        if piece.shape == lay.chunks:
            return piece
        whole = np.full(lay.chunks, lay.fill, dtype=data.dtype)
        whole[tuple(slice(0, n) for n in piece.shape)] = piece
        return whole

    def _encoded(self, data, part, origin, coords, raw) -> Optional[bytes]:
        if raw is not None and coords in raw:
            return raw[coords]       # copied as stored (same codec): None for a missing chunk
        chunk = self._chunk_of(data, part, origin, coords)
        if self._empty(chunk):
            return None
        return self.layout.codec.encode(np.ascontiguousarray(chunk))

    def write(self, box: Sequence[slice], data: np.ndarray, raw: Optional[Dict] = None) -> int:
        """Write ``data`` (the box's values) unit by unit; returns the bytes written."""
        lay = self.layout
        origin = [s.start for s in box]
        written = 0
        if lay.shards is None:
            for coords, part in chunk_boxes(box, lay.chunks):
                blob = self._encoded(data, part, origin, coords, raw)
                path = lay.key(coords)
                if blob is None:
                    self._remove(path)
                    continue
                sink = self._open(path)
                try:
                    sink.write(blob)
                finally:
                    self._close(sink)
                written += len(blob)
            return written
        per = tuple(s // c for s, c in zip(lay.shards, lay.chunks))
        for scoords, spart in chunk_boxes(box, lay.shards):
            index = np.full((int(np.prod(per)), 2), _EMPTY, dtype="<u8")
            path = lay.key(scoords)
            f: Optional[FileSink] = None
            offset = 0
            try:
                # Inner chunks in C order, streamed to the file: memory holds one encoded chunk.
                for icoords, ipart in chunk_boxes(spart, lay.chunks):
                    blob = self._encoded(data, ipart, origin, icoords, raw)
                    if blob is None:
                        continue
                    if f is None:
                        f = self._open(path)
                    f.write(blob)
                    index[int(np.ravel_multi_index(tuple(c % p for c, p in zip(icoords, per)), per))] = (offset, len(blob))
                    offset += len(blob)
                if f is None:
                    self._remove(path)
                    continue
                tail = index.tobytes()
                f.write(tail + (_crc(tail) if lay.index_crc else b""))
                written += offset + len(tail)
            finally:
                if f is not None:
                    self._close(f)
        return written


def units_of(box: Sequence[slice], unit: Sequence[int]) -> List[Tuple[int, ...]]:
    """Grid coordinates of the stored units ``box`` covers."""
    return [c for c, _ in chunk_boxes(box, unit)]
