"""Contenders: one forward+backward pass of 2-D pooling each, on the same data, and their check.

A :class:`Contender` runs one pass per ``step()`` call: poolkit through the
chapter's ``PoolingLayer`` or a layer class, PyTorch (``F.max_pool2d`` +
``torch.autograd.grad``) or JAX (``jax.vjp`` of ``lax.reduce_window``).
PyTorch and JAX are imported only when their contender is built, so that
poolkit's contenders are timed before their thread pools exist.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple

import numpy as np

__all__ = ["Contender", "PEER_PACKAGES", "PEERS", "POOLKIT_METHODS", "Pooling", "chapter_contender",
           "layer_contender", "peer_contender", "poolkit_contender", "same", "tolerance"]

POOLKIT_METHODS: Tuple[str, ...] = ("numba", "img2col", "reference")
PEERS: Tuple[str, ...] = ("pytorch", "jax")
# peer -> (module to import, what to pip install)
PEER_PACKAGES = {"pytorch": ("torch", "'poolkit[bench]'"), "jax": ("jax", "'jax[cpu]'")}
# The chapter's two methods, by their names on its PoolingLayer.
_CHAPTER_CALLS = {"numba": ("forward_numba", "backward_numba"),
                  "img2col": ("forward_img2col", "backward_col2img")}

Pair = Tuple[int, int]


@dataclass(frozen=True)
class Pooling:
    """2-D pooling of (N, C, H, W) data with PyTorch's semantics (-inf padding for max, 0 for avg)."""

    mode: str               # "max" or "avg" (count_include_pad=True)
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)

    @property
    def layer_class(self) -> type:
        from ..layers import AvgPool2d, MaxPool2d

        return MaxPool2d if self.mode == "max" else AvgPool2d

    def layer(self, backend: str = "auto"):
        """The poolkit layer for this pooling."""
        return self.layer_class(self.kernel, self.stride, self.padding, backend=backend)


def _no_context() -> ContextManager[object]:
    return contextlib.nullcontext()


def _same_arrays(out: Any) -> Tuple[np.ndarray, np.ndarray]:
    return np.asarray(out[0]), np.asarray(out[1])


@dataclass
class Contender:
    """One forward+backward pass per ``step()``; ``arrays(out)`` turns its result into NumPy arrays.

    ``context()`` sets the contender's thread count for the block it wraps.
    """

    name: str
    kind: str                                   # "poolkit" or "peer"
    call: str                                   # what one step runs, in words
    step: Callable[[], object]
    arrays: Callable[[object], Tuple[np.ndarray, np.ndarray]] = _same_arrays
    context: Callable[[], ContextManager[object]] = _no_context
    threads: object = None                      # an int, or words ("XLA's own")


def _poolkit_threads(threads: int) -> Callable[[], ContextManager[object]]:
    from ..core.threads import threads as set_threads

    return lambda: set_threads(threads)


def chapter_contender(backend: str, pool: Pooling, x: np.ndarray, g: np.ndarray, threads: int) -> Contender:
    """Method 1 ("numba") or 2 ("img2col") through the chapter's ``PoolingLayer`` (no padding)."""
    from ..chapter import PoolingLayer

    if backend not in _CHAPTER_CALLS or pool.padding != (0, 0):
        raise ValueError(f"the chapter's PoolingLayer runs numba or img2col without padding, "
                         f"but got backend={backend!r} with padding={pool.padding!r}.")
    layer = PoolingLayer(x.shape[1:], pool.kernel, pool.stride, "MAX" if pool.mode == "max" else "MEAN")
    fname, bname = _CHAPTER_CALLS[backend]
    forward, backward = getattr(layer, fname), getattr(layer, bname)

    def step() -> object:
        return forward(x, True), backward(g, 0)

    return Contender(backend, "poolkit", f"PoolingLayer.{fname} + {bname}", step,
                     context=_poolkit_threads(threads), threads=threads)


def layer_contender(layer, x: np.ndarray, g: np.ndarray, threads: int, name: Optional[str] = None) -> Contender:
    """``layer.forward(x)`` then ``layer.backward(g)``, for any poolkit layer."""
    def step() -> object:
        return layer.forward(x), layer.backward(g)

    return Contender(name or layer.backend, "poolkit",
                     f"{type(layer).__name__}(backend={layer.backend!r}).forward + backward", step,
                     context=_poolkit_threads(threads), threads=threads)


def poolkit_contender(backend: str, pool: Pooling, x: np.ndarray, g: np.ndarray, threads: int) -> Contender:
    """numba / img2col / reference: through the chapter's ``PoolingLayer`` when it can run the case."""
    if backend in _CHAPTER_CALLS and pool.padding == (0, 0):
        return chapter_contender(backend, pool, x, g, threads)
    return layer_contender(pool.layer(backend), x, g, threads)


def _pytorch_contender(pool: Pooling, x: np.ndarray, g: np.ndarray, threads: int) -> Contender:
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(g)
    fn, fname = (F.max_pool2d, "max_pool2d") if pool.mode == "max" else (F.avg_pool2d, "avg_pool2d")

    def step() -> object:
        y = fn(xt, pool.kernel, pool.stride, pool.padding)
        (gx,) = torch.autograd.grad(y, xt, gt)
        return y, gx

    @contextlib.contextmanager
    def same_threads():
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def arrays(out) -> Tuple[np.ndarray, np.ndarray]:
        return out[0].detach().numpy(), out[1].numpy()

    return Contender("pytorch", "peer", f"F.{fname} + torch.autograd.grad", step, arrays, same_threads,
                     threads)


def _jax_contender(pool: Pooling, x: np.ndarray, g: np.ndarray, threads: int) -> Contender:
    import jax
    import jax.numpy as jnp
    from jax import lax

    window = (1, 1) + pool.kernel
    strides = (1, 1) + pool.stride
    pads = ((0, 0), (0, 0)) + tuple((p, p) for p in pool.padding)
    taps = pool.kernel[0] * pool.kernel[1]

    def forward(v):
        if pool.mode == "max":       # padding is -inf, as in PyTorch
            # (a concrete NumPy init value, so that JAX sees the max monoid and can differentiate)
            return lax.reduce_window(v, np.array(-np.inf, v.dtype), lax.max, window, strides, pads)
        # count_include_pad=True (PyTorch's default): always divide by the window size
        return lax.reduce_window(v, np.array(0, v.dtype), lax.add, window, strides, pads) / taps

    @jax.jit
    def forward_backward(v, gv):
        y, vjp = jax.vjp(forward, v)
        return y, vjp(gv)[0]

    def context() -> ContextManager[object]:
        return jax.enable_x64(x.dtype == np.float64)

    with context():
        xj, gj = jnp.asarray(x), jnp.asarray(g)

    def step() -> object:
        y, gx = forward_backward(xj, gj)
        gx.block_until_ready()
        return y, gx

    reduce = "max" if pool.mode == "max" else "add"
    # `threads` does not reach XLA, which runs on its own thread pool.
    return Contender("jax", "peer", f"jit(vjp of lax.reduce_window {reduce})", step, _same_arrays, context,
                     "XLA's own")


_PEER_MAKERS: Dict[str, Callable[[Pooling, np.ndarray, np.ndarray, int], Contender]] = {
    "pytorch": _pytorch_contender, "jax": _jax_contender}


def peer_contender(name: str, pool: Pooling, x: np.ndarray, g: np.ndarray, threads: int) -> Contender:
    """PyTorch ("pytorch") or JAX ("jax") doing the same forward+backward (imported only here).

    Raises ImportError when the library is missing.
    """
    return _PEER_MAKERS[name](pool, x, g, threads)


def tolerance(mode: str, dtype) -> Optional[float]:
    """None for max pooling (results must be identical), else the rtol=atol used for average pooling."""
    if mode == "max":
        return None
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def same(a, b, mode: str) -> bool:
    """The chapter's check: identical for max pooling, allclose for average pooling."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    tol = tolerance(mode, a.dtype)
    return bool(np.array_equal(a, b) if tol is None else np.allclose(a, b, rtol=tol, atol=tol))
