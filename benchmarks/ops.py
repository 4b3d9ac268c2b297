"""Rows for the reductions beyond max and mean (issue 13), run by ``benchmarks/run.py``.

* Lp pooling and fractional max pooling against PyTorch's own ops (forward + backward,
  fractional pooling with the same samples on both sides);
* min pooling against max pooling, and sum pooling against average pooling, on the same
  shapes (the goal: within 1.2x).

Every row times forward+backward through the layer API, interleaved with its peer
(``timing.interleaved``), at the thread count given.  ``python benchmarks/ops.py [--quick]``
runs the rows alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np

import poolkit
from timing import interleaved, median_ratio

SHAPE = (8, 32, 56, 56)
QUICK_SHAPE = (2, 4, 12, 12)


def _torch_step(fn: Callable, x, g):
    import torch

    xt = torch.from_numpy(x).requires_grad_()
    gt = torch.from_numpy(g)

    def step():
        y = fn(xt)
        torch.autograd.grad(y, xt, gt)
    return step


def _layer_step(layer, x, g):
    def step():
        layer.forward(x)
        layer.backward(g)
    return step


def _pairs(shape, seed=0) -> List[Tuple[str, str, str, Dict[str, Callable[[], object]]]]:
    """(row, contender, peer, {name: step}) for every row."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=shape).astype(np.float32)
    half = tuple(n // 2 for n in shape)
    g = rng.random(shape[:2] + half[2:]).astype(np.float32)
    samples = rng.random((shape[0], shape[1], 2)).astype(np.float32)
    out = (shape[2] // 2, shape[3] // 2)
    frac = poolkit.FractionalMaxPool2d(3, output_size=out)
    rows = [
        ("Lp pooling, p=2, 2x2/2", "poolkit LPPool2d", "torch lp_pool2d",
         {"poolkit LPPool2d": _layer_step(poolkit.LPPool2d(2, 2), x, g),
          "torch lp_pool2d": _torch_step(lambda t: F.lp_pool2d(t, 2, 2), x, g)}),
        ("fractional max, 3x3 -> H/2", "poolkit FractionalMaxPool2d", "torch fractional_max_pool2d",
         {"poolkit FractionalMaxPool2d": lambda: (frac.forward(x, samples=samples), frac.backward(g)),
          "torch fractional_max_pool2d": _torch_step(
              lambda t: F.fractional_max_pool2d(t, 3, output_size=out,
                                                _random_samples=torch.from_numpy(samples)), x, g)}),
        ("min vs max, 2x2/2", "poolkit MinPool2d", "poolkit MaxPool2d",
         {"poolkit MinPool2d": _layer_step(poolkit.MinPool2d(2), x, g),
          "poolkit MaxPool2d": _layer_step(poolkit.MaxPool2d(2), x, g)}),
        ("sum vs avg, 2x2/2", "poolkit SumPool2d", "poolkit AvgPool2d",
         {"poolkit SumPool2d": _layer_step(poolkit.SumPool2d(2), x, g),
          "poolkit AvgPool2d": _layer_step(poolkit.AvgPool2d(2), x, g)}),
    ]
    return rows


def run_ops(threads: int, rounds: int, seconds: float, quick: bool) -> List[dict]:
    """Time every row at ``threads`` threads; a ratio is peer time / contender time (> 1: faster)."""
    import torch

    shape = QUICK_SHAPE if quick else SHAPE
    torch.set_num_threads(threads)
    results = []
    with poolkit.threads(threads):
        for row, mine, peer, steps in _pairs(shape):
            print(f"[{threads} thread{'s' if threads != 1 else ''}] {row} ...", file=sys.stderr, flush=True)
            t = interleaved(steps, rounds, seconds)["rounds_s"]
            results.append({"row": row, "shape": list(shape), "threads": threads, "contender": mine, "peer": peer,
                            "contender_ms": 1e3 * statistics.median(t[mine]),
                            "peer_ms": 1e3 * statistics.median(t[peer]),
                            "ratio": median_ratio(t[peer], t[mine])})
    return results


def markdown_ops(rows: List[dict]) -> str:
    if not rows:
        return ""
    lines = ["", "### Lp, fractional max, min and sum pooling (forward + backward, float32, "
             f"{'x'.join(map(str, rows[0]['shape']))})", "",
             "| threads | row | poolkit | peer | peer / poolkit | goal |", "|---|---|---|---|---|---|"]
    for r in rows:
        against_torch = r["peer"].startswith("torch")
        goal = ">= 1.0 (as fast as PyTorch)" if against_torch else ">= 0.83 (within 1.2x)"
        ok = r["ratio"] >= (1.0 if against_torch else 1 / 1.2)
        lines.append(f"| {r['threads']} | {r['row']} | {r['contender']} {r['contender_ms']:.2f} ms | "
                     f"{r['peer']} {r['peer_ms']:.2f} ms | {r['ratio']:.2f}x | {goal} {'met' if ok else 'NOT met'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    rows = run_ops(args.threads, args.rounds or (2 if args.quick else 7), args.seconds or (0.01 if args.quick else 0.2),
                   args.quick)
    print(markdown_ops(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
