"""`poolkit explain`, its Python API, output_shape's explanations, and the tutorial page."""
from __future__ import annotations

import doctest
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import poolkit
from poolkit import cli
from poolkit import explain as ex
from poolkit.explain import figures
from poolkit.explain.view import display_width
from poolkit.explain.words import explain_adaptive, explain_axis

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
CHAPTER = "1 3 2 1; 4 2 1 5; 3 1 1 0; 1 2 2 4"
GRID3 = "1 2 3; 4 5 6; 7 8 9"


def run_cli(capsys, *argv):
    """Run ``poolkit explain ARGV`` in-process; return (exit code, stdout, stderr)."""
    try:
        code = cli.main(["explain", *argv])
    except SystemExit as exc:             # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    return data if isinstance(data, list) else [data]


def by_mode(results):
    return {r["mode"]: r for r in results}


# --------------------------------------------------------------------------- #
# JSON against hand-worked values
# --------------------------------------------------------------------------- #
def test_issue_example_json(capsys):
    res = run_json(capsys, "--input", CHAPTER, "--grad", "1 2; 3 4")
    assert [r["mode"] for r in res] == ["max", "avg"]
    for r in res:
        for key in ("mode", "input", "kernel_size", "stride", "padding", "output_shape", "output",
                    "grad_output", "grad_input"):
            assert key in r
        assert r["input"] == [[1, 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]]
        assert r["kernel_size"] == [2, 2] and r["stride"] == [2, 2] and r["padding"] == [0, 0]
        assert r["output_shape"] == [2, 2]
        assert r["grad_output"] == [[1, 2], [3, 4]]
        assert r["grad_source"] == "given"
    m, a = by_mode(res)["max"], by_mode(res)["avg"]
    assert m["output"] == [[4, 5], [3, 4]]
    assert m["argmax"] == [[[1, 0], [1, 3]], [[2, 0], [3, 3]]]
    assert m["indices"] == [[4, 7], [8, 15]]
    assert m["grad_input"] == [[0, 0, 0, 0], [1, 0, 0, 2], [3, 0, 0, 0], [0, 0, 0, 4]]
    assert a["output"] == [[2.5, 2.25], [1.75, 1.75]]
    assert a["divisor"] == [[4, 4], [4, 4]]
    assert a["grad_input"] == [[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5],
                               [0.75, 0.75, 1, 1], [0.75, 0.75, 1, 1]]


def test_defaults_are_the_chapters_example(capsys):
    res = run_json(capsys)
    given = run_json(capsys, "--input", CHAPTER, "--grad", "1 2; 3 4")
    assert [{**r, "grad_source": "given"} for r in res] == given
    assert all(r["grad_source"] == "ramp" and r["grad_output"] == [[1, 2], [3, 4]] for r in res)


def test_one_mode_gives_one_object(capsys):
    code, out, _ = run_cli(capsys, "--mode", "max", "--format", "json")
    assert code == 0 and isinstance(json.loads(out), dict)
    code, out, _ = run_cli(capsys, "--mode", "mean", "--format", "json")
    assert code == 0 and json.loads(out)["mode"] == "avg"


def test_stride_1_hand_worked(capsys):
    m, a = by_mode(run_json(capsys, "--input", CHAPTER, "--stride", "1")).values()
    assert m["output_shape"] == [3, 3]
    assert m["output"] == [[4, 3, 5], [4, 2, 5], [3, 2, 4]]
    assert a["output"] == [[2.5, 2, 2.25], [2.5, 1.25, 1.75], [1.75, 1.5, 1.75]]
    # Without --grad: 1..9 in row-major order. Overlapping windows add up: x[1,0] wins
    # windows (0,0) and (1,0) -> 1 + 4; x[1,3] wins (0,2) and (1,2) -> 3 + 6.
    assert m["grad_output"] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]] and m["grad_source"] == "ramp"
    assert m["grad_input"] == [[0, 2, 0, 0], [5, 5, 0, 9], [7, 0, 0, 0], [0, 8, 0, 9]]
    # Mean: the inner cells are in 4 windows, each giving a quarter.
    assert a["grad_input"][1][1] == pytest.approx((1 + 2 + 4 + 5) / 4)
    assert a["grad_input"][0][0] == pytest.approx(1 / 4)


def test_padding_1_hand_worked(capsys):
    m, a = by_mode(run_json(capsys, "--input", GRID3, "--padding", "1", "--grad", "1 2; 3 4")).values()
    assert m["output_shape"] == [2, 2] and m["padding"] == [1, 1]
    assert m["window_rows"] == [[-1, 0], [1, 2]]
    assert m["output"] == [[1, 3], [7, 9]]
    assert m["grad_input"] == [[1, 0, 2], [0, 0, 0], [3, 0, 4]]
    # count_include_pad=True (PyTorch's default): padding adds 0 and counts in the divisor.
    assert a["output"] == [[0.25, 1.25], [2.75, 7]]
    assert a["grad_input"] == [[0.25, 0.5, 0.5], [0.75, 1, 1], [0.75, 1, 1]]
    excl = by_mode(run_json(capsys, "--input", GRID3, "--padding", "1", "--mode", "avg", "--exclude-pad"))["avg"]
    assert excl["count_include_pad"] is False
    assert excl["output"] == [[1, 2.5], [5.5, 7]]
    assert excl["divisor"] == [[1, 2], [2, 4]]


def test_ceil_mode_hand_worked(capsys):
    x = " ; ".join(" ".join(str(5 * r + c + 1) for c in range(5)) for r in range(5))   # 1..25
    floor = by_mode(run_json(capsys, "--input", x, "--mode", "max"))["max"]
    assert floor["output"] == [[7, 9], [17, 19]]
    ceil = by_mode(run_json(capsys, "--input", x, "--mode", "max", "--ceil-mode"))["max"]
    assert ceil["ceil_mode"] is True and ceil["output_shape"] == [3, 3]
    assert ceil["output"] == [[7, 9, 10], [17, 19, 20], [22, 24, 25]]
    assert any("ceil_mode added a partial window starting at 4" in s for s in ceil["explanation"])
    avg = by_mode(run_json(capsys, "--input", x, "--mode", "avg", "--ceil-mode"))["avg"]
    assert avg["output"][2][2] == 25          # the corner window holds one element, divisor 1
    assert avg["divisor"][2][2] == 1


def test_dilation_hand_worked(capsys):
    x = " ; ".join(" ".join(str(5 * r + c + 1) for c in range(5)) for r in range(5))
    code, out, _ = run_cli(capsys, "--input", x, "--dilation", "2", "--stride", "1", "--mode", "max",
                           "--format", "json")
    assert code == 0
    r = json.loads(out)
    assert r["mode"] == "max" and r["dilation"] == [2, 2]
    assert r["window_rows"][0] == [0, 2]
    assert r["output"] == [[13, 14, 15], [18, 19, 20], [23, 24, 25]]
    assert r["argmax"][0][0] == [2, 2]


def test_npy_input(capsys, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[[[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]]]]))  # (1, 1, 4, 4)
    grad = tmp_path / "g.npy"
    np.save(grad, np.array([[1., 2], [3, 4]]))
    assert run_json(capsys, "--input", str(path), "--grad", str(grad)) == \
        run_json(capsys, "--input", CHAPTER, "--grad", "1 2; 3 4")


# --------------------------------------------------------------------------- #
# JSON against the library's own functions (and PyTorch, when installed)
# --------------------------------------------------------------------------- #
CONFIGS = [
    dict(shape=(4, 4), kernel=2, stride=2, padding=0, dilation=1, ceil=False),
    dict(shape=(4, 4), kernel=2, stride=1, padding=0, dilation=1, ceil=False),
    dict(shape=(5, 6), kernel=2, stride=2, padding=1, dilation=1, ceil=False),
    dict(shape=(5, 5), kernel=3, stride=2, padding=1, dilation=1, ceil=True),
    dict(shape=(7, 6), kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=1, ceil=False),
    dict(shape=(6, 7), kernel=2, stride=1, padding=1, dilation=2, ceil=False, modes=("max",)),
    dict(shape=(7, 7), kernel=3, stride=3, padding=0, dilation=1, ceil=True),
]


def _arg(v):
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}{_arg(v)}" for k, v in c.items()))
def test_json_matches_library(capsys, cfg):
    rng = np.random.default_rng(7)
    x = rng.permutation(int(np.prod(cfg["shape"]))).reshape(cfg["shape"]).astype(float) - 10   # no ties
    text = "; ".join(" ".join(str(int(v)) for v in row) for row in x)
    modes = cfg.get("modes", ("max", "avg"))
    argv = ["--input", text, "--kernel", _arg(cfg["kernel"]), "--stride", _arg(cfg["stride"]),
            "--padding", _arg(cfg["padding"]), "--dilation", _arg(cfg["dilation"]),
            "--mode", "both" if len(modes) == 2 else modes[0]]
    if cfg["ceil"]:
        argv.append("--ceil-mode")
    results = by_mode(run_json(capsys, *argv))
    x4 = x[None, None]
    out_shape = poolkit.output_shape(cfg["shape"], cfg["kernel"], cfg["stride"], cfg["padding"],
                                     cfg["dilation"], cfg["ceil"])
    g4 = np.arange(1, np.prod(out_shape) + 1, dtype=float).reshape((1, 1) + out_shape)
    torch = _torch()
    for mode in modes:
        r = results[mode]
        assert tuple(r["output_shape"]) == out_shape
        assert r["grad_output"] == g4[0, 0].tolist()
        if mode == "max":
            y, idx = poolkit.max_pool2d(x4, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                                        cfg["ceil"], return_indices=True)
            gi = poolkit.max_pool2d_backward(g4, idx, x4.shape)
            assert r["indices"] == idx[0, 0].tolist()
        else:
            y = poolkit.avg_pool2d(x4, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil"])
            gi = poolkit.avg_pool2d_backward(g4, x4.shape, cfg["kernel"], cfg["stride"], cfg["padding"],
                                             cfg["ceil"])
        np.testing.assert_array_equal(np.array(r["output"]), y[0, 0])
        np.testing.assert_allclose(np.array(r["grad_input"]), gi[0, 0], rtol=1e-12, atol=1e-12)
        # Every window listed covers exactly the elements whose max / mean the output holds.
        for i in range(out_shape[0]):
            for j in range(out_shape[1]):
                inside = [x[a, b] for a in r["window_rows"][i] for b in r["window_cols"][j]
                          if 0 <= a < x.shape[0] and 0 <= b < x.shape[1]]
                if mode == "max":
                    assert r["output"][i][j] == max(inside)
                else:
                    assert r["output"][i][j] == pytest.approx(sum(inside) / r["divisor"][i][j])
        if torch is not None:
            _check_torch(torch, mode, x4, g4, cfg, r)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _check_torch(torch, mode, x4, g4, cfg, r):
    """An oracle independent of poolkit."""
    t = torch.tensor(x4, requires_grad=True)
    if mode == "max":
        y = torch.nn.functional.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                                           cfg["ceil"])
    else:
        y = torch.nn.functional.avg_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil"])
    y.backward(torch.tensor(g4))
    np.testing.assert_allclose(np.array(r["output"]), y.detach().numpy()[0, 0], rtol=1e-12)
    np.testing.assert_allclose(np.array(r["grad_input"]), t.grad.numpy()[0, 0], rtol=1e-12, atol=1e-12)


def test_python_api_matches_cli(capsys):
    res = ex.explain_pooling(CHAPTER, 2, 1, mode="max")
    assert res == run_json(capsys, "--input", CHAPTER, "--stride", "1", "--mode", "max")
    assert ex.explain is ex.explain_pooling
    arr = ex.explain_pooling(np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]]))
    assert arr == ex.explain_pooling()
    assert json.loads(ex.render_json(arr)) == json.loads(json.dumps(arr))


def test_explanation_is_output_shapes(capsys):
    (r,) = run_json(capsys, "--input", GRID3, "--padding", "1", "--mode", "max")
    assert r["explanation"] == poolkit.output_shape((3, 3), 2, 2, 1, explain=True)[1].splitlines()


def test_non_finite_values_become_null(capsys):
    (r,) = run_json(capsys, "--input", "1 nan; 2 3", "--mode", "max")
    assert r["input"][0][1] is None and r["output"] == [[None]]


# --------------------------------------------------------------------------- #
# text
# --------------------------------------------------------------------------- #
def _width(line):
    return display_width(line)


def _assert_fits(text, width=80):
    wide = [line for line in text.splitlines() if _width(line) > width]
    assert not wide, wide


def test_text_default_tour(capsys):
    code, out, err = run_cli(capsys)
    assert code == 0 and not err
    _assert_fits(out)
    assert "\x1b[" not in out                             # not a terminal: no colour
    for needle in ("Input x (4x4)", "[1  3] 2  1", "y[1,1]", "max 4", "mean 2.25",
                   "max(1, 3, 4, 2) = 4", "(1 + 3 + 4 + 2)/4 = 2.5",
                   "W2 = (W1 - F)/S + 1 = (4 - 2)/2 + 1 = 2",
                   "stride 1", "W2 = (W1 - F)/S + 1 = (4 - 2)/1 + 1 = 3", "5 at x[1,3] wins 2 windows",
                   "δ[0,1] = 2 → x[1,3] (the max, 5)", "δ[1,1] = 4 → 4/4 = 1 to each of x[2:4, 2:4]",
                   "Σ grad x = 10", "no parameters to learn"):
        assert needle in out or needle in re.sub(r"\s+", " ", out), needle
    # The output grids and gradients, as printed rows.
    assert re.search(r"^\s+4  5\s+2\.5  2\.25$", out, re.M)
    assert re.search(r"^\s+1  0  0  2$", out, re.M)
    assert re.search(r"^\s+0\.75  0\.75\s+1\s+1$", out, re.M)


def test_text_zh(capsys):
    code, out, _ = run_cli(capsys, "--lang", "zh")
    assert code == 0
    _assert_fits(out)
    for needle in ("最大值池化", "平均值池化", "步长", "池化尺寸", "反向传播", "残差", "输出尺寸",
                   "max(1, 3, 4, 2) = 4", "δ[0,1] = 2 → x[1,3]（最大值 5 所在位置）"):
        assert needle in out, needle
    assert "mean pooling" not in out and "Backward" not in out
    (r,) = run_json(capsys, "--lang", "zh", "--mode", "max")
    assert "窗口跨度" in r["explanation"][0]


@pytest.mark.parametrize("argv", [
    ["--input", GRID3, "--padding", "1"],
    ["--input", GRID3, "--padding", "1", "--lang", "zh", "--exclude-pad"],
    ["--kernel", "3", "--stride", "1", "--padding", "1", "--ceil-mode"],
    ["--input", "1 2 3 4 5 6 7; 7 6 5 4 3 2 1; 1 1 1 1 1 1 1", "--kernel", "2,3", "--stride", "1,2"],
    ["--input", "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0", "--dilation", "2", "--stride", "1",
     "--lang", "zh"],
])
def test_text_configurations_fit(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    _assert_fits(out)
    assert "Σ" in out


def test_text_numbers_match_json(capsys):
    argv = ["--input", GRID3, "--padding", "1", "--grad", "1 2; 3 4"]
    code, out, _ = run_cli(capsys, *argv)
    m, a = by_mode(run_json(capsys, *argv)).values()
    assert "(0 + 0 + 0 + 1)/4 = 0.25" in re.sub(r"\s+", " ", out)
    assert "δ[0,0] = 1 → 1/4 = 0.25 to x[0,0]; 3 share(s) fall on padding" in out
    assert "Σ grad x = 6.75   (Σ δ = 10)" in out
    assert sum(map(sum, a["grad_input"])) == 6.75


def test_large_input_is_described_not_drawn(capsys, tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.arange(40 * 40, dtype=float).reshape(40, 40))
    code, out, _ = run_cli(capsys, "--input", str(path))
    assert code == 0
    _assert_fits(out)
    assert "too many to draw" in out and "too wide to draw" in out


def test_color_only_adds_escapes():
    res = ex.explain_pooling()
    plain = ex.render_text(res)
    colored = ex.render_text(res, color=True)
    assert "\x1b[" in colored and "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain


def test_no_color_env(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    code, out, _ = run_cli(capsys, "--mode", "max")
    assert code == 0 and "\x1b[" not in out


# --------------------------------------------------------------------------- #
# errors: exit code 2, the option named
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("argv, needle", [
    (["--input", "1 2; 3 x"], "--input: 'x' in row 2 is not a number"),
    (["--input", "1 2; 3"], "--input: rows have different lengths (2, 1)"),
    (["--input", "missing.npy"], "--input: no such file"),
    (["--input", ""], "--input: expected a matrix"),
    (["--grad", "1 2 3"], "--grad: the gradient has shape (1, 3), but this configuration's output has shape (2, 2)"),
    (["--stride", "1", "--grad", "1 2; 3 4"], "give a 3x3 matrix"),
    (["--grad", "a b; c d"], "--grad: 'a' in row 1 is not a number"),
    (["--kernel", "0"], "--kernel: expected a positive integer"),
    (["--stride", "a,b"], "--stride: expected a positive integer"),
    (["--padding", "-1"], "--padding: expected a non-negative integer"),
    (["--padding", "2"], "`padding` must be at most half of `kernel_size`"),
    (["--kernel", "5"], "the window (5) is longer than the padded input (4)"),
    (["--mode", "median"], "--mode: expected max, avg (or mean), min, sum, lp or both, but got 'median'"),
    (["--mode", "lp", "--norm-type", "0"],
     "--norm-type: expected a non-zero number p (inf and -inf allowed), but got '0'"),
    (["--mode", "lp", "--norm-type=-0"],
     "--norm-type: expected a non-zero number p (inf and -inf allowed), but got '-0'"),
    (["--mode", "lp", "--norm-type", "two"],
     "--norm-type: expected a non-zero number p (inf and -inf allowed), but got 'two'"),
    (["--mode", "lp", "--norm-type", "nan"],
     "--norm-type: expected a non-zero number p (inf and -inf allowed), but got 'nan'"),
    (["--mode", "max", "--norm-type", "3"], "--norm-type: only Lp pooling has a norm type, but got --mode max; "
                                            "use --mode lp"),
    (["--norm-type", "3"], "--norm-type: only Lp pooling has a norm type, but got --mode both"),
])
def test_usage_errors(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "poolkit explain: error:" in err and needle in err
    assert err.startswith("usage:")


def test_argparse_errors_exit_2(capsys):
    code, _, err = run_cli(capsys, "--lang", "fr")
    assert code == 2 and "--lang" in err


def test_npy_errors(capsys, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 3, 4, 4)))
    code, _, err = run_cli(capsys, "--input", str(path))
    assert code == 2 and "--input: explain shows one 2-D plane" in err and "(2, 3, 4, 4)" in err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    code, _, err = run_cli(capsys, "--input", str(bad))
    assert code == 2 and "--input: cannot load" in err


def test_python_api_errors_name_parameters():
    with pytest.raises(ex.ExplainError, match=r"^kernel_size: expected a positive integer"):
        ex.explain_pooling(kernel_size=0)
    with pytest.raises(ValueError, match="grad: the gradient has shape"):
        ex.explain_pooling(grad=[[1, 2, 3]])
    with pytest.raises(ValueError, match="lang: expected en or zh"):
        ex.explain_pooling(lang="fr")


def test_parse_matrix_forms():
    expected = np.array([[1., 3], [4, 2]])
    for text in ("1 3; 4 2", "1,3;4,2", "1, 3; 4, 2;", "[[1, 3], [4, 2]]", " 1  3 ;\n 4  2 "):
        np.testing.assert_array_equal(ex.parse_matrix(text), expected)
    np.testing.assert_array_equal(ex.parse_matrix("1 2 3"), [[1., 2, 3]])
    with pytest.raises(ex.ExplainError, match="--grad: row 2 is empty"):
        ex.parse_matrix("1 2;;3 4", "--grad")


# --------------------------------------------------------------------------- #
# min, sum and Lp pooling: hand-worked values, a slow NumPy oracle, PyTorch
# --------------------------------------------------------------------------- #
def test_new_modes_hand_worked_on_the_chapters_grid(capsys):
    (mn,) = run_json(capsys, "--mode", "min", "--input", CHAPTER, "--grad", "1 2; 3 4")
    assert mn["output"] == [[1, 1], [1, 0]]
    # Window (0,1) holds 2 1 / 1 5: the first 1 in scan order, x[0,3], wins the tie.
    assert mn["argmin"] == [[[0, 0], [0, 3]], [[2, 1], [2, 3]]]
    assert mn["indices"] == [[0, 3], [9, 11]]
    assert mn["grad_input"] == [[1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 4], [0, 0, 0, 0]]
    (sm,) = run_json(capsys, "--mode", "sum", "--input", CHAPTER, "--grad", "1 2; 3 4")
    assert sm["output"] == [[10, 9], [7, 7]]
    assert sm["grad_input"] == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    (lp,) = run_json(capsys, "--mode", "lp", "--input", CHAPTER, "--grad", "1 2; 3 4")
    assert lp["norm_type"] == 2 and lp["divisor"] == [[4, 4], [4, 4]]
    np.testing.assert_allclose(lp["output"], np.sqrt([[1 + 9 + 16 + 4, 4 + 1 + 1 + 25], [9 + 1 + 1 + 4, 1 + 4 + 0 + 16]]),
                               rtol=1e-15)
    # p = 2: each tap gets δ·x/y; the window 1 3 / 4 2 has y = sqrt(30).
    np.testing.assert_allclose(lp["grad_input"][0][:2], [1 / np.sqrt(30), 3 / np.sqrt(30)], rtol=1e-15)
    (l1,) = run_json(capsys, "--mode", "lp", "--norm-type", "1", "--input", CHAPTER)
    assert l1["output"] == sm["output"] and l1["grad_input"] == sm["grad_input"]   # L1 of >= 0 is the sum


def test_new_modes_hand_worked_with_padding(capsys):
    argv = ["--input", GRID3, "--padding", "1", "--grad", "1 2; 3 4"]
    (mn,) = run_json(capsys, *argv, "--mode", "min")
    assert mn["output"] == [[1, 2], [4, 5]]                  # padding never wins: it acts as +inf
    assert mn["grad_input"] == [[1, 2, 0], [3, 4, 0], [0, 0, 0]]
    (sm,) = run_json(capsys, *argv, "--mode", "sum")
    assert sm["output"] == [[1, 5], [11, 28]]                # padding adds 0
    assert sm["grad_input"] == [[1, 2, 2], [3, 4, 4], [3, 4, 4]]
    (lp,) = run_json(capsys, *argv, "--mode", "lp", "--norm-type", "2")
    np.testing.assert_allclose(lp["output"], np.sqrt([[1, 4 + 9], [16 + 49, 25 + 36 + 64 + 81]]), rtol=1e-15)
    assert lp["divisor"] == [[4, 4], [4, 4]]                 # the padding is inside the padded extent


def test_lp_ceil_mode_scales_by_k_over_n(capsys):
    # 3x3 input, 2x2 windows, stride 2, ceil_mode: the last windows run past the input (no padding),
    # so they hold 2, 2 and 1 of their 4 taps. PyTorch: (avg_pool(x**p) * 4)**(1/p), avg dividing by 2, 2, 1.
    (lp,) = run_json(capsys, "--input", GRID3, "--mode", "lp", "--norm-type", "1", "--ceil-mode")
    assert lp["divisor"] == [[4, 2], [2, 1]]
    assert lp["output"] == [[12, 9 * 4 / 2], [15 * 4 / 2, 9 * 4 / 1]]
    assert lp["grad_input"] == [[1, 1, 4], [1, 1, 4], [6, 6, 16]]        # δ·K/n to every tap


def test_min_ties_nan_and_lp_edge_cases(capsys):
    (r,) = run_json(capsys, "--mode", "min", "--input", "1 1; 0 0")
    assert r["indices"] == [[2]]                             # ties: the first minimum in scan order
    (r,) = run_json(capsys, "--mode", "min", "--input", "nan 1; nan 0")
    assert r["output"] == [[None]] and r["indices"] == [[2]]    # NaN wins: the last NaN, as in max pooling
    # A window that sums to zero has y = 0 and a finite gradient (0), not 0/0.
    (r,) = run_json(capsys, "--mode", "lp", "--input", "0 0 1 2; 0 0 3 4", "--grad", "5 7")
    assert r["output"][0][0] == 0 and r["grad_input"][0][:2] == [0, 0] and r["grad_input"][1][:2] == [0, 0]
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type", "1", "--input", "-1 1; 2 -2")
    assert r["output"] == [[0]] and r["grad_input"] == [[0, 0], [0, 0]]     # p = 1 too, as PyTorch gives
    # Negative values under a fractional power are NaN, as in PyTorch; p = 3 keeps their sign.
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type", "2.5", "--input", "-1 2; 3 4")
    assert r["output"] == [[None]]
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type", "3", "--input", "-2 1; 1 1")
    assert r["output"] == [[None]]                           # the sum -8 + 3 < 0: its cube root is NaN
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type", "3", "--input", "-1 2; 0 0")
    assert r["output"][0][0] == pytest.approx(7 ** (1 / 3), rel=1e-15)


def test_lp_inf_is_max_pooling_of_abs(capsys):
    (lp,) = run_json(capsys, "--mode", "lp", "--norm-type", "inf", "--stride", "1")
    (mx,) = run_json(capsys, "--mode", "max", "--stride", "1")
    assert lp["norm_type"] == "inf"
    for key in ("output", "indices", "argmax", "grad_input"):     # x >= 0: max pooling itself
        assert lp[key] == mx[key], key
    # The L-infinity norm: the largest |x| wins, and its gradient takes the sign of x there.
    (lp,) = run_json(capsys, "--mode", "lp", "--norm-type", "inf", "--input", "1 -5; 2 3", "--grad", "2")
    assert lp["output"] == [[5]] and lp["argmax"] == [[[0, 1]]]
    assert lp["grad_input"] == [[0, -2], [0, 0]]
    code, out, _ = run_cli(capsys, "--mode", "lp", "--norm-type", "inf", "--input", "1 -5; 2 3", "--grad", "2")
    assert "max(|x|) = max(|1|, |-5|, |2|, |3|) = 5" in out and "δ[0,0] = 2 → -2 to x[0,1] (largest |x|: -5)" in out


def test_python_api_norm_type(capsys):
    assert ex.explain_pooling(CHAPTER, mode="lp", norm_type=3) == \
        run_json(capsys, "--input", CHAPTER, "--mode", "lp", "--norm-type", "3")
    assert ex.explain_pooling(mode="lp", norm_type=float("inf"))[0]["norm_type"] == "inf"
    assert ex.explain_pooling(mode="lp") == ex.explain_pooling(mode="lp", norm_type="2")
    for bad in (0, -0.0, "x", "", float("nan"), True, [2], None.__class__):
        with pytest.raises(ex.ExplainError, match=r"^norm_type: expected a non-zero number p \(inf and -inf "
                                                  r"allowed\), but got "):
            ex.explain_pooling(mode="lp", norm_type=bad)
    with pytest.raises(ex.ExplainError, match=r"^norm_type: only Lp pooling has a norm type, but got "
                                              r"mode='sum'; use mode='lp'\.$"):
        ex.explain_pooling(mode="sum", norm_type=2)


def test_negative_norm_type_is_accepted_as_the_library_accepts_it(capsys):
    """Issue 24: explain takes every norm_type poolkit.lp_pool takes (p != 0, -inf too), with its numbers."""
    from poolkit.functional.lp import check_norm_type

    for p in (-1, -0.5, -2.0, float("-inf"), "-3", "-inf"):
        value = float(p) if isinstance(p, str) else p
        assert check_norm_type(value) == float(value)                     # the library accepts it ...
        (r,) = ex.explain_pooling(GRID3, padding=1, mode="lp", norm_type=p)   # ... and so does explain
        x4 = np.array(r["input"])[None, None]
        y = poolkit.lp_pool2d(x4, value, 2, padding=1)
        gi = poolkit.lp_pool_backward(np.array(r["grad_output"])[None, None], x4, value, (2, 2), padding=(1, 1))
        _assert_json_close(r["output"], y[0, 0], rtol=1e-13, err_msg=str(p))
        _assert_json_close(r["grad_input"], gi[0, 0], rtol=1e-12, err_msg=str(p))
    for bad in (0, float("nan")):                                        # and both reject the rest
        with pytest.raises(ValueError):
            check_norm_type(bad)
        with pytest.raises(ex.ExplainError):
            ex.explain_pooling(mode="lp", norm_type=bad)
    # p = -1: the harmonic-style power mean, y = (sum 1/x)**-1; padding adds 0 (not 0**-1).
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type", "-1", "--input", GRID3, "--padding", "1",
                    "--grad", "1 2; 3 4")
    assert r["norm_type"] == -1
    assert r["output"][0][0] == pytest.approx(1.0)                       # the window holds 1 and 3 pads
    assert r["output"][0][1] == pytest.approx(1 / (1 / 2 + 1 / 3))
    # p = -inf: min pooling of |x|, the gradient to the smallest |x| times its sign.
    (r,) = run_json(capsys, "--mode", "lp", "--norm-type=-inf", "--input", "1 -5; -0.5 3", "--grad", "2")
    assert r["norm_type"] == "-inf" and r["output"] == [[0.5]] and r["argmin"] == [[[1, 0]]]
    assert r["grad_input"] == [[0, 0], [-2, 0]]
    code, out, err = run_cli(capsys, "--mode", "lp", "--norm-type=-inf", "--input", "1 -5; -0.5 3", "--grad", "2")
    assert code == 0, err
    assert "L-∞ pooling" in out and "min(|x|) = min(|1|, |-5|, |-0.5|, |3|) = 0.5" in out
    assert "δ[0,0] = 2 → -2 to x[1,0] (smallest |x|: -0.5)" in out
    code, out, err = run_cli(capsys, "--mode", "lp", "--norm-type", "-2", "--input", GRID3, "--padding", "1")
    flat = re.sub(r"\s+", " ", out)
    assert code == 0 and "L-2 pooling" in out and "(0 + 0 + 0 + 1^(-2))^(1/-2) = 1" in flat
    assert "the smaller the tap, the larger its share" in flat
    code, out, err = run_cli(capsys, "--mode", "lp", "--norm-type", "-1", "--input", "-1 1; 1 -1")
    flat = re.sub(r"\s+", " ", out)
    assert code == 0 and "δ[0,0] = 1 → nowhere (the powers sum to 0, so y = ∞: the gradient is taken as 0)" in flat
    assert "Nor does a window whose powers sum to 0 (y = ∞)." in flat
    code, out, err = run_cli(capsys, "--mode", "lp", "--norm-type=-inf", "--lang", "zh", "--stride", "1")
    assert code == 0 and "L-∞ 池化" in out and "|x| 最小" in out


def _pair2(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _oracle(x, mode, kernel, stride, padding, dilation, ceil, p=2.0, grad=None, backward=True):
    """min / sum / Lp pooling of one plane from the definitions, window by window (slow, in float64).

    Returns (y, flat indices (min) or None, grad_input).  Windows are laid out from
    the formula (tap a of window i at i*S - P + a*D), not from explain's own lists.
    Lp's gradient is central differences of sum(grad * y) (so pick smooth inputs).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair2, (kernel, stride, padding, dilation))
    H, W = x.shape
    oh, ow = poolkit.output_shape(x.shape, kernel, stride, padding, dilation, ceil)
    g = np.arange(1, oh * ow + 1, dtype=float).reshape(oh, ow) if grad is None else grad
    y = np.zeros((oh, ow))
    idx = np.full((oh, ow), -1)
    gi = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            taps = [(i * sh - ph + a * dh, j * sw - pw + b * dw) for a in range(kh) for b in range(kw)]
            inside = [(r, c) for r, c in taps if 0 <= r < H and 0 <= c < W]
            vals = np.array([x[r, c] for r, c in inside])
            if mode == "min":
                nans = np.flatnonzero(np.isnan(vals))
                k = nans[-1] if nans.size else int(np.argmin(vals))      # argmin: the first minimum
                y[i, j] = vals[k]
                idx[i, j] = inside[k][0] * W + inside[k][1]
                gi[inside[k]] += g[i, j]
            elif mode == "sum":
                y[i, j] = np.sum(vals)
                for t in inside:
                    gi[t] += g[i, j]
            else:
                n = sum(-ph <= r < H + ph and -pw <= c < W + pw for r, c in taps)   # avg's padded count
                with np.errstate(invalid="ignore"):
                    y[i, j] = np.power(np.sum(np.power(vals, p)) * len(taps) / n, 1 / p)
    if mode == "lp" and backward:
        h = 1e-6
        for t in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[t] = h
            f = [np.sum(g * _oracle(v, mode, kernel, stride, padding, dilation, ceil, p, backward=False)[0])
                 for v in (x + e, x - e)]
            gi[t] = (f[0] - f[1]) / (2 * h)
    return y, (idx if mode == "min" else None), gi


NEW_CONFIGS = [
    dict(shape=(4, 4), kernel=2, stride=2, padding=0, dilation=1, ceil=False),
    dict(shape=(5, 6), kernel=2, stride=2, padding=1, dilation=1, ceil=False),
    dict(shape=(5, 5), kernel=3, stride=2, padding=1, dilation=1, ceil=True),
    dict(shape=(7, 7), kernel=3, stride=3, padding=0, dilation=1, ceil=True),
    dict(shape=(6, 7), kernel=2, stride=1, padding=1, dilation=2, ceil=False),
    dict(shape=(7, 6), kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), ceil=True),
]


def _argv(cfg, x):
    text = "; ".join(" ".join(repr(float(v)) for v in row) for row in x)
    argv = ["--input", text, "--kernel", _arg(cfg["kernel"]), "--stride", _arg(cfg["stride"]),
            "--padding", _arg(cfg["padding"]), "--dilation", _arg(cfg["dilation"])]
    return argv + (["--ceil-mode"] if cfg["ceil"] else [])


def _geometry(cfg):
    return cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil"]


def _cfg_id(c):
    return "-".join(f"{k}{_arg(v)}" for k, v in c.items())


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=_cfg_id)
def test_min_and_sum_json_match_numpy(capsys, cfg):
    rng = np.random.default_rng(11)
    x = rng.permutation(int(np.prod(cfg["shape"]))).reshape(cfg["shape"]) - 12.0    # no ties, signed
    x[0, 1] = x[0, 2] = -40.0                  # one tie, for the first-minimum rule
    for mode in ("min", "sum"):
        (r,) = run_json(capsys, *_argv(cfg, x), "--mode", mode)
        y, idx, gi = _oracle(x, mode, *_geometry(cfg))
        assert r["output"] == y.tolist() and r["grad_input"] == gi.tolist(), mode
        if mode == "min":
            assert r["indices"] == idx.tolist()
            assert r["argmin"] == [[list(divmod(int(v), x.shape[1])) for v in row] for row in idx]


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=_cfg_id)
@pytest.mark.parametrize("p", [1.0, 2.0, 2.5, 3.0])
def test_lp_json_matches_numpy(capsys, cfg, p):
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 2.0, cfg["shape"])                  # smooth: no zero windows, no negative powers
    (r,) = run_json(capsys, *_argv(cfg, x), "--mode", "lp", "--norm-type", repr(p))
    y, _, gi = _oracle(x, "lp", *_geometry(cfg), p=p)
    np.testing.assert_allclose(r["output"], y, rtol=1e-13)
    np.testing.assert_allclose(r["grad_input"], gi, rtol=1e-6, atol=1e-8)
    # Signed input: negative powers and sums give NaN exactly where the oracle's do.
    xs = x * np.where(rng.random(cfg["shape"]) < 0.3, -1, 1)
    (r,) = run_json(capsys, *_argv(cfg, xs), "--mode", "lp", "--norm-type", repr(p))
    np.testing.assert_allclose(np.array(r["output"], dtype=float),
                               _oracle(xs, "lp", *_geometry(cfg), p=p, backward=False)[0], rtol=1e-13)


@pytest.mark.parametrize("cfg", [c for c in NEW_CONFIGS if c["padding"] == 0 and c["dilation"] == 1], ids=_cfg_id)
def test_new_modes_match_torch(capsys, cfg):
    """PyTorch as an oracle independent of poolkit: LPPool as it is, min as -max(-x), sum as avg * K."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    x = rng.permutation(int(np.prod(cfg["shape"]))).reshape(cfg["shape"]) / 7.0 + 0.25      # no ties, > 0
    k, s = cfg["kernel"], cfg["stride"]
    g = None
    for mode in ("min", "sum", "lp"):
        extra = ["--norm-type", "3"] if mode == "lp" else []
        (r,) = run_json(capsys, *_argv(cfg, x), "--mode", mode, *extra)
        t = torch.tensor(x[None, None], requires_grad=True)
        if mode == "min":
            neg, idx = F.max_pool2d(-t, k, s, 0, 1, cfg["ceil"], return_indices=True)
            y = -neg
            assert r["indices"] == idx[0, 0].tolist()
        elif mode == "sum":
            y = F.avg_pool2d(t, k, s, 0, cfg["ceil"], divisor_override=1)
        else:
            y = F.lp_pool2d(t, 3.0, k, s, cfg["ceil"])
        g = torch.arange(1, y.numel() + 1, dtype=t.dtype).reshape(y.shape)
        y.backward(g)
        np.testing.assert_allclose(r["output"], y.detach().numpy()[0, 0], rtol=1e-12, err_msg=mode)
        np.testing.assert_allclose(r["grad_input"], t.grad.numpy()[0, 0], rtol=1e-10, atol=1e-12, err_msg=mode)


@pytest.mark.parametrize("lang, needles", [
    ("en", {"min": ["min pooling", "min(1, 3, 4, 2) = 1", "min 0", "δ[0,1] = 2 → x[0,3] (the min, 1)",
                    "Min pooling: δ goes back to where its window's minimum was",
                    "Overlapping windows repeat the same minima"],
            "sum": ["sum pooling", "sum = 1 + 3 + 4 + 2 = 10", "sum 9", "δ[1,1] = 4 → 4 to each of x[2:4, 2:4]",
                    "Sum pooling: ∂y/∂x = 1", "Σ grad x = 40   (Σ δ = 10)"],
            "lp": ["L3 pooling", "(1^3 + 3^3 + 4^3 + 2^3)^(1/3) = 4.6416", "L3 4.6416",
                   "δ[0,0] = 1, y = 4.6416 → 1·(x/4.6416)^2 to each of x[0:2, 0:2]",
                   "L3 pooling: ∂y/∂x = (x/y)^2", "A window with y = 0 sends nothing back"]}),
    ("zh", {"min": ["最小值池化", "min(1, 3, 4, 2) = 1", "最小值 0", "δ[0,1] = 2 → x[0,3]（最小值 1 所在位置）",
                    "残差回传到当初最小值所在的位置", "同一个最小值被重复输出"],
            "sum": ["求和池化", "和 = 1 + 3 + 4 + 2 = 10", "和 9", "δ[1,1] = 4 → x[2:4, 2:4] 的每个位置各得 4",
                    "窗口的每个位置都得到完整的残差", "Σ x 的梯度 = 40"],
            "lp": ["L3 池化", "(1^3 + 3^3 + 4^3 + 2^3)^(1/3) = 4.6416", "L3 4.6416",
                   "δ[0,0] = 1，y = 4.6416 → x[0:2, 0:2] 的每个位置各得 1·(x/4.6416)^2",
                   "值越大分得越多", "y = 0 的窗口不回传残差"]}),
])
def test_new_modes_text(capsys, lang, needles):
    for mode, wanted in needles.items():
        extra = ["--norm-type", "3"] if mode == "lp" else []
        code, out, err = run_cli(capsys, "--mode", mode, "--lang", lang, *extra)
        assert code == 0, err
        _assert_fits(out)
        flat = re.sub(r"\s+", " ", out)
        for needle in wanted:
            assert needle in out or needle in flat, (mode, needle)
        other = {"en": ["最小值池化", "求和池化", "池化"], "zh": ["min pooling", "sum pooling", "Backward"]}[lang]
        assert not any(w in out for w in other), mode


@pytest.mark.parametrize("argv", [
    ["--mode", "sum", "--input", GRID3, "--padding", "1", "--lang", "zh"],
    ["--mode", "lp", "--norm-type", "2.5", "--kernel", "3", "--stride", "2", "--ceil-mode"],
    ["--mode", "min", "--input", "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0", "--dilation", "2",
     "--stride", "1"],
    ["--mode", "lp", "--input", "0 0 1; 0 0 2; -1 1 1", "--padding", "1", "--norm-type", "1.5"],
])
def test_new_modes_text_configurations(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    _assert_fits(out)
    assert "Σ" in out


def test_new_modes_pad_note_and_scaling_text(capsys):
    code, out, _ = run_cli(capsys, "--mode", "min", "--input", GRID3, "--padding", "1")
    assert "(. = outside the input, as padding: it never wins a min)" in out
    code, out, _ = run_cli(capsys, "--mode", "lp", "--input", GRID3, "--ceil-mode", "--norm-type", "1")
    flat = re.sub(r"\s+", " ", out)
    assert "δ[1,1] = 4, y = 36 → 4·4/1·(x/36)^0 to x[2,2]" in flat
    assert "A window that runs past the padding also scales by K/n" in flat
    code, out, _ = run_cli(capsys, "--mode", "lp", "--input", "0 0 1 2; 0 0 3 4")
    assert "δ[0,0] = 1 → nowhere (y = 0: the gradient is taken as 0)" in out
    code, out, _ = run_cli(capsys, "--mode", "lp", "--norm-type", "0.5", "--input", "-1 2; 3 4")
    assert "δ[0,0] = 1 → nan (y is nan" in out


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #
def test_png_figures(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "new" / "figs"
    code, out, err = run_cli(capsys, "--png", str(out_dir), "--stride", "1")
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["avg-backward.png", "avg-forward.png", "max-backward.png", "max-forward.png"]
    for p in out_dir.iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "Figures written:" in out and str(out_dir / "max-forward.png") in out


def test_png_with_json_keeps_stdout_json(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(figures, "cjk_font", lambda: None)          # as on a machine without Chinese fonts
    code, out, err = run_cli(capsys, "--png", str(tmp_path), "--mode", "avg", "--padding", "1",
                             "--input", GRID3, "--format", "json", "--lang", "zh")
    assert code == 0
    assert json.loads(out)["mode"] == "avg"
    assert "avg-backward.png" in err and "没有找到含中文字符的字体" in err


@pytest.mark.parametrize("mode, extra", [("min", []), ("sum", []), ("lp", ["--norm-type", "3"])])
def test_png_figures_new_modes(capsys, tmp_path, mode, extra):
    pytest.importorskip("matplotlib")
    code, out, err = run_cli(capsys, "--png", str(tmp_path), "--mode", mode, *extra, "--input", GRID3, "--padding", "1")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{mode}-backward.png", f"{mode}-forward.png"]
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_png_without_matplotlib(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    code, out, err = run_cli(capsys, "--png", str(tmp_path / "figs"))
    assert code == 2 and out == ""
    assert "--png needs matplotlib: pip install 'poolkit[plot]'" in err
    assert not (tmp_path / "figs").exists()


def test_readme_figures_exist():
    for name in ("explain-max-forward.png", "explain-max-backward.png", "explain-avg-backward.png"):
        assert (ROOT / "docs" / "figures" / name).read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- #
# output_shape's plain-words explanations
# --------------------------------------------------------------------------- #
def test_output_shape_explains_ceil_added_window():
    shape, text = poolkit.output_shape(5, 2, ceil_mode=True, explain=True)
    assert shape == (3,)
    assert "L: out = ceil((5 - 2) / 2) + 1 = 3." in text
    assert "ceil_mode added a partial window starting at 4" in text


def test_output_shape_explains_ceil_dropped_window():
    shape, text = poolkit.output_shape(5, 2, padding=1, ceil_mode=True, explain=True)
    assert shape == (3,)
    assert "ceil_mode's last window would start at 5, past the input and its left padding, " \
           "so it is dropped: out = 3." in text


def test_output_shape_explains_lost_positions():
    shape, text = poolkit.output_shape((7, 6), 2, stride=3, explain=True)
    assert shape == (2, 2)
    assert "H: stride 3 is longer than the window span 2: 1 position(s) between neighbouring windows" in text
    assert "input positions 5..6 are never read; ceil_mode=True would add a partial window starting at 6." in text
    _, text = poolkit.output_shape(3, 2, padding=1, explain=True)
    assert "they are all padding: no input is lost" in text


def test_output_shape_rejects_with_reason():
    with pytest.raises(ValueError, match="Output size is too small: along H the window spans 5"):
        poolkit.output_shape((4, 4), 5, explain=True)
    assert "no window fits, so this configuration is rejected" in explain_axis("H", 4, 5, 5, 1, 0, 0, False)
    with pytest.raises(ValueError, match="at most half of `kernel_size`"):
        poolkit.output_shape((4, 4), 2, padding=2, explain=True)


def test_explain_axis_zh_and_adaptive():
    assert explain_axis("W", 5, 2, 2, 1, 0, 0, True, lang="zh").splitlines() == [
        "W：输入 5，填充 0+0，共 5 个位置；窗口跨度 2。",
        "W：out = ceil((5 - 2) / 2) + 1 = 3。",
        "W：ceil_mode 增加了一个从 4 开始的不完整窗口（它超出了末端，缺少的位置按填充处理）。",
    ]
    assert "放不下任何一个窗口" in explain_axis("W", 2, 3, 1, 1, 0, 0, False, lang="zh")
    assert explain_adaptive("L", 5, 3) == \
        "L: adaptive 5 -> 3: window o spans [floor(o*5/3), ceil((o+1)*5/3)): [0, 2), [1, 4), [3, 5)."
    assert "自适应" in explain_adaptive("L", 5, 3, lang="zh")
    with pytest.raises(ValueError, match="lang"):
        explain_axis("W", 5, 2, 2, 1, 0, 0, False, lang="fr")


# --------------------------------------------------------------------------- #
# the console script and the tutorial
# --------------------------------------------------------------------------- #
def test_console_script():
    script = Path(sys.executable).parent / "poolkit"
    if not script.exists():
        pytest.skip("the poolkit console script is not installed next to this Python")
    proc = subprocess.run([str(script), "explain", "--input", CHAPTER, "--grad", "1 2; 3 4", "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m, a = json.loads(proc.stdout)
    assert m["grad_input"][1] == [1, 0, 0, 2] and a["output"] == [[2.5, 2.25], [1.75, 1.75]]
    bad = subprocess.run([str(script), "explain", "--input", "1 2; 3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--input" in bad.stderr


def test_tutorial_doctests():
    text = TUTORIAL.read_text(encoding="utf-8")
    # Every python block is a doctest, so that all of them run.
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks and all(b.lstrip().startswith(">>>") for b in blocks)
    result = doctest.testfile(str(TUTORIAL), module_relative=False, encoding="utf-8",
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 30 and result.failed == 0


def test_tutorial_explain_commands_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # where `--html pooling.html` writes its page
    text = TUTORIAL.read_text(encoding="utf-8")
    commands = re.findall(r"^\$ poolkit explain(.*)$", text, re.M)
    assert len(commands) >= 3
    for rest in commands:
        code, out, err = run_cli(capsys, *shlex.split(rest))
        assert code == 0, (rest, err)
        assert out


def test_docstring_examples():
    result = doctest.testmod(ex, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0
    for fn in (explain_axis, explain_adaptive):
        finder = doctest.DocTestFinder()
        runner = doctest.DocTestRunner()
        for test in finder.find(fn, globs={"explain_axis": explain_axis, "explain_adaptive": explain_adaptive}):
            runner.run(test)
        assert runner.failures == 0 and runner.tries >= 1


# --------------------------------------------------------------------------- #
# the package's pieces: one home per rule
# --------------------------------------------------------------------------- #
def test_every_module_docstring_example_runs():
    import importlib
    import pkgutil

    modules = [importlib.import_module(f"poolkit.explain.{m.name}") for m in pkgutil.iter_modules(ex.__path__)]
    assert {m.__name__.rsplit(".", 1)[1] for m in modules} >= {"axis", "cli", "compute", "figures", "jsonout",
                                                               "html", "parse", "text", "view", "words"}
    for module in modules:
        assert module.__doc__ and "job" in module.__doc__, module.__name__     # each says what it is for
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


def test_word_tables_speak_every_language_alike():
    from poolkit.explain import words

    fields = re.compile(r"{(\w*)}")
    for table in (words.AXIS, words.TEXT, words.FIGURE, words.PAGE):
        assert tuple(table) == words.LANGS
        en = table["en"]
        for lang in words.LANGS:
            assert table[lang].keys() == en.keys(), lang
            for key, phrase in table[lang].items():
                # Same placeholders in every language: a phrase never drops a number.
                assert set(fields.findall(phrase)) == set(fields.findall(en[key])), (lang, key)
    with pytest.raises(ex.ExplainError, match=r"^--lang: expected en or zh, but got 'fr'\.$"):
        words.words_for(words.TEXT, "fr", "--lang")


AXIS_GRID = [(n, k, s, d, pb, pa, ceil) for n in range(1, 8) for k in range(1, 5) for s in range(1, 5)
             for d in (1, 2) for pb in range(3) for pa in range(4) for ceil in (False, True)]


def test_explain_axis_agrees_with_output_size():
    """The account's last number is output_size's; "rejected" exactly when poolkit rejects."""
    from poolkit.core.geometry import output_size

    last_number = re.compile(r"= (-?\d+)\.$")
    for n, k, s, d, pb, pa, ceil in AXIS_GRID:
        out = output_size(n, k, s, d, pb, pa, ceil)
        lines = explain_axis("L", n, k, s, d, pb, pa, ceil).splitlines()
        case = (n, k, s, d, pb, pa, ceil)
        if out < 1:
            assert "rejected" in lines[-1], case
            with pytest.raises(ValueError, match="Output size is too small"):
                poolkit.output_shape(n, k, s, ((pb, pa),), d, ceil)
            continue
        assert not any("rejected" in line for line in lines), case
        stated = [int(m.group(1)) for line in lines if (m := last_number.search(line))]
        assert stated[-1] == out == poolkit.output_shape(n, k, s, ((pb, pa),), d, ceil)[0], case


def test_ceil_mode_window_longer_than_input_is_explained_not_rejected():
    # ceil((1 - 2)/2) + 1 = 1: poolkit (like PyTorch) keeps one partial window.
    assert poolkit.output_shape(1, 2, ceil_mode=True) == (1,)
    assert explain_axis("L", 1, 2, 2, 1, 0, 0, True).splitlines()[1:] == [
        "L: out = ceil((1 - 2) / 2) + 1 = 1.",
        "L: ceil_mode added a partial window starting at 0 (it runs past the end; its missing taps count as padding).",
    ]


def test_count_axis_reads_the_kernels_windows():
    from poolkit.core.geometry import regular_axis
    from poolkit.explain.axis import count_axis

    c = count_axis(5, 2, 2, 1, 1, 1, True)
    assert c.windows is regular_axis(5, 2, 2, 1, 1, 1, True)        # the same (cached) windows
    assert (c.floor_out, c.ceil_out, c.out, c.formula_out, c.dropped, c.next_start) == (3, 3, 3, 4, True, 5)
    f = count_axis(7, 2, 3, 1, 0, 0, False)
    assert (f.out, f.floor_end, f.unread_tail, f.exact) == (2, 5, 2, False)
    assert count_axis(4, 2, 2, 1, 0, 0, False).exact
    r = count_axis(3, 5, 1, 1, 0, 0, False)
    assert r.rejected and r.windows is None and r.floor_windows is None


def test_formula_lines_show_ceil_mode_drop():
    from poolkit.explain.view import formula_lines

    (r,) = ex.explain_pooling(np.arange(25.0).reshape(5, 5), 2, padding=1, ceil_mode=True, mode="max")
    assert r["output_shape"] == [3, 3]
    assert formula_lines(r)[0] == "H2 = ceil((H1 + 2P - F)/S) + 1 = ceil((5 + 2 - 2)/2) + 1 = 4 → 3"


def test_parse_pair_accepts_what_the_pooling_functions_accept():
    from poolkit.explain.parse import parse_pair

    for value, expected in [("2", (2, 2)), ("2,1", (2, 1)), ("2 1", (2, 1)), ("2x1", (2, 1)), ("(2, 1)", (2, 1)),
                            (3, (3, 3)), (np.int64(3), (3, 3)), ((2, np.int32(1)), (2, 1)), ([4], (4, 4))]:
        assert parse_pair(value, "kernel_size", 1) == expected, value
    for bad in (True, 2.0, (1, 2, 3), "", "2.5", (2, "1"), None):
        with pytest.raises(ex.ExplainError, match=r"^--kernel: expected a positive integer or two of them"):
            parse_pair(bad, "--kernel", 1)
    assert parse_pair("0", "--padding", 0) == (0, 0)
    with pytest.raises(ex.ExplainError, match=r"^--padding: expected a non-negative integer"):
        parse_pair("0,-1", "--padding", 0)


def test_python_api_ceil_mode_and_mode_errors():
    with pytest.raises(ex.ExplainError, match=r"^ceil_mode: expected True or False, but got 1\.$"):
        ex.explain_pooling(ceil_mode=1)
    with pytest.raises(ex.ExplainError, match=r"^mode: expected max, avg \(or mean\), min, sum, lp or both, "
                                              r"but got \['max'\]\.$"):
        ex.explain_pooling(mode=["max"])


def test_divisor_is_the_backends_divisor():
    # count_include_pad=False with padding: the corner windows hold fewer inputs.
    (r,) = ex.explain_pooling(GRID3, 2, padding=1, mode="avg", count_include_pad=False)
    x = np.array(r["input"])
    for i, rows in enumerate(r["window_rows"]):
        for j, cols in enumerate(r["window_cols"]):
            inside = [x[a, b] for a in rows for b in cols if 0 <= a < 3 and 0 <= b < 3]
            assert r["divisor"][i][j] == len(inside)


def test_save_figures_rejects_unknown_language(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ex.ExplainError, match="lang: expected en or zh, but got 'fr'"):
        ex.save_figures(ex.explain_pooling(mode="max"), tmp_path, lang="fr")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- #
# explain's own numbers against the library's min / sum / Lp pooling and dilated
# average pooling (src/poolkit/reductions.py, issue 13): the same windows, the same rules
# --------------------------------------------------------------------------- #
def _assert_json_close(values, expected, **tol):
    """JSON's numbers against an array: null (JSON has no NaN or infinity) where it is not finite."""
    got = np.array(values, dtype=float)                 # null -> nan
    expected = np.asarray(expected, dtype=float)
    np.testing.assert_array_equal(np.isnan(got), ~np.isfinite(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(got)], **tol)


def _library_input(cfg, mode):
    rng = np.random.default_rng(17)
    if mode == "lp":
        return rng.uniform(0.5, 2.0, cfg["shape"])
    x = rng.permutation(int(np.prod(cfg["shape"]))).reshape(cfg["shape"]) - 12.0
    x[0, 1] = x[0, 2] = -40.0                 # a tie: both pick the first minimum
    return x


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=_cfg_id)
def test_min_and_sum_match_library(capsys, cfg):
    k, s, p, d, ceil = _geometry(cfg)
    k2, s2, p2, d2 = map(_pair2, (k, s, p, d))          # N-d backward: the pair says the rank
    for mode in ("min", "sum"):
        x = _library_input(cfg, mode)
        (r,) = run_json(capsys, *_argv(cfg, x), "--mode", mode)
        x4 = x[None, None]
        g4 = np.array(r["grad_output"])[None, None]
        if mode == "min":
            y, idx = poolkit.min_pool2d(x4, k, s, p, d, ceil, return_indices=True)
            assert r["indices"] == idx[0, 0].tolist()
            gi = poolkit.min_pool_backward(g4, idx, x4.shape)
        else:
            y = poolkit.sum_pool2d(x4, k, s, p, d, ceil)
            gi = poolkit.sum_pool_backward(g4, x4.shape, k2, s2, p2, d2, ceil)
        np.testing.assert_array_equal(np.array(r["output"]), y[0, 0], err_msg=mode)
        np.testing.assert_array_equal(np.array(r["grad_input"]), gi[0, 0], err_msg=mode)


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=_cfg_id)
@pytest.mark.parametrize("p", [1.0, 2.5, 3.0, float("inf"), -1.0, -2.0, -0.5, float("-inf")])
@pytest.mark.parametrize("signed", [False, True], ids=["positive", "signed"])
def test_lp_matches_library(capsys, cfg, p, signed):
    k, s, pad, d, ceil = _geometry(cfg)
    x = _library_input(cfg, "lp")
    if signed:                     # negative sums (NaN under most powers), and |x| for p = inf
        x = x * np.where(np.random.default_rng(2).random(x.shape) < 0.3, -1, 1)
    (r,) = run_json(capsys, *_argv(cfg, x), "--mode", "lp", "--norm-type=" + repr(p))    # "=": -inf is no option
    x4 = x[None, None]
    g4 = np.array(r["grad_output"])[None, None]
    y = poolkit.lp_pool2d(x4, p, k, s, ceil, padding=pad, dilation=d)
    gi = poolkit.lp_pool_backward(g4, x4, p, _pair2(k), _pair2(s), ceil, padding=_pair2(pad), dilation=_pair2(d))
    _assert_json_close(r["output"], y[0, 0], rtol=1e-12)
    _assert_json_close(r["grad_input"], gi[0, 0], rtol=1e-10, atol=1e-12)


def test_lp_zero_window_matches_library(capsys):
    x = np.array([[0., 0, 1, 2], [0, 0, 3, 4], [-1, 1, 2, 2], [1, -1, 0, 0]])
    for p in (1.0, 2.0, 3.0, 0.5, -1.0, -2.0):             # p < 0: a 0 tap makes the sum inf and y = 0
        (r,) = run_json(capsys, "--input", "; ".join(" ".join(map(str, row)) for row in x),
                        "--mode", "lp", "--norm-type=" + repr(p))
        g4 = np.array(r["grad_output"])[None, None]
        y = poolkit.lp_pool2d(x[None, None], p, 2)
        gi = poolkit.lp_pool_backward(g4, x[None, None], p, (2, 2))
        _assert_json_close(r["output"], y[0, 0], rtol=1e-13, err_msg=str(p))
        _assert_json_close(r["grad_input"], gi[0, 0], rtol=1e-12, err_msg=str(p))


@pytest.mark.parametrize("cfg", [c for c in NEW_CONFIGS if c["dilation"] != 1], ids=_cfg_id)
@pytest.mark.parametrize("include_pad", [True, False])
def test_dilated_avg_matches_numpy(capsys, cfg, include_pad):
    """Average pooling takes dilation now; count_include_pad counts the dilated taps in the padding."""
    x = _library_input(cfg, "avg")
    argv = [*_argv(cfg, x), "--mode", "avg"] + ([] if include_pad else ["--exclude-pad"])
    (r,) = run_json(capsys, *argv)
    total, _, g_sum = _oracle(x, "sum", *_geometry(cfg))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair2, (cfg["kernel"], cfg["stride"], cfg["padding"],
                                                          cfg["dilation"]))
    H, W = x.shape
    n = np.zeros_like(total)
    for i, j in np.ndindex(n.shape):
        taps = [(i * sh - ph + a * dh, j * sw - pw + b * dw) for a in range(kh) for b in range(kw)]
        lo_r, hi_r, lo_c, hi_c = (-ph, H + ph, -pw, W + pw) if include_pad else (0, H, 0, W)
        n[i, j] = sum(lo_r <= a < hi_r and lo_c <= b < hi_c for a, b in taps)
    assert r["divisor"] == n.astype(int).tolist()
    np.testing.assert_allclose(r["output"], total / n, rtol=1e-13)


def test_dilation_keeps_both_default_modes(capsys):
    res = run_json(capsys, "--input", "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0",
                   "--dilation", "2", "--stride", "1")
    assert [r["mode"] for r in res] == ["max", "avg"]
    assert res[1]["output"][0][0] == pytest.approx((1 + 3 + 9 + 9) / 4)
