"""Compile the numba backend's kernels ahead of time, into the on-disk kernel cache.

The first call of each pooling configuration compiles its kernels (seconds
each); :func:`warmup` pays that once, for the configurations you name or a
common set, so that later processes load them from the cache instead.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["COMMON_CONFIGS", "check", "describe", "warmup"]

Config = Dict[str, Any]

# The common set: max and average pooling of the usual CNN windows, both channel orders in 2-D.
_COMMON_WINDOWS = [(k, s, p, fmt) for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 1)) for fmt in ("NCHW", "NHWC")]
_COMMON_WINDOWS += [(2, 2, 0, "NCL"), (2, 2, 0, "NCDHW")]             # (kernel, stride, padding, format)
COMMON_CONFIGS: Tuple[Config, ...] = tuple(
    {"op": op, "kernel_size": k, "stride": s, "padding": p, "data_format": fmt}
    for op in ("max", "avg") for k, s, p, fmt in _COMMON_WINDOWS)
_REQUIRED = ("op", "kernel_size", "data_format")
_OPTIONAL = ("stride", "padding", "dilation")
_BATCH, _CHANNELS = 2, 4          # of the large input: 8 planes


def _rank(cfg: Mapping[str, Any], where: str) -> int:
    from ...core.layout import format_rank

    fmt, kernel = cfg["data_format"], cfg["kernel_size"]
    if not isinstance(fmt, str):
        raise TypeError(f"{where}: `data_format` must be a string such as 'NCHW', but got data_format={fmt!r}.")
    rank = format_rank(fmt)
    if rank is None and isinstance(kernel, (tuple, list)) and kernel:
        rank = len(kernel)          # "channels_first"/"channels_last": the kernel's length tells
    if rank is None:
        raise ValueError(f"{where}: `data_format` must name the rank ('NCL', 'NLC', 'NCHW', 'NHWC', 'NCDHW', "
                         f"'NDHWC'), or `kernel_size` must be a tuple, but got data_format={fmt!r} with "
                         f"kernel_size={kernel!r}.")
    return rank


def _check_config(cfg: object, i: int) -> Config:
    """One config, validated by poolkit's own rules; errors say which entry and key."""
    from ...core.args import format_kind
    from ...core.geometry import PoolSpec

    where = f"configs[{i}]"
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{where} must be a dict with keys {', '.join(_REQUIRED + _OPTIONAL)}, "
                        f"but got {where}={cfg!r}.")
    unknown = [k for k in cfg if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (value {cfg[unknown[0]]!r}); "
                         f"the keys are {', '.join(_REQUIRED + _OPTIONAL)}.")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"{where}: the key {missing[0]!r} is missing, but got {where}={dict(cfg)!r}.")
    op = cfg["op"]
    if op not in ("max", "avg"):
        raise ValueError(f"{where}: `op` must be 'max' or 'avg', but got op={op!r}.")
    rank = _rank(cfg, where)
    out: Config = {"op": op, "kernel_size": cfg["kernel_size"], "stride": cfg.get("stride", cfg["kernel_size"]),
                   "padding": cfg.get("padding", 0), "data_format": cfg["data_format"]}
    if op == "max" or "dilation" in cfg:                # every reduction dilates
        out["dilation"] = cfg.get("dilation", 1)
    try:
        format_kind(out["data_format"], rank)
        PoolSpec.from_args(rank, out["kernel_size"], out["stride"], out["padding"], out.get("dilation", 1))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return out


def _check_dtypes(dtypes: object) -> List[np.dtype]:
    from ...core.layout import float_policy

    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = (dtypes,)
    try:
        items = list(dtypes)            # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"`dtypes` must be a sequence of dtype names such as ('float32', 'float64'), "
                        f"but got dtypes={dtypes!r}.") from None
    if not items:
        raise ValueError(f"`dtypes` must name at least one dtype, but got dtypes={dtypes!r}.")
    out = []
    for d in items:
        try:
            dt = np.dtype(d)
        except TypeError:
            dt = None
        # Floating point only: backward needs a floating-point gradient.
        if dt is None or (dt.kind != "f" and dt.name != "bfloat16"):
            raise TypeError(f"`dtypes` must hold floating-point dtypes (float16, float32, float64, bfloat16), "
                            f"but got {d!r} in dtypes={dtypes!r}.")
        try:
            float_policy(dt)
        except TypeError as exc:
            raise TypeError(f"`dtypes`: {exc}") from None
        out.append(dt)
    return out


def _sizes(cfg: Config, rank: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Spatial sizes of the small input (two windows per axis) and of the large one, whose input and
    output both have at least ``PARALLEL_MIN_ELEMENTS`` elements (so the parallel kernels run)."""
    from ...core.geometry import PoolSpec
    from .loops import PARALLEL_MIN_ELEMENTS

    spec = PoolSpec.from_args(rank, cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg.get("dilation", 1))
    small = tuple((k - 1) * d + 1 + s for k, s, d in zip(spec.kernel, spec.stride, spec.dilation))
    large = small
    planes = _BATCH * _CHANNELS
    while min(planes * int(np.prod(large)), planes * int(np.prod(spec.output_shape(large)))) < PARALLEL_MIN_ELEMENTS:
        large = tuple(2 * n for n in large)
    return small, large


def _shape(fmt: str, batch: int, channels: int, sizes: Sequence[int]) -> Tuple[int, ...]:
    from ...core.args import format_kind

    if format_kind(fmt, len(sizes)) == "last":
        return (batch, *sizes, channels)
    return (batch, channels, *sizes)


def _run_once(cfg: Config, rank: int, x: np.ndarray) -> None:
    """Forward and backward through the functions (max: with indices) and through the layer class."""
    from ... import functional as F
    from ... import layers

    geometry = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                    dilation=cfg.get("dilation", 1))
    fmt = cfg["data_format"]
    if cfg["op"] == "max":
        y, idx = F.max_pool(x, return_indices=True, data_format=fmt, backend="numba", **geometry)
        F.max_pool_backward(np.ones_like(y), idx, x.shape, data_format=fmt, backend="numba")
        layer = getattr(layers, f"MaxPool{rank}d")(data_format=fmt, backend="numba", **geometry)
    else:
        y = F.avg_pool(x, data_format=fmt, backend="numba", **geometry)
        F.avg_pool_backward(np.ones_like(y), x.shape, data_format=fmt, backend="numba", **geometry)
        layer = getattr(layers, f"AvgPool{rank}d")(data_format=fmt, backend="numba", **geometry)
    # The layers keep a compact context for backward: kernels of their own.
    layer.backward(np.ones_like(layer.forward(x)))


def _describe(cfg: Config) -> str:
    def text(v: object) -> str:
        return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)

    words = f"{cfg['op']} {text(cfg['kernel_size'])}/{text(cfg['stride'])}"
    if cfg["padding"] != 0:
        words += f" pad {text(cfg['padding'])}"
    if cfg.get("dilation", 1) != 1:
        words += f" dil {text(cfg['dilation'])}"
    return f"{words} {cfg['data_format']}"


def check(configs: Optional[Iterable[Mapping[str, Any]]],
          dtypes: Sequence[Any]) -> Tuple[List[Config], List[np.dtype]]:
    """Validate :func:`warmup`'s arguments: the configs with their defaults filled in, and the dtypes.

    Raises TypeError or ValueError naming the config's position, the key and the value.
    """
    need = "`configs` must be a list of dicts (or None for the common set), but got "
    if isinstance(configs, Mapping):
        raise TypeError(need + f"one dict: configs={dict(configs)!r}; write configs=[{dict(configs)!r}].")
    try:
        if isinstance(configs, (str, bytes)):       # iterable, but of characters
            raise TypeError
        items = list(COMMON_CONFIGS if configs is None else configs)
    except TypeError:
        raise TypeError(need + f"configs={configs!r}.") from None
    if not items:
        raise ValueError("`configs` must hold at least one config (None for the common set), but got configs=[].")
    return [_check_config(cfg, i) for i, cfg in enumerate(items)], _check_dtypes(dtypes)


def warmup(configs: Optional[Iterable[Mapping[str, Any]]] = None, *,
           dtypes: Sequence[Any] = ("float32", "float64"), progress: Optional[bool] = None) -> List[dict]:
    """Compile the numba backend's kernels for some pooling configurations, into the on-disk cache.

    Each configuration and dtype runs a forward and a backward pass (max
    pooling with ``return_indices=True``) through the public functions and
    through the layer class, with ``backend="numba"``, on two inputs: a small
    one and one with at least ``poolkit.backends.numba.loops.PARALLEL_MIN_ELEMENTS``
    elements, run with all of Numba's threads, so that both the
    single-threaded and the multi-threaded kernels are compiled.  Compiled
    kernels go to the kernel cache folder (``poolkit.info()["kernel_cache_dir"]``),
    where later processes load them in a fraction of the time; when no cache
    folder is writable (``poolkit.info()["kernel_cache"] == "memory"``) they are
    compiled in memory and last only for this process.

    Parameters
    ----------
    configs : iterable of dict, optional
        Each dict has the keys ``op`` ("max" or "avg"), ``kernel_size`` and
        ``data_format`` (one of the names poolkit accepts: "NCL", "NLC",
        "NCHW", "NHWC", "NCDHW", "NDHWC", or "channels_first" /
        "channels_last" with a tuple ``kernel_size``), and optionally
        ``stride`` (default: ``kernel_size``), ``padding`` (default 0) and
        ``dilation`` (default 1); values as for
        :func:`poolkit.max_pool`.  Default: the common set, max and average
        pooling with 2-D windows 2x2 stride 2, 3x3 stride 2 padding 1 and 3x3
        stride 1 padding 1 in NCHW and NHWC, 1-D kernel 2 stride 2 (NCL) and
        3-D 2x2x2 stride 2 (NCDHW).
    dtypes : sequence of dtype names
        Input dtypes to compile for (default float32 and float64).
    progress : bool, optional
        Show a progress bar (tqdm) on stderr over configs x dtypes.  Default:
        when stderr is a terminal.

    Returns
    -------
    list of dict, one per config and dtype
        ``{"config": dict, "dtype": str, "seconds": float}``: the config with
        its defaults filled in, and the time it took (mostly compiling when the
        cache was cold, loading when it was warm).

    Raises
    ------
    TypeError, ValueError
        For a bad config (naming its position, the key and the value) or
        dtype, before anything is compiled.

    Examples
    --------
    From the command line: ``poolkit warmup`` (the common set), or
    ``poolkit warmup --dtype float32 --config my_configs.json``.

    >>> import poolkit
    >>> records = poolkit.warmup([{"op": "max", "kernel_size": 2, "data_format": "NCHW"}],
    ...                          dtypes=["float32"], progress=False)
    >>> [(r["config"]["stride"], r["dtype"]) for r in records]
    [(2, 'float32')]
    """
    import numba
    from tqdm import tqdm

    from ...core.geometry import as_bool
    from ...core.threads import threads

    checked, dts = check(configs, dtypes)
    show = sys.stderr.isatty() if progress is None else as_bool(progress, "progress")

    rng = np.random.default_rng(0)
    records: List[dict] = []
    with tqdm(total=len(checked) * len(dts), desc="poolkit warmup", unit="config", file=sys.stderr,
              disable=not show) as bar:
        for cfg in checked:
            rank = _rank(cfg, "config")
            small, large = _sizes(cfg, rank)
            for dt in dts:
                bar.set_postfix_str(f"{_describe(cfg)} {dt.name}")
                t = time.perf_counter()
                x_small = rng.standard_normal(_shape(cfg["data_format"], 1, 2, small)).astype(dt)
                _run_once(cfg, rank, x_small)
                x_large = rng.standard_normal(_shape(cfg["data_format"], _BATCH, _CHANNELS, large)).astype(dt)
                # All of Numba's threads, so the parallel kernels run even if this thread is set to one.
                with threads(numba.config.NUMBA_NUM_THREADS):
                    _run_once(cfg, rank, x_large)
                records.append({"config": dict(cfg), "dtype": dt.name, "seconds": time.perf_counter() - t})
                bar.update(1)
    return records


def describe(record: Mapping[str, Any]) -> str:
    """One record in words: ``max 2/2 NCHW float32``."""
    return f"{_describe(record['config'])} {record['dtype']}"
