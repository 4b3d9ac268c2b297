"""Why one axis has the output length it has: the numbers behind the explanations.

This module's job is to lay the windows of one axis out and read off what an
explanation needs (:mod:`poolkit.core.shape_text` holds the code, which
``output_shape(..., explain=True)`` uses too): the output length in floor and in ceil mode, where the last
window ends, whether ``ceil_mode`` dropped a window.  It computes nothing
itself: every length is :func:`poolkit.core.geometry.output_size`'s and every
window :func:`poolkit.core.geometry.regular_axis`'s -- the same two functions the
kernels use -- so an explanation cannot disagree with the shape poolkit
returns.  The sentences are in :mod:`.words`.
"""
from __future__ import annotations

# The counts live below the library's public functions (output_shape(..., explain=True) uses them).
from ..core.shape_text import AxisCount, count_axis

__all__ = ["AxisCount", "count_axis"]
