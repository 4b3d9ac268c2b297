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
    code, out, _ = run_cli(capsys, "--input", x, "--dilation", "2", "--stride", "1", "--format", "json")
    assert code == 0
    r = json.loads(out)                      # dilation alone switches to max only: one object
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
    (["--dilation", "2", "--mode", "avg"], "--dilation: average pooling has no dilation"),
    (["--mode", "median"], "--mode: expected max, avg (or mean) or both, but got 'median'"),
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


def test_tutorial_explain_commands_run(capsys):
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
                                                               "parse", "text", "view", "words"}
    for module in modules:
        assert module.__doc__ and "job" in module.__doc__, module.__name__     # each says what it is for
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


def test_word_tables_speak_every_language_alike():
    from poolkit.explain import words

    fields = re.compile(r"{(\w*)}")
    for table in (words.AXIS, words.TEXT, words.FIGURE):
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
    from poolkit._geometry import output_size

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
    from poolkit._geometry import regular_axis
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
    with pytest.raises(ex.ExplainError, match=r"^mode: expected max, avg \(or mean\) or both, but got \['max'\]\.$"):
        ex.explain_pooling(mode=["max"])


@pytest.mark.parametrize("dilation, modes", [("1", ["max", "avg"]), ("1,1", ["max", "avg"]), ("1x1", ["max", "avg"]),
                                             ("2", ["max"]), ("2,1", ["max"])])
def test_dilation_picks_the_default_mode(capsys, dilation, modes):
    res = run_json(capsys, "--input", "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0",
                   "--dilation", dilation, "--stride", "1")
    assert [r["mode"] for r in res] == modes


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
