"""examples/cnn_digits.py: a CNN that learns with poolkit's pooling, checked against PyTorch.

The example is imported from its path (it is not part of the package); the
missing-dependency paths run it in a subprocess with the module blocked.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import poolkit

pytest.importorskip("sklearn", reason="the example needs scikit-learn: pip install -e '.[test]'")
pytest.importorskip("tqdm")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "cnn_digits.py"
LATER_POOLINGS = {"lp": "LPPool2d", "fractional": "FractionalMaxPool2d"}


@pytest.fixture(scope="module")
def cnn():
    spec = importlib.util.spec_from_file_location("cnn_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                 # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def digits(cnn):
    return cnn.load_data()


def test_short_run_learns(cnn):
    """Two epochs on 1,000 of the 1,347 training images: at least 90 % on the whole test set."""
    data = cnn.load_data(train_size=1000)
    hist = cnn.train("max", data, epochs=2, batch_size=16, progress=False, log=None)
    assert len(data.x_test) == 450
    assert hist.final_accuracy >= 0.90, hist.test_accuracy
    assert hist.loss[1] < hist.loss[0]
    # max pooling kept one byte per output of both pooling layers for a batch of 16
    assert hist.saved_nbytes == 16 * (16 * 4 * 4 + 32 * 2 * 2)


def test_pinned_threads_change_nothing_but_speed(cnn):
    """``--pin-threads`` (BLAS and poolkit on one thread each) trains the same network, loss for loss."""
    data = cnn.load_data(train_size=200)
    free = cnn.train("max", data, epochs=1, batch_size=64, progress=False, log=None)
    pinned = cnn.train("max", data, epochs=1, batch_size=64, progress=False, log=None, pin=True)
    assert pinned.loss == free.loss and pinned.test_accuracy == free.test_accuracy
    assert cnn.build_parser().parse_args(["--pin-threads"]).pin_threads


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_check_torch_agrees(cnn, pool, capsys):
    assert cnn.main(["--check-torch", "--pool", pool, "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert f"{pool}: PyTorch agrees for 5 steps" in out
    assert "gradient at pool1 input" in out and "gradient at pool2 input" in out and "updated fc.W" in out


def test_check_torch_reports_first_disagreement(cnn, digits, monkeypatch, capsys):
    """A wrong gradient (here: ReLU's backward off by 0.1 %) is found where it first shows."""
    right = cnn.ReLU.backward
    monkeypatch.setattr(cnn.ReLU, "backward", lambda self, grad: right(self, grad) * 1.001)
    res = cnn.check_torch("max", digits, steps=1, log=None)
    assert not res.ok
    step, name, diff = res.first_failure
    # backward runs fc, pool2, ReLU2, conv2, pool1: the loss and pool2's input gradient are still right
    assert (step, name) == (1, "gradient at pool1 input")
    assert diff > 1e-10
    assert res.max_diff["loss"] <= 1e-10 and res.max_diff["gradient at pool2 input"] <= 1e-10

    assert cnn.main(["--check-torch", "--steps", "3"]) == 1
    assert "DISAGREES with PyTorch: first at step 1, gradient at pool1 input" in capsys.readouterr().out


def test_same_initial_weights_for_every_pooling(cnn):
    a, b = cnn.Network("max", seed=3), cnn.Network("avg", seed=3)
    for (name, pa), (_, pb) in zip(a.named_params(), b.named_params()):
        np.testing.assert_array_equal(pa, pb, err_msg=name)
    # without pooling the linear layer sees all 32 x 8 x 8 activations
    assert cnn.Network("none").fc.W.shape == (10, 32 * 8 * 8)


def test_conv_matches_a_direct_loop(cnn):
    """im2col convolution and its backward against plain loops over the taps."""
    rng = np.random.default_rng(0)
    conv = cnn.Conv2d(2, 3, 3, 1, rng)
    conv.b = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 5, 4))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 3, 5, 4))
    for f in range(3):
        for i in range(5):
            for j in range(4):
                expected[:, f, i, j] = (xp[:, :, i:i + 3, j:j + 3] * conv.W[f]).sum(axis=(1, 2, 3)) + conv.b[f]
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-12, atol=1e-12)
    # backward is the adjoint: <conv(x), g> = <x, conv.backward(g)> + <b, sum g>
    g = rng.standard_normal(expected.shape)
    dx = conv.backward(g)
    np.testing.assert_allclose((expected * g).sum(), (x * dx).sum() + (conv.b * g.sum(axis=(0, 2, 3))).sum(),
                               rtol=1e-12)


def test_doc_excerpts_are_the_script():
    """docs/cnn.md quotes the script: every Python block there is a verbatim piece of it."""
    doc = (SCRIPT.parents[1] / "docs" / "cnn.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 2
    source = SCRIPT.read_text(encoding="utf-8")
    for block in blocks:
        assert block in source, block[:80]


def test_shift_images(cnn):
    x = np.arange(2 * 1 * 3 * 4, dtype=float).reshape(2, 1, 3, 4) + 1
    down = cnn.shift_images(x, 1, 0)
    np.testing.assert_array_equal(down[:, :, 1:], x[:, :, :-1])
    assert not down[:, :, 0].any()
    left = cnn.shift_images(x, 0, -1)
    np.testing.assert_array_equal(left[..., :-1], x[..., 1:])
    assert not left[..., -1].any()


def test_unknown_pooling_is_rejected(cnn, capsys):
    with pytest.raises(SystemExit) as exc:
        cnn.main(["--pool", "median"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --pool: invalid choice: 'median'" in err
    assert "max" in err and "fractional" in err


@pytest.mark.parametrize("pool", sorted(LATER_POOLINGS))
def test_later_poolings(cnn, pool, capsys):
    """lp and fractional: a clear message while poolkit lacks them; a working run once it has them."""
    argv = ["--pool", pool, "--epochs", "1", "--train-size", "100", "--no-progress"]
    if hasattr(poolkit, LATER_POOLINGS[pool]):
        assert cnn.main(argv) == 0
        assert f"{pool} pooling: test accuracy" in capsys.readouterr().out
    else:
        with pytest.raises(SystemExit) as exc:
            cnn.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"`--pool {pool}` needs poolkit.{LATER_POOLINGS[pool]}" in err
        assert "newer poolkit" in err


def test_fractional_cannot_be_checked_against_torch(cnn):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="fractional max pooling draws random windows"):
        cnn._torch_pool("fractional", torch.nn.functional)


def test_compare_and_plot(cnn, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert cnn.main(["--compare", "--epochs", "2", "--train-size", "100", "--no-progress", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    available = [p for p in cnn.POOLINGS if cnn.pooling_unavailable(p) is None]
    assert {"max", "avg", "none"} <= set(available)
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| pooling | test accuracy | shifted 1 pixel |")
    assert [row.split("|")[1].strip() for row in table[1:]] == available
    for pool in set(cnn.POOLINGS) - set(available):
        assert f"skipping {pool}: `--pool {pool}` needs poolkit." in out
    max_row = next(row for row in table if row.startswith("| max |"))
    assert max_row.rstrip(" |").endswith("12.0 KiB")              # 32 x (16x4x4 + 32x2x2) bytes
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: must be a positive integer, but got '0'"),
    (["--steps", "-1"], "argument --steps: must be a positive integer, but got '-1'"),
    (["--lr", "0"], "argument --lr: must be a positive number, but got '0'"),
    (["--momentum", "1.5"], "argument --momentum: must be in [0, 1), but got 1.5"),
])
def test_bad_arguments(cnn, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cnn.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


EXAMPLES_HINT = "pip install 'poolkit[examples]'"


@pytest.mark.parametrize("module, argv, hint", [
    ("matplotlib", ["--plot", "never-written.png"], EXAMPLES_HINT),
    ("sklearn", [], EXAMPLES_HINT),
    ("tqdm", [], EXAMPLES_HINT),
    ("torch", ["--check-torch"], "pip install 'poolkit[bench]'"),
])
def test_missing_optional_dependency(module, argv, hint, tmp_path):
    """Block the module (sys.modules[name] = None makes its import fail) and run the script."""
    wrapper = (f"import runpy, sys; sys.modules[{module!r}] = None; "
               f"sys.argv = [{str(SCRIPT)!r}] + {argv!r}; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"needs the `{module}" in proc.stderr
    assert hint in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never-written.png").exists()
