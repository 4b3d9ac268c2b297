"""The ``poolkit`` command: ``bench``, ``explain``, ``info``, ``warmup`` and ``pyramid``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

_INFO_DOC = """poolkit info: versions, threads and kernel-cache status (poolkit.info()).

Prints one aligned "key: value" line per entry; --json prints the dict as JSON.
Paste it into bug reports.
"""

_WARMUP_DOC = """poolkit warmup: compile the numba backend's kernels into the on-disk cache ahead of time.

Runs a forward and a backward pass of each configuration and dtype, on a small
input and on one large enough for the multi-threaded kernels (see
poolkit.warmup), so that later processes load the kernels instead of compiling
them on their first call.  Default: the common set (max and average pooling,
2-D 2x2/2, 3x3/2 padding 1 and 3x3/1 padding 1 in NCHW and NHWC, 1-D 2/2, 3-D
2x2x2/2) in float32 and float64.  Exit status: 0; 2 for bad options.

examples:
  poolkit warmup                                  # the common set, float32 and float64
  poolkit warmup --dtype float32 --quiet
  poolkit warmup --config my_configs.json         # a JSON list of dicts, e.g.
      [{"op": "max", "kernel_size": 3, "stride": 2, "padding": 1, "data_format": "NHWC"},
       {"op": "avg", "kernel_size": [2, 2], "data_format": "NCHW"}]
"""


def _fail(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------- #
# poolkit info
# --------------------------------------------------------------------------- #
def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the dict as JSON")


def _run_info(args: argparse.Namespace) -> int:
    from .. import info

    d = info()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    width = max(len(k) for k in d) + 1
    for key, value in d.items():
        print(f"{key + ':':<{width}} {value}")
    return 0


# --------------------------------------------------------------------------- #
# poolkit warmup
# --------------------------------------------------------------------------- #
def _warmup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", action="extend", nargs="+", default=None, metavar="D",
                        help="input dtypes to compile for, one or more, repeatable (default: float32 float64)")
    parser.add_argument("--config", metavar="FILE.json", default=None,
                        help="a JSON list of configs, dicts with the keys op, kernel_size, data_format and "
                             "optionally stride, padding, dilation (default: the common set)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(_warmup_parser=parser)


def _run_warmup(args: argparse.Namespace) -> int:
    from ..backends.numba.warmup import check, describe, warmup

    parser = args._warmup_parser
    configs = None
    if args.config is not None:
        try:
            with open(args.config, encoding="utf-8") as f:
                configs = json.load(f)
        except OSError as exc:
            return _fail(parser, f"--config {args.config}: cannot read it ({exc.strerror})")
        except json.JSONDecodeError as exc:
            return _fail(parser, f"--config {args.config}: not JSON ({exc})")
    dtypes = tuple(args.dtype) if args.dtype else ("float32", "float64")
    try:
        check(configs, dtypes)
    except (TypeError, ValueError) as exc:
        where = f"--config {args.config}: " if args.config else ""
        return _fail(parser, where + str(exc))
    records = warmup(configs, dtypes=dtypes, progress=False if args.quiet else None)
    if not args.quiet:
        from .. import info

        width = max(len(describe(r)) for r in records) + 1
        for r in records:
            print(f"{describe(r) + ':':<{width}} {r['seconds']:.2f} s")
        total = sum(r["seconds"] for r in records)
        print(f"{len(records)} configs x dtypes in {total:.1f} s; kernel cache: {info()['kernel_cache']}")
    return 0


# --------------------------------------------------------------------------- #
# the command
# --------------------------------------------------------------------------- #
Command = Tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str, str]


def _commands() -> Dict[str, Command]:
    from . import pyramid as _pyramid_cli
    from ..bench import chapter as bench
    from .. import explain

    return {
        "bench": (bench.add_arguments, bench.run, "run the chapter's performance test (17.5.6)",
                  bench.__doc__ or ""),
        "explain": (explain.add_arguments, explain.run, "show what pooling does, forward and backward",
                    explain.__doc__ or ""),
        "info": (_info_arguments, _run_info, "print versions, threads and the kernel-cache status", _INFO_DOC),
        "pyramid": (_pyramid_cli.add_arguments, _pyramid_cli.run, "pool an image into a multiscale OME-Zarr pyramid",
                    _pyramid_cli.__doc__ or ""),
        "warmup": (_warmup_arguments, _run_warmup, "compile the kernels into the on-disk cache ahead of time",
                   _WARMUP_DOC),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    commands = _commands()
    names: List[str] = list(commands)
    parser = argparse.ArgumentParser(
        prog="poolkit",
        description="Pooling layers for NumPy. Subcommands: bench (the chapter's performance test), "
                    "explain (what pooling does, forward and backward), info (versions and settings), "
                    "warmup (compile the kernels ahead of time).")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(names) + "}")
    for name, (add_arguments, _, help_text, doc) in commands.items():
        add_arguments(sub.add_parser(name, help=help_text, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return commands[args.command][1](args)
    except BrokenPipeError:
        # `poolkit bench --json | head`: the reader left; quietly stop writing.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
