"""``poolkit.warmup`` and the ``poolkit info`` / ``poolkit warmup`` commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import poolkit
from poolkit.backends.numba import warmup as _warmup
from poolkit.backends.numba.loops import PARALLEL_MIN_ELEMENTS
from poolkit.cli import main

ONE = {"op": "max", "kernel_size": 2, "stride": 2, "data_format": "NCHW"}


def _cache_files(folder, ext):
    return sorted(name for _, _, names in os.walk(folder) for name in names if name.endswith(ext))


# --------------------------------------------------------------------------- #
# compiling into the cache (fresh processes, so the cache folder starts empty)
# --------------------------------------------------------------------------- #
AFTER_WARMUP = r"""
import json, sys
import numba, numpy as np, poolkit
x_large = np.random.default_rng(0).standard_normal((64, 3, 28, 28)).astype(np.float32)   # the chapter's case
x_small = x_large[:1, :2, :6, :6].copy()
for x, n in ((x_small, 1), (x_large, numba.config.NUMBA_NUM_THREADS)):
    with poolkit.threads(n):
        layer = poolkit.MaxPool2d(2, 2)
        layer.backward(np.ones_like(layer.forward(x)))
        y, idx = poolkit.max_pool2d(x, 2, 2, return_indices=True)
        poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape)
print("DONE")
"""


def test_warmup_compiles_into_the_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), POOLKIT_CACHE_DIR=str(cache))
    code = ("import json, poolkit\n"
            f"records = poolkit.warmup([{ONE!r}], dtypes=['float32'], progress=False)\n"
            "print('RESULT ' + json.dumps(records))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                          # progress=False: no bar
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    records = json.loads(line[len("RESULT "):])
    assert len(records) == 1 and records[0]["seconds"] > 0
    assert records[0]["config"] == {"op": "max", "kernel_size": 2, "stride": 2, "padding": 0,
                                    "data_format": "NCHW", "dilation": 1}
    assert records[0]["dtype"] == "float32"
    index = _cache_files(cache, ".nbi")
    assert index, "warmup wrote no index files to the cache folder"

    # A later process running that config, small and large (so one and all threads), compiles nothing new.
    code_files = _cache_files(cache, ".nbc")
    proc = subprocess.run([sys.executable, "-c", AFTER_WARMUP], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr
    assert _cache_files(cache, ".nbc") == code_files


def test_large_inputs_reach_the_parallel_kernels():
    """The large input and its output both have PARALLEL_MIN_ELEMENTS elements; the small one does not."""
    for cfg in _warmup.COMMON_CONFIGS:
        checked, _ = _warmup.check([cfg], ["float64"])
        rank = _warmup._rank(checked[0], "config")
        small, large = _warmup._sizes(checked[0], rank)
        assert len(small) == len(large) == rank
        x = np.zeros(_warmup._shape(cfg["data_format"], _warmup._BATCH, _warmup._CHANNELS, large))
        pool = poolkit.max_pool if cfg["op"] == "max" else poolkit.avg_pool
        kw = {k: checked[0][k] for k in ("kernel_size", "stride", "padding")}
        y = pool(x, data_format=cfg["data_format"], backend="img2col", **kw)
        assert x.size >= PARALLEL_MIN_ELEMENTS and y.size >= PARALLEL_MIN_ELEMENTS, cfg
        assert np.prod(_warmup._shape(cfg["data_format"], 1, 2, small)) < PARALLEL_MIN_ELEMENTS, cfg


def test_the_common_set():
    configs, dtypes = _warmup.check(None, ("float32", "float64"))
    assert len(configs) == 16 and [d.name for d in dtypes] == ["float32", "float64"]
    assert {c["op"] for c in configs} == {"max", "avg"}
    assert {c["data_format"] for c in configs} == {"NCHW", "NHWC", "NCL", "NCDHW"}
    assert {(c["kernel_size"], c["stride"], c["padding"]) for c in configs if c["data_format"] == "NHWC"} == {
        (2, 2, 0), (3, 2, 1), (3, 1, 1)}


def test_average_configs_take_dilation():
    # Every reduction dilates (issue 21): an average config keeps its dilation, checked like max pooling's.
    (cfg,), _ = _warmup.check([{"op": "avg", "kernel_size": 3, "dilation": 2, "data_format": "NCHW"}], ["float32"])
    assert cfg == {"op": "avg", "kernel_size": 3, "stride": 3, "padding": 0, "data_format": "NCHW", "dilation": 2}
    (plain,), _ = _warmup.check([{"op": "avg", "kernel_size": 3, "data_format": "NCHW"}], ["float32"])
    assert "dilation" not in plain                      # as before when none is given


# --------------------------------------------------------------------------- #
# every error path, raised before anything compiles
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("configs, dtypes, exc, match", [
    (dict(ONE), ["float32"], TypeError, r"but got one dict: .*write configs=\[\{"),
    ("NCHW", ["float32"], TypeError, r"`configs` must be a list of dicts .* but got configs='NCHW'"),
    (5, ["float32"], TypeError, r"but got configs=5\."),
    ([], ["float32"], ValueError, r"at least one config .* but got configs=\[\]"),
    ([42], ["float32"], TypeError, r"configs\[0\] must be a dict .* but got configs\[0\]=42"),
    ([dict(ONE, ceil_mode=True)], ["float32"], ValueError, r"configs\[0\]: unknown key 'ceil_mode' \(value True\)"),
    ([{"op": "max", "data_format": "NCHW"}], ["float32"], ValueError, r"configs\[0\]: the key 'kernel_size' is missing"),
    ([dict(ONE, op="median")], ["float32"], ValueError, r"configs\[0\]: `op` must be 'max' or 'avg', but got op='median'"),
    ([dict(ONE, op="avg", dilation=0)], ["float32"], ValueError, r"configs\[0\]: `dilation` must be positive"),
    ([dict(ONE, data_format=4)], ["float32"], TypeError, r"configs\[0\]: `data_format` must be a string .*data_format=4"),
    ([dict(ONE, data_format="channels_last")], ["float32"], ValueError,
     r"configs\[0\]: `data_format` must name the rank .* but got data_format='channels_last' with kernel_size=2"),
    ([dict(ONE, kernel_size=(2, 2), data_format="NXYC")], ["float32"], ValueError,
     r"configs\[0\]: `data_format` must be one of .* but got data_format='NXYC'"),
    ([dict(ONE, data_format="NCL", kernel_size=(2, 2))], ["float32"], ValueError, r"configs\[0\]: `kernel_size`"),
    ([dict(ONE, kernel_size=0)], ["float32"], ValueError, r"configs\[0\]: `kernel_size` must be positive, but got kernel_size=0"),
    ([dict(ONE, kernel_size="2")], ["float32"], TypeError, r"configs\[0\]: `kernel_size` must be an int"),
    ([dict(ONE, stride=(1, 2, 3))], ["float32"], ValueError, r"configs\[0\]: `stride` .* but got stride=\(1, 2, 3\)"),
    ([dict(ONE, padding=2)], ["float32"], ValueError, r"configs\[0\]: `padding` must be at most half"),
    ([dict(ONE, dilation=0)], ["float32"], ValueError, r"configs\[0\]: `dilation` must be positive"),
    ([ONE, dict(ONE, stride=-1)], ["float32"], ValueError, r"configs\[1\]: `stride` must be positive, but got stride=-1"),
    ([ONE], [], ValueError, r"`dtypes` must name at least one dtype"),
    ([ONE], 5, TypeError, r"`dtypes` must be a sequence of dtype names .* but got dtypes=5"),
    ([ONE], ["int32"], TypeError, r"`dtypes` must hold floating-point dtypes .* but got 'int32'"),
    ([ONE], ["nonsense"], TypeError, r"but got 'nonsense' in dtypes=\['nonsense'\]"),
    pytest.param([ONE], ["float128"], TypeError, r"`dtypes`: dtype=float128 is not supported",
                 marks=pytest.mark.skipif(not hasattr(np, "float128"), reason="no float128 on this platform")),
])
def test_errors(monkeypatch, configs, dtypes, exc, match):
    def compiled(*args):
        raise AssertionError("a kernel ran before the arguments were checked")
    monkeypatch.setattr(_warmup, "_run_once", compiled)
    with pytest.raises(exc, match=match):
        poolkit.warmup(configs, dtypes=dtypes, progress=False)


def test_progress_must_be_a_bool(monkeypatch):
    monkeypatch.setattr(_warmup, "_run_once", lambda *a: pytest.fail("ran before checking `progress`"))
    with pytest.raises(TypeError, match="`progress` must be True or False, but got progress='yes'"):
        poolkit.warmup([ONE], dtypes=["float32"], progress="yes")


def test_progress_bar_over_configs_and_dtypes(monkeypatch, capsys):
    class Tty:
        def __init__(self, stream):
            self.stream, self.text = stream, []

        def isatty(self):
            return True

        def write(self, s):
            self.text.append(s)

        def flush(self):
            pass

    err = Tty(sys.stderr)
    monkeypatch.setattr(sys, "stderr", err)
    seen = []
    monkeypatch.setattr(_warmup, "_run_once", lambda cfg, rank, x: seen.append((cfg["op"], rank, x.shape, x.dtype)))
    records = poolkit.warmup([ONE, dict(ONE, op="avg", data_format="NHWC")], dtypes=["float32", "float64"])
    text = "".join(err.text)
    assert "poolkit warmup" in text and "4/4" in text and "avg 2/2 NHWC float64" in text
    assert [(r["config"]["op"], r["dtype"]) for r in records] == [
        ("max", "float32"), ("max", "float64"), ("avg", "float32"), ("avg", "float64")]
    # two inputs per record, small then large, in the config's layout and dtype
    assert len(seen) == 8
    assert seen[0][2][:2] == (1, 2) and seen[1][2][:2] == (_warmup._BATCH, _warmup._CHANNELS)
    assert seen[4][2][0] == 1 and seen[4][2][-1] == 2 and seen[7][3] == np.float64


# --------------------------------------------------------------------------- #
# the commands
# --------------------------------------------------------------------------- #
def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"poolkit", "numpy", "numba", "python", "machine", "threads", "threading_layer",
            "kernel_cache"} <= set(d)
    assert d["poolkit"] == poolkit.__version__


def test_info_text_is_aligned(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    d = poolkit.info()
    assert [ln.split(":")[0] for ln in lines] == list(d)
    starts = {len(ln) - len(ln.split(":", 1)[1].lstrip()) for ln in lines}
    assert len(starts) == 1                            # every value starts in the same column
    assert f"poolkit: {' ' * (max(map(len, d)) - len('poolkit'))}{poolkit.__version__}" in lines


def test_warmup_command(monkeypatch, capsys, tmp_path):
    calls = []

    def fake(configs, *, dtypes, progress):
        calls.append((configs, dtypes, progress))
        return [{"config": c, "dtype": d, "seconds": 1.5} for c in _warmup.check(configs, dtypes)[0] for d in dtypes]
    monkeypatch.setattr(_warmup, "warmup", fake)
    path = tmp_path / "configs.json"
    path.write_text(json.dumps([ONE]))
    assert main(["warmup", "--config", str(path), "--dtype", "float32", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert calls == [([ONE], ("float32", "float64"), None)]
    assert out == ["max 2/2 NCHW float32: 1.50 s", "max 2/2 NCHW float64: 1.50 s",
                   f"2 configs x dtypes in 3.0 s; kernel cache: {poolkit.info()['kernel_cache']}"]
    assert main(["warmup", "--quiet"]) == 0
    assert calls[-1] == (None, ("float32", "float64"), False) and capsys.readouterr().out == ""


@pytest.mark.parametrize("content, argv, word", [
    (None, ["--config", "missing.json"], "cannot read it"),
    ("[{", [], "not JSON"),
    (json.dumps([dict(ONE, op="median")]), [], "configs[0]: `op` must be 'max' or 'avg', but got op='median'"),
    (json.dumps(ONE), [], "but got one dict"),
    (json.dumps([ONE]), ["--dtype", "int8"], "`dtypes` must hold floating-point dtypes"),
])
def test_warmup_command_errors(monkeypatch, capsys, tmp_path, content, argv, word):
    monkeypatch.setattr(_warmup, "warmup", lambda *a, **k: pytest.fail("warmup ran on bad options"))
    path = tmp_path / "configs.json"
    if content is not None:
        path.write_text(content)
        argv = ["--config", str(path), *argv]
    else:
        argv = [a if a != "missing.json" else str(tmp_path / a) for a in argv]
    assert main(["warmup", *argv]) == 2
    err = capsys.readouterr().err
    assert word in err and "poolkit warmup: error:" in err
