"""Pooling in a network that learns: a small LeNet-style CNN in plain NumPy.

The network (shapes for a batch of N 8x8 digit images)::

    input                  (N, 1, 8, 8)
    conv 3x3, pad 1, ReLU  (N, 16, 8, 8)
    pool 2x2               (N, 16, 4, 4)     <- a poolkit layer
    conv 3x3, pad 1, ReLU  (N, 32, 4, 4)
    pool 2x2               (N, 32, 2, 2)     <- a poolkit layer
    flatten, linear        (N, 10)           softmax cross-entropy

trained with SGD with momentum on scikit-learn's ``load_digits`` (1,797 8x8
images that ship with scikit-learn: nothing is downloaded).  Everything but the
pooling is written out here in NumPy; the pooling layers are poolkit's
(``layer.forward(x)``, ``layer.backward(grad)``, ``layer.saved_nbytes``).

Usage::

    python examples/cnn_digits.py                    # max pooling, 15 epochs
    python examples/cnn_digits.py --pool avg         # the same network with average pooling
    python examples/cnn_digits.py --compare          # every pooling choice, one table
    python examples/cnn_digits.py --plot curves.png  # learning curves (needs matplotlib)
    python examples/cnn_digits.py --check-torch      # the same steps in PyTorch, compared

``--pool`` takes ``max``, ``avg``, ``lp`` (power-average, p=2), ``fractional``
(fractional max pooling) or ``none`` (no pooling: the linear layer then sees
all 32x8x8 activations).  ``lp`` and ``fractional`` use ``poolkit.LPPool2d``
and ``poolkit.FractionalMaxPool2d``; a poolkit without them (before 0.1.0's
Lp and fractional pooling) stops with a message saying so.

Needs ``pip install 'poolkit[examples]'`` (scikit-learn, tqdm, matplotlib);
``--check-torch`` also needs PyTorch.  docs/cnn.md walks through this file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import poolkit

INSTALL_HINT = "pip install 'poolkit[examples]'"
TORCH_HINT = "pip install 'poolkit[bench]' (PyTorch 2.13, the CPU build)"

POOLINGS = ("max", "avg", "lp", "fractional", "none")
# the poolkit class each pooling choice needs (checked, so an older poolkit gets a clear message)
POOL_CLASS = {"max": "MaxPool2d", "avg": "AvgPool2d", "lp": "LPPool2d",
              "fractional": "FractionalMaxPool2d", "none": None}
LP_NORM = 2                 # lp pooling: sqrt of the sum of squares over each window
FRACTIONAL_SIZES = (6, 4)   # fractional max pooling: 8 -> 6 -> 4 (ratio about 1/sqrt(2) per stage)

DEFAULTS = dict(epochs=15, batch_size=32, lr=0.05, momentum=0.9, seed=0)


def require(module: str, purpose: str, hint: str = INSTALL_HINT):
    """Import an optional dependency, or stop with the install hint.

    Raises
    ------
    SystemExit
        With a message naming the missing module, what needs it, and how to install it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"error: {purpose} needs the `{module}` package, which is not installed. "
                         f"Install it with: {hint}") from None


@contextlib.contextmanager
def pinned_threads(pin: bool):
    """With ``pin``: NumPy's BLAS and poolkit on one thread each (``--pin-threads``); else as they are.

    Earlier versions of this script always pinned: on the 2-core machine of
    docs/cnn.md an epoch took 3 s with both thread pools at 2 threads, and 0.1 s
    pinned, because the idle threads of each pool spun on the cores the other
    needed.  poolkit's threads now stop spinning within a tenth of a millisecond
    (see "Backends and threads" in the README), so the script runs unpinned;
    ``--pin-threads`` is there to compare.  threadpoolctl comes with scikit-learn.
    """
    if not pin:
        yield
        return
    threadpoolctl = require("threadpoolctl", "limiting BLAS threads")
    with threadpoolctl.threadpool_limits(1, user_api="blas"), poolkit.threads(1):
        yield


def pooling_unavailable(pool: str) -> str | None:
    """Why this poolkit cannot run the pooling choice ``pool``, or None if it can."""
    name = POOL_CLASS[pool]
    if name is None or hasattr(poolkit, name):
        return None
    return (f"`--pool {pool}` needs poolkit.{name}, which poolkit {poolkit.__version__} does not have: "
            f"it needs a newer poolkit.")


# ---------------------------------------------------------------------------------------------
# data

@dataclass
class Digits:
    """The fixed split of scikit-learn's digits: images scaled to [0, 1], shape (N, 1, 8, 8)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(train_size: int | None = None, test_size: int | None = None) -> Digits:
    """Load ``load_digits`` and split it 75 % / 25 %, stratified, ``random_state=0``.

    ``train_size`` / ``test_size`` keep only the first so many samples of each part (quick runs).
    """
    datasets = require("sklearn.datasets", "loading the digits")
    model_selection = require("sklearn.model_selection", "splitting the digits")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float64)[:, None]          # (1797, 1, 8, 8), pixel values 0..16
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    return Digits(x_tr[:train_size], y_tr[:train_size], x_te[:test_size], y_te[:test_size])


# ---------------------------------------------------------------------------------------------
# the layers that are not pooling

def im2col(xp: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Lay every kh x kw window of a padded input out as one row.

    ``xp`` is (N, C, Hp, Wp); the windows are taken with stride 1, so the output
    map is (Ho, Wo) = (Hp - kh + 1, Wp - kw + 1) and the result is
    (N * Ho * Wo, C * kh * kw), rows in (n, i, j) order, columns in (c, di, dj) order
    (the order of a weight tensor (F, C, kh, kw) flattened).
    """
    n, c, hp, wp = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    cols = np.empty((n, ho, wo, c, kh, kw), dtype=xp.dtype)
    for di in range(kh):
        for dj in range(kw):
            # tap (di, dj) of every window: a shifted view (N, C, Ho, Wo) -> (N, Ho, Wo, C)
            cols[:, :, :, :, di, dj] = xp[:, :, di:di + ho, dj:dj + wo].transpose(0, 2, 3, 1)
    return cols.reshape(n * ho * wo, c * kh * kw)


def col2im(cols: np.ndarray, xp_shape: tuple, kh: int, kw: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every row back onto the window it came from."""
    n, c, hp, wp = xp_shape
    ho, wo = hp - kh + 1, wp - kw + 1
    cols = cols.reshape(n, ho, wo, c, kh, kw)
    dxp = np.zeros(xp_shape, dtype=cols.dtype)
    for di in range(kh):
        for dj in range(kw):
            # (N, Ho, Wo, C) -> (N, C, Ho, Wo), added where tap (di, dj) was read
            dxp[:, :, di:di + ho, dj:dj + wo] += cols[:, :, :, :, di, dj].transpose(0, 3, 1, 2)
    return dxp


class Conv2d:
    """3x3 (or any k x k) convolution, stride 1, zero padding ``pad``, as one matrix product."""

    def __init__(self, c_in: int, c_out: int, k: int, pad: int, rng: np.random.Generator):
        self.k, self.pad = k, pad
        # He initialisation (ReLU follows): std sqrt(2 / fan_in)
        self.W = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
        self.b = np.zeros(c_out)

    def params(self):
        return [("W", self.W), ("b", self.b)]

    def forward(self, x, train=True):
        p, k = self.pad, self.k
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        cols = im2col(xp, k, k)                                     # (N*Ho*Wo, C*k*k)
        n, ho, wo = x.shape[0], xp.shape[2] - k + 1, xp.shape[3] - k + 1
        out = cols @ self.W.reshape(len(self.W), -1).T + self.b     # (N*Ho*Wo, F)
        if train:
            self._cols, self._xp_shape = cols, xp.shape
        return out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)     # (N, F, Ho, Wo)

    def backward(self, grad):
        f = grad.shape[1]
        g = grad.transpose(0, 2, 3, 1).reshape(-1, f)               # (N*Ho*Wo, F)
        self.dW = (g.T @ self._cols).reshape(self.W.shape)
        self.db = g.sum(axis=0)
        dxp = col2im(g @ self.W.reshape(f, -1), self._xp_shape, self.k, self.k)
        p = self.pad
        return dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]

    def grads(self):
        return [self.dW, self.db]


class ReLU:
    def forward(self, x, train=True):
        if train:
            self._mask = x > 0
        return np.maximum(x, 0.0)

    def backward(self, grad):
        return grad * self._mask


class Flatten:
    def forward(self, x, train=True):
        self._shape = x.shape
        return x.reshape(len(x), -1)                                # (N, C*H*W), torch.flatten's order

    def backward(self, grad):
        return grad.reshape(self._shape)


class Linear:
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        self.W = rng.standard_normal((n_out, n_in)) * np.sqrt(1.0 / n_in)
        self.b = np.zeros(n_out)

    def params(self):
        return [("W", self.W), ("b", self.b)]

    def forward(self, x, train=True):
        if train:
            self._x = x
        return x @ self.W.T + self.b

    def backward(self, grad):
        self.dW = grad.T @ self._x
        self.db = grad.sum(axis=0)
        return grad @ self.W

    def grads(self):
        return [self.dW, self.db]


class Pool:
    """A poolkit pooling layer in the network: forward, backward, and what it kept."""

    def __init__(self, layer, name: str):
        self.layer, self.name = layer, name

    def forward(self, x, train=True):
        out = self.layer.forward(x, train=train)
        if train:
            self.input_grad = None
        return out

    def backward(self, grad):
        # poolkit's backward: max sends each value to its window's winner, average spreads it evenly
        self.input_grad = self.layer.backward(grad)
        return self.input_grad

    @property
    def saved_nbytes(self) -> int:
        return self.layer.saved_nbytes


def make_pool(pool: str, stage: int):
    """The poolkit layer for pooling choice ``pool`` at stage 0 or 1 (None for ``"none"``)."""
    reason = pooling_unavailable(pool)
    if reason is not None:
        raise ValueError(reason)
    if pool == "none":
        return None
    if pool == "max":
        layer = poolkit.MaxPool2d(2)
    elif pool == "avg":
        layer = poolkit.AvgPool2d(2)
    elif pool == "lp":
        layer = poolkit.LPPool2d(LP_NORM, 2)                        # torch.nn.LPPool2d's signature
    else:
        layer = poolkit.FractionalMaxPool2d(2, output_size=FRACTIONAL_SIZES[stage])
    return Pool(layer, f"pool{stage + 1}")


# ---------------------------------------------------------------------------------------------
# the network, its loss and its optimiser

class Network:
    """conv-ReLU-pool, conv-ReLU-pool, linear.  ``pool`` is one of :data:`POOLINGS`.

    The weights are drawn from ``np.random.default_rng(seed)`` in a fixed order, so
    every pooling choice starts from the same convolution weights.

    Examples
    --------
    >>> net = Network("max", seed=0)
    >>> net.forward(np.zeros((5, 1, 8, 8))).shape
    (5, 10)
    """

    def __init__(self, pool: str = "max", seed: int = 0, channels=(16, 32), n_classes: int = 10):
        rng = np.random.default_rng(seed)
        c1, c2 = channels
        self.pool = pool
        self.conv1, self.conv2 = Conv2d(1, c1, 3, 1, rng), Conv2d(c1, c2, 3, 1, rng)
        self.pool1, self.pool2 = make_pool(pool, 0), make_pool(pool, 1)
        stages = [self.conv1, ReLU(), self.pool1, self.conv2, ReLU(), self.pool2, Flatten()]
        self.layers = [layer for layer in stages if layer is not None]
        # the linear layer's width is whatever the pooling left of the 8x8 map
        n_features = self._features(np.zeros((1, 1, 8, 8))).shape[1]
        self.fc = Linear(n_features, n_classes, rng)
        self.layers.append(self.fc)

    def _features(self, x):
        for layer in self.layers:
            x = layer.forward(x, train=False)
        return x

    @property
    def pools(self) -> list[Pool]:
        return [p for p in (self.pool1, self.pool2) if p is not None]

    @property
    def trainable(self):
        return [self.conv1, self.conv2, self.fc]

    def named_params(self):
        """[(name, array)] in a fixed order: conv1.W, conv1.b, conv2.W, conv2.b, fc.W, fc.b."""
        return [(f"{lname}.{pname}", p) for lname, layer in zip(("conv1", "conv2", "fc"), self.trainable)
                for pname, p in layer.params()]

    def n_params(self) -> int:
        return sum(p.size for _, p in self.named_params())

    def forward(self, x, train=True):
        for layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def grads(self):
        return [g for layer in self.trainable for g in layer.grads()]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy of softmax(logits) and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)                  # shift for exp's range
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1.0
    return loss, grad / n


class SGD:
    """SGD with momentum, PyTorch's rule: ``v = momentum * v + g``; ``w -= lr * v``."""

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float):
        self.params, self.lr, self.momentum = params, lr, momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]):
        for p, v, g in zip(self.params, self.velocity, grads):
            v *= self.momentum
            v += g
            p -= self.lr * v                                        # in place: the layers hold p


def batches(n: int, batch_size: int, rng: np.random.Generator):
    """One epoch's mini-batches: index arrays of a fresh permutation (the last may be short)."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    return float((net.forward(x, train=False).argmax(axis=1) == y).mean())


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move every (N, C, H, W) image ``dy`` pixels down and ``dx`` right, filling with 0."""
    h, w = x.shape[2:]
    out = np.zeros_like(x)
    out[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def shifted_accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    """Mean accuracy on the images moved one pixel up, down, left and right (translation tolerance)."""
    return float(np.mean([accuracy(net, shift_images(x, dy, dx), y)
                          for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]))


def train_step(net: Network, opt: SGD, xb, yb) -> float:
    loss, grad = softmax_cross_entropy(net.forward(xb), yb)
    net.backward(grad)
    opt.step(net.grads())
    return float(loss)


@dataclass
class History:
    """What a training run measured, one entry per epoch."""
    pool: str
    n_params: int
    loss: list = field(default_factory=list)            # mean training loss of the epoch
    test_accuracy: list = field(default_factory=list)
    # the first epoch counts from building the network, whose trial forward is poolkit's
    # first call in a fresh process (it may compile kernels)
    epoch_seconds: list = field(default_factory=list)
    saved_nbytes: int = 0                               # kept by pooling for backward, one full batch
    shifted_accuracy: float = 0.0                       # after training, test images moved one pixel
    seconds: float = 0.0                                # the whole run: building the network to last test

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]


def train(pool: str, data: Digits, epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], momentum: float = DEFAULTS["momentum"], seed: int = DEFAULTS["seed"],
          progress: bool = True, log=print, pin: bool = False) -> History:
    """Train the network with pooling ``pool``; test accuracy after every epoch.

    The weights come from ``seed`` and the batch order from ``seed + 1``, so runs
    with different pooling see the same batches.  ``log`` gets one line per epoch.
    ``pin``: NumPy's BLAS and poolkit on one thread each (:func:`pinned_threads`).
    """
    with pinned_threads(pin):
        return _train(pool, data, epochs, batch_size, lr, momentum, seed, progress, log)


def _train(pool, data, epochs, batch_size, lr, momentum, seed, progress, log) -> History:
    tqdm = require("tqdm", "the progress bar").tqdm
    start = time.perf_counter()
    net = Network(pool, seed)
    opt = SGD([p for _, p in net.named_params()], lr, momentum)
    rng = np.random.default_rng(seed + 1)
    hist = History(pool, net.n_params())
    bar = tqdm(range(epochs), desc=f"{pool:>10} pooling", unit="epoch", disable=not progress, leave=False)
    t0 = start                                      # the first epoch counts building the network too
    for epoch in bar:
        losses = []
        for idx in batches(len(data.x_train), batch_size, rng):
            losses.append(train_step(net, opt, data.x_train[idx], data.y_train[idx]))
            if len(idx) == batch_size:
                hist.saved_nbytes = sum(p.saved_nbytes for p in net.pools)
        acc = accuracy(net, data.x_test, data.y_test)
        hist.epoch_seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hist.loss.append(float(np.mean(losses)))
        hist.test_accuracy.append(acc)
        bar.set_postfix(loss=f"{hist.loss[-1]:.4f}", test=f"{acc:.2%}")
        if log is not None:
            line = (f"epoch {epoch + 1:2d}/{epochs}  loss {hist.loss[-1]:.4f}  "
                    f"test accuracy {acc:.2%}  ({hist.epoch_seconds[-1]:.2f} s)")
            if progress:
                tqdm.write(line)                                    # above the bar, not through it
            else:
                log(line)
    bar.close()
    hist.seconds = time.perf_counter() - start
    hist.shifted_accuracy = shifted_accuracy(net, data.x_test, data.y_test)    # not timed: not training
    return hist


# ---------------------------------------------------------------------------------------------
# the same network in PyTorch, step by step

@dataclass
class TorchCheck:
    """Result of :func:`check_torch`: ``ok``, and where the first disagreement was."""
    pool: str
    steps: int
    tolerance: float
    max_diff: dict = field(default_factory=dict)        # tensor name -> largest abs difference seen
    first_failure: tuple | None = None                  # (step, tensor name, max abs diff)

    @property
    def ok(self) -> bool:
        return self.first_failure is None


def _torch_pool(pool: str, F):
    if pool == "max":
        return lambda t: F.max_pool2d(t, 2)
    if pool == "avg":
        return lambda t: F.avg_pool2d(t, 2)
    if pool == "lp":
        return lambda t: F.lp_pool2d(t, LP_NORM, 2)
    if pool == "none":
        return None
    raise ValueError(f"`--check-torch` cannot compare `--pool {pool}`: fractional max pooling draws "
                     f"random windows, which PyTorch would draw differently; use max, avg, lp or none.")


def check_torch(pool: str, data: Digits, steps: int = 5, batch_size: int = DEFAULTS["batch_size"],
                lr: float = DEFAULTS["lr"], momentum: float = DEFAULTS["momentum"], seed: int = DEFAULTS["seed"],
                tolerance: float = 1e-10, log=print) -> TorchCheck:
    """Run ``steps`` training steps here and in PyTorch (float64) and compare them.

    Both start from the same weights and see the same batches.  After each step
    the loss, the gradient at every pooling layer's input and every updated weight
    must agree to ``tolerance`` (absolute).  PyTorch's own ``torch.optim.SGD``
    does the update on its side.
    """
    torch = require("torch", "`--check-torch`", TORCH_HINT)
    tpool = _torch_pool(pool, torch.nn.functional)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)                        # tiny tensors: PyTorch's threads gain nothing here
    try:
        return _check_torch(torch, tpool, pool, data, steps, batch_size, lr, momentum, seed, tolerance, log)
    finally:
        torch.set_num_threads(torch_threads)


def _check_torch(torch, tpool, pool, data, steps, batch_size, lr, momentum, seed, tolerance, log):
    F = torch.nn.functional
    net = Network(pool, seed)
    opt = SGD([p for _, p in net.named_params()], lr, momentum)
    names = [name for name, _ in net.named_params()]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for _, p in net.named_params()]
    topt = torch.optim.SGD(tparams, lr=lr, momentum=momentum)

    def torch_forward(xb):
        w1, b1, w2, b2, wf, bf = tparams
        pool_inputs = []
        h = xb
        for w, b in ((w1, b1), (w2, b2)):
            h = F.relu(F.conv2d(h, w, b, padding=1))
            if tpool is not None:
                h.retain_grad()                                     # the gradient at this pool's input
                pool_inputs.append(h)
                h = tpool(h)
        return F.linear(h.flatten(1), wf, bf), pool_inputs

    result = TorchCheck(pool, steps, tolerance)
    rng = np.random.default_rng(seed + 1)
    step_batches = []
    while len(step_batches) < steps:                                # the batches train() would use
        step_batches += batches(len(data.x_train), batch_size, rng)
    for step, idx in enumerate(step_batches[:steps], start=1):
        xb, yb = data.x_train[idx], data.y_train[idx]
        loss = train_step(net, opt, xb, yb)

        topt.zero_grad()
        logits, pool_inputs = torch_forward(torch.from_numpy(xb))
        tloss = F.cross_entropy(logits, torch.from_numpy(yb))
        tloss.backward()
        topt.step()

        pairs = [("loss", np.array(loss), tloss.detach().numpy())]
        pairs += [(f"gradient at {p.name} input", p.input_grad, t.grad.numpy())
                  for p, t in zip(net.pools, pool_inputs)]
        pairs += [(f"updated {name}", p, t.detach().numpy())
                  for name, (_, p), t in zip(names, net.named_params(), tparams)]
        for name, ours, theirs in pairs:
            diff = float(np.max(np.abs(ours - theirs)))
            result.max_diff[name] = max(result.max_diff.get(name, 0.0), diff)
            if not diff <= tolerance and result.first_failure is None:   # `not <=` catches NaN
                result.first_failure = (step, name, diff)
        if log is not None:
            worst = max(result.max_diff.items(), key=lambda kv: kv[1])
            log(f"step {step}: loss {loss:.12f} (torch {tloss.item():.12f}); "
                f"largest difference so far {worst[1]:.2e} ({worst[0]})")
    return result


# ---------------------------------------------------------------------------------------------
# reporting

def format_bytes(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def comparison_table(histories: list[History], batch_size: int) -> str:
    """A Markdown table: accuracy, time, parameters and the memory pooling kept for backward."""
    rows = ["| pooling | test accuracy | shifted 1 pixel | time | first epoch | parameters "
            f"| kept by pooling for backward (batch of {batch_size}) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for h in histories:
        rows.append(f"| {h.pool} | {h.final_accuracy:.2%} | {h.shifted_accuracy:.2%} | {h.seconds:.1f} s "
                    f"| {h.epoch_seconds[0]:.1f} s | {h.n_params:,} | {format_bytes(h.saved_nbytes)} |")
    return "\n".join(rows)


def plot_curves(histories: list[History], path: str, plt) -> None:
    """Training loss and test error per epoch, one line per pooling choice (log scales)."""
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.4))
    for h in histories:
        epochs = np.arange(1, len(h.loss) + 1)
        ax_loss.plot(epochs, h.loss, marker=".", label=h.pool)
        # error rather than accuracy: a log scale shows both 40 % and 1 %; a perfect epoch sits at 0.1 %
        error = np.maximum(100 * (1 - np.array(h.test_accuracy)), 0.1)
        ax_err.plot(epochs, error, marker=".", label=h.pool)
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="training loss")
    ax_err.set(xlabel="epoch", ylabel="test error (%)", yscale="log", title="test error (100 % - accuracy)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(title="pooling", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, but got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, but got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnn_digits.py",
        description="Train a small CNN with poolkit pooling on scikit-learn's 8x8 digits.",
        epilog=f"Needs: {INSTALL_HINT} (scikit-learn, tqdm, matplotlib); --check-torch needs PyTorch.")
    p.add_argument("--pool", choices=POOLINGS, default="max",
                   help="pooling after each convolution (default: max)")
    p.add_argument("--compare", action="store_true",
                   help="train with every pooling this poolkit has and print a table")
    p.add_argument("--plot", metavar="FILE.png", help="draw the learning curves (needs matplotlib)")
    p.add_argument("--check-torch", action="store_true",
                   help="run the first --steps steps in PyTorch too and compare (float64, tolerance 1e-10)")
    p.add_argument("--steps", type=positive_int, default=5, help="steps for --check-torch (default: 5)")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"],
                   help=f"training epochs (default: {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                   help=f"images per SGD step (default: {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"],
                   help=f"learning rate (default: {DEFAULTS['lr']})")
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"],
                   help=f"SGD momentum, in [0, 1) (default: {DEFAULTS['momentum']})")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help=f"initial weights from SEED, batch order from SEED + 1 (default: {DEFAULTS['seed']})")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="use only the first N training images (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pin-threads", action="store_true",
                   help="run NumPy's BLAS and poolkit on one thread each (to compare with the default, unpinned)")
    return p


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (1 when --check-torch finds a difference)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.momentum < 1:
        parser.error(f"argument --momentum: must be in [0, 1), but got {args.momentum!r}")
    if args.compare:
        pools = [p for p in POOLINGS if pooling_unavailable(p) is None]
        for p in POOLINGS:
            if pooling_unavailable(p) is not None:
                print(f"skipping {p}: {pooling_unavailable(p)}")
    else:
        reason = pooling_unavailable(args.pool)
        if reason is not None:
            parser.error(reason)
        pools = [args.pool]
    # fail on a missing optional dependency before any training, not after
    plt = require("matplotlib.pyplot", "`--plot`") if args.plot else None
    if args.check_torch:
        require("torch", "`--check-torch`", TORCH_HINT)
    data = load_data(args.train_size)
    hp = dict(batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, seed=args.seed)

    if args.check_torch:
        failed = False
        for pool in pools:
            print(f"--check-torch, {pool} pooling: {args.steps} steps, float64, tolerance 1e-10")
            try:
                res = check_torch(pool, data, args.steps, **hp)
            except ValueError as exc:                               # a pooling PyTorch cannot replay
                if not args.compare:
                    parser.error(str(exc))
                print(f"skipping {pool}: {exc}")
                continue
            if res.ok:
                print(f"{pool}: PyTorch agrees for {args.steps} steps on: {', '.join(res.max_diff)} "
                      f"(largest difference {max(res.max_diff.values()):.2e})")
            else:
                step, name, diff = res.first_failure
                print(f"{pool}: DISAGREES with PyTorch: first at step {step}, {name}: "
                      f"max abs difference {diff:.3e} > {res.tolerance:g}")
                failed = True
        return 1 if failed else 0

    print(f"digits: {len(data.x_train)} training and {len(data.x_test)} test images, 8x8; "
          f"poolkit {poolkit.__version__}, numpy {np.__version__}")
    histories = []
    for pool in pools:
        print(f"{pool} pooling: {args.epochs} epochs, batch {args.batch_size}, "
              f"SGD lr {args.lr} momentum {args.momentum}, seed {args.seed}")
        h = train(pool, data, args.epochs, progress=not args.no_progress, pin=args.pin_threads, **hp)
        print(f"{pool} pooling: test accuracy {h.final_accuracy:.2%} after {args.epochs} epochs in "
              f"{h.seconds:.1f} s (first epoch, with building the network: {h.epoch_seconds[0]:.1f} s); "
              f"on the test images moved one pixel: {h.shifted_accuracy:.2%}")
        histories.append(h)
    if args.compare:
        print()
        print(comparison_table(histories, args.batch_size))
    if plt is not None:
        plot_curves(histories, args.plot, plt)
        print(f"learning curves written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
