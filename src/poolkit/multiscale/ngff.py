"""Write a pyramid as an OME-NGFF (OME-Zarr) multiscale image, region by region.

``write_pyramid(x, store)`` pools ``x`` (in memory, a memory map, a Zarr array,
a Dask array, or any :mod:`~poolkit.multiscale.sources` source) into the
arrays ``0, 1, ...`` of a Zarr group, then writes the ``multiscales`` metadata,
last. OME-NGFF 0.5 on Zarr format 3 (default; sharded, zstd) or 0.4 on Zarr
format 2. The work is a :mod:`~poolkit.multiscale.plan` of region tasks run by
:mod:`~poolkit.multiscale.regions` on threads, processes or a Dask cluster, in
bounded memory, resumable after a kill. Needs the ``zarr`` extra
(``pip install 'poolkit[zarr]'``); a cluster also needs ``dask``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.layout import is_dask_array
from .levels import steps_for
from .plan import DEFAULT_MEMORY, MemoryTooSmall, Plan, make_plan
from .spec import check_axes as _check_axes, is_int as _is_int, shapes_of

__all__ = ["write_pyramid", "plan_pyramid", "VERSIONS", "CODECS"]

VERSIONS = ("0.4", "0.5")
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# Attribute that marks a group this module is still writing (an interrupted write keeps it).
_MARKER = "poolkit_incomplete"


def _axes_names(axes_names, ndim: int) -> str:
    if not 2 <= ndim <= 5:
        raise ValueError(f"OME-NGFF images have 2 to 5 axes, but `x` has ndim={ndim}.")
    if axes_names is None:
        return "tczyx"[-ndim:]
    names = "".join(axes_names) if isinstance(axes_names, (list, tuple)) else axes_names
    if (not isinstance(names, str) or len(names) != ndim or len(set(names)) != ndim
            or any(n not in _AXIS_TYPES for n in names)
            or list(names) != [n for n in "tczyx" if n in names]
            or sum(_AXIS_TYPES[n] == "space" for n in names) < 2):
        raise ValueError(f"`axes_names` must name the {ndim} axes of `x` with letters of 'tczyx' in that "
                         f"order, at least two of z, y, x (e.g. {'tczyx'[-ndim:]!r}), but got "
                         f"axes_names={axes_names!r}.")
    return names


def _per_axis(value, ndim: int, name: str, kind=float) -> Optional[tuple]:
    if value is None:
        return None
    seq = (value,) * ndim if isinstance(value, (int, float, np.integer, np.floating)) else value
    try:
        out = tuple(kind(v) for v in seq)
    except (TypeError, ValueError):
        out = ()
    if len(out) != ndim or isinstance(value, (str, bool)) or any(isinstance(v, bool) for v in seq) \
            or any(not v > 0 for v in out):
        raise ValueError(f"`{name}` must be a positive number or one per axis ({ndim}), "
                         f"but got {name}={value!r}.")
    if kind is int and any(not _is_int(v) for v in seq):
        raise ValueError(f"`{name}` must be ints, but got {name}={value!r}.")
    return out


def _default_chunks(shape, names: str, x) -> tuple:
    if is_dask_array(x):
        return tuple(max(c) for c in x.chunks)
    if getattr(x, "chunks", None) is not None:
        return tuple(x.chunks)
    space = [i for i, n in enumerate(names) if _AXIS_TYPES[n] == "space"]
    side = 2 ** (21 // len(space))          # ~2 million elements: 1024**2 or 128**3
    return tuple(min(n, side) if i in space else 1 for i, n in enumerate(shape))


def _existing(store) -> Optional[str]:
    """"complete", "incomplete" (our interrupted write) or "other" for what ``store`` holds; None if empty."""
    import zarr

    if isinstance(store, (str, os.PathLike)):
        path = os.fspath(store)
        if not os.path.exists(path):
            return None
        if os.path.isfile(path) or os.listdir(path) == []:
            return "other" if os.path.isfile(path) else None
    try:
        group = zarr.open_group(store, mode="r")
    except Exception:
        return None if not isinstance(store, (str, os.PathLike)) else "other"
    attrs = group.attrs.asdict()
    if _MARKER in attrs:
        return "incomplete"
    return "complete" if ("multiscales" in attrs or "ome" in attrs) else "other"


def _multiscales(names: str, steps, n_levels: int, scale0, method: str, version: str, name: str,
                 units: Optional[Dict[str, str]], edge: str) -> dict:
    axes: List[dict] = []
    for n in names:
        entry = {"name": n, "type": _AXIS_TYPES[n]}
        if units and n in units:
            entry["unit"] = units[n]
        axes.append(entry)
    datasets = []
    f = [1] * len(names)
    for k in range(n_levels):
        if k:
            f = [a * b for a, b in zip(f, steps[k - 1].factors)]
        # A window of f pixels starting at pixel 0 is centred at (f - 1) / 2 in level-0 pixels;
        # "nearest" keeps the first pixel, so no shift.
        shift = [0.0 if method == "nearest" else (fi - 1) / 2 * s for fi, s in zip(f, scale0)]
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [fi * s for fi, s in zip(f, scale0)]},
            {"type": "translation", "translation": shift}]})
    ms = {"axes": axes, "datasets": datasets, "name": name, "type": method,
          "metadata": {"method": "poolkit.pyramid", "kwargs": {
              "factors": [list(s.factors) for s in steps], "method": method, "edge": edge}}}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **ms}]}
    return {"ome": {"version": "0.5", "multiscales": [ms]}}


# --------------------------------------------------------------------------- #
# codecs
# --------------------------------------------------------------------------- #
#: ``codec=`` names; an optional ``:LEVEL`` follows (zstd: -7..22, 0 = zstd's default 3; blosc: 0..9; gzip 0..9).
CODECS = ("zstd", "blosc-lz4", "blosc-zstd", "gzip", "none")


def _check_codec(codec) -> Tuple[str, Optional[int]]:
    text = codec if isinstance(codec, str) else None
    name, _, level = (text or "").partition(":")
    ok = text is not None and name in CODECS and (level == "" or level.lstrip("-").isdigit())
    if ok and level:
        lo, hi = (-7, 22) if name == "zstd" else (0, 9)
        ok = name != "none" and lo <= int(level) <= hi
    if not ok:
        raise ValueError(f"`codec` must be one of {CODECS}, optionally with ':LEVEL' (e.g. 'zstd:3', "
                         f"'blosc-lz4:5'), but got codec={codec!r}.")
    return name, (int(level) if level else None)


def _numcodec(name: str, level: Optional[int], itemsize: int):
    """The numcodecs compressor of a codec name (Zarr v2), or None."""
    import numcodecs  # type: ignore[import-untyped]

    if name == "zstd":
        return numcodecs.Zstd(level=0 if level is None else level)
    if name.startswith("blosc"):
        return numcodecs.Blosc(cname=name[6:], clevel=5 if level is None else level, shuffle=numcodecs.Blosc.SHUFFLE,
                               typesize=itemsize)
    if name == "gzip":
        return numcodecs.GZip(level=1 if level is None else level)
    return None


def _zarr3_codec(name: str, level: Optional[int], itemsize: int):
    """The zarr v3 compressor of a codec name, or None."""
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if name == "zstd":
        return ZstdCodec(level=0 if level is None else level)
    if name.startswith("blosc"):
        return BloscCodec(cname=name[6:], clevel=5 if level is None else level, shuffle="shuffle", typesize=itemsize)
    if name == "gzip":
        return GzipCodec(level=1 if level is None else level)
    return None


# --------------------------------------------------------------------------- #
# settings
# --------------------------------------------------------------------------- #
@dataclass
class _Settings:
    """Checked arguments of write_pyramid, and the plan they make."""

    source: Any
    names: str
    steps: list
    shapes: list
    chunks: list
    shards: list
    auto_shards: bool
    codec: Tuple[str, Optional[int]]
    version: str
    scale0: tuple
    units: Optional[dict]
    method: str
    edge: str
    name: str
    memory: int
    workers: int
    copy_level0: bool
    plan: Any = None                 # the Plan, once _plan() made it

    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one (its plan included)."""
        src = self.source
        return {"input": str(getattr(src, "path", None) or getattr(src, "name", "x")),
                "shape": list(self.shapes[0]), "dtype": str(src.dtype),
                "factors": [list(s.factors) for s in self.steps], "method": self.method, "edge": self.edge,
                "chunks": [list(c) for c in self.chunks],
                "shards": [None if s is None else list(s) for s in self.plan.shards],
                "codec": f"{self.codec[0]}:{self.codec[1]}", "version": self.version, "axes_names": self.names,
                "scale": list(self.scale0), "units": self.units, "name": self.name,
                "copy_level0": self.copy_level0,
                "stages": [[st.source, st.last, list(st.region)] for st in self.plan.stages]}


def _key(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:20]


def _per_level(value, shapes, chunks, name: str):
    """Shards per level from ``shards=`` (None, "auto" or one shape for all levels)."""
    if value is None or (isinstance(value, str) and value == "none"):
        return [None] * len(shapes), False
    if isinstance(value, str) and value == "auto":
        return [None] * len(shapes), True
    ndim = len(shapes[0])
    seq = (value,) * ndim if _is_int(value) else value
    if (not isinstance(seq, (tuple, list)) or len(seq) != ndim or not all(_is_int(v) and v >= 1 for v in seq)):
        raise ValueError(f"`{name}` must be 'auto', None or an int or one per axis ({ndim}), but got "
                         f"{name}={value!r}.")
    out = []
    for k, (shape, chunk) in enumerate(zip(shapes, chunks)):
        if k == 0 and any(v % c for v, c in zip(seq, chunk)):
            raise ValueError(f"`{name}` must be multiples of the chunks {tuple(chunk)}, but got {name}={value!r}.")
        # Clipped per level to the chunks that level has, and kept a multiple of its chunks.
        shard = tuple(max(c, min(v // c * c if v >= c else c, -(-n // c) * c)) for v, c, n in zip(seq, chunk, shape))
        out.append(None if shard == tuple(chunk) else shard)
    return out, False


def _settings(x, *, levels, factor, method, axes, axes_names, chunks, shards, codec, edge, factors, scale,
              stop, units, version, name, memory, workers, scheduler) -> _Settings:
    from .sources import as_source

    source = as_source(x)
    shape = tuple(source.shape)
    names = _axes_names(axes_names if axes_names is not None else getattr(source, "axes_names", None), len(shape))
    space = tuple(i for i, n in enumerate(names) if _AXIS_TYPES[n] == "space")
    if axes is None:
        pooled = space
    else:
        pooled = _check_axes(axes, len(shape))
        bad = [a for a in pooled if _AXIS_TYPES[names[a]] == "channel"]
        if bad:
            raise ValueError(f"`axes` must not pool a channel axis, but got axes={axes!r} with axes_names={names!r}.")
    if not isinstance(version, str) or version not in VERSIONS:
        raise ValueError(f"`version` must be one of {VERSIONS}, but got version={version!r}.")
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, but got name={name!r}.")
    if units is not None and (not isinstance(units, dict) or any(k not in names for k in units)
                              or any(not isinstance(v, str) for v in units.values())):
        raise ValueError(f"`units` must map axis names of {names!r} to unit strings, but got units={units!r}.")
    codec_t = _check_codec(codec)
    if memory is not None and (not _is_int(memory) or memory < 1):
        raise ValueError(f"`memory` must be a number of bytes >= 1, but got memory={memory!r}.")
    if workers is not None and (not _is_int(workers) or workers < 1):
        raise ValueError(f"`workers` must be an int >= 1, but got workers={workers!r}.")
    scale0 = _per_axis(scale, len(shape), "scale") or getattr(source, "scale", None) or (1.0,) * len(shape)
    if len(scale0) != len(shape):
        scale0 = (1.0,) * len(shape)
    out_chunks = _per_axis(chunks, len(shape), "chunks", int) or _default_chunks(shape, names, source)
    out_chunks = tuple(min(c, n) for c, n in zip(out_chunks, shape))
    steps = steps_for(_Probe(shape, source.dtype), levels, factor, method, pooled, edge, factors,
                      scale0 if factors == "auto" else scale, stop, out_chunks)
    shapes = shapes_of(shape, steps)
    level_chunks = [tuple(max(1, min(c, n)) for c, n in zip(out_chunks, s)) for s in shapes]
    if version == "0.4" and shards not in (None, "none", "auto"):
        raise ValueError(f"`shards` need Zarr format 3 (version='0.5'), but got shards={shards!r} with "
                         f"version={version!r}.")
    level_shards, auto = _per_level(None if version == "0.4" else shards, shapes, level_chunks, "shards")
    return _Settings(source, names, steps, shapes, level_chunks, level_shards, auto, codec_t, version, scale0,
                     units, method, edge, name, memory if memory is not None else DEFAULT_MEMORY,
                     workers or _default_workers(scheduler), False)


class _Probe:
    """Shape and dtype, for the checks of pyramid()'s arguments."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, np.dtype(dtype)


def _default_workers(scheduler) -> int:
    if scheduler is not None and not isinstance(scheduler, str):
        try:
            return max(1, sum(scheduler.nthreads().values()))
        except Exception:
            return os.cpu_count() or 1
    return os.cpu_count() or 1


def _output_codec(st: _Settings):
    """The chunk codec level 0 will have (to decide whether input chunks can be copied as stored)."""
    from .chunkio import Codec

    dtype = np.dtype(st.source.dtype).newbyteorder("<") if np.dtype(st.source.dtype).itemsize > 1 else st.source.dtype
    comp = _numcodec(st.codec[0], st.codec[1], dtype.itemsize)
    if st.version == "0.5" and comp is not None:
        from .chunkio import _numcodecs_of

        comp = _numcodecs_of(_zarr3_codec(st.codec[0], st.codec[1], dtype.itemsize))
    return Codec(tuple(st.chunks[0]), dtype, "C", comp, (), False)


def _plan(st: _Settings) -> Plan:
    src_codec = getattr(st.source, "codec", None)
    layout = getattr(st.source, "layout", None)
    st.copy_level0 = bool(src_codec is not None and layout is not None and layout.fill == 0
                          and src_codec.same_bytes_as(_output_codec(st)))
    read_chunks = getattr(st.source, "chunks", None)
    st.plan = make_plan(st.shapes, st.steps, st.chunks, st.shards, st.source.dtype, memory=st.memory,
                        workers=st.workers, read_chunks=read_chunks, copy_level0=st.copy_level0,
                        auto_shards=st.auto_shards)
    return st.plan


_DOC_ARGS = dict(levels=None, factor=2, method="mean", axes=None, axes_names=None, chunks=None, shards="auto",
                 codec="zstd", edge="partial", factors=None, scale=None, stop=None, units=None, version="0.5",
                 name="image", memory=None, workers=None, scheduler=None)


def plan_pyramid(x, **kwargs) -> Plan:
    """The region plan :func:`write_pyramid` would run for ``x`` (same keyword arguments), without
    writing anything. ``print(plan.describe())`` shows it as ``poolkit pyramid --plan`` does.

    Examples
    --------
    >>> import numpy as np
    >>> plan = plan_pyramid(np.zeros((4096, 4096), np.uint16), chunks=512, memory=128 * 2**20, workers=2)
    >>> [(st.source, st.last, st.count) for st in plan.stages]
    [(0, 2, 4), (2, 3, 1)]
    """
    args = dict(_DOC_ARGS)
    unknown = set(kwargs) - set(args)
    if unknown:
        raise TypeError(f"plan_pyramid() got unexpected keyword arguments {sorted(unknown)}")
    args.update(kwargs)
    return _plan(_settings(x, **args))


# --------------------------------------------------------------------------- #
# the public function
# --------------------------------------------------------------------------- #
@dataclass
class Result:
    shapes: List[tuple]
    plan: Plan
    seconds: float
    tasks_run: int
    resumed: int                 # tasks skipped because an interrupted run had finished them


def _wipe(store) -> None:
    if isinstance(store, (str, os.PathLike)) and os.path.isdir(store):
        shutil.rmtree(store)


def _resolve_scheduler(scheduler):
    """``(scheduler for execute, client to close or None)``."""
    if scheduler is None:
        if "distributed" in sys.modules:
            try:
                from distributed import default_client

                return default_client(), None
            except (ValueError, ImportError):
                pass
        return "threads", None
    if isinstance(scheduler, str):
        if scheduler.startswith("tcp://"):
            from distributed import Client

            client = Client(scheduler, timeout="10s")
            return client, client
        from .regions import SCHEDULERS

        if scheduler not in SCHEDULERS:
            raise ValueError(f"`scheduler` must be one of {SCHEDULERS}, 'tcp://ADDRESS' or a distributed.Client, "
                             f"but got scheduler={scheduler!r}.")
        return scheduler, None
    if not hasattr(scheduler, "submit") or not hasattr(scheduler, "scatter"):
        raise TypeError(f"`scheduler` must be a str or a distributed.Client, but got scheduler={scheduler!r}.")
    return scheduler, None


def write_pyramid(x, store, *, levels: Optional[int] = None, factor: Union[int, Sequence[int]] = 2,
                  method: str = "mean", axes: Union[None, int, Sequence[int]] = None,
                  axes_names: Union[None, str, Sequence[str]] = None, chunks: Union[None, int, Sequence[int]] = None,
                  shards: Union[None, str, int, Sequence[int]] = "auto", codec: str = "zstd",
                  overwrite: bool = False, resume: bool = False, edge: str = "partial", factors=None,
                  scale: Union[None, float, Sequence[float]] = None, stop=None,
                  units: Optional[Dict[str, str]] = None, version: str = "0.5", name: str = "image",
                  memory: Optional[int] = None, workers: Optional[int] = None, scheduler=None,
                  fsync: bool = False, direct_io: bool = True, progress: bool = False) -> list:
    """Pool ``x`` into a pyramid and write it as an OME-NGFF multiscale image, region by region.

    Parameters
    ----------
    x : array_like, zarr.Array, dask.array.Array or Source, shape (*S), 2 to 5 axes
        Level 0: a NumPy array or memory map, a Zarr array (read chunk by chunk), a Dask
        array (each region computed on its task's thread), or a source from
        :func:`poolkit.multiscale.sources.open_input` (TIFF, .npy, OME-Zarr, Zarr paths).
    store : str, os.PathLike or zarr store
        Where the Zarr group goes, e.g. ``"image.ome.zarr"`` (a directory for processes,
        clusters and ``resume``).
    levels, factor, method, edge, factors, stop
        As for :func:`poolkit.pyramid`. ``factor`` is one int or one per pooled axis.
        ``levels=None``: until every pooled axis fits one chunk of ``chunks`` (with
        ``stop``: until no axis is longer than its stop, e.g. ``stop=chunks`` to stop each
        axis once it fits one chunk).
    axes : int or tuple of ints, optional
        The pooled axes (default: the space axes z, y, x); never a channel axis.
    axes_names : str or sequence of str, optional
        One letter per axis from ``"tczyx"``, in that order, e.g. ``"cyx"``. Default: an
        OME-Zarr input's, else the last ``x.ndim`` letters (``"yx"``, ``"zyx"``, ``"czyx"``).
    chunks : int or tuple of ints, optional
        Chunk lengths of every level (clipped to its shape). Default: ``x``'s chunks (Zarr,
        Dask, tiled TIFF); else 1024 per space axis in 2-D, 128 in 3-D, 1 on other axes.
    shards : "auto", None, int or tuple of ints
        Zarr v3 shards (several chunks per file). "auto": on each level, the part one region
        task writes (one file per task and level) where that is more than one chunk. A shape
        (multiples of ``chunks``) applies to every level, clipped to it. None: no shards.
        Version 0.4 (Zarr v2) has none.
    codec : str
        Chunk compression: "zstd" (default, zstd's level 3), "blosc-lz4", "blosc-zstd", "gzip" or
        "none"; ":LEVEL" sets the level, e.g. "zstd:1". A Zarr input stored with the same codec
        and chunks has its level-0 chunks copied as stored, not decoded and encoded again.
    overwrite : bool
        Replace what ``store`` holds. Without it (and without ``resume``) an existing
        ``store`` raises ``FileExistsError``.
    resume : bool
        Finish an interrupted ``write_pyramid`` of the same input and settings: only the
        region tasks it had not finished run. The result is bit for bit that of a run that was
        never interrupted. An empty ``store`` starts a new run.
    scale : float or tuple of floats, optional
        Level 0's pixel size per axis (default: an OME-Zarr input's, else 1); also the pixel
        sizes of ``factors="auto"``.
    units : dict, optional
        Units per axis name, e.g. ``{"y": "micrometer", "x": "micrometer"}``.
    version : {"0.5", "0.4"}
        OME-NGFF version: "0.5" on Zarr format 3, "0.4" on Zarr format 2.
    name : str
        The multiscale's name.
    memory : int, optional
        Bytes the running region tasks may hold together (default 256 MiB: peak RSS below
        0.5 GiB with the interpreter); it sizes the regions (see :func:`plan_pyramid`). When
        resuming, default: the interrupted run's.
    workers : int, optional
        Tasks at once: default the CPU count (threads, processes) or the cluster's threads.
    scheduler : None, "threads", "processes", "synchronous", "tcp://ADDRESS" or distributed.Client
        Where the tasks run. None: the active ``distributed.Client`` if there is one, else
        threads. Processes and clusters need ``store`` (and a file input) on a shared disk.
    fsync : bool
        Flush every file to the disk before its task counts as done (for power cuts; a killed
        process loses nothing without it).
    direct_io : bool
        Write chunk and shard files with ``O_DIRECT`` where the file system allows it (Linux),
        bypassing the page cache: the output is not read again soon, and the copy into the
        cache takes CPU time from the codecs (benchmarks/README.md, "Direct writes").
        ``False`` writes through the page cache, e.g. on a network file system where every
        direct write waits for the server.
    progress : bool
        Show a progress bar (tqdm, on stderr) with throughput and time left.

    Returns
    -------
    list of tuples
        The shapes of the levels written, level 0 first.

    Notes
    -----
    Level ``k``'s ``coordinateTransformations`` are ``scale = scale * F_k`` and
    ``translation = (F_k - 1) / 2 * scale``, ``F_k`` the product of the factors of levels
    ``1..k`` per axis (the centre of the window, in level-0 units; 0 for "nearest").

    The metadata is written last: the group first gets a ``"poolkit_incomplete"`` attribute
    (with the run's settings), then the arrays and their data, region task by region task,
    each recorded in ``poolkit-journal.txt`` once its files are written; then the journal is
    removed and the attributes are replaced by the ``multiscales`` metadata in one write. An
    interrupted write therefore has no ``multiscales`` (readers do not take it for an image).

    Every output chunk and shard is written by exactly one task, whole, so no file is ever
    read back or shared; values are those of :func:`poolkit.pyramid` bit for bit, for any
    chunking, sharding, memory target and scheduler.

    Examples
    --------
    >>> import numpy as np, tempfile, os, poolkit
    >>> path = os.path.join(tempfile.mkdtemp(), "image.ome.zarr")
    >>> poolkit.write_pyramid(np.ones((300, 200), np.uint16), path, chunks=128)
    [(300, 200), (150, 100), (75, 50)]
    """
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"`overwrite` must be a bool, but got overwrite={overwrite!r}.")
    if not isinstance(resume, (bool, np.bool_)):
        raise TypeError(f"`resume` must be a bool, but got resume={resume!r}.")
    if overwrite and resume:
        raise ValueError("`overwrite` and `resume` exclude each other: pass one.")
    return _write(x, store, dict(levels=levels, factor=factor, method=method, axes=axes, axes_names=axes_names,
                                 chunks=chunks, shards=shards, codec=codec, edge=edge, factors=factors,
                                 scale=scale, stop=stop, units=units, version=version, name=name,
                                 memory=memory, workers=workers, scheduler=scheduler),
                  overwrite=bool(overwrite), resume=bool(resume), fsync=bool(fsync), direct_io=bool(direct_io),
                  progress=bool(progress)).shapes


def _write(x, store, args: dict, *, overwrite: bool, resume: bool, fsync: bool, progress: bool,
           direct_io: bool = True, on_start=None) -> Result:
    import zarr

    from .regions import JOURNAL, Job, Journal, execute, task_threads

    st = _settings(x, **args)
    state = _existing(store)
    marker = None
    if state is not None and not overwrite:
        if state == "incomplete" and resume:
            marker = zarr.open_group(store, mode="r").attrs.asdict().get(_MARKER)
        elif state == "incomplete":
            raise FileExistsError(f"`store` {store!r} holds an interrupted write_pyramid; pass resume=True to "
                                  f"finish it or overwrite=True to start again.")
        else:
            what = "a complete OME-Zarr image" if state == "complete" else "data"
            raise FileExistsError(f"`store` {store!r} already holds {what}; pass overwrite=True to replace it.")
    if isinstance(marker, dict):
        # Size the plan as the interrupted run did, unless told otherwise.
        if args.get("memory") is None and _is_int(marker.get("memory")):
            st.memory = int(marker["memory"])
        if args.get("workers") is None and _is_int(marker.get("workers")):
            st.workers = int(marker["workers"])
    try:
        _plan(st)
    except MemoryTooSmall:
        raise
    fp = st.fingerprint()
    key = _key(fp)
    sched, client = _resolve_scheduler(args.get("scheduler"))
    if not isinstance(sched, str) and not isinstance(store, (str, os.PathLike)):
        raise ValueError("a Dask cluster writes through its workers: `store` must be a directory path.")
    if sched == "processes" and not isinstance(store, (str, os.PathLike)):
        raise ValueError("scheduler='processes' needs `store` as a directory path.")
    zarr_format = 2 if st.version == "0.4" else 3
    journal = Journal(os.path.join(os.fspath(store), JOURNAL), key, fsync) \
        if isinstance(store, (str, os.PathLike)) else None
    done: set = set()
    try:
        if marker is not None:
            if not isinstance(marker, dict) or marker.get("key") != key:
                raise FileExistsError(_mismatch(store, marker, fp))
            root = zarr.open_group(store, mode="r+")
            loaded = journal.load() if journal is not None else None
            if journal is not None and loaded is None:
                journal.start()
            elif journal is not None and loaded is not None:
                done = loaded
                journal.reopen()
        else:
            if overwrite:
                _wipe(store)
            root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
            root.attrs.put({_MARKER: {"key": key, "memory": st.memory, "workers": st.workers, "settings": fp}})
            _create_arrays(root, st, zarr_format)
            if journal is not None:
                journal.start()
        if on_start is not None:
            on_start(st.plan)
        job = Job(st.source, os.fspath(store) if isinstance(store, (str, os.PathLike)) else store, st.plan,
                  copy_level0=st.copy_level0, fsync=fsync, direct_io=direct_io, threads=task_threads())
        bar = _Bar(st.plan, done, progress)
        start = time.perf_counter()
        ran = [0]

        def on_done(s, r, n):
            if journal is not None:
                journal.add(s, r)
            ran[0] += 1
            bar.update(s, r)

        try:
            execute(job, sched, st.workers, done, on_done)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        if journal is not None:
            journal.remove()
        root.attrs.put(_multiscales(st.names, st.steps, len(st.shapes), st.scale0, st.method, st.version,
                                    st.name, st.units, st.edge))
    finally:
        if journal is not None:
            journal.close()
        if client is not None:
            client.close()
    return Result([tuple(s) for s in st.shapes], st.plan, seconds, ran[0], len(done))


def _mismatch(store, marker, fp: dict) -> str:
    old = marker.get("settings") if isinstance(marker, dict) else None
    diffs = []
    if isinstance(old, dict):
        for k in fp:
            if old.get(k) != fp[k]:
                diffs.append(f"{k}: {old.get(k)!r} then, {fp[k]!r} now")
    what = "; ".join(diffs[:3]) if diffs else "unknown settings"
    return (f"`store` {store!r} holds an interrupted write_pyramid with other settings ({what}); resume with "
            f"the same ones, or pass overwrite=True to start again.")


def _create_arrays(root, st: _Settings, zarr_format: int) -> None:
    dtype = np.dtype(st.source.dtype)
    for k, shape in enumerate(st.shapes):
        chunks = st.chunks[k]
        if zarr_format == 3:
            comp = _zarr3_codec(st.codec[0], st.codec[1], dtype.itemsize)
            kw = dict(dimension_names=list(st.names), compressors=comp if comp is not None else None,
                      shards=st.plan.shards[k])
        else:
            comp = _numcodec(st.codec[0], st.codec[1], dtype.itemsize)
            kw = dict(compressors=comp, chunk_key_encoding={"name": "v2", "separator": "/"})
        root.create_array(str(k), shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
                          config={"write_empty_chunks": False}, **kw)


class _Bar:
    """A tqdm bar over the bytes the tasks read (throughput and time left), if asked for."""

    def __init__(self, plan: Plan, done, show: bool):
        self.plan = plan
        self.bar = None
        if not show:
            return
        from tqdm import tqdm

        itemsize = np.dtype(plan.dtype).itemsize
        self.sizes = [int(np.prod(st.region)) * itemsize for st in plan.stages]
        total = sum(self._size(s, r) for s, r in plan.regions())
        self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                        desc="pyramid", dynamic_ncols=True, mininterval=0.5)
        for s, r in done:
            self.bar.update(self._size(s, r))

    def _size(self, s: int, r: int) -> int:
        st = self.plan.stages[s]
        box = st.box(r, self.plan.shapes[st.source])
        return int(np.prod([b.stop - b.start for b in box])) * np.dtype(self.plan.dtype).itemsize

    def update(self, s: int, r: int) -> None:
        if self.bar is not None:
            self.bar.update(self._size(s, r))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
