"""poolkit pyramid: pool an image or volume into a multiscale OME-Zarr pyramid, on disk.

INPUT is a Zarr array (v2 or v3: a directory, or GROUP/PATH inside a group), an
OME-Zarr image (its level 0, axes and scale), an .npy file (memory-mapped) or a
TIFF/BigTIFF file (memory-mapped, or tile by tile when tiled or compressed).
OUTPUT is the OME-Zarr group to write: OME-NGFF 0.5 on Zarr v3, sharded, zstd
(--ngff-version 0.4 for Zarr v2).

The work is a plan of region tasks (--plan prints it): each reads one region
once and writes every level it can; the memory target (--memory) sizes the
regions, so the peak stays the target plus the interpreter, whatever the
input's size. A run killed at any point can be finished with --resume: the
tasks it had finished are skipped, and the result is bit for bit that of an
uninterrupted run.

Exit status: 0; 2 for bad options, unreadable input (naming the chunk), an
existing OUTPUT without --overwrite or --resume, or a memory target too small
(naming the smallest that works).

examples:
  poolkit pyramid scan.tif scan.ome.zarr
  poolkit pyramid big.zarr big.ome.zarr --plan
  poolkit pyramid big.zarr big.ome.zarr --memory 1G --codec zstd:1
  poolkit pyramid big.zarr big.ome.zarr --resume          # after a crash or a kill
  poolkit pyramid labels.npy labels.ome.zarr --method mode --axes zyx --chunks 128
  poolkit pyramid stack.zarr stack.ome.zarr --axes zyx --scale 4,1,1 --factors auto
  poolkit pyramid stack.zarr stack.ome.zarr --factors 1,2,2:1,2,2:2,2,2
  poolkit pyramid big.zarr big.ome.zarr --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import sys
from typing import Optional, Tuple

from ..explain.options import add_value_options
from ..multiscale.spec import EDGES, METHODS

_LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a Zarr array or OME-Zarr image, an .npy or a TIFF file")
    parser.add_argument("output", metavar="OUTPUT", help="the OME-Zarr group to write, e.g. out.ome.zarr")
    parser.add_argument("--levels", type=int, default=None, metavar="N",
                        help="pooled levels to write (default: until a level fits one chunk)")
    parser.add_argument("--method", choices=METHODS, default="mean",
                        help="reduction per window (default: mean; mode for label images)")
    add_value_options(parser, [
        ("--factor", "F[,F...]", "2",
         "window length per pooled axis, one int or one per pooled axis (default: 2)"),
        ("--factors", "auto|F,F,F:F,F,F:...", None,
         "per-level factors: a schedule, one level per ':' (each one int or one per pooled "
         "axis), or 'auto': pool an axis only while its pixel stays within sqrt(2) of the "
         "coarsest (from --scale), e.g. z waits until the voxels are nearly isotropic"),
        ("--scale", "S[,S...]", None,
         "level 0's pixel size per axis (default: an OME-Zarr input's, else 1)"),
        ("--stop", "L[,L...]", None,
         "per axis: pool it only while it is longer than L (default: no per-axis stop)"),
    ])
    parser.add_argument("--edge", choices=EDGES, default="partial",
                        help="partial windows at the far edges: reduce them (partial) or drop them (trim)")
    add_value_options(parser, [
        ("--chunks", "C[,C...]", None,
         "output chunk length, one int or one per axis (default: the input's chunks; "
         "1024 per axis in 2-D, 128 in 3-D for .npy and untiled TIFF)"),
        ("--shards", "auto|none|S[,S...]", "auto",
         "Zarr v3 shards: auto (default: one file per task and level), none, or a shape "
         "in multiples of the chunks"),
        ("--codec", "NAME[:LEVEL]", "zstd",
         "chunk compression: zstd (default), blosc-lz4, blosc-zstd, gzip or none, e.g. zstd:1"),
        ("--axes", "NAMES", None,
         "axis names from 'tczyx' in that order, e.g. cyx (default: an OME-Zarr input's, "
         "else the last ndim letters)"),
        ("--pool", "NAMES", None,
         "the axes to pool, by name, e.g. yx to leave z alone (default: the space axes)"),
        ("--memory", "SIZE", None,
         "memory target of the running tasks, e.g. 512M or 2G (default: 256M, a peak "
         "below 0.5 GiB; when resuming: the interrupted run's)"),
    ])
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="tasks at once (default: the CPU count, or the cluster's threads)")
    add_value_options(parser, [
        ("--scheduler", "threads|processes|synchronous|tcp://ADDRESS", "threads",
         "where tasks run (default: threads); tcp://... connects to a dask.distributed "
         "scheduler, whose workers must see INPUT and OUTPUT"),
    ])
    parser.add_argument("--ngff-version", choices=("0.4", "0.5"), default="0.5", dest="ngff_version",
                        help="OME-NGFF version (default: 0.5 on Zarr v3; 0.4 on Zarr v2)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run into OUTPUT (same INPUT and options)")
    parser.add_argument("--plan", action="store_true",
                        help="print the plan (tasks, bytes per task, levels per stage, expected peak) and exit")
    parser.add_argument("--fsync", action="store_true",
                        help="flush every file to the disk before its task counts as done (power cuts)")
    parser.add_argument("--no-direct-io", action="store_false", dest="direct_io",
                        help="write through the page cache, not with O_DIRECT (e.g. on a network file system)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(_pyramid_parser=parser)


class _Failure(Exception):
    """A user error: printed as one line, exit status 2."""


def _ints(text: Optional[str], option: str) -> Optional[Tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise _Failure(f"{option} must be an int or comma-separated ints, but got {text!r}") from None


def _floats(text: Optional[str], option: str):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise _Failure(f"{option} must be a number or comma-separated numbers, but got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _size(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not m:
        raise _Failure(f"--memory must be a size such as 512M, 2G or a number of bytes, but got {text!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def _factors(text: Optional[str]):
    if text is None or text == "auto":
        return text
    try:
        levels = [tuple(int(v) for v in level.split(",")) for level in text.split(":")]
    except ValueError:
        raise _Failure(f"--factors must be 'auto' or levels separated by ':' of comma-separated ints "
                       f"(e.g. 1,2,2:1,2,2:2,2,2), but got {text!r}") from None
    return [lv[0] if len(lv) == 1 else lv for lv in levels]


def run(args: argparse.Namespace) -> int:
    parser = args._pyramid_parser
    try:
        return _run(args)
    except _Failure as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _run(args: argparse.Namespace) -> int:
    from ..multiscale.chunkio import ChunkError
    from ..multiscale.ngff import _AXIS_TYPES, _axes_names, _existing, _write, plan_pyramid
    from ..multiscale.plan import MemoryTooSmall
    from ..multiscale.sources import InputError, open_input

    factor = _ints(args.factor, "--factor") or (2,)
    chunks = _ints(args.chunks, "--chunks")
    stop = _ints(args.stop, "--stop")
    scale = _floats(args.scale, "--scale")
    memory = _size(args.memory)
    factors = _factors(args.factors)
    shards = args.shards
    if shards not in ("auto", "none"):
        shards = _ints(shards, "--shards")
    if args.levels is not None and args.levels < 0:
        raise _Failure(f"--levels must be >= 0, but got {args.levels}")
    if args.workers is not None and args.workers < 1:
        raise _Failure(f"--workers must be >= 1, but got {args.workers}")
    scheduler = args.scheduler
    if scheduler not in _LOCAL_SCHEDULERS and not scheduler.startswith("tcp://"):
        raise _Failure(f"--scheduler must be one of {', '.join(_LOCAL_SCHEDULERS)} or tcp://ADDRESS, "
                       f"but got {scheduler!r}")
    if args.overwrite and args.resume:
        raise _Failure("--overwrite and --resume exclude each other: pass one")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise _Failure("OUTPUT must differ from INPUT")
    if not args.plan:
        state = _existing(args.output)
        if state == "incomplete" and not (args.overwrite or args.resume):
            raise _Failure(f"OUTPUT {args.output} holds an interrupted run; pass --resume to finish it or "
                           f"--overwrite to start again")
        if state in ("complete", "other") and not args.overwrite:
            raise _Failure(f"OUTPUT {args.output} exists; pass --overwrite to replace it")
    try:
        source = open_input(args.input)
    except InputError as exc:
        raise _Failure(str(exc)) from None
    ndim = len(source.shape)
    try:
        names = _axes_names(args.axes if args.axes is not None else source.axes_names, ndim)
    except ValueError as exc:
        raise _Failure(_one_line(exc)) from None
    pool = None
    if args.pool is not None:
        if not args.pool or any(c not in names for c in args.pool) or len(set(args.pool)) != len(args.pool):
            raise _Failure(f"--pool must name axes of {names!r}, each once, but got {args.pool!r}")
        if any(_AXIS_TYPES[c] == "channel" for c in args.pool):
            raise _Failure(f"--pool must not name a channel axis, but got {args.pool!r}")
        pool = tuple(names.index(c) for c in args.pool)
    if chunks is not None and len(chunks) == 1:
        chunks = chunks * ndim
    if stop is not None and len(stop) == 1:
        stop = stop * ndim
    if isinstance(shards, tuple) and len(shards) == 1:
        shards = shards * ndim

    client = None
    sched = scheduler
    if scheduler.startswith("tcp://"):
        from distributed import Client

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise _Failure(f"cannot reach the Dask scheduler at {scheduler}: {_one_line(exc)}") from None
        sched = client
    kwargs = dict(levels=args.levels, factor=factor[0] if len(factor) == 1 else factor, method=args.method,
                  axes=pool, axes_names=names, chunks=chunks, shards=None if shards == "none" else shards,
                  codec=args.codec, edge=args.edge, factors=factors, scale=scale, stop=stop, units=None,
                  version=args.ngff_version, name="image", memory=memory, workers=args.workers,
                  scheduler=sched)
    show = not args.quiet
    try:
        if args.plan:
            print(plan_pyramid(source, **kwargs).describe())
            return 0
        if show and client is not None:
            print(f"running on {scheduler}; dashboard: {client.dashboard_link}", file=sys.stderr)
        result = _write(source, args.output, kwargs, overwrite=args.overwrite, resume=args.resume,
                        fsync=args.fsync, direct_io=args.direct_io, progress=show)
    except BrokenPipeError:
        raise                           # `poolkit pyramid ... --plan | head`: main() handles it
    except MemoryTooSmall as exc:
        raise _Failure(str(exc).replace("`memory`", "--memory")) from None
    except ChunkError as exc:
        raise _Failure(f"{_one_line(exc)} (OUTPUT is left incomplete: fix INPUT and run again with --resume, "
                       f"or --overwrite)") from None
    except (TypeError, ValueError, FileExistsError, InputError, OSError) as exc:
        raise _Failure(_one_line(exc)) from None
    finally:
        if client is not None:
            client.close()
    if show:
        _summary(args, source, result)
    return 0


def _summary(args, source, result) -> None:
    import numpy as np

    from ..multiscale.plan import human

    itemsize = np.dtype(source.dtype).itemsize
    shapes = result.shapes
    print(f"{args.input} -> {args.output}: {len(shapes) - 1} pooled levels, method={args.method}, "
          f"dtype={source.dtype}")
    total = 0
    for k, shape in enumerate(shapes):
        nbytes = int(np.prod(shape)) * itemsize
        total += nbytes
        print(f"  level {k}: {'x'.join(map(str, shape)):>20}  {human(nbytes):>10}")
    read = int(np.prod(shapes[0])) * itemsize
    seconds = result.seconds
    rate = human(read / seconds) + "/s" if seconds > 0 else "-"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    extra = f" (each worker process: up to {human(children)})" if children else ""
    resumed = f", {result.resumed} done before (resumed)" if result.resumed else ""
    print(f"read {human(read)}, wrote {human(total)} (uncompressed) in {seconds:.2f} s: {rate} of input; "
          f"{result.tasks_run} tasks in {len(result.plan.stages)} stages{resumed}; peak memory "
          f"{human(peak)}{extra}")
