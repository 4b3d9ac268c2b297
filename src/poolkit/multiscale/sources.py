"""Inputs of pyramids on disk: boxes of level 0 read on demand, from whatever holds them.

Every source has ``shape``, ``dtype`` (native byte order), ``chunks`` (its storage chunks, or
None), ``name`` and ``read(box) -> ndarray``, and pickles small (a path, not its data), so that
process and cluster workers open it themselves:

- :class:`ArraySource`: a NumPy array in memory (threads only; pickled whole otherwise);
- :class:`NpySource`: an ``.npy`` file, memory-mapped;
- :class:`ZarrSource`: a Zarr v2 or v3 array (read chunk file by chunk file where
  :mod:`~poolkit.multiscale.chunkio` knows its layout, else through zarr-python);
- :class:`TiffSource`: a TIFF or BigTIFF file: memory-mapped when stored contiguous, else tile by
  tile (or strip by strip) through tifffile's Zarr store, never whole;
- :class:`DaskSource`: a Dask array, each box computed on the task's own thread.

:func:`open_input` opens a path: a Zarr array, a Zarr group holding one OME-Zarr image (its
level 0) or a group path, an ``.npy`` file or a TIFF file.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np

from .chunkio import ChunkError, FastReader, chunk_boxes, layout_of

__all__ = ["Source", "ArraySource", "NpySource", "ZarrSource", "TiffSource", "DaskSource", "open_input",
           "as_source", "InputError"]


class InputError(ValueError):
    """The input cannot be opened or is not an image: the message says why."""


class Source:
    shape: Tuple[int, ...]
    dtype: np.dtype
    chunks: Optional[Tuple[int, ...]] = None
    name: str = "x"
    axes_names: Optional[str] = None     # from OME-Zarr metadata
    scale: Optional[Tuple[float, ...]] = None

    def read(self, box: Sequence[slice]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def read_raw(self, box: Sequence[slice]):
        """``(data, {chunk coords: stored bytes})`` for sources whose chunks may be copied as stored."""
        return self.read(box), None

    @property
    def codec(self):
        """The chunk codec of a directly read Zarr source (chunks may then be copied), else None."""
        return None


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


class ArraySource(Source):
    def __init__(self, x: np.ndarray, name: str = "x"):
        self.x, self.name = x, name
        self.shape, self.dtype = tuple(x.shape), x.dtype.newbyteorder("=")

    def read(self, box):
        return _native(self.x[tuple(box)])


class NpySource(Source):
    def __init__(self, path: str):
        self.path = self.name = path
        mm = np.load(path, mmap_mode="r")
        self.shape, self.dtype = tuple(mm.shape), mm.dtype.newbyteorder("=")
        self._mm = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_mm"} | {"_mm": None}

    def read(self, box):
        if self._mm is None:
            self._mm = np.load(self.path, mmap_mode="r")
        return _native(np.array(self._mm[tuple(box)]))      # a copy: the task may outlive the map


class ZarrSource(Source):
    """A Zarr array: ``path`` is a directory (v2 or v3), or a zarr.Array given directly."""

    def __init__(self, array=None, path: Optional[str] = None, name: Optional[str] = None):
        import zarr

        if array is None:
            array = zarr.open_array(path, mode="r")
        self.path = path
        self.name = name or path or "x"
        self._array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype).newbyteorder("=")
        self.chunks = tuple(array.chunks)
        self._open()

    def _open(self):
        lay = layout_of(self._array)
        self._fast = FastReader(lay, self.name) if lay is not None else None

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.path is not None:
            state["_array"] = None           # reopened by path on the worker
        state["_fast"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._array is None:
            import zarr

            self._array = zarr.open_array(self.path, mode="r")
        self._open()

    @property
    def codec(self):
        return None if self._fast is None else self._fast.layout.codec

    @property
    def layout(self):
        return None if self._fast is None else self._fast.layout

    def read(self, box):
        if self._fast is not None:
            return self._fast.read(box)
        return _read_through_zarr(self._array, box, self.name)

    def read_raw(self, box):
        if self._fast is not None:
            return self._fast.read(box, raw=True)
        return self.read(box), None


def _read_through_zarr(arr, box, name: str) -> np.ndarray:
    try:
        return _native(np.asarray(arr[tuple(box)]))
    except Exception as exc:
        # Find the chunk that fails, to name it.
        for coords, part in chunk_boxes(box, arr.chunks):
            try:
                arr[part]
            except Exception as inner:
                msg = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
                raise ChunkError(f"cannot read chunk {tuple(int(c) for c in coords)} of {name}: {msg}") from None
        raise ChunkError(f"cannot read {name}[{_box_text(box)}]: {exc}") from None


def _box_text(box) -> str:
    return ", ".join(f"{s.start}:{s.stop}" for s in box)


class TiffSource(Source):
    """Level 0 of a TIFF/BigTIFF file (its first series): memory-mapped or tile by tile."""

    def __init__(self, path: str):
        import tifffile

        self.path = self.name = path
        self._handle = None
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            self.shape = tuple(series.shape)
            self.dtype = np.dtype(series.dtype).newbyteorder("=")
            self.mapped = series.dataoffset is not None
            page = series.pages[0]
            tile = tuple(getattr(page, "chunks", ()) or ())
        if not self.mapped and tile and len(tile) <= len(self.shape):
            self.chunks = (1,) * (len(self.shape) - len(tile)) + tile

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_handle"} | {"_handle": None}

    def _open(self):
        if self._handle is None:
            import tifffile

            if self.mapped:
                self._handle = tifffile.memmap(self.path, mode="r")
            else:
                import zarr

                store = tifffile.imread(self.path, aszarr=True)
                self._handle = zarr.open_array(store, mode="r")
        return self._handle

    def read(self, box):
        h = self._open()
        if self.mapped:
            return _native(np.array(h[tuple(box)]))
        return _read_through_zarr(h, box, self.name)


class DaskSource(Source):
    def __init__(self, x, name: str = "x"):
        self.x, self.name = x, name
        self.shape, self.dtype = tuple(x.shape), np.dtype(x.dtype).newbyteorder("=")
        self.chunks = tuple(max(c) for c in x.chunks)

    def read(self, box):
        # On the task's thread: the region tasks supply the parallelism.
        return _native(np.asarray(self.x[tuple(box)].compute(scheduler="synchronous")))


def as_source(x, name: str = "x") -> Source:
    """A :class:`Source` for an array-like: NumPy (or memmap), zarr.Array, Dask array, or a Source."""
    from ..core.layout import as_input_array, is_dask_array

    if isinstance(x, Source):
        return x
    if is_dask_array(x):
        return DaskSource(x, name)
    mod = type(x).__module__ or ""
    if mod.startswith("zarr"):
        path = None
        lay = layout_of(x)
        if lay is not None and lay.root:
            path = lay.root
        return ZarrSource(x, path=path, name=name if path is None else path)
    return ArraySource(as_input_array(x), name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_input(path: str) -> Source:
    """Open level 0 of an image on disk (see the module's docstring); :class:`InputError` if it can't.

    Parameters
    ----------
    path : str
        A Zarr array or group directory, an ``.npy`` file or a ``.tif``/``.tiff`` file.

    Returns
    -------
    Source
        With ``shape``, ``dtype``, ``chunks`` and ``read(box)``; for an OME-Zarr image also
        ``axes_names`` and ``scale`` from its metadata.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    >>> src = open_input(path)
    >>> src.shape, src.read((slice(1, 3), slice(0, 2))).tolist()
    ((3, 4), [[4, 5], [8, 9]])
    """
    if not os.path.exists(path):
        raise InputError(f"cannot read INPUT {path}: no such file or directory")
    lower = path.lower().rstrip("/\\")
    try:
        if lower.endswith(".npy"):
            return NpySource(path)
        if lower.endswith((".tif", ".tiff", ".btf", ".tf8")):
            return TiffSource(path)
        if os.path.isdir(path):
            return _open_zarr(path)
    except InputError:
        raise
    except Exception as exc:  # corrupt files, wrong formats: report, don't trace back
        raise InputError(f"cannot read INPUT {path}: {_first_line(exc)}") from None
    raise InputError(f"cannot read INPUT {path}: expected a Zarr array or OME-Zarr image (a directory), "
                     f"an .npy or a .tif/.tiff file")


def _open_zarr(path: str) -> Source:
    import zarr

    node = zarr.open(path, mode="r")
    if hasattr(node, "chunks"):
        return ZarrSource(node, path=path)
    attrs = node.attrs.asdict()
    ms = (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")
    if ms:
        image = ms[0]
        level0 = image["datasets"][0]
        src = ZarrSource(path=os.path.join(path, *level0["path"].split("/")))
        names = "".join(a["name"] if isinstance(a, dict) else a for a in image.get("axes", []))
        src.axes_names = names or None
        for t in level0.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                src.scale = tuple(float(v) for v in t["scale"])
        return src
    keys = sorted(node.array_keys())
    hint = os.path.join(path, keys[0]) if keys else os.path.join(path, "0")
    raise InputError(f"INPUT {path} is a Zarr group, not an array or an OME-Zarr image; name one of its "
                     f"arrays, e.g. {hint}")
