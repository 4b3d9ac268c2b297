"""The chapter's method 2 (img2col pooling), reconstructed: the baseline poolkit's img2col must beat.

RECONSTRUCTION, not poolkit code.  Section 17.5.5 of the chapter shows only
the outline of ``forward_img2col`` / ``backward_col2img``; the book's companion
code (Microsoft ai-edu, MIT licence; the same scheme as Saito's "Deep Learning
from Scratch", section 7.4) fills it in.  This file rebuilds that algorithm
step for step so the issue's target, "poolkit's img2col backend at least 2x
faster than the chapter's img2col method", has something concrete to measure:

forward
    1. ``img2col``: a zero ``(N, C, ph, pw, OH, OW)`` float64 array is filled
       by one strided-slice copy per filter position (ph * pw Python-level
       copies), transposed to ``(N, OH, OW, C, ph, pw)`` and reshaped into the
       column matrix ``(N*OH*OW, C*ph*pw)`` (the reshape copies).
    2. The column matrix is viewed as ``(N*OH*OW*C, ph*pw)``: one row per window.
    3. ``np.argmax(axis=1)`` (kept for backward) and ``np.max(axis=1)``.
    4. Reshape to ``(N, OH, OW, C)`` and transpose to ``(N, C, OH, OW)`` (a view).

backward
    1. The upstream gradient is transposed to ``(N, OH, OW, C)``.
    2. ``dmax``: a zero ``(N*OH*OW*C, ph*pw)`` matrix gets each gradient value
       at its window's argmax column (fancy-index assignment).
    3. ``col2img``: ``dmax`` is reshaped to ``(N, OH, OW, C, ph, pw)``,
       transposed to ``(N, C, ph, pw, OH, OW)`` and added back, one strided
       slice per filter position, into a zero image of ``(N, C, H+2p+s-1, W+2p+s-1)``,
       which is cropped (a view) to ``(N, C, H, W)``.

Only MAX pooling, like the chapter's code.  Two details of the original are
kept on purpose because they cost time: buffers are float64 whatever the input
dtype (``np.zeros`` without a dtype), and every pass allocates all its
temporaries afresh.  (One version of the companion code makes ``dmax`` float32;
the chapter's text, followed here, does not: with float64 the result is exact,
so the chapter's ``forward: True`` / ``backward: True`` check holds.)

Run it as a script to repeat the chapter's experiment with this reconstruction
beside poolkit's img2col backend::

    python benchmarks/chapter_img2col.py --iterations 5000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["img2col", "col2img", "ChapterImg2colPooling"]


def img2col(x, filter_h, filter_w, stride=1, pad=0):
    """``(N, C, H, W)`` -> column matrix ``(N*OH*OW, C*filter_h*filter_w)`` (float64)."""
    n, c, h, w = x.shape
    out_h = (h + 2 * pad - filter_h) // stride + 1
    out_w = (w + 2 * pad - filter_w) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant") if pad > 0 else x
    col = np.zeros((n, c, filter_h, filter_w, out_h, out_w))            # float64, as in the original
    for i in range(filter_h):
        i_end = i + stride * out_h
        for j in range(filter_w):
            j_end = j + stride * out_w
            col[:, :, i, j, :, :] = img[:, :, i:i_end:stride, j:j_end:stride]
    # (N, C, fh, fw, OH, OW) -> (N, OH, OW, C, fh, fw) -> (N*OH*OW, C*fh*fw); the reshape copies
    return np.transpose(col, (0, 4, 5, 1, 2, 3)).reshape(n * out_h * out_w, -1)


def col2img(col, input_shape, filter_h, filter_w, stride, pad, out_h, out_w):
    """Inverse of :func:`img2col`, adding overlapping windows: -> ``(N, C, H, W)`` (a cropped view)."""
    n, c, h, w = input_shape
    # (N*OH*OW, C*fh*fw) -> (N, OH, OW, C, fh, fw) -> (N, C, fh, fw, OH, OW)
    tmp = np.transpose(col.reshape(n, out_h, out_w, c, filter_h, filter_w), (0, 3, 4, 5, 1, 2))
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1))
    for i in range(filter_h):
        i_end = i + stride * out_h
        for j in range(filter_w):
            j_end = j + stride * out_w
            img[:, :, i:i_end:stride, j:j_end:stride] += tmp[:, :, i, j, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


class ChapterImg2colPooling:
    """The chapter's ``PoolingLayer`` reduced to method 2, MAX pooling only (a reconstruction).

    Parameters
    ----------
    input_shape : (C, H, W)
    pool_shape : (pool_h, pool_w)
    stride : int
    """

    def __init__(self, input_shape, pool_shape, stride):
        self.num_input_channel, self.input_height, self.input_width = input_shape
        self.pool_height, self.pool_width = pool_shape
        self.stride = stride
        self.pool_size = self.pool_height * self.pool_width
        # the chapter's output-size formula (no padding)
        self.output_height = (self.input_height - self.pool_height) // stride + 1
        self.output_width = (self.input_width - self.pool_width) // stride + 1
        self.x = None
        self.arg_max = None

    def forward_img2col(self, x, train=True):
        self.x = x
        n, c, _, _ = x.shape
        col = img2col(x, self.pool_height, self.pool_width, self.stride, 0)
        col_x = col.reshape(-1, self.pool_size)                 # one row per (n, oh, ow, c) window
        self.arg_max = np.argmax(col_x, axis=1)
        out = np.max(col_x, axis=1)
        # (N*OH*OW*C,) -> (N, OH, OW, C) -> (N, C, OH, OW), a transposed view
        return np.transpose(out.reshape(n, self.output_height, self.output_width, c), (0, 3, 1, 2))

    def backward_col2img(self, delta_in, layer_idx=0):
        dout = np.transpose(delta_in, (0, 2, 3, 1))                # (N, OH, OW, C)
        dmax = np.zeros((dout.size, self.pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        # (N*OH*OW*C, ph*pw) -> (N*OH*OW, C*ph*pw): the column layout col2img expects
        dcol = dmax.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2img(dcol, self.x.shape, self.pool_height, self.pool_width, self.stride, 0,
                       self.output_height, self.output_width)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The chapter's experiment with its img2col method "
                                                 "(reconstructed) and poolkit's img2col backend.")
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args(argv)

    import poolkit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 28, 28))
    chapter = ChapterImg2colPooling((3, 28, 28), (2, 2), 2)
    ours = poolkit.PoolingLayer((3, 28, 28), (2, 2), 2, "MAX")
    delta = rng.random((64, 3, 14, 14))
    results = {}
    for name, fwd, bwd in (("chapter img2col (reconstructed)", chapter.forward_img2col, chapter.backward_col2img),
                           ("poolkit img2col", ours.forward_img2col, ours.backward_col2img)):
        y, gx = fwd(x, True), bwd(delta, 0)                     # warm-up
        t = time.perf_counter()
        for _ in range(args.iterations):
            y = fwd(x, True)
            gx = bwd(delta, 0)
        results[name] = (time.perf_counter() - t, y, gx)
        print(f"Elapsed of {name}: {results[name][0]}")
    (t1, y1, g1), (t2, y2, g2) = results.values()
    print(f"forward: {np.array_equal(y1, y2)}")
    print(f"backward: {np.array_equal(g1, g2)}")
    print(f"poolkit img2col is {t1 / t2:.2f}x faster than the chapter's (target: >= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
