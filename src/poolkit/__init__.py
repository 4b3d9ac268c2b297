"""poolkit: max and average pooling for NumPy, forward and backward, PyTorch semantics.

Functions mirror ``torch.nn.functional`` (``max_pool2d``, ``avg_pool2d``, ...,
with matching ``*_backward`` functions); layers (``MaxPool2d``, ...) keep
what backward needs; ``PoolingLayer`` is the textbook chapter's interface.

``import poolkit`` loads the pooling itself and nothing else: ``explain_pooling``
(and with it matplotlib, when figures are drawn) loads on first use.
"""
from __future__ import annotations

from typing import Optional

from .core import threads as _threads
from .core.threads import get_num_threads, set_num_threads, threads
from .chapter import PoolingLayer, PoolingTypes
from .functional import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
    adaptive_avg_pool_backward, adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d, avg_pool,
    avg_pool1d, avg_pool2d, avg_pool3d, avg_pool_backward, avg_pool1d_backward, avg_pool2d_backward,
    avg_pool3d_backward, global_avg_pool, global_avg_pool_backward, global_max_pool, max_pool, max_pool1d,
    max_pool2d, max_pool3d, max_pool_backward, max_pool1d_backward, max_pool2d_backward, max_pool3d_backward,
    max_unpool1d, max_unpool2d, max_unpool3d, max_unpool_backward, output_shape)
from .reductions import (global_lp_pool, global_lp_pool_backward, lp_pool, lp_pool1d, lp_pool2d, lp_pool3d,
    lp_pool_backward, min_pool, min_pool1d, min_pool2d, min_pool3d, min_pool_backward, sum_pool, sum_pool1d,
    sum_pool2d, sum_pool3d, sum_pool_backward)
from .fractional import (FractionalMaxPool2d, FractionalMaxPool3d, fractional_max_pool2d,
    fractional_max_pool2d_backward, fractional_max_pool3d, fractional_max_pool3d_backward)
from .spp import SpatialPyramidPool2d, spatial_pyramid_pool2d, spatial_pyramid_pool2d_backward
from .backends.numba.warmup import warmup
from .layers import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d,
    AdaptiveMaxPool2d, AdaptiveMaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d,
    LPPool1d, LPPool2d, LPPool3d, MinPool1d, MinPool2d, MinPool3d, SumPool1d, SumPool2d, SumPool3d)

__version__ = "0.1.0"

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "threads",
    "PoolingLayer",
    "PoolingTypes",
    "explain_pooling",
    "pyramid",
    "write_pyramid",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "avg_pool",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "avg_pool_backward",
    "avg_pool1d_backward",
    "avg_pool2d_backward",
    "avg_pool3d_backward",
    "global_avg_pool",
    "global_avg_pool_backward",
    "global_max_pool",
    "max_pool",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool_backward",
    "max_pool1d_backward",
    "max_pool2d_backward",
    "max_pool3d_backward",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "max_unpool_backward",
    "output_shape",
    "min_pool", "min_pool1d", "min_pool2d", "min_pool3d", "min_pool_backward",
    "sum_pool", "sum_pool1d", "sum_pool2d", "sum_pool3d", "sum_pool_backward",
    "lp_pool", "lp_pool1d", "lp_pool2d", "lp_pool3d", "lp_pool_backward",
    "global_lp_pool", "global_lp_pool_backward",
    "MinPool1d", "MinPool2d", "MinPool3d", "SumPool1d", "SumPool2d", "SumPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "fractional_max_pool2d", "fractional_max_pool3d", "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward", "FractionalMaxPool2d", "FractionalMaxPool3d",
    "spatial_pyramid_pool2d", "spatial_pyramid_pool2d_backward", "SpatialPyramidPool2d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "info",
    "wait_for_kernels",
    "warmup",
    "__version__",
]

_threads._from_environment()

# Public names whose modules load on first access (PEP 562): `import poolkit` stays light.
_LAZY = {"explain_pooling": ".explain",
         # Multiscale pyramids and OME-Zarr output (Dask and Zarr load only when used).
         "pyramid": ".multiscale.levels", "write_pyramid": ".multiscale.ngff"}


def __getattr__(name: str):
    """Load a lazy public name (see ``_LAZY``) on first access and keep it."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value                     # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def wait_for_kernels(timeout: Optional[float] = None) -> bool:
    """Wait until the kernels compiling in the background are ready.

    The default backend answers a call whose Numba kernel is not compiled yet
    with NumPy (the same bits) while a compile worker process compiles the
    kernel; a later call installs it.  This waits for the compiles and installs
    their kernels.  Call it before timing poolkit, or before forking worker
    processes that should inherit compiled kernels.

    Parameters
    ----------
    timeout : float, optional
        Seconds to wait at most; None waits as long as it takes.

    Returns
    -------
    bool
        True if nothing is left to compile, False if ``timeout`` passed first.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> y = poolkit.max_pool2d(np.ones((1, 1, 4, 4)), 2)    # may be served by NumPy
    >>> poolkit.wait_for_kernels()
    True
    """
    from .backends.numba import jit as _jit

    return _jit.background_wait(timeout)


def info() -> dict:
    """Versions, threads, and where compiled kernels are kept (for bug reports and benchmark headers).

    ``kernel_cache`` says which folder holds the compiled kernels
    (``"POOLKIT_CACHE_DIR"``, ``"NUMBA_CACHE_DIR"``, ``"package"``, ``"user"``, or
    ``"memory"`` when none can be written), ``kernel_cache_dir`` the folder and
    ``cached_kernels`` how many compiled kernels it holds; ``compile_mode`` and
    ``compiling`` tell whether the ``"auto"`` backend serves calls while their kernels
    compile in the background, and how many are not installed yet; ``compiler`` who
    compiles them (``"process"``: the compile worker; ``"thread"``: a thread of this process).
    """
    import platform

    import numba
    import numpy

    from .backends.numba import cache as _cache, jit as _jit

    try:
        layer = numba.threading_layer()
    except ValueError:          # no parallel kernel has run yet
        layer = "not started"
    where, folder = _cache.cache_folder()
    status = _jit.background_status()
    return {
        "poolkit": __version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": get_num_threads(),
        "threading_layer": layer,
        "kernel_cache": where,
        "kernel_cache_dir": folder,
        "cached_kernels": _cache.cached_kernels(),
        "compile_mode": _jit.COMPILE_MODE,
        "compiling": status["pending"],
        "compiler": status["compiler"],
    }
