"""The ``poolkit`` command: ``poolkit bench`` (the chapter's performance test) and ``poolkit explain``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="poolkit",
        description="Pooling layers for NumPy. Subcommands: bench (the chapter's performance test), "
                    "explain (what pooling does, forward and backward).")
    sub = parser.add_subparsers(dest="command", metavar="{bench,explain}")
    from . import bench, explain

    bench.add_arguments(sub.add_parser("bench", help="run the chapter's performance test (17.5.6)",
                                       description=bench.__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter))
    explain.add_arguments(sub.add_parser("explain", help="show what pooling does, forward and backward",
                                         description=explain.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = bench if args.command == "bench" else explain
    try:
        return module.run(args)
    except BrokenPipeError:
        # `poolkit bench --json | head`: the reader left; quietly stop writing.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
