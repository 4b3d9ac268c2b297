"""Interleaved timing, shared by ``run.py`` and ``ops.py`` (see benchmarks/README.md).

Each round times a block of about ``seconds`` of every contender, in an order
that rotates from round to round; a time is the median over rounds and a
ratio the median of the per-round ratios, so a slow spell of the machine hits
both sides of a ratio.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List

import poolkit


def interleaved(contenders: Dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict:
    """Time each contender in blocks of about ``seconds``, interleaved over ``rounds`` rounds.

    Returns per contender: first-call seconds, iterations per block and the per-pass seconds of every round.
    """
    first, block = {}, {}
    for name, step in contenders.items():
        t = time.perf_counter()
        step()                                    # warm-up: compilation, caches, thread pools
        first[name] = time.perf_counter() - t
        poolkit.wait_for_kernels()                # time the kernels, not NumPy serving while they compile
        step()
        k, t = 0, time.perf_counter()
        while k < 3 or time.perf_counter() - t < min(seconds, 0.05):
            step()
            k += 1
        per = (time.perf_counter() - t) / k
        block[name] = max(1, int(round(seconds / per)))
    times: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            step, k = contenders[name], block[name]
            t = time.perf_counter()
            for _ in range(k):
                step()
            times[name].append((time.perf_counter() - t) / k)
    return {"first_call_s": first, "block": block, "rounds_s": times}


def median_ratio(num: List[float], den: List[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))
