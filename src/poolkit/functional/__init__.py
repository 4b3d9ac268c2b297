"""Layer 3: the public functions, one module per family.

``strided``     max, average, min and sum pooling (N-d and 1-D/2-D/3-D), ``output_shape``
``backward``    their gradients, and adaptive average pooling's
``adaptive``    adaptive and global pooling
``unpool``      ``max_unpool*`` and the scatter behind max pooling's gradient
``lp``          Lp pooling (PyTorch's) and global Lp pooling (ONNX's)
``fractional``  fractional max pooling
``spp``         spatial pyramid pooling
``fixed``       the fixed-rank names: one generator, one docstring template
``common``      the rank rule and the eager/lazy dispatch every family shares

Every name in a family module's ``__all__`` is public: it is re-exported here
and by :mod:`poolkit`.
"""
from __future__ import annotations

from . import adaptive, backward, fractional, lp, spp, strided, unpool
from .adaptive import *  # noqa: F401,F403
from .backward import *  # noqa: F401,F403
from .fractional import *  # noqa: F401,F403
from .lp import *  # noqa: F401,F403
from .spp import *  # noqa: F401,F403
from .strided import *  # noqa: F401,F403
from .unpool import *  # noqa: F401,F403

__all__ = [name for module in (strided, backward, adaptive, unpool, lp, fractional, spp) for name in module.__all__]
