"""Seconds, bytes and window sizes in words, for benchmark reports."""
from __future__ import annotations

from typing import Sequence

__all__ = ["format_bytes", "format_seconds", "pair_text", "pooling_text"]


def format_seconds(s: float) -> str:
    """``1.23 s``, ``45.6 ms`` or ``78.9 us``."""
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def format_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ... up to GiB."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def pair_text(v: Sequence[int]) -> str:
    """``(2, 3)`` -> ``2x3``; ``(2, 2)`` -> ``2``."""
    return f"{v[0]}x{v[1]}" if v[0] != v[1] else str(v[0])


def pooling_text(mode: str, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> str:
    """``max pooling 2x2, stride 2, padding 0``."""
    return (f"{mode} pooling {'x'.join(map(str, kernel))}, stride {pair_text(stride)}, "
            f"padding {pair_text(padding)}")
