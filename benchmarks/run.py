"""The speed issue's table: poolkit against PyTorch CPU, the memory-copy bound and the chapter's img2col.

Usage::

    python benchmarks/run.py                  # full sizes, 1 and all threads; writes results/latest.{md,json}
    python benchmarks/run.py --quick          # tiny sizes, seconds (CI smoke); writes bench-out/quick.{md,json}
    python benchmarks/run.py --threads 2 --rounds 11 --readme README.md

Every case times, in the same process and at the same thread count, one
forward+backward pass through the layer API with the default backend
(``MaxPool2d(...)``/``AvgPool2d(...)``, ``forward(x)`` then ``backward(g)``),
PyTorch doing the same (``F.max_pool2d``/``F.avg_pool2d`` + ``torch.autograd.grad``),
and NumPy copies of the same bytes (the copy bound, defined in README.md).
Contenders are interleaved: each round times a block of about ``--seconds`` of
every contender, in an order that rotates from round to round; a time is the
median over rounds and a ratio the median of the per-round ratios, so a slow
spell of the machine hits both sides of a ratio.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import poolkit                                                         # noqa: E402
from poolkit.bench.contenders import Pooling, layer_contender, peer_contender, same  # noqa: E402
from poolkit.bench.machine import (BUSY_FRACTION, CpuWatch, cpu_line, git_text, machine_info,  # noqa: E402
                                      now_utc)
from poolkit.bench.units import format_bytes, format_seconds  # noqa: E402

import chapter_img2col                                                 # noqa: E402
from ops import markdown_ops, run_ops                                  # noqa: E402
from timing import interleaved, median_ratio                           # noqa: E402


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    shape: Tuple[int, int, int, int]
    dtype: str
    mode: str
    kernel: int
    stride: int
    padding: int
    target: float          # PyTorch time / poolkit time must reach this
    large: bool            # the copy-bound target (poolkit within 2x of the copies) applies

    @property
    def out_shape(self):
        n, c, h, w = self.shape
        return (n, c) + poolkit.output_shape((h, w), self.kernel, self.stride, self.padding)

    @property
    def pooling(self) -> Pooling:
        return Pooling(self.mode, (self.kernel,) * 2, (self.stride,) * 2, (self.padding,) * 2)

    def pool_text(self):
        pad = f" pad {self.padding}" if self.padding else ""
        return f"{self.mode} {self.kernel}x{self.kernel} s{self.stride}{pad}"


CASES = (
    Case("chapter-max", "chapter case", (64, 3, 28, 28), "float64", "max", 2, 2, 0, 6.0, False),
    Case("chapter-avg", "chapter case, average", (64, 3, 28, 28), "float64", "avg", 2, 2, 0, 4.0, False),
    Case("big-max", "large, max", (16, 64, 112, 112), "float32", "max", 2, 2, 0, 4.0, True),
    Case("resnet-stem", "ResNet stem", (16, 64, 112, 112), "float32", "max", 3, 2, 1, 3.0, True),
    Case("lenet-avg", "LeNet, average", (256, 6, 28, 28), "float32", "avg", 2, 2, 0, 6.0, False),
)
IMG2COL_TARGET = 2.0       # poolkit img2col backend vs the chapter's img2col, chapter case
COPY_TARGET = 2.0          # poolkit time / copy time on large inputs


def quick_case(c: Case) -> Case:
    """The same case on a tiny input (smoke test only: targets do not apply)."""
    n, ch, h, w = c.shape
    return Case(c.key, c.title, (2, min(ch, 4), min(h, 16), min(w, 16)), c.dtype, c.mode, c.kernel, c.stride,
                c.padding, c.target, c.large)


# --------------------------------------------------------------------------- #
# measuring (interleaved, median_ratio: timing.py, shared with ops.py)
# --------------------------------------------------------------------------- #
def make_inputs(shape, out_shape, dtype, seed=0):
    """A tie-free input (a permutation of distinct integers, exact in float32) and a U[0,1) gradient.

    No ties means max pooling has one right answer, so results must match PyTorch bit for bit.
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    x = (rng.permutation(n) - n // 2).astype(dtype).reshape(shape)
    g = rng.random(out_shape).astype(dtype)
    return x, g


def run_case(case: Case, threads: int, rounds: int, seconds: float) -> dict:
    x, g = make_inputs(case.shape, case.out_shape, case.dtype)
    layer = case.pooling.layer()                                  # default backend
    ours = layer_contender(layer, x, g, threads, name="poolkit")
    pytorch = peer_contender("pytorch", case.pooling, x, g, threads)
    x_dst, g_dst = np.empty_like(x), np.empty_like(g)

    def copy():            # the copy bound: same bytes read, written and allocated as forward+backward
        return x.copy(), g.copy()

    def copy_into():       # the same copies into buffers allocated once (memory traffic only)
        np.copyto(x_dst, x)
        np.copyto(g_dst, g)

    with ours.context(), pytorch.context():       # both at `threads`
        m = interleaved({"poolkit": ours.step, "pytorch": pytorch.step, "copy": copy, "copy_into": copy_into},
                        rounds, seconds)
        y, gx = ours.arrays(ours.step())
        saved = layer.saved_nbytes
        yt, gxt = pytorch.arrays(pytorch.step())
    r = m["rounds_s"]
    med = {k: statistics.median(v) for k, v in r.items()}
    ratio = median_ratio(r["pytorch"], r["poolkit"])
    copy_ratio = median_ratio(r["poolkit"], r["copy"])
    outputs = int(np.prod(case.out_shape))
    return {
        "case": case.key, "title": case.title, "input": list(case.shape), "dtype": case.dtype,
        "pool": case.pool_text(), "threads": threads,
        "poolkit_s": med["poolkit"], "pytorch_s": med["pytorch"], "copy_s": med["copy"],
        "copy_into_s": med["copy_into"],
        "ratio": ratio, "target": case.target, "met": ratio >= case.target,
        "poolkit_over_copy": copy_ratio,
        "poolkit_over_copy_into": median_ratio(r["poolkit"], r["copy_into"]),
        "copy_target": COPY_TARGET if case.large else None,
        "copy_met": (copy_ratio <= COPY_TARGET) if case.large else None,
        "same_as_pytorch": same(y, yt, case.mode) and same(gx, gxt, case.mode),
        "saved_nbytes": saved, "pytorch_saved_nbytes": outputs * 8 if case.mode == "max" else 0,
        "outputs": outputs, "bytes_touched": int(2 * x.nbytes + 2 * g.nbytes),
        "first_call_s": m["first_call_s"], "block": m["block"], "rounds_s": r,
    }


def run_breakdown(case: Case, threads: int, rounds: int, seconds: float) -> dict:
    """Where a pass of ``case`` goes: the whole pass, and the per-call cost of the same layer type on a
    1x1x4x4 input (argument checks, plan look-up, allocation, two kernel launches on one thread:
    everything but the kernels' work). Their difference is the kernels' work and, at more
    than one thread, their parallel launch. Interleaved like the table."""
    x, g = make_inputs(case.shape, case.out_shape, case.dtype)
    tiny = Case(case.key, case.title, (1, 1, 4, 4), case.dtype, case.mode, case.kernel, case.stride, case.padding,
                case.target, False)
    xt, gt = make_inputs(tiny.shape, tiny.out_shape, tiny.dtype)
    whole = layer_contender(case.pooling.layer(), x, g, threads, name="pass")
    small = layer_contender(case.pooling.layer(), xt, gt, threads, name="per-call")
    with whole.context():
        m = interleaved({"pass": whole.step, "per_call": small.step}, rounds, seconds)
    r = m["rounds_s"]
    p, c = statistics.median(r["pass"]), statistics.median(r["per_call"])
    return {"case": case.key, "threads": threads, "pass_s": p, "per_call_s": c, "kernels_s": p - c,
            "per_call_share": statistics.median(b / a for a, b in zip(r["pass"], r["per_call"]))}


def run_img2col(case: Case, rounds: int, seconds: float) -> dict:
    """poolkit's img2col backend (the chapter's interface) against the reconstructed chapter method."""
    x = np.random.default_rng(0).standard_normal(case.shape).astype(case.dtype)
    g = np.random.default_rng(1).random(case.out_shape).astype(case.dtype)
    c, h, w = case.shape[1:]
    ours = poolkit.PoolingLayer((c, h, w), (case.kernel, case.kernel), case.stride, "MAX")
    chapter = chapter_img2col.ChapterImg2colPooling((c, h, w), (case.kernel, case.kernel), case.stride)
    m = interleaved({"poolkit_img2col": lambda: (ours.forward_img2col(x), ours.backward_col2img(g)),
                     "chapter_img2col": lambda: (chapter.forward_img2col(x), chapter.backward_col2img(g))},
                    rounds, seconds)
    r = m["rounds_s"]
    ratio = median_ratio(r["chapter_img2col"], r["poolkit_img2col"])
    y1, g1 = ours.forward_img2col(x), ours.backward_col2img(g)
    y2, g2 = chapter.forward_img2col(x), chapter.backward_col2img(g)
    return {"case": case.key, "input": list(case.shape), "dtype": case.dtype, "pool": case.pool_text(),
            "poolkit_img2col_s": statistics.median(r["poolkit_img2col"]),
            "chapter_img2col_s": statistics.median(r["chapter_img2col"]),
            "ratio": ratio, "target": IMG2COL_TARGET, "met": ratio >= IMG2COL_TARGET,
            "same": same(y1, y2, "max") and same(g1, g2, "max"), "rounds_s": r}


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #


def _ms(s: float) -> str:
    return format_seconds(s).replace("us", "µs")


def _mark(ok: Optional[bool], quick: bool = False) -> str:
    if ok is None:
        return "–"
    return "n/a" if quick else ("PASS" if ok else "**FAIL**")


def targets_met(report: dict, threads: int) -> Tuple[int, int]:
    """(met, total) over the issue's targets at ``threads``: speed-ups, copy bounds and the img2col row."""
    rows = [r for r in report["cases"] if r["threads"] == threads]
    marks = [r["met"] for r in rows] + [r["copy_met"] for r in rows if r["copy_met"] is not None]
    marks.append(report["img2col"]["met"])
    return sum(bool(m) for m in marks), len(marks)


def _header(report: dict) -> List[str]:
    m = report["machine"]
    title = "# poolkit benchmark"
    if report["quick"]:
        title += " (QUICK: tiny sizes, smoke test only, targets do not apply)"
    load = (f"- load: 1-minute load average {report['load_start'][0]:.2f} at start, "
            f"{report['load_end'][0]:.2f} at end; ")
    other = report.get("other_load")
    load += (f"other processes used {other['others']:.0%} of the CPUs during the run "
             f"(hypervisor steal {other['steal']:.0%})" if other else "CPU use of other processes not measured")
    if report["busy"]:
        load += " -- **the machine was busy: expect noise**"
    software = f"- software: Python {m['python']}, poolkit {m['poolkit']}"
    if report.get("git"):
        software += f" (git {git_text(report['git'])})"
    software += (f", numpy {m['numpy']}, numba {m['numba']} (threading layer {m['threading_layer']}, "
                 f"kernel cache {m['kernel_cache']}), torch {m['torch']}")
    return [title, "",
            f"- date: {report['date']}",
            f"- machine: {cpu_line(m)}, {m['system']}",
            load,
            software,
            f"- method: {report['rounds']} rounds of ~{report['seconds']} s blocks per contender, interleaved; "
            f"times are medians, ratios medians of per-round ratios (see benchmarks/README.md)",
            ""]


def markdown(report: dict) -> str:
    q = report["quick"]
    lines = _header(report)
    if not q:
        met, total = targets_met(report, report["threads"][0])
        lines += [f"**Targets met at {report['threads'][0]} threads: {met} of {total}** "
                  f"(speed-ups against PyTorch, the copy bound on large inputs, img2col against the chapter's).", ""]
    for t in report["threads"]:
        rows = [r for r in report["cases"] if r["threads"] == t]
        met, total = targets_met(report, t)
        lines += [f"## Forward+backward, layer API, default backend: {t} thread{'s' if t != 1 else ''}",
                  "",
                  "| case | input | pooling | poolkit | PyTorch | PyTorch / poolkit | target | | copy bound "
                  "| poolkit / copy | target | | same as PyTorch |",
                  "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
        for r in rows:
            shape = "x".join(map(str, r["input"])) + " " + r["dtype"]
            ct = f"≤ {r['copy_target']:g}x" if r["copy_target"] else "–"
            lines.append(f"| {r['title']} | {shape} | {r['pool']} | {_ms(r['poolkit_s'])} | {_ms(r['pytorch_s'])} "
                         f"| **{r['ratio']:.2f}x** | ≥ {r['target']:g}x | {_mark(r['met'], q)} "
                         f"| {_ms(r['copy_s'])} | {r['poolkit_over_copy']:.2f}x | {ct} | {_mark(r['copy_met'], q)} "
                         f"| {'yes' if r['same_as_pytorch'] else '**NO**'} |")
        lines += ["", "Quick run: the sizes are not the targets' sizes." if q else
                  f"Targets met at {t} thread{'s' if t != 1 else ''}: {met} of {total} (img2col row included).", ""]
    im = report["img2col"]
    lines += ["## img2col backend against the chapter's img2col method (pure NumPy, one thread)", "",
              "| input | pooling | chapter's img2col (reconstructed) | poolkit img2col | speed-up | target | "
              "| same result |",
              "|---|---|---:|---:|---:|---:|---|---|",
              f"| {'x'.join(map(str, im['input']))} {im['dtype']} | {im['pool']} | {_ms(im['chapter_img2col_s'])} "
              f"| {_ms(im['poolkit_img2col_s'])} | **{im['ratio']:.2f}x** | ≥ {im['target']:g}x "
              f"| {_mark(im['met'], q)} | {'yes' if im['same'] else '**NO**'} |", ""]
    if report.get("breakdown"):
        lines += ["## Where a chapter-case pass goes", "",
                  "| threads | pass | per call (1x1x4x4 input) | kernels and their launch | per-call share |",
                  "|---:|---:|---:|---:|---:|"]
        for b in report["breakdown"]:
            lines.append(f"| {b['threads']} | {_ms(b['pass_s'])} | {_ms(b['per_call_s'])} | {_ms(b['kernels_s'])} "
                         f"| {b['per_call_share']:.0%} |")
        lines += ["", "*Per call*: the same layer on a 1x1x4x4 input (argument checks, plan, allocation, kernel "
                  "calls on one thread); *kernels and their launch*: the pass less that.", ""]
    t = report["threads"][-1]
    lines += ["## Memory kept between forward and backward", "",
              "| case | outputs | poolkit (`saved_nbytes`) | per output | PyTorch | PyTorch / poolkit |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in (r for r in report["cases"] if r["threads"] == t):
        ratio = f"{r['pytorch_saved_nbytes'] / r['saved_nbytes']:.0f}x" if r["saved_nbytes"] else "–"
        torch_text = (f"{format_bytes(r['pytorch_saved_nbytes'])} (int64 indices)" if r["pytorch_saved_nbytes"]
                      else "0 (shapes only)")
        lines.append(f"| {r['title']} | {r['outputs']:,} | {format_bytes(r['saved_nbytes'])} "
                     f"| {r['saved_nbytes'] / r['outputs']:g} B | {torch_text} | {ratio} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def replace_block(path: str, text: str) -> None:
    """Put ``text`` between ``<!-- benchmark:start -->`` and ``<!-- benchmark:end -->`` in ``path``."""
    start, end = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    i, j = doc.find(start), doc.find(end)
    if i < 0 or j < i:
        raise SystemExit(f"--readme {path}: no '{start}' ... '{end}' markers to replace between")
    body = text.split("\n", 1)[1].lstrip("\n")     # the README has its own heading
    # ... and its section is a level-2 one: the report's sections go one level down.
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.split("\n"))
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc[: i + len(start)] + "\n" + body.rstrip("\n") + "\n" + doc[j:])


def main(argv=None) -> int:
    import numba

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (CI smoke test)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and all of NUMBA_NUM_THREADS)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: 7; quick: 2)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of one timed block (default: 0.2; quick: 0.01)")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated subset of {', '.join(c.key for c in CASES)} (default: all)")
    parser.add_argument("--out", default=None,
                        help="folder for the .md and .json files (default: benchmarks/results; quick: bench-out/, "
                             "which git ignores)")
    parser.add_argument("--name", default=None, help="file name stem (default: latest; quick: quick)")
    parser.add_argument("--readme", default=None,
                        help="also replace the block between <!-- benchmark:start --> and <!-- benchmark:end --> "
                             "in this file")
    parser.add_argument("--no-ops", action="store_true",
                        help="skip the Lp / fractional / min / sum rows (benchmarks/ops.py)")
    args = parser.parse_args(argv)

    try:
        import torch  # noqa: F401
    except ImportError:
        parser.error("PyTorch is the yardstick of every row: pip install 'poolkit[bench]'")
    top = numba.config.NUMBA_NUM_THREADS
    try:
        threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else sorted({1, top})
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, but got {args.threads!r}")
    if not all(1 <= t <= top for t in threads):
        parser.error(f"--threads values must be from 1 to {top} (NUMBA_NUM_THREADS), but got {args.threads!r}")
    rounds = args.rounds or (2 if args.quick else 7)
    seconds = args.seconds or (0.01 if args.quick else 0.2)
    if rounds < 1 or seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    cases = CASES
    if args.cases:
        keys = [k.strip() for k in args.cases.split(",") if k.strip()]
        unknown = [k for k in keys if k not in {c.key for c in CASES}]
        if unknown:
            parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(c.key for c in CASES)}")
        cases = tuple(c for c in CASES if c.key in keys)
    if args.quick:
        cases = tuple(quick_case(c) for c in cases)

    load_start = list(os.getloadavg())
    watch = CpuWatch()
    machine = machine_info()
    results = []
    for t in sorted(threads, reverse=True):          # the targets' thread count (all cores) first
        for case in cases:
            print(f"[{t} thread{'s' if t != 1 else ''}] {case.title}: {'x'.join(map(str, case.shape))} "
                  f"{case.dtype} {case.pool_text()} ...", file=sys.stderr, flush=True)
            results.append(run_case(case, t, rounds, seconds))
    chapter = quick_case(CASES[0]) if args.quick else CASES[0]
    breakdown = []
    if any(c.key == CASES[0].key for c in cases):
        print("where a chapter-case pass goes ...", file=sys.stderr, flush=True)
        breakdown = [run_breakdown(chapter, t, rounds, seconds) for t in sorted(threads, reverse=True)]
    print("img2col against the chapter's img2col ...", file=sys.stderr, flush=True)
    img2col = run_img2col(chapter, rounds, seconds)
    ops = [] if args.no_ops else [r for t in sorted(threads, reverse=True)
                                  for r in run_ops(t, rounds, seconds, args.quick)]
    load_end = list(os.getloadavg())
    other = watch.stop()
    machine = dict(machine, threading_layer=poolkit.info()["threading_layer"])
    report = {
        "date": now_utc(),
        "quick": args.quick, "machine": machine, "git": machine["git"], "threads": sorted(threads, reverse=True),
        "rounds": rounds, "seconds": seconds, "load_start": load_start, "load_end": load_end,
        "other_load": other, "busy": bool(other and other["others"] > BUSY_FRACTION),
        "command": "python benchmarks/run.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                 " " + " ".join(sys.argv[1:] if argv is None else argv)),
        "cases": results, "img2col": img2col, "ops": ops, "breakdown": breakdown,
    }
    text = markdown(report) + markdown_ops(ops)
    print(text)
    out = args.out or (os.path.join(os.path.dirname(HERE), "bench-out") if args.quick
                       else os.path.join(HERE, "results"))
    os.makedirs(out, exist_ok=True)
    stem = args.name or ("quick" if args.quick else "latest")
    with open(os.path.join(out, stem + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(out, stem + '.md')} and .json", file=sys.stderr)
    if args.readme:
        replace_block(args.readme, text)
        print(f"updated the benchmark block of {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
