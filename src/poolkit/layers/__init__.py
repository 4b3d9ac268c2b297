"""Layer 4: pooling layers that keep what backward needs, on one base (:class:`.base.Layer`).

``base``        the shared machinery: settings checked at construction, saved state, repr, pickling
``strided``     max, min, average, sum and Lp layers; adaptive max and average layers
``fractional``  fractional max pooling layers
``spp``         the spatial pyramid pooling layer
"""
from __future__ import annotations

from . import fractional, spp, strided
from .fractional import *  # noqa: F401,F403
from .spp import *  # noqa: F401,F403
from .strided import *  # noqa: F401,F403

__all__ = [name for module in (strided, fractional, spp) for name in module.__all__]
