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

and ends with a summary: time per pass, ratios, each method's first call in
this process (excluded from the elapsed times), the first call in a fresh
process with a cold and with a warm kernel cache (served by NumPy while the
kernels compile in the background, then loaded from disk; --no-first-call
skips it), memory kept for backward and the machine.  Exit status: 0; 1 if
the methods disagree or a fresh process failed or gave a wrong result; 2 for
bad options.

examples:
  poolkit bench                                   # the chapter's experiment
  poolkit bench --iterations 500 --mode avg
  poolkit bench --batch 16 --shape 64 112 112 --dtype float32 --kernel 3 --stride 2 --padding 1
  poolkit bench --threads 1 --peers none --json --no-first-call
  poolkit bench --backends numba --peers torch --plot bench.png
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..explain.options import add_value_options
from .contenders import (PEER_PACKAGES, PEERS, POOLKIT_METHODS, Contender, Pooling, peer_contender,
    poolkit_contender, same, tolerance)
from .first_call import CASES as FIRST_CALL_CASES, cold_and_warm
from .. import wait_for_kernels
from .machine import BUSY_FRACTION, CpuWatch, machine_info, machine_line
from .plot import plot, plot_problem
from .units import format_bytes, format_seconds, pooling_text
from ..functional import output_shape

__all__ = ["BenchConfig", "add_arguments", "bench", "make_config", "run", "run_config"]

Ints = Union[int, Sequence[int]]           # one value for both axes, or (height, width)
Names = Union[str, Sequence[str]]           # "numba,img2col" or ("numba", "img2col")

_PEER_ALIASES = {"torch": "pytorch", "pytorch": "pytorch", "jax": "jax"}
_CHUNK_SECONDS = 0.1        # timed blocks of about this long (progress updates between blocks)
_PROGRESS_MIN_SECONDS = 2.0  # a method's progress bar appears once it has run this long


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
    def input_shape(self) -> Tuple[int, ...]:
        return (self.batch,) + tuple(self.shape)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        c, h, w = self.shape
        return (self.batch, c) + tuple(output_shape((h, w), self.kernel, self.stride, self.padding))

    @property
    def pooling(self) -> Pooling:
        return Pooling(self.mode, self.kernel, self.stride, self.padding)

    @property
    def is_chapter(self) -> bool:
        """The chapter's experiment exactly (any iteration count)."""
        return (self.batch, self.shape, self.dtype, self.mode, self.kernel, self.stride, self.padding) == \
            (64, (3, 28, 28), "float64", "max", (2, 2), (2, 2), (0, 0))


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


def make_config(*, iterations: int = 5000, batch: int = 64, shape: Sequence[int] = (3, 28, 28),
                dtype: str = "float64", mode: str = "max", kernel: Ints = 2, stride: Optional[Ints] = None,
                padding: Ints = 0, threads: Optional[int] = None, backends: Names = "numba,img2col",
                peers: Names = "auto", seed: int = 0, cli: bool = False) -> BenchConfig:
    """Validate benchmark settings (see :func:`bench`); raises ValueError naming the argument.

    ``cli=True`` words the errors for the command line (``--padding 2`` instead of ``padding=2``).
    """
    from ..core.threads import get_num_threads
    import numba

    n = _Names(cli)
    iterations = _positive_int(iterations, "iterations", n)
    batch = _positive_int(batch, "batch", n)
    shape_t = tuple(shape) if not isinstance(shape, (int, np.integer)) else (shape,)
    if len(shape_t) != 3:
        raise ValueError(f"{n.opt('shape')} must be three integers C H W (channels, height, width), "
                         f"but got {n.got('shape', shape)}.")
    c, h, w = (_positive_int(v, "shape", n) for v in shape_t)
    shape_t = (c, h, w)
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
    peer_word = peers.strip().lower() if isinstance(peers, str) else None
    auto = peer_word == "auto" and not named_peers
    peer_t: Tuple[str, ...]
    if auto:
        peer_t = PEERS
    elif peer_word in ("auto", "none"):
        peer_t = named_peers
    else:
        peer_t = _names(peers, tuple(_PEER_ALIASES), "peers", n, _PEER_ALIASES, also="auto, none or ")
        peer_t += tuple(p for p in named_peers if p not in peer_t)
    if not auto:
        for peer in peer_t:
            module, pip_name = PEER_PACKAGES[peer]
            if importlib.util.find_spec(module) is None:
                raise ValueError(f"{n.opt('peers')} names {peer}, but {module!r} is not installed "
                                 f"(pip install {pip_name}): leave it out, or use auto, "
                                 f"which skips what is not installed.")
    seed = _positive_int(seed, "seed", n, 0)
    return BenchConfig(iterations, batch, shape_t, str(dtype), mode, kernel_t, stride_t, padding_t, int(threads),
                       backend_t, peer_t, auto, seed)


def make_data(cfg: BenchConfig) -> Tuple[np.ndarray, np.ndarray]:
    """The chapter's data, seeded: x ~ N(0, 1) and an upstream gradient ~ U[0, 1)."""
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal(cfg.input_shape).astype(cfg.dtype)
    g = rng.random(cfg.output_shape).astype(cfg.dtype)
    return x, g


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #
def time_steps(step: Callable[[], object], n: int, chunk: int,
               on_block: Optional[Callable[[int], object]] = None) -> Tuple[float, float, object]:
    """Run ``step`` ``n`` times in timed blocks of ``chunk``. Returns (total seconds, best per-pass seconds,
    last result).

    Only the loops are timed, so ``on_block(passes in the block)`` (a progress bar) costs nothing.
    """
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
        if on_block is not None:
            on_block(k)
    return total, best, out


def bench(*, iterations: int = 5000, batch: int = 64, shape: Sequence[int] = (3, 28, 28), dtype: str = "float64",
          mode: str = "max", kernel: Ints = 2, stride: Optional[Ints] = None, padding: Ints = 0,
          threads: Optional[int] = None, backends: Names = "numba,img2col", peers: Names = "auto", seed: int = 0,
          first_call: bool = True,
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
    first_call : bool
        Also time the first forward+backward pass of the chapter's case
        (``MaxPool2d(2, 2)`` on 64x3x28x28 float64) in two fresh processes
        with the default backend: cold (an empty kernel cache: NumPy serves
        while the kernels compile in the background) and warm (the same
        cache: the kernels load from it).
    on_result : callable, optional
        Called with each method's entry as soon as it is timed.
    progress : bool
        Draw progress bars (tqdm) on stderr for long runs, when stderr is a terminal.

    Returns
    -------
    dict
        ``config``, ``methods`` (one entry per method: ``elapsed_s``, ``per_pass_s``,
        ``best_per_pass_s``, ``first_call_s``, ``same_forward``, ``same_backward``),
        ``check`` (``forward``, ``backward``: the chapter's comparison of the poolkit
        methods), ``first_call`` (``cold_s``, ``warm_s`` and the processes' details;
        None when skipped), ``memory``, ``skipped`` and ``machine``.

    Raises
    ------
    ValueError
        For a bad setting, naming the option.

    Examples
    --------
    >>> from poolkit.bench import bench
    >>> r = bench(iterations=3, batch=2, peers="none", first_call=False)
    >>> [m["name"] for m in r["methods"]], r["check"]["forward"], r["check"]["backward"]
    (['numba', 'img2col'], True, True)
    """
    cfg = make_config(iterations=iterations, batch=batch, shape=shape, dtype=dtype, mode=mode, kernel=kernel,
                      stride=stride, padding=padding, threads=threads, backends=backends, peers=peers, seed=seed)
    return run_config(cfg, first_call=first_call, on_result=on_result, progress=progress)


def run_config(cfg: BenchConfig, *, first_call: bool = True, on_result: Optional[Callable[[dict], None]] = None,
               progress: bool = False) -> dict:
    """:func:`bench` for an already validated :class:`BenchConfig`."""
    from tqdm import tqdm

    show = progress and sys.stderr.isatty()
    machine = machine_info()          # before the run: the load average it started under
    watch = CpuWatch()
    x, g = make_data(cfg)
    pool = cfg.pooling
    # Each contender is built just before it runs: PyTorch and JAX are imported (and start their
    # thread pools) only after poolkit's methods are timed.
    makers: List[Tuple[str, Callable[[], Contender]]] = [
        (name, functools.partial(poolkit_contender, name, pool, x, g, cfg.threads)) for name in cfg.backends]
    makers += [(name, functools.partial(peer_contender, name, pool, x, g, cfg.threads)) for name in cfg.peers]
    skipped: Dict[str, str] = {}
    entries: List[dict] = []
    results: Dict[str, Tuple[np.ndarray, ...]] = {}
    for name, make in makers:
        try:
            m = make()
        except ImportError as exc:
            if name not in cfg.peers:
                raise
            skipped[name] = f"not importable ({exc}); pip install {PEER_PACKAGES[name][1]}"
            continue
        with m.context():
            t = time.perf_counter()
            m.step()                             # the warm-up call: compile, caches, thread pool
            first = time.perf_counter() - t
            wait_for_kernels()           # then time the kernels, not NumPy serving meanwhile
            m.step()
            t = time.perf_counter()
            m.step()
            chunk = max(1, int(_CHUNK_SECONDS / max(time.perf_counter() - t, 1e-7)))
            with tqdm(total=cfg.iterations, desc=m.name, unit="pass", file=sys.stderr, leave=False,
                      disable=not show, delay=_PROGRESS_MIN_SECONDS) as bar:
                elapsed, best, out = time_steps(m.step, cfg.iterations, chunk, bar.update)
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
    base: Tuple[np.ndarray, ...]
    if len(cfg.backends) == 1:
        ref = poolkit_contender("reference", pool, x, g, cfg.threads)
        with ref.context():
            base = ref.arrays(ref.step())
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

    from .. import info
    machine["threading_layer"] = info()["threading_layer"]      # known once a parallel kernel ran
    # Stopped before the fresh processes below, whose CPU time would count as other processes'.
    machine["other_load"] = watch.stop()
    baseline = next((e for e in entries if e["name"] == "numba"), entries[0])
    for e in entries:
        e["vs_" + baseline["name"]] = e["per_pass_s"] / baseline["per_pass_s"]
    return {"experiment": "chapter 17.5.6" if cfg.is_chapter else "custom",
            "config": dict(asdict(cfg), input_shape=list(cfg.input_shape), output_shape=list(cfg.output_shape)),
            "methods": entries, "baseline": baseline["name"], "check": check,
            "first_call": _first_call(cfg.threads, show) if first_call else None,
            "memory": _memory(cfg, x), "skipped": skipped, "machine": machine}


def _first_call(threads: int, show: bool) -> dict:
    """The chapter's first forward+backward pass in a fresh process: cold cache, then warm
    (the first row of ``benchmarks/first_call.py``, without its steady state)."""
    from tqdm import tqdm

    case = FIRST_CALL_CASES[0]                      # the chapter's MaxPool2d(2, 2)
    with tqdm(total=1, desc="first call, cold and warm cache", bar_format="{desc} ...", file=sys.stderr,
              leave=False, disable=not show):
        cold, warm = cold_and_warm(case, env_extra={"POOLKIT_NUM_THREADS": str(threads)})
    return {"case": f"{case.call_text} forward+backward, {case.input_text}", "threads": threads,
            "cold_s": cold.get("first_s"), "warm_s": warm.get("first_s"), "cold": cold, "warm": warm}


def _memory(cfg: BenchConfig, x: np.ndarray) -> dict:
    """What the default layer keeps between forward and backward, and PyTorch's equivalent."""
    from .. import threads

    layer = cfg.pooling.layer()
    with threads(cfg.threads):
        y = layer.forward(x)
    outputs = int(np.prod(cfg.output_shape))
    return {"saved_nbytes": layer.saved_nbytes,
            "saved_bytes_per_output": layer.saved_nbytes / outputs,
            # PyTorch's max pooling keeps an int64 index per output; its average pooling keeps no extra array.
            "pytorch_saved_nbytes": outputs * 8 if cfg.mode == "max" else 0,
            "input_nbytes": int(x.nbytes), "output_nbytes": int(y.nbytes)}


# --------------------------------------------------------------------------- #
# text, command line
# --------------------------------------------------------------------------- #
def elapsed_line(entry: dict) -> str:
    """The chapter's line: ``Elapsed of numba: 17.537396907806396``."""
    return f"Elapsed of {entry['name']}: {entry['elapsed_s']}"


def _first_call_lines(fc: dict) -> List[str]:
    lines = [f"first call in a fresh process ({fc['case']}, {fc['threads']} "
             f"thread{'s' if fc['threads'] != 1 else ''}):"]
    for key, what in (("cold", "empty kernel cache"), ("warm", "the same cache again")):
        row = fc[key]
        if not row["ok"]:
            text = f"FAILED: {row['error']}"
        else:
            text = f"{format_seconds(row['first_s'])}, served by {row['served_by']}"
            if row.get("ready_s") is not None:
                text += f"; kernels ready after {format_seconds(row['ready_s'])}"
            if not row["correct"]:
                text += "; WRONG RESULT (differs from the reference backend)"
        note = f"; {row['note']}" if row.get("note") else ""
        lines.append(f"  {key} ({what}): {text}{note}")
    return lines


def summary(result: dict) -> str:
    """The table after the chapter's lines."""
    cfg, base = result["config"], result["baseline"]
    shape = "x".join(map(str, cfg["input_shape"]))
    lines = [f"{cfg['iterations']} forward+backward passes: "
             f"{pooling_text(cfg['mode'], cfg['kernel'], cfg['stride'], cfg['padding'])} "
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
    lines.append("  (first call: in this process, before the timed passes; compiling or loading kernels)")
    if result.get("first_call"):
        lines += _first_call_lines(result["first_call"])
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


def _int_arg(minimum: int) -> Callable[[str], int]:
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
    exp.add_argument("--no-first-call", dest="first_call", action="store_false",
                     help="skip the first call of the chapter's case in two fresh processes "
                          "(a cold and a warm kernel cache; the cold one compiles in the background, "
                          "which takes seconds)")
    who = parser.add_argument_group("who runs")
    who.add_argument("--threads", type=_int_arg(1), default=None, metavar="N",
                     help="threads for poolkit's numba backend and for PyTorch (default: poolkit's setting, "
                          "from POOLKIT_NUM_THREADS, OMP_NUM_THREADS or all cores)")
    add_value_options(who, [
        ("--backends", "LIST", "numba,img2col",
         "poolkit methods, comma-separated: numba, img2col, reference (default: numba,img2col); "
         "peers named here (numba,torch) replace --peers auto"),
        ("--peers", "LIST", "auto",
         "other libraries timed beside poolkit: auto (those installed), none, "
         "or a list of pytorch (or torch), jax (default: auto)"),
    ])
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    add_value_options(out, [
        ("--plot", "FILE.png", None,
         "also draw a bar chart of the times (needs matplotlib)"),
    ])
    parser.set_defaults(_bench_parser=parser)


def _fail(args: argparse.Namespace, message: str) -> int:
    parser = getattr(args, "_bench_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
    else:
        print(f"poolkit bench: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """``poolkit bench``: 0 when all went well, 1 when the methods disagree or a fresh process failed,
    2 for bad options."""
    try:
        cfg = make_config(iterations=args.iterations, batch=args.batch, shape=args.shape, dtype=args.dtype,
                          mode=args.mode, kernel=args.kernel, stride=args.stride, padding=args.padding,
                          threads=args.threads, backends=args.backends, peers=args.peers, seed=args.seed,
                          cli=True)
    except ValueError as exc:
        return _fail(args, str(exc))
    if args.plot:
        problem = plot_problem(args.plot)
        if problem:
            return _fail(args, f"--plot {problem}")

    def stream(entry: dict) -> None:
        print(elapsed_line(entry), flush=True)

    result = run_config(cfg, first_call=args.first_call, on_result=None if args.json else stream,
                        progress=not args.json)
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
    status = 0
    if not (result["check"]["forward"] and result["check"]["backward"]):
        print(f"poolkit bench: the methods disagree ({', '.join(result['check']['compared'])}, "
              f"{result['check']['rule']})", file=sys.stderr)
        status = 1
    fc = result["first_call"] or {}
    failed = [k for k in ("cold", "warm") if k in fc and not fc[k]["ok"]]
    wrong = [k for k in ("cold", "warm") if k in fc and fc[k]["ok"] and not fc[k]["correct"]]
    if failed:
        print(f"poolkit bench: the first call failed in a fresh process ({' and '.join(failed)} cache): "
              f"{fc[failed[0]]['error']}", file=sys.stderr)
        status = 1
    if wrong:
        print(f"poolkit bench: the first call in a fresh process ({' and '.join(wrong)} cache) differs from "
              f"the reference backend", file=sys.stderr)
        status = 1
    return status
