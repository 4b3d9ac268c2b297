"""poolkit bench: the chapter's performance test (section 17.5.6), on your machine.

With no options it repeats the chapter's experiment: one batch of 64 samples of
3x28x28 float64, 2x2 max pooling with stride 2, 5,000 forward+backward passes
with each method (method 1 "numba", method 2 "img2col"), then checks that both
methods give the same result.  PyTorch and JAX run the same passes beside them
when they are installed (never required).  Output starts like the chapter's:

    Elapsed of numba: ...
    Elapsed of img2col: ...
    Elapsed of pytorch: ...
    forward: True
    backward: True

and ends with a summary: time per pass, ratios, first-call time (Numba compile
or cache load, excluded from the elapsed times), memory kept for backward and
the machine.  Exit status: 0, 1 if the methods disagree, 2 for bad options.

examples:
  poolkit bench                                   # the chapter's experiment
  poolkit bench --iterations 500 --mode avg
  poolkit bench --batch 16 --shape 64 112 112 --dtype float32 --kernel 3 --stride 2 --padding 1
  poolkit bench --threads 1 --peers none --json
  poolkit bench --backends numba --peers torch --plot bench.png
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["bench", "add_arguments", "run", "machine_info", "BenchConfig", "make_config", "CpuWatch"]

POOLKIT_METHODS = ("numba", "img2col", "reference")
PEERS = ("pytorch", "jax")
_PEER_ALIASES = {"torch": "pytorch", "pytorch": "pytorch", "jax": "jax"}
_PEER_PACKAGES = {"pytorch": ("torch", "'poolkit[bench]'"), "jax": ("jax", "'jax[cpu]'")}
# The chapter's two methods, by their names on its PoolingLayer.
_CHAPTER_CALLS = {"numba": ("forward_numba", "backward_numba"),
                  "img2col": ("forward_img2col", "backward_col2img")}
_CHUNK_SECONDS = 0.1        # timed blocks of about this long (progress updates between blocks)
_PROGRESS_MIN_SECONDS = 2.0  # show a progress bar for methods expected to run longer than this
BUSY_FRACTION = 0.05        # other processes used more than this share of the CPUs: the run is noisy


# --------------------------------------------------------------------------- #
# configuration
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class BenchConfig:
    """One validated benchmark setting (see :func:`bench` for the meaning of each field)."""

    iterations: int = 5000
    batch: int = 64
    shape: Tuple[int, int, int] = (3, 28, 28)
    dtype: str = "float64"
    mode: str = "max"
    kernel: Tuple[int, int] = (2, 2)
    stride: Tuple[int, int] = (2, 2)
    padding: Tuple[int, int] = (0, 0)
    threads: int = 1
    backends: Tuple[str, ...] = ("numba", "img2col")
    peers: Tuple[str, ...] = PEERS
    peers_auto: bool = True         # peers not installed are skipped instead of refused
    seed: int = 0

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (self.batch,) + tuple(self.shape)

    @property
    def output_shape(self) -> Tuple[int, int, int, int]:
        c, h, w = self.shape
        oh, ow = ((n + 2 * p - k) // s + 1 for n, k, s, p in zip((h, w), self.kernel, self.stride, self.padding))
        return (self.batch, c, oh, ow)

    @property
    def is_chapter(self) -> bool:
        """The chapter's experiment exactly (any iteration count)."""
        return (self.batch, self.shape, self.dtype, self.mode, self.kernel, self.stride, self.padding) == \
            (64, (3, 28, 28), "float64", "max", (2, 2), (2, 2), (0, 0))

    def describe(self) -> str:
        k = "x".join(map(str, self.kernel))
        s, p = (_pair_text(v) for v in (self.stride, self.padding))
        shape = "x".join(map(str, self.input_shape))
        return (f"{self.mode} pooling {k}, stride {s}, padding {p} on {shape} {self.dtype}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''}")


def _pair_text(v: Tuple[int, int]) -> str:
    return f"{v[0]}x{v[1]}" if v[0] != v[1] else str(v[0])


class _Names:
    """Error-message wording: Python arguments (`padding`, padding=2) or options (--padding, --padding 2)."""

    def __init__(self, cli: bool):
        self.cli = cli

    def opt(self, name: str) -> str:
        return f"--{name}" if self.cli else f"`{name}`"

    def got(self, name: str, value) -> str:
        if not self.cli:
            return f"{name}={value!r}"
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        return f"--{name} {value}"


def _positive_int(value, name: str, n: _Names, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{n.opt(name)} must be an integer >= {minimum}, but got {n.got(name, value)}.")
    return int(value)


def _int_pair(value, name: str, n: _Names, minimum: int) -> Tuple[int, int]:
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(values) not in (1, 2):
        raise ValueError(f"{n.opt(name)} takes one value (both axes) or two (height, width), "
                         f"but got {len(values)}: {n.got(name, value)}.")
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum
           for v in values):
        raise ValueError(f"{n.opt(name)} must be integers >= {minimum}, but got {n.got(name, value)}.")
    return (int(values[0]), int(values[-1]))


def _names(value, allowed: Sequence[str], name: str, n: _Names,
           aliases: Optional[Dict[str, str]] = None, also: str = "") -> Tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: List[str] = []
    for item in items:
        word = str(item).strip().lower()
        if not word:
            continue
        word = (aliases or {}).get(word, word)
        if word not in allowed:
            raise ValueError(f"{n.opt(name)} takes {also}a comma-separated list of {', '.join(allowed)}, "
                             f"but got {str(item).strip()!r} in {n.got(name, value)}.")
        if word not in out:
            out.append(word)
    return tuple(out)


def make_config(*, iterations=5000, batch=64, shape=(3, 28, 28), dtype="float64", mode="max", kernel=2,
                stride=None, padding=0, threads=None, backends=("numba", "img2col"), peers="auto",
                seed=0, cli: bool = False) -> BenchConfig:
    """Validate benchmark settings (see :func:`bench`); raises ValueError naming the argument.

    ``cli=True`` words the errors for the command line (``--padding 2`` instead of ``padding=2``).
    """
    from ._threads import get_num_threads
    import numba

    n = _Names(cli)
    iterations = _positive_int(iterations, "iterations", n)
    batch = _positive_int(batch, "batch", n)
    shape_t = tuple(shape) if not isinstance(shape, (int, np.integer)) else (shape,)
    if len(shape_t) != 3:
        raise ValueError(f"{n.opt('shape')} must be three integers C H W (channels, height, width), "
                         f"but got {n.got('shape', shape)}.")
    shape_t = tuple(_positive_int(v, "shape", n) for v in shape_t)
    if str(dtype) not in ("float32", "float64"):
        raise ValueError(f"{n.opt('dtype')} must be float32 or float64, but got {n.got('dtype', dtype)}.")
    word = {"mean": "avg", "average": "avg"}.get(str(mode).lower(), str(mode).lower())
    if word not in ("max", "avg"):
        raise ValueError(f"{n.opt('mode')} must be max or avg, but got {n.got('mode', mode)}.")
    mode = word
    kernel_t = _int_pair(kernel, "kernel", n, 1)
    stride_t = kernel_t if stride is None else _int_pair(stride, "stride", n, 1)
    padding_t = _int_pair(padding, "padding", n, 0)
    if any(p > k // 2 for p, k in zip(padding_t, kernel_t)):
        raise ValueError(f"{n.opt('padding')} must be at most half of the kernel (PyTorch's rule), "
                         f"but got {n.got('padding', padding)} with {n.got('kernel', kernel)}.")
    for size, k, p, axis in zip(shape_t[1:], kernel_t, padding_t, ("height", "width")):
        if size + 2 * p < k:
            raise ValueError(f"{n.opt('kernel')} {k} does not fit the input {axis}, {size} with padding {p}: "
                             f"use a smaller {n.opt('kernel')}, more {n.opt('padding')} or a larger "
                             f"{n.opt('shape')}.")
    top = numba.config.NUMBA_NUM_THREADS
    threads = get_num_threads() if threads is None else threads
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= top:
        raise ValueError(f"{n.opt('threads')} must be an integer from 1 to {top} (NUMBA_NUM_THREADS), "
                         f"but got {n.got('threads', threads)}.")
    # backends may name peers too ("numba,torch"): those peers then run, instead of the automatic choice
    names = _names(backends, POOLKIT_METHODS + tuple(_PEER_ALIASES), "backends", n, _PEER_ALIASES)
    backend_t = tuple(m for m in names if m in POOLKIT_METHODS)
    named_peers = tuple(m for m in names if m in PEERS)
    if not backend_t:
        raise ValueError(f"{n.opt('backends')} must name at least one of {', '.join(POOLKIT_METHODS)}, "
                         f"but got {n.got('backends', backends)}.")
    word = peers.strip().lower() if isinstance(peers, str) else None
    auto = word == "auto" and not named_peers
    if auto:
        peer_t = PEERS
    elif word in ("auto", "none"):
        peer_t = named_peers
    else:
        peer_t = _names(peers, tuple(_PEER_ALIASES), "peers", n, _PEER_ALIASES, also="auto, none or ")
        peer_t += tuple(p for p in named_peers if p not in peer_t)
    if not auto:
        for p in peer_t:
            module, pip_name = _PEER_PACKAGES[p]
            if importlib.util.find_spec(module) is None:
                raise ValueError(f"{n.opt('peers')} names {p}, but {module!r} is not installed "
                                 f"(pip install {pip_name}): leave it out, or use auto, "
                                 f"which skips what is not installed.")
    seed = _positive_int(seed, "seed", n, 0)
    return BenchConfig(iterations, batch, shape_t, str(dtype), mode, kernel_t, stride_t, padding_t, int(threads),
                       backend_t, peer_t, auto, seed)


# --------------------------------------------------------------------------- #
# methods: one forward+backward each, on the same data
# --------------------------------------------------------------------------- #
@dataclass
class Method:
    """A contender: ``step()`` runs one forward+backward; ``arrays(out)`` turns its result into NumPy."""

    name: str
    kind: str                                   # "poolkit" or "peer"
    call: str                                   # what one step runs, in words
    step: Callable[[], object]
    arrays: Callable[[object], Tuple[np.ndarray, np.ndarray]] = lambda out: out
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    threads: object = None


def make_data(cfg: BenchConfig) -> Tuple[np.ndarray, np.ndarray]:
    """The chapter's data, seeded: x ~ N(0, 1) and an upstream gradient ~ U[0, 1)."""
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal(cfg.input_shape).astype(cfg.dtype)
    g = rng.random(cfg.output_shape).astype(cfg.dtype)
    return x, g


def poolkit_method(name: str, cfg: BenchConfig, x: np.ndarray, g: np.ndarray) -> Method:
    """numba / img2col / reference, through the chapter's PoolingLayer when it can express the case."""
    from . import threads
    from .chapter import PoolingLayer
    from .layers import AvgPool2d, MaxPool2d

    if name in _CHAPTER_CALLS and cfg.padding == (0, 0):
        layer = PoolingLayer(cfg.shape, cfg.kernel, cfg.stride, "MAX" if cfg.mode == "max" else "MEAN")
        fname, bname = _CHAPTER_CALLS[name]
        forward, backward = getattr(layer, fname), getattr(layer, bname)
        call = f"PoolingLayer.{fname} + {bname}"

        def step():
            return forward(x, True), backward(g, 0)
    else:
        cls = MaxPool2d if cfg.mode == "max" else AvgPool2d
        layer = cls(cfg.kernel, cfg.stride, cfg.padding, backend=name)
        call = f"{cls.__name__}(backend={name!r}).forward + backward"

        def step():
            return layer.forward(x), layer.backward(g)
    return Method(name, "poolkit", call, step, context=lambda: threads(cfg.threads), threads=cfg.threads)


def _pytorch_method(cfg: BenchConfig, x: np.ndarray, g: np.ndarray) -> Method:
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(g)
    if cfg.mode == "max":
        def pool(t):
            return F.max_pool2d(t, cfg.kernel, cfg.stride, cfg.padding)
        call = "F.max_pool2d + torch.autograd.grad"
    else:
        def pool(t):
            return F.avg_pool2d(t, cfg.kernel, cfg.stride, cfg.padding)
        call = "F.avg_pool2d + torch.autograd.grad"

    def step():
        y = pool(xt)
        (gx,) = torch.autograd.grad(y, xt, gt)
        return y, gx

    @contextlib.contextmanager
    def same_threads():
        old = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    return Method("pytorch", "peer", call, step, lambda out: (out[0].detach().numpy(), out[1].numpy()),
                  same_threads, cfg.threads)


def _jax_method(cfg: BenchConfig, x: np.ndarray, g: np.ndarray) -> Method:
    import jax
    import jax.numpy as jnp
    from jax import lax

    window = (1, 1) + cfg.kernel
    strides = (1, 1) + cfg.stride
    pads = ((0, 0), (0, 0)) + tuple((p, p) for p in cfg.padding)
    taps = cfg.kernel[0] * cfg.kernel[1]

    def pool(v):
        if cfg.mode == "max":       # padding is -inf, as in PyTorch
            # (a concrete NumPy init value, so that JAX sees the max monoid and can differentiate)
            return lax.reduce_window(v, np.array(-np.inf, v.dtype), lax.max, window, strides, pads)
        # count_include_pad=True (PyTorch's default): always divide by the window size
        return lax.reduce_window(v, np.array(0, v.dtype), lax.add, window, strides, pads) / taps

    @jax.jit
    def forward_backward(v, gv):
        y, vjp = jax.vjp(pool, v)
        return y, vjp(gv)[0]

    def context():
        return jax.enable_x64(cfg.dtype == "float64")

    with context():
        xj, gj = jnp.asarray(x), jnp.asarray(g)

    def step():
        y, gx = forward_backward(xj, gj)
        gx.block_until_ready()
        return y, gx

    reduce = "max" if cfg.mode == "max" else "add"
    return Method("jax", "peer", f"jit(vjp of lax.reduce_window {reduce})", step,
                  lambda out: (np.asarray(out[0]), np.asarray(out[1])), context, "XLA's own")


def peer_method(name: str, cfg: BenchConfig, x: np.ndarray, g: np.ndarray) -> Method:
    """PyTorch or JAX doing the same forward+backward (imported only here)."""
    return {"pytorch": _pytorch_method, "jax": _jax_method}[name](cfg, x, g)


# --------------------------------------------------------------------------- #
# timing, checks, machine
# --------------------------------------------------------------------------- #
def time_steps(step: Callable[[], object], n: int, progress: Optional[Callable[[int, float], None]] = None,
               chunk: Optional[int] = None) -> Tuple[float, float, object]:
    """Run ``step`` ``n`` times in timed blocks. Returns (total seconds, best per-pass seconds, last result).

    Only the loops are timed, so progress updates between blocks cost nothing.
    """
    if chunk is None:
        t = time.perf_counter()
        out = step()
        chunk = max(1, int(_CHUNK_SECONDS / max(time.perf_counter() - t, 1e-7)))
    total, best, done, out = 0.0, float("inf"), 0, None
    while done < n:
        k = min(chunk, n - done)
        t = time.perf_counter()
        for _ in range(k):
            out = step()
        dt = time.perf_counter() - t
        total += dt
        best = min(best, dt / k)
        done += k
        if progress is not None:
            progress(done, total)
    return total, best, out


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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, cores, load, versions and poolkit settings: the header of every benchmark report."""
    from . import info

    d = info()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    d.update({
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load,
        "torch": _version("torch"),
        "jax": _version("jax"),
    })
    return d


class CpuWatch:
    """How much CPU *other* processes used while we ran: machine busy time (/proc/stat) minus ours.

    This is the noise indicator of a run: on a 2-core machine a second busy process slows
    multi-threaded kernels several times over.  ``stop()`` returns None where /proc/stat is missing.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        t = os.times()
        return {"busy": user + nice + system + irq + softirq, "steal": steal, "wall": time.monotonic(),
                "own": t.user + t.system}

    def stop(self) -> Optional[dict]:
        end = self._sample()
        if self.start is None or end is None or end["wall"] <= self.start["wall"]:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        wall = end["wall"] - self.start["wall"]
        cores = os.cpu_count() or 1
        busy = (end["busy"] - self.start["busy"]) / hz
        own = end["own"] - self.start["own"]
        steal = (end["steal"] - self.start["steal"]) / hz
        return {"wall_s": round(wall, 2), "own_cpu_s": round(own, 2),
                "others": round(max(0.0, busy - own) / (wall * cores), 3),
                "steal": round(steal / (wall * cores), 3)}


def machine_line(m: dict) -> str:
    versions = [f"Python {m['python']}", f"poolkit {m['poolkit']}", f"numpy {m['numpy']}", f"numba {m['numba']}"]
    versions += [f"{k} {m[k]}" for k in ("torch", "jax") if m.get(k)]
    load = f"; load {m['load_average'][0]}" if m.get("load_average") else ""
    return (f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable){load}; " + ", ".join(versions)
            + f"; Numba kernel cache: {m['kernel_cache']}")


def format_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


class _Progress:
    """A one-line progress bar on a terminal's stderr; nothing otherwise."""

    def __init__(self, stream, enabled: bool):
        self.stream, self.enabled, self.width = stream, enabled, 0

    def bar(self, label: str, total: int, expected_s: float):
        if not self.enabled or expected_s < _PROGRESS_MIN_SECONDS:
            return None

        def update(done: int, elapsed: float):
            frac = done / total
            filled = int(30 * frac)
            eta = elapsed / done * (total - done) if done else 0.0
            text = (f"\r{label:<9} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}  "
                    f"{elapsed:5.1f} s  eta {eta:5.1f} s")
            self.width = max(self.width, len(text))
            self.stream.write(text)
            self.stream.flush()
        return update

    def clear(self):
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #
def bench(*, iterations: int = 5000, batch: int = 64, shape=(3, 28, 28), dtype: str = "float64",
          mode: str = "max", kernel=2, stride=None, padding=0, threads: Optional[int] = None,
          backends=("numba", "img2col"), peers="auto", seed: int = 0,
          on_result: Optional[Callable[[dict], None]] = None, progress: bool = False) -> dict:
    """Time ``iterations`` forward+backward passes with each method, then compare their results.

    Parameters
    ----------
    iterations : int
        Timed passes per method (each method first runs once untimed: that
        first call, with any Numba compilation, is reported as ``first_call_s``).
    batch : int
        Samples per batch, N.
    shape : (int, int, int)
        One sample, ``(C, H, W)``.
    dtype : {"float64", "float32"}
    mode : {"max", "avg"}
    kernel, stride, padding : int or pair of ints
        As in ``torch.nn.functional.max_pool2d``; ``stride`` defaults to ``kernel``.
    threads : int, optional
        Threads for poolkit's numba backend and for PyTorch (default: poolkit's current count).
    backends : str or sequence of str
        poolkit methods to time: "numba", "img2col", "reference".  Peers may be
        named here too ("numba,torch"): they run whatever ``peers`` says, and
        replace the automatic choice.
    peers : "auto", "none", or str / sequence of "pytorch" ("torch"), "jax"
        Other libraries to time beside poolkit; "auto" times those that are installed.
    seed : int
        Seed of the random input ``x ~ N(0, 1)`` and upstream gradient ``~ U[0, 1)``.
    on_result : callable, optional
        Called with each method's entry as soon as it is timed.
    progress : bool
        Draw a progress bar on stderr for long runs (only when stderr is a terminal).

    Returns
    -------
    dict
        ``config``, ``methods`` (one entry per method: ``elapsed_s``, ``per_pass_s``,
        ``best_per_pass_s``, ``first_call_s``, ``same_forward``, ``same_backward``),
        ``check`` (``forward``, ``backward``: the chapter's comparison of the poolkit
        methods), ``memory``, ``skipped`` and ``machine``.

    Raises
    ------
    ValueError
        For a bad setting, naming the option.

    Examples
    --------
    >>> from poolkit.bench import bench
    >>> r = bench(iterations=3, batch=2, peers="none")
    >>> [m["name"] for m in r["methods"]], r["check"]["forward"], r["check"]["backward"]
    (['numba', 'img2col'], True, True)
    """
    cfg = make_config(iterations=iterations, batch=batch, shape=shape, dtype=dtype, mode=mode, kernel=kernel,
                      stride=stride, padding=padding, threads=threads, backends=backends, peers=peers, seed=seed)
    return run_config(cfg, on_result=on_result, progress=progress)


def run_config(cfg: BenchConfig, *, on_result=None, progress: bool = False) -> dict:
    """:func:`bench` for an already validated :class:`BenchConfig`."""
    machine = machine_info()          # before the run: the load average it started under
    watch = CpuWatch()
    x, g = make_data(cfg)
    bar = _Progress(sys.stderr, progress and sys.stderr.isatty())
    # Each method is built just before it runs: PyTorch and JAX are imported (and start their
    # thread pools) only after poolkit's methods are timed.
    makers = [(name, lambda name=name: poolkit_method(name, cfg, x, g)) for name in cfg.backends]
    makers += [(name, lambda name=name: peer_method(name, cfg, x, g)) for name in cfg.peers]
    skipped: Dict[str, str] = {}
    entries, results = [], {}
    for name, make in makers:
        try:
            m = make()
        except ImportError as exc:
            if name not in cfg.peers:
                raise
            skipped[name] = f"not importable ({exc}); pip install {_PEER_PACKAGES[name][1]}"
            continue
        with m.context():
            t = time.perf_counter()
            m.step()                             # the warm-up call: compile, caches, thread pool
            first = time.perf_counter() - t
            t = time.perf_counter()
            m.step()
            once = time.perf_counter() - t
            chunk = max(1, int(_CHUNK_SECONDS / max(once, 1e-7)))
            elapsed, best, out = time_steps(m.step, cfg.iterations, bar.bar(m.name, cfg.iterations,
                                                                            once * cfg.iterations), chunk)
            bar.clear()
            results[m.name] = tuple(np.array(a, copy=True) for a in m.arrays(out))
        entry = {"name": m.name, "kind": m.kind, "call": m.call, "threads": m.threads,
                 "elapsed_s": elapsed, "per_pass_s": elapsed / cfg.iterations, "best_per_pass_s": best,
                 "first_call_s": first}
        entries.append(entry)
        if on_result is not None:
            on_result(entry)

    # The chapter's check: the poolkit methods against the first one (against the reference
    # backend when only one method ran).
    base_name = cfg.backends[0]
    if len(cfg.backends) == 1:
        ref = poolkit_method("reference", cfg, x, g)
        with ref.context():
            base = tuple(np.asarray(a) for a in ref.arrays(ref.step()))
        compared = [base_name, "reference"]
    else:
        base = results[base_name]
        compared = list(cfg.backends)
    for e in entries:
        fy, fg = results[e["name"]]
        e["same_forward"] = same(fy, base[0], cfg.mode)
        e["same_backward"] = same(fg, base[1], cfg.mode)
    ours = [e for e in entries if e["kind"] == "poolkit"]
    tol = tolerance(cfg.mode, cfg.dtype)
    check = {"forward": all(e["same_forward"] for e in ours), "backward": all(e["same_backward"] for e in ours),
             "compared": compared,
             "rule": "np.array_equal" if tol is None else f"np.allclose(rtol={tol:g}, atol={tol:g})"}

    from . import info
    machine["threading_layer"] = info()["threading_layer"]      # known once a parallel kernel ran
    machine["other_load"] = watch.stop()
    baseline = next((e for e in entries if e["name"] == "numba"), entries[0])
    for e in entries:
        e["vs_" + baseline["name"]] = e["per_pass_s"] / baseline["per_pass_s"]
    return {"experiment": "chapter 17.5.6" if cfg.is_chapter else "custom",
            "config": dict(asdict(cfg), input_shape=list(cfg.input_shape), output_shape=list(cfg.output_shape)),
            "methods": entries, "baseline": baseline["name"], "check": check, "memory": _memory(cfg, x),
            "skipped": skipped, "machine": machine}


def _memory(cfg: BenchConfig, x: np.ndarray) -> dict:
    """What the default layer keeps between forward and backward, and PyTorch's equivalent."""
    from . import threads
    from .layers import AvgPool2d, MaxPool2d

    layer = (MaxPool2d if cfg.mode == "max" else AvgPool2d)(cfg.kernel, cfg.stride, cfg.padding)
    with threads(cfg.threads):
        y = layer.forward(x)
    outputs = int(np.prod(cfg.output_shape))
    return {"saved_nbytes": layer.saved_nbytes,
            "saved_bytes_per_output": layer.saved_nbytes / outputs,
            # PyTorch's max pooling keeps an int64 index per output; its average pooling keeps no extra array.
            "pytorch_saved_nbytes": outputs * 8 if cfg.mode == "max" else 0,
            "input_nbytes": int(x.nbytes), "output_nbytes": int(y.nbytes)}


# --------------------------------------------------------------------------- #
# text, plot, command line
# --------------------------------------------------------------------------- #
def elapsed_line(entry: dict) -> str:
    """The chapter's line: ``Elapsed of numba: 17.537396907806396``."""
    return f"Elapsed of {entry['name']}: {entry['elapsed_s']}"


def summary(result: dict) -> str:
    """The table after the chapter's lines."""
    cfg, base = result["config"], result["baseline"]
    shape = "x".join(map(str, cfg["input_shape"]))
    k = "x".join(map(str, cfg["kernel"]))
    s, p = (_pair_text(tuple(cfg[n])) for n in ("stride", "padding"))
    lines = [f"{cfg['iterations']} forward+backward passes: {cfg['mode']} pooling {k}, stride {s}, padding {p} "
             f"on {shape} {cfg['dtype']}, {cfg['threads']} thread{'s' if cfg['threads'] != 1 else ''}"
             + (" (the chapter's experiment)" if result["experiment"].startswith("chapter") else "")]
    rows = [("method", "per pass", f"time/{base}", "first call", "same result", "runs")]
    for e in result["methods"]:
        agree = "yes" if e["same_forward"] and e["same_backward"] else (
            "FORWARD DIFFERS" if not e["same_forward"] else "BACKWARD DIFFERS")
        if e["name"] == result["check"]["compared"][0] and result["check"]["compared"][1] != "reference":
            agree = "(baseline)"
        rows.append((e["name"], format_seconds(e["per_pass_s"]), f"{e['vs_' + base]:.2f}x",
                     format_seconds(e["first_call_s"]), agree, e["call"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i in (0, 4, 5) else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    mem = result["memory"]
    peer = f"; PyTorch keeps {format_bytes(mem['pytorch_saved_nbytes'])}" if cfg["mode"] == "max" else ""
    per = mem["saved_bytes_per_output"]
    lines.append(f"kept for backward: {format_bytes(mem['saved_nbytes'])} "
                 f"({per:g} byte{'' if per == 1 else 's'} per output){peer}")
    for name, why in result["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    if any(e["name"] == "jax" for e in result["methods"]):
        lines.append("jax runs on XLA's own threads (--threads does not reach it)")
    other = result["machine"].get("other_load")
    if other and other["others"] > BUSY_FRACTION:
        lines.append(f"other processes used {other['others']:.0%} of the CPUs during the run: "
                     f"the times are noisy, rerun on a quiet machine")
    lines.append("machine: " + machine_line(result["machine"]))
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Bar chart of the time per forward+backward pass of each method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = result["methods"]
    cfg = result["config"]
    fig = Figure(figsize=(7.5, 1.8 + 0.45 * len(methods)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ms = [e["per_pass_s"] * 1e3 for e in methods]
    colors = ["tab:blue" if e["kind"] == "poolkit" else "tab:gray" for e in methods]
    bars = ax.barh([e["name"] for e in methods], ms, color=colors)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{v:.3g} ms" for v in ms], padding=3)
    ax.set_xlim(0, max(ms) * 1.25)
    ax.set_xlabel("time per forward+backward pass (ms, lower is better)")
    shape = "x".join(map(str, cfg["input_shape"]))
    k = "x".join(map(str, cfg["kernel"]))
    s, p = (_pair_text(tuple(cfg[n])) for n in ("stride", "padding"))
    ax.set_title(f"{cfg['mode']} pooling {k}, stride {s}, padding {p}; {shape} {cfg['dtype']}; "
                 f"{cfg['threads']} threads; {cfg['iterations']} passes", fontsize=9)
    kinds = sorted({e["kind"] for e in methods}, reverse=True)
    if len(kinds) > 1:
        from matplotlib.patches import Patch
        # below the plot, so it never covers a bar's label
        ax.legend(handles=[Patch(color="tab:blue", label="poolkit"), Patch(color="tab:gray", label="other library")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=8)
    fig.text(0.01, 0.01, result["machine"]["cpu"], fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _int_arg(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, but got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, but got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``poolkit bench``."""
    exp = parser.add_argument_group("experiment (defaults: the chapter's)")
    exp.add_argument("--iterations", "-n", type=_int_arg(1), default=5000, metavar="N",
                     help="forward+backward passes per method (default: 5000)")
    exp.add_argument("--batch", type=_int_arg(1), default=64, metavar="N", help="samples per batch (default: 64)")
    exp.add_argument("--shape", type=_int_arg(1), nargs=3, default=[3, 28, 28], metavar=("C", "H", "W"),
                     help="one sample: channels, height, width (default: 3 28 28)")
    exp.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="(default: float64)")
    exp.add_argument("--mode", choices=("max", "avg"), default="max", help="max or average pooling (default: max)")
    exp.add_argument("--kernel", type=_int_arg(1), nargs="+", default=[2], metavar="K",
                     help="window size: one value, or height and width (default: 2)")
    exp.add_argument("--stride", type=_int_arg(1), nargs="+", default=None, metavar="S",
                     help="one value, or height and width (default: the kernel)")
    exp.add_argument("--padding", type=_int_arg(0), nargs="+", default=[0], metavar="P",
                     help="implicit -inf (max) or 0 (avg) border, at most half the kernel (default: 0)")
    exp.add_argument("--seed", type=_int_arg(0), default=0, help="seed of the random data (default: 0)")
    who = parser.add_argument_group("who runs")
    who.add_argument("--threads", type=_int_arg(1), default=None, metavar="N",
                     help="threads for poolkit's numba backend and for PyTorch (default: poolkit's setting, "
                          "from POOLKIT_NUM_THREADS, OMP_NUM_THREADS or all cores)")
    who.add_argument("--backends", default="numba,img2col", metavar="LIST",
                     help="poolkit methods, comma-separated: numba, img2col, reference (default: numba,img2col); "
                          "peers named here (numba,torch) replace --peers auto")
    who.add_argument("--peers", default="auto", metavar="LIST",
                     help="other libraries timed beside poolkit: auto (those installed), none, "
                          "or a list of pytorch (or torch), jax (default: auto)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    out.add_argument("--plot", metavar="FILE.png", default=None,
                     help="also draw a bar chart of the times (needs matplotlib)")
    parser.set_defaults(_bench_parser=parser)


def _fail(args, message: str) -> int:
    parser = getattr(args, "_bench_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
    else:
        print(f"poolkit bench: error: {message}", file=sys.stderr)
    return 2


def _check_plot(path: str) -> Optional[str]:
    """None if ``path`` can be drawn, else the reason (checked before the run, not after it)."""
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib, which is not installed: pip install 'poolkit[plot]'"
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext not in formats:
        return f"--plot {path!r}: the file name must end in one of .{', .'.join(sorted(formats))}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--plot {path!r}: the folder {folder!r} does not exist"
    return None


def run(args: argparse.Namespace) -> int:
    """``poolkit bench``: 0 when the methods agree, 1 when they do not, 2 for bad options."""
    try:
        cfg = make_config(iterations=args.iterations, batch=args.batch, shape=args.shape, dtype=args.dtype,
                          mode=args.mode, kernel=args.kernel, stride=args.stride, padding=args.padding,
                          threads=args.threads, backends=args.backends, peers=args.peers, seed=args.seed,
                          cli=True)
    except ValueError as exc:
        return _fail(args, str(exc))
    if args.plot:
        problem = _check_plot(args.plot)
        if problem:
            return _fail(args, problem)

    def stream(entry):
        print(elapsed_line(entry), flush=True)

    result = run_config(cfg, on_result=None if args.json else stream, progress=not args.json)
    if args.plot:
        plot(result, args.plot)
        result["plot"] = os.path.abspath(args.plot)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"forward: {result['check']['forward']}")
        print(f"backward: {result['check']['backward']}")
        print()
        print(summary(result))
        if args.plot:
            print(f"plot: {args.plot}")
    ok = result["check"]["forward"] and result["check"]["backward"]
    if not ok:
        print(f"poolkit bench: the methods disagree ({', '.join(result['check']['compared'])}, "
              f"{result['check']['rule']})", file=sys.stderr)
    return 0 if ok else 1
