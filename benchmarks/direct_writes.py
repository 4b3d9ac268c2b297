"""What the page cache costs a writer: many chunk-sized files, buffered against ``O_DIRECT``.

Usage::

    python benchmarks/direct_writes.py                      # 4 GiB of 1 MiB files into a temp folder
    python benchmarks/direct_writes.py --gib 2 --dir /data  # on the disk a pyramid will be written to

Writes the same files twice each way, alternating (buffered, direct, buffered, direct): with
``open(path, "wb")`` and with poolkit's :class:`~poolkit.multiscale.chunkio.FileSink` (``O_DIRECT``
where the file system allows it). Prints wall, user and system seconds of each pass. The files are
removed between passes and at the end. If ``O_DIRECT`` costs more wall time than buffered writes
on your disk (a network file system, say), pass ``--no-direct-io`` to ``poolkit pyramid``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from poolkit.multiscale.chunkio import FileSink


def one_pass(folder: str, direct: bool, n_files: int, blob: bytes) -> str:
    os.makedirs(folder, exist_ok=True)
    t0, c0 = time.perf_counter(), os.times()
    used_direct = False
    for i in range(n_files):
        path = os.path.join(folder, str(i))
        if direct:
            sink = FileSink(path)
            used_direct |= sink.direct
            sink.write(blob)
            sink.close()
        else:
            with open(path, "wb") as f:
                f.write(blob)
    os.sync()                     # the buffered pass's writeback is part of its cost
    c1 = os.times()
    wall = time.perf_counter() - t0
    shutil.rmtree(folder)
    name = ("direct" if used_direct else "direct (refused: buffered)") if direct else "buffered"
    return (f"{name:27s} {wall:6.2f} s wall, {c1.user - c0.user:5.2f} s user, "
            f"{c1.system - c0.system:5.2f} s system")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0, help="GiB per pass (default 4)")
    parser.add_argument("--file-mib", type=float, default=1.0, help="MiB per file (default 1: a zstd 1024² chunk)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()
    size = int(args.file_mib * 2**20) - 1000      # not a multiple of the alignment: the padded tail is cut
    blob = os.urandom(size)
    base = tempfile.mkdtemp(prefix="direct-writes-", dir=args.dir)
    n = max(1, int(args.gib * 2**30 // size))
    print(f"{n} files of {size} bytes ({n * size / 2**30:.2f} GiB) per pass into {base}")
    try:
        for direct in (False, True, False, True):
            print(one_pass(os.path.join(base, "f"), direct, n, blob), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
