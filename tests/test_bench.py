"""``poolkit bench`` and the benchmark scripts: smoke tests on tiny sizes (no timing assertions)."""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import poolkit
from poolkit.bench import chapter as bench
from poolkit.bench import machine
from poolkit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
TINY = ["--iterations", "3", "--batch", "2", "--no-first-call"]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
THREADS = [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]


def call(argv):
    """Exit status of ``poolkit <argv>``, whether argparse raises SystemExit or run() returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


# --------------------------------------------------------------------------- #
# the chapter's output
# --------------------------------------------------------------------------- #
def test_defaults_are_the_chapters_experiment():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    a = parser.parse_args([])
    cfg = bench.make_config(iterations=a.iterations, batch=a.batch, shape=a.shape, dtype=a.dtype, mode=a.mode,
                            kernel=a.kernel, stride=a.stride, padding=a.padding, threads=a.threads,
                            backends=a.backends, peers=a.peers, seed=a.seed)
    assert cfg.iterations == 5000
    assert cfg.input_shape == (64, 3, 28, 28) and cfg.output_shape == (64, 3, 14, 14)
    assert (cfg.dtype, cfg.mode, cfg.kernel, cfg.stride, cfg.padding) == ("float64", "max", (2, 2), (2, 2), (0, 0))
    assert cfg.backends == ("numba", "img2col") and cfg.is_chapter
    assert cfg.threads == poolkit.get_num_threads()


def test_output_starts_like_the_chapter(capsys):
    assert call(["bench", *TINY, "--peers", "none"]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0].startswith("Elapsed of numba: ") and float(out[0].split(": ")[1]) > 0
    assert out[1].startswith("Elapsed of img2col: ") and float(out[1].split(": ")[1]) > 0
    assert out[2:4] == ["forward: True", "backward: True"]
    summary = "\n".join(out[4:])
    assert "3 forward+backward passes" in summary and "2x3x28x28 float64" in summary
    assert "PoolingLayer.forward_numba + backward_numba" in summary
    assert "kept for backward" in summary and "machine:" in summary


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
def test_pytorch_beside_the_methods(capsys):
    assert call(["bench", *TINY, "--peers", "torch"]) == 0
    out = lines(capsys.readouterr().out)
    assert [ln.split(":")[0] for ln in out[:3]] == ["Elapsed of numba", "Elapsed of img2col", "Elapsed of pytorch"]
    assert out[3:5] == ["forward: True", "backward: True"]
    assert any("PyTorch keeps" in ln for ln in out)


@pytest.mark.skipif(not HAS_JAX, reason="JAX not installed")
def test_jax_beside_the_methods(capsys):
    assert call(["bench", *TINY, "--peers", "jax", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    jax = next(m for m in r["methods"] if m["name"] == "jax")
    assert jax["kind"] == "peer" and jax["same_forward"] and jax["same_backward"]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("extra", [
    [],
    ["--mode", "avg"],
    ["--dtype", "float32", "--shape", "4", "9", "11", "--kernel", "3", "--stride", "2", "--padding", "1"],
    ["--mode", "avg", "--kernel", "3", "2", "--stride", "1", "2", "--padding", "1", "0"],
    ["--backends", "numba,img2col,reference"],
])
def test_methods_agree(capsys, threads, extra):
    assert call(["bench", *TINY, "--peers", "none", "--threads", str(threads), "--json", *extra]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["check"]["forward"] and r["check"]["backward"]
    assert r["config"]["threads"] == threads
    assert all(m["threads"] == threads for m in r["methods"])


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
@pytest.mark.parametrize("backends, peers, expected", [
    ("numba,torch", "auto", ["numba", "pytorch"]),
    ("img2col,pytorch", "none", ["img2col", "pytorch"]),
    ("numba", "none", ["numba"]),
])
def test_peers_named_in_backends(backends, peers, expected):
    cfg = bench.make_config(backends=backends, peers=peers)
    assert list(cfg.backends + cfg.peers) == expected


def test_peers_that_fail_to_import_are_skipped_with_auto(capsys, monkeypatch):
    def missing(name, pool, x, g, threads):
        raise ImportError(f"No module named {name!r}")
    monkeypatch.setattr(bench, "peer_contender", missing)
    assert call(["bench", *TINY]) == 0
    out = capsys.readouterr().out
    assert "Elapsed of pytorch" not in out and "forward: True" in out
    assert "skipped pytorch: not importable" in out and "pip install" in out


def test_one_backend_is_checked_against_the_reference(capsys):
    assert call(["bench", *TINY, "--peers", "none", "--backends", "numba", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["check"]["compared"] == ["numba", "reference"]
    assert r["check"]["forward"] and r["check"]["backward"]


def test_disagreement_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(bench, "same", lambda a, b, mode: False)
    assert call(["bench", *TINY, "--peers", "none"]) == 1
    captured = capsys.readouterr()
    assert "forward: False" in captured.out and "backward: False" in captured.out
    assert "disagree" in captured.err


# --------------------------------------------------------------------------- #
# --json, --plot, progress
# --------------------------------------------------------------------------- #
def test_json(capsys):
    assert call(["bench", *TINY, "--peers", "none", "--json"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)                       # the whole of stdout is one document
    assert {"experiment", "config", "methods", "baseline", "check", "memory", "skipped", "machine"} <= set(r)
    assert r["experiment"] == "custom" and r["config"]["iterations"] == 3
    assert r["config"]["input_shape"] == [2, 3, 28, 28]
    assert [m["name"] for m in r["methods"]] == ["numba", "img2col"]
    for m in r["methods"]:
        assert {"elapsed_s", "per_pass_s", "best_per_pass_s", "first_call_s", "same_forward",
                "same_backward", "call", "kind"} <= set(m)
        assert m["per_pass_s"] == pytest.approx(m["elapsed_s"] / 3)
    assert r["check"] == {"forward": True, "backward": True, "compared": ["numba", "img2col"],
                          "rule": "np.array_equal"}
    assert r["memory"]["saved_nbytes"] == 2 * 3 * 14 * 14            # one byte per output
    assert r["memory"]["pytorch_saved_nbytes"] == 2 * 3 * 14 * 14 * 8
    assert {"cpu", "cores", "numpy", "numba", "threads", "kernel_cache"} <= set(r["machine"])
    assert "\r" not in captured.err                       # no progress bar with --json


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib not installed")
def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "bench.png"
    assert call(["bench", *TINY, "--peers", "none", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {path}" in capsys.readouterr().out


def test_plot_without_matplotlib_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert call(["bench", *TINY, "--peers", "none", "--plot", str(tmp_path / "b.png")]) == 2
    captured = capsys.readouterr()
    assert "pip install 'poolkit[plot]'" in captured.err
    assert "Elapsed" not in captured.out                  # refused before running anything


def test_progress_bar_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(bench, "_PROGRESS_MIN_SECONDS", 0.0)
    cfg = bench.make_config(iterations=3, batch=1, peers="none")
    r = bench.run_config(cfg, first_call=False, progress=True)
    assert r["check"]["forward"]
    text = err.getvalue()
    # one tqdm bar per method ("numba:   0%| | 0/3 ..."), cleared when the method is done
    assert "\rnumba: " in text and "\rimg2col: " in text and "/3 [" in text and "pass/s" in text
    assert text.endswith(" \r")


def test_no_progress_bar_when_not_a_terminal(capsys):
    assert call(["bench", *TINY, "--peers", "none"]) == 0
    assert capsys.readouterr().err == ""


def test_cpu_watch():
    watch = machine.CpuWatch()
    sum(range(200_000))
    r = watch.stop()
    assert r is None or ({"wall_s", "own_cpu_s", "others", "steal"} <= set(r) and 0 <= r["others"])


def test_noisy_runs_are_flagged(capsys, monkeypatch):
    monkeypatch.setattr(machine.CpuWatch, "stop", lambda self: {"wall_s": 1.0, "own_cpu_s": 1.0, "others": 0.5,
                                                              "steal": 0.0})
    assert call(["bench", *TINY, "--peers", "none"]) == 0
    assert "other processes used 50% of the CPUs" in capsys.readouterr().out


# --------------------------------------------------------------------------- #
# first call in fresh processes (cold and warm kernel cache)
# --------------------------------------------------------------------------- #
def test_first_call_cold_and_warm(capsys):
    """The one test of ``poolkit bench`` that runs the fresh processes (the others pass --no-first-call)."""
    argv = [a for a in TINY if a != "--no-first-call"]
    assert call(["bench", *argv, "--peers", "none", "--backends", "numba", "--threads", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    fc = r["first_call"]
    assert fc["threads"] == 1 and "64x3x28x28 float64" in fc["case"] and "MaxPool2d(2, 2)" in fc["case"]
    for key in ("cold", "warm"):
        row = fc[key]
        assert row["ok"], row
        assert row["scenario"] == key and row["threads"] == 1 and row["correct"]
        assert row["compile_mode"] == "background" and row["kernel_cache"] == "POOLKIT_CACHE_DIR"
        assert fc[key + "_s"] == row["first_s"] > 0 and row["ready"]
        assert row["served_by"] in ("NumPy", "kernel")
    # an empty cache: NumPy served while the kernels compiled into the new folder; the warm process
    # found them all there
    assert fc["cold"]["served_by"] == "NumPy" and fc["cold"]["cache_files"] > 0
    assert fc["warm"]["cache_files"] == fc["cold"]["cache_files"] and "note" not in fc["warm"]
    text = bench.summary(r)
    assert "first call in a fresh process" in text
    assert "  cold (empty kernel cache): " in text and "served by NumPy; kernels ready after " in text
    assert "  warm (the same cache again): " in text


def test_no_first_call_leaves_it_out(capsys):
    assert call(["bench", *TINY, "--peers", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_call"] is None


def _fake_cold_and_warm(warm_correct):
    def cold_and_warm(case, **kw):
        return [{"ok": False, "wall_s": 0.1, "error": "ImportError: boom", "scenario": "cold", "cache_files": 0},
                {"ok": True, "wall_s": 0.1, "first_s": 0.01, "served_by": "kernel", "ready_s": 0.02,
                 "correct": warm_correct, "scenario": "warm", "cache_files": 0}]
    return cold_and_warm


def test_failed_fresh_process_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(bench, "cold_and_warm", _fake_cold_and_warm(True))
    argv = [a for a in TINY if a != "--no-first-call"]
    assert call(["bench", *argv, "--peers", "none", "--backends", "numba"]) == 1
    captured = capsys.readouterr()
    assert "cold (empty kernel cache): FAILED: ImportError: boom" in captured.out
    assert "warm (the same cache again): 10 ms, served by kernel; kernels ready after 20 ms" in captured.out
    assert "first call failed in a fresh process (cold cache): ImportError: boom" in captured.err


def test_wrong_result_in_a_fresh_process_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(bench, "cold_and_warm", _fake_cold_and_warm(False))
    argv = [a for a in TINY if a != "--no-first-call"]
    assert call(["bench", *argv, "--peers", "none", "--backends", "numba"]) == 1
    captured = capsys.readouterr()
    assert "warm (the same cache again): 10 ms, served by kernel; kernels ready after 20 ms; WRONG RESULT" in \
        captured.out
    assert "(warm cache) differs from the reference backend" in captured.err


def test_first_call_in_a_cold_process_is_served_by_numpy(tmp_path):
    """One fresh process on an empty cache folder: NumPy answers the first forward+backward (the kernels
    compile in the background) and gives the reference backend's bits.  No timing is checked."""
    from poolkit.bench import first_call

    case = next(c for c in first_call.CASES if c.name == "max2d-pad")       # functional, return_indices
    spec = first_call.child_spec(case, wait=False)
    row = first_call.run_child(spec, {"POOLKIT_CACHE_DIR": str(tmp_path)}, timeout=600)
    assert row["ok"], row
    assert row["served_by"] == "NumPy" and row["fallbacks"] > 0
    assert row["correct"] and row["checked_passes"] == 1 and spec["oracle"] == "reference"
    assert row["compile_mode"] == "background"          # not the test suite's POOLKIT_COMPILE=foreground
    assert row["kernel_cache"] == "POOLKIT_CACHE_DIR" and row["kernel_cache_dir"].startswith(str(tmp_path))
    assert row["first_s"] > 0 and row["import_s"] > 0


def test_first_call_rows_cover_the_promised_configurations():
    from poolkit.bench.first_call import CASES

    chapter = [c for c in CASES if c.shape == (64, 3, 28, 28) and c.dtype == "float64"]
    assert {(c.op, c.api, c.kwargs["kernel_size"], c.kwargs["stride"]) for c in chapter} == {
        ("max", "layer", 2, 2), ("avg", "layer", 2, 2)}
    assert all(c.numba_waits for c in chapter) and not any(c.numba_waits for c in CASES if c not in chapter)
    assert {c.rank for c in CASES if c.kwargs.get("stride", 1) > 1} == {1, 2, 3}
    assert any(c.kwargs.get("padding") for c in CASES)
    assert {"NCHW", "NHWC"} <= {c.data_format for c in CASES}
    assert {c.dtype for c in CASES} == {"float32", "float64"}
    assert {"layer", "functional"} == {c.api for c in CASES}
    assert any(c.api == "functional" and c.op == "max" for c in CASES)      # return_indices + backward
    assert len({c.name for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- #
# the machine: CPU model, vector extensions, git commit
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("text, expected", [
    ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_1 sse4_2 avx avx2 fma\n",
     ["SSE4.2", "AVX", "AVX2", "FMA"]),
    ("model name\t: Intel Xeon\nflags\t\t: sse4_2 avx avx2 fma avx512f avx512dq avx512bw avx512vl\n",
     ["SSE4.2", "AVX", "AVX2", "FMA", "AVX-512F", "AVX-512BW", "AVX-512VL"]),
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve sve2\nCPU part\t: 0xd40\n", ["NEON", "SVE", "SVE2"]),
    ("processor\t: 0\nflags\t\t: fpu vme de\n", []),
])
def test_vector_extensions_from_cpuinfo(tmp_path, monkeypatch, text, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    monkeypatch.setattr(machine, "_CPUINFO", str(path))
    assert machine.vector_extensions() == (expected, "/proc/cpuinfo")


def test_vector_extensions_without_proc(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "_CPUINFO", str(tmp_path / "missing"))
    names, source = machine.vector_extensions()
    assert source == "llvm"             # llvmlite comes with Numba
    assert set(names) <= {name for name, _, _ in machine._VECTOR_EXTENSIONS}
    assert machine.cpu_model()          # falls back to the platform's words


def test_machine_header_names_the_vector_extensions_and_commit():
    m = machine.machine_info()
    assert isinstance(m["vector_extensions"], list) and m["vector_extensions_from"] in ("/proc/cpuinfo", "llvm")
    line = machine.machine_line(m)
    assert m["cpu"] in line and all(v in line for v in m["vector_extensions"])
    inside_git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if inside_git.returncode != 0:
        assert m["git"] is None
    else:
        assert m["git"]["commit"] == inside_git.stdout.strip() and isinstance(m["git"]["dirty"], bool)
        assert f"(git {inside_git.stdout.strip()[:7]}" in line


# --------------------------------------------------------------------------- #
# bad options: exit 2, naming the option
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("argv, word", [
    (["--iterations", "0"], "--iterations"),
    (["--iterations", "many"], "--iterations"),
    (["--batch", "-1"], "--batch"),
    (["--shape", "3", "28"], "--shape"),
    (["--dtype", "int8"], "--dtype"),
    (["--mode", "median"], "--mode"),
    (["--kernel", "2", "2", "2"], "kernel"),
    (["--kernel", "0"], "--kernel"),
    (["--kernel", "40"], "kernel"),
    (["--padding", "2"], "padding"),
    (["--stride", "1", "2", "3"], "stride"),
    (["--threads", "0"], "--threads"),
    (["--threads", str(numba.config.NUMBA_NUM_THREADS + 1)], "threads"),
    (["--backends", "cuda"], "backends"),
    (["--backends", ","], "backends"),
    (["--peers", "tensorflow"], "peers"),
    (["--plot", "bench.unknownformat"], "--plot"),
    (["--plot", "/no/such/folder/bench.png"], "--plot"),
])
def test_bad_options_exit_2(capsys, argv, word):
    if argv[0] == "--plot" and not HAS_MPL:
        pytest.skip("matplotlib not installed")
    assert call(["bench", *TINY, "--peers", "none", *argv]) == 2      # a later --peers wins
    captured = capsys.readouterr()
    assert word in captured.err
    assert "Elapsed" not in captured.out


def test_named_peer_that_is_missing_exits_2(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    assert call(["bench", *TINY, "--peers", "jax"]) == 2
    assert "pip install" in capsys.readouterr().err


def test_bench_function_and_its_errors():
    r = bench.bench(iterations=2, batch=1, peers="none", mode="mean", first_call=False)
    assert r["config"]["mode"] == "avg" and r["check"]["forward"]
    with pytest.raises(ValueError, match="`iterations` must be an integer >= 1, but got iterations=0"):
        bench.bench(iterations=0)
    with pytest.raises(ValueError, match="`shape`"):
        bench.bench(shape=(3, 28))
    with pytest.raises(ValueError, match="`padding` must be at most half"):
        bench.make_config(kernel=3, padding=2)
    with pytest.raises(ValueError, match="but got --padding 2 2 with --kernel 3"):
        bench.make_config(kernel=[3], padding=[2, 2], cli=True)


# --------------------------------------------------------------------------- #
# benchmarks/
# --------------------------------------------------------------------------- #
def _load(name):
    sys.path.insert(0, BENCHMARKS)
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCHMARKS, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module              # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCHMARKS)


@pytest.mark.parametrize("shape, pool, stride", [((2, 3, 28, 28), 2, 2), ((1, 2, 9, 7), 3, 2), ((2, 1, 6, 6), 2, 1)])
def test_chapter_img2col_reconstruction_agrees_with_poolkit(shape, pool, stride):
    chapter = _load("chapter_img2col")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    ours = poolkit.PoolingLayer(shape[1:], (pool, pool), stride, "MAX")
    theirs = chapter.ChapterImg2colPooling(shape[1:], (pool, pool), stride)
    y = ours.forward_img2col(x)
    g = rng.random(y.shape)
    assert np.array_equal(theirs.forward_img2col(x), y)
    gx_theirs, gx_ours = theirs.backward_col2img(g, 0), ours.backward_col2img(g)
    if stride >= pool:              # windows do not overlap: nothing is summed
        assert np.array_equal(gx_theirs, gx_ours)
    else:
        np.testing.assert_allclose(gx_theirs, gx_ours, rtol=1e-12, atol=1e-12)


def test_readme_block_replacement(tmp_path):
    run = _load("run")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- benchmark:start -->\nold\n<!-- benchmark:end -->\noutro\n")
    run.replace_block(str(readme), "# title\n\nnew table\n")
    assert readme.read_text() == "intro\n<!-- benchmark:start -->\nnew table\n<!-- benchmark:end -->\noutro\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(SystemExit):
        run.replace_block(str(tmp_path / "plain.md"), "# t\n\nx\n")


@pytest.mark.skipif(not HAS_TORCH, reason="benchmarks/run.py compares against PyTorch")
def test_run_py_quick_writes_a_table(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "run.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "quick.md").read_text()
    assert proc.stdout == table + "\n"
    for title in ("chapter case", "chapter case, average", "large, max", "ResNet stem", "LeNet, average"):
        assert f"| {title} |" in table
    assert "PyTorch / poolkit" in table and "copy bound" in table and "chapter's img2col" in table
    report = json.loads((tmp_path / "quick.json").read_text())
    assert report["quick"] and len(report["cases"]) == 5 * len(report["threads"])
    assert all(r["same_as_pytorch"] for r in report["cases"]) and report["img2col"]["same"]
    # where a chapter-case pass goes, at every thread count
    assert [b["threads"] for b in report["breakdown"]] == report["threads"]
    assert all(b["pass_s"] > 0 and b["per_call_s"] > 0 for b in report["breakdown"])
    assert "## Where a chapter-case pass goes" in table
    # the header names the CPU's vector extensions and the commit measured
    m = report["machine"]
    assert f"- machine: {machine.cpu_line(m)}" in table and isinstance(m["vector_extensions"], list)
    assert report["git"] == m["git"]
    if m["git"]:
        assert f"(git {machine.git_text(m['git'])})" in table


@pytest.mark.slow
def test_first_call_py(tmp_path):
    rows = "max2d-nhwc,read-only-package,nothing-writable"
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "first_call.py"), "--json",
                           "--out", str(tmp_path), "--rows", rows], capture_output=True, text=True, timeout=1800,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == json.loads((tmp_path / "first_call.json").read_text())
    assert "vector_extensions" in report["machine"] and report["git"] == report["machine"]["git"]
    table = (tmp_path / "first_call.md").read_text()
    assert "| 2-D max, NHWC | 8x56x56x32 float32 NHWC | `MaxPool2d(2, 2, data_format='NHWC')` |" in table
    assert "cold first fwd+bwd (s)" in table and "numba waits (s)" in table and "within 1 s: " in table
    [row] = report["cases"]
    assert row["name"] == "max2d-nhwc" and row["ok"] and row["correct"] and row["numba"] is None
    cold, warm = row["cold"], row["warm"]
    assert cold["served_by"] == "NumPy" and cold["ready"] and cold["cache_files"] > 0
    # a warm process loads its kernels in its first call: they serve it
    assert warm["served_by"] == "kernel" and warm["steady_served_by"] == "kernel"
    # the loop ran while the kernels compiled, NumPy blocks against the default backend's
    during = cold["during"]
    assert during["pairs"] > 0 and during["mismatches"] == 0 and during["ratio"] > 0
    assert "during compile (% of NumPy)" in table
    assert warm["cache_files"] == cold["cache_files"] and warm["checked_passes"] == 12
    assert cold["kernel_cache"] == warm["kernel_cache"] == "POOLKIT_CACHE_DIR"
    scenarios = {s["name"]: s for s in report["scenarios"]}
    assert set(scenarios) == {"read-only-package", "nothing-writable"}
    for s in scenarios.values():
        if s["status"] == "not run":            # no unshare here: the table says why
            assert s["reason"] and f"| {s['title']} | not run |" in table
            continue
        assert s["ok"] and s["correct"] and s["as_expected"]
        assert all(p["kernel_cache"] == s["expect"] for p in s["processes"])
    if scenarios["read-only-package"]["status"] == "run":
        first, second = scenarios["read-only-package"]["processes"]
        assert first["cache_files"] == second["cache_files"] > 0 and "no compile" in second["note"]
    if scenarios["nothing-writable"]["status"] == "run":
        [only] = scenarios["nothing-writable"]["processes"]
        assert only["kernel_cache"] == "memory" and only["kernel_cache_dir"] is None


def test_first_call_py_refuses_unknown_rows(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "first_call.py"), "--rows", "chapter-max,nope",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert "--rows" in proc.stderr and "'chapter-max,nope'" in proc.stderr and "read-only-package" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_direct_writes_py_smoke(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "direct_writes.py"), "--gib", "0.01",
                           "--file-mib", "0.25", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["buffered", "direct"] * 2
    assert all("s wall" in ln and "s system" in ln for ln in lines[1:])
    assert os.listdir(tmp_path) == []                                  # every file removed
