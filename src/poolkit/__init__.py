"""poolkit: pooling for NumPy -- max, average, min, sum, Lp, adaptive, global, fractional max and
spatial pyramid pooling, with unpooling and every gradient -- with PyTorch's semantics; and
multiscale pyramids of arrays larger than memory, on Dask.

Functions mirror ``torch.nn.functional`` (``max_pool2d``, ``avg_pool2d``, ...,
with matching ``*_backward`` functions; :mod:`poolkit.functional`); layers
(``MaxPool2d``, ...; :mod:`poolkit.layers`) keep what backward needs;
``PoolingLayer`` is the textbook chapter's interface.

``import poolkit`` loads the pooling itself and nothing else: ``explain_pooling``
(and with it matplotlib, when figures are drawn) loads on first use.
"""
from __future__ import annotations

from typing import Optional

from . import functional as _functional, layers as _layers
from .core import threads as _threads
from .core.threads import get_num_threads, set_num_threads, threads
from .chapter import PoolingLayer, PoolingTypes
from .functional import *  # noqa: F401,F403  (every family's public functions)
from .layers import *  # noqa: F401,F403  (every family's layers)
from .backends.numba.warmup import warmup

__version__ = "0.1.0"

__all__ = ["get_num_threads", "set_num_threads", "threads", "PoolingLayer", "PoolingTypes", "explain_pooling",
           "pyramid", "write_pyramid", *_functional.__all__, *_layers.__all__, "info", "wait_for_kernels", "warmup",
           "__version__"]

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
