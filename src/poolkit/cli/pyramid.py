"""poolkit pyramid: pool an image or volume into a multiscale OME-Zarr pyramid.

INPUT is a Zarr array (a directory, or GROUP/PATH inside a Zarr group), an
.npy file (memory-mapped) or a TIFF file (memory-mapped, or read through
tifffile's Zarr interface when compressed). OUTPUT is the OME-Zarr group to
write (OME-NGFF 0.4 on Zarr format 2; --ngff-version 0.5 for Zarr format 3).
The work runs on Dask, chunk by chunk: memory holds a few chunks per worker.

Exit status: 0; 2 for bad options, unreadable input, or an existing OUTPUT
without --overwrite.

examples:
  poolkit pyramid scan.tif scan.ome.zarr
  poolkit pyramid labels.npy labels.ome.zarr --method mode --axes zyx --chunks 128
  poolkit pyramid big.zarr big.ome.zarr --scheduler processes --overwrite
  poolkit pyramid big.zarr big.ome.zarr --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Tuple

from ..multiscale.levels import EDGES, METHODS

_LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a Zarr array, an .npy file or a TIFF file")
    parser.add_argument("output", metavar="OUTPUT", help="the OME-Zarr group to write, e.g. out.ome.zarr")
    parser.add_argument("--levels", type=int, default=None, metavar="N",
                        help="pooled levels to write (default: until a level fits one chunk)")
    parser.add_argument("--method", choices=METHODS, default="mean",
                        help="reduction per window (default: mean; mode for label images)")
    parser.add_argument("--factor", default="2", metavar="F[,F...]",
                        help="window length per space axis, one int or one per space axis (default: 2)")
    parser.add_argument("--edge", choices=EDGES, default="partial",
                        help="partial windows at the far edges: reduce them (partial) or drop them (trim)")
    parser.add_argument("--chunks", default=None, metavar="C[,C...]",
                        help="output chunk length, one int or one per axis (default: the input's Zarr "
                             "chunks; 1024 per axis in 2-D, 128 in 3-D for .npy and TIFF)")
    parser.add_argument("--axes", default=None, metavar="NAMES",
                        help="axis names from 'tczyx' in that order, e.g. cyx (default: the last ndim letters)")
    parser.add_argument("--scheduler", default="threads", metavar="threads|processes|synchronous|tcp://ADDRESS",
                        help="Dask scheduler (default: threads); tcp://... connects to a dask.distributed "
                             "scheduler, whose workers must see INPUT and OUTPUT")
    parser.add_argument("--ngff-version", choices=("0.4", "0.5"), default="0.4", dest="ngff_version",
                        help="OME-NGFF version (default: 0.4 on Zarr format 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(_pyramid_parser=parser)


class _Failure(Exception):
    """A user error: printed as one line, exit status 2."""


def _ints(text: Optional[str], option: str) -> Optional[Tuple[int, ...]]:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise _Failure(f"{option} must be an int or comma-separated ints, but got {text!r}") from None
    return values if len(values) > 1 else values[:1]


class _Mapped:
    """A memory-mapped file that Dask tasks open themselves.

    A ``np.memmap`` put in a Dask graph would be pickled with its whole content
    for process and distributed workers; this carries only the path.
    """

    def __init__(self, path: str, kind: str, shape, dtype):
        self.path, self.kind, self.shape, self.dtype = path, kind, tuple(shape), dtype
        self.ndim = len(self.shape)

    def _open(self):
        if self.kind == "npy":
            import numpy as np

            return np.load(self.path, mmap_mode="r")
        import tifffile

        return tifffile.memmap(self.path, mode="r")

    def __getitem__(self, key):
        import numpy as np

        return np.array(self._open()[key])      # a copy: the map closes with the task


def _open_input(path: str):
    """The input as (array-like with shape/dtype, its chunk lengths or None, kind)."""
    if not os.path.exists(path):
        raise _Failure(f"cannot read INPUT {path}: no such file or directory")
    lower = path.lower().rstrip("/\\")
    try:
        if lower.endswith(".npy"):
            import numpy as np

            mm = np.load(path, mmap_mode="r")
            return _Mapped(path, "npy", mm.shape, mm.dtype), None, "npy"
        if lower.endswith((".tif", ".tiff")):
            import tifffile

            try:
                mm = tifffile.memmap(path, mode="r")
                return _Mapped(path, "tiff", mm.shape, mm.dtype), None, "tiff"
            except ValueError:          # compressed or tiled: not memory-mappable
                import zarr

                arr = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")
                return arr, tuple(arr.chunks), "tiff"
        if os.path.isdir(path):
            import zarr

            node = zarr.open(path, mode="r")
            if not hasattr(node, "chunks"):
                keys = sorted(node.array_keys())
                raise _Failure(f"INPUT {path} is a Zarr group, not an array; name one of its arrays, e.g. "
                               f"{os.path.join(path, keys[0]) if keys else path + '/0'}")
            return node, tuple(node.chunks), "zarr"
    except _Failure:
        raise
    except Exception as exc:  # corrupt files, wrong formats: report, don't trace back
        raise _Failure(f"cannot read INPUT {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    raise _Failure(f"cannot read INPUT {path}: expected a Zarr array (directory), an .npy or a .tif/.tiff file")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    parser = args._pyramid_parser
    try:
        return _run(args)
    except _Failure as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import dask
    import dask.array as da
    import numpy as np

    from ..multiscale.ngff import _axes_names, _default_chunks, _existing, write_pyramid

    factor = _ints(args.factor, "--factor") or (2,)
    chunks = _ints(args.chunks, "--chunks")
    if args.levels is not None and args.levels < 0:
        raise _Failure(f"--levels must be >= 0, but got {args.levels}")
    scheduler = args.scheduler
    if scheduler not in _LOCAL_SCHEDULERS and not scheduler.startswith("tcp://"):
        raise _Failure(f"--scheduler must be one of {', '.join(_LOCAL_SCHEDULERS)} or tcp://ADDRESS, "
                       f"but got {scheduler!r}")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise _Failure("OUTPUT must differ from INPUT")
    if _existing(args.output) not in (None, "incomplete") and not args.overwrite:
        raise _Failure(f"OUTPUT {args.output} exists; pass --overwrite to replace it")
    source, native_chunks, kind = _open_input(args.input)
    try:
        names = _axes_names(args.axes, len(source.shape))
        if chunks is None:
            chunks = native_chunks or _default_chunks(tuple(source.shape), names, np.empty(0))
        elif len(chunks) == 1:
            chunks = chunks * len(source.shape)
        x = da.from_array(source, chunks=chunks, fancy=False)
    except (TypeError, ValueError) as exc:
        raise _Failure(str(exc)) from None

    client = None
    if scheduler.startswith("tcp://"):
        from distributed import Client

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise _Failure(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        context = dask.config.set(scheduler=client.get)
        if not args.quiet:       # Dask's local progress bar cannot see a cluster's tasks
            print(f"running on {scheduler}; progress: {client.dashboard_link}", file=sys.stderr)
    else:
        context = dask.config.set(scheduler=scheduler)
    show = not args.quiet
    start = time.perf_counter()
    try:
        with context:
            progress = _progress(show and client is None)
            with progress:
                shapes = write_pyramid(x, args.output, levels=args.levels,
                                       factor=factor[0] if len(factor) == 1 else list(factor),
                                       method=args.method,
                                       axes_names=names, chunks=chunks, overwrite=args.overwrite,
                                       edge=args.edge, version=args.ngff_version)
    except (TypeError, ValueError, FileExistsError) as exc:
        raise _Failure(str(exc)) from None
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    if show:
        _summary(args, x, shapes, seconds)
    return 0


def _progress(show: bool):
    import contextlib

    if not show:
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(minimum=0.5, out=sys.stderr)


def _summary(args, x, shapes: List[tuple], seconds: float) -> None:
    import numpy as np

    itemsize = x.dtype.itemsize
    print(f"{args.input} -> {args.output}: {len(shapes) - 1} pooled levels, method={args.method}, "
          f"dtype={x.dtype}")
    total = 0
    for k, shape in enumerate(shapes):
        nbytes = int(np.prod(shape)) * itemsize
        total += nbytes
        print(f"  level {k}: {'x'.join(map(str, shape)):>20}  {_human(nbytes):>9}")
    read = int(np.prod(shapes[0])) * itemsize
    rate = _human(read / seconds) + "/s" if seconds > 0 else "-"
    print(f"read {_human(read)}, wrote {_human(total)} (uncompressed) in {seconds:.2f} s: {rate} of input")
