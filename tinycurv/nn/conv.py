"""Convolution and pooling by im2col: sliding windows as a (linear) gather, col2im its adjoint.

``patches(x)`` gathers the kh×kw windows of an NCHW input into an array of shape
(N, C, kh·kw, oh, ow); ``patches_adjoint`` scatters such an array back (col2im, summing where
windows overlap). Both are linear and act on each sample independently, so on dual numbers they
apply to value and tangent alike (``tinycurv.dual.per_sample_linear``).
"""

from __future__ import annotations

from typing import Any

from tinycurv import dual as D
from tinycurv.backend import xp
from tinycurv.tensor import Function


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """``3`` → ``(3, 3)``; pairs pass through."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def output_size(size: int, k: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis."""
    return (size + 2 * padding - k) // stride + 1


Pair = tuple[int, int]


def _window(i: int, j: int, out_hw: Pair, s: Pair) -> tuple[slice, slice]:
    """The strided positions touched by kernel offset (i, j) in the padded input."""
    (oh, ow), (sh, sw) = out_hw, s
    return slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)


def patches(x: Any, k: Pair, stride: Pair, padding: Pair, fill: float = 0.0) -> Any:
    """(N, C, H, W) → (N, C, kh·kw, oh, ow): every kh×kw window (im2col)."""
    (kh, kw), (sh, sw), (ph, pw) = k, pair(stride), pair(padding)
    N, C, H, W = x.shape
    out_hw = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    rows_cols = [_window(i, j, out_hw, (sh, sw)) for i in range(kh) for j in range(kw)]
    return xp.stack([x[:, :, r, c] for r, c in rows_cols], axis=2)


def patches_adjoint(P: Any, hw: Pair, k: Pair, stride: Pair, padding: Pair) -> Any:
    """(N, C, kh·kw, oh, ow) → (N, C, H, W): add each window back in place (col2im)."""
    (kh, kw), s, (ph, pw), (H, W) = k, pair(stride), pair(padding), hw
    N, C, _, oh, ow = P.shape
    x = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=P.dtype)
    for i in range(kh):
        for j in range(kw):
            r, c = _window(i, j, (oh, ow), s)
            x[:, :, r, c] += P[:, :, i * kw + j]
    return x[:, :, ph : ph + H, pw : pw + W]


class Patches(Function):
    """The primitive ``patches``; its backward is ``patches_adjoint``."""

    def __init__(self, k: Pair, stride: Pair, padding: Pair):
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x):
        self.hw = D.shape(x)[2:]
        return D.per_sample_linear(lambda z: patches(z, self.k, self.stride, self.padding), x)

    def backward(self, gy):
        adjoint = lambda z: patches_adjoint(z, self.hw, self.k, self.stride, self.padding)
        return (D.per_sample_linear(adjoint, gy),)


class Unfold(Function):
    """im2col for convolution: (N, C, H, W) → (N·oh·ow, C·kh·kw), one row per output location.

    Columns are ordered (c, i, j) row-major, matching a weight (out, C, kh, kw) reshaped to
    (out, C·kh·kw).
    """

    def __init__(self, k: Pair, stride: Pair, padding: Pair):
        self.k, self.stride, self.padding = k, stride, padding

    def _fold(self, z: Any) -> Any:
        P = patches(z, self.k, self.stride, self.padding)  # (N, C, K, oh, ow)
        N, C, K, oh, ow = P.shape
        return P.reshape(N, C * K, oh * ow).transpose(0, 2, 1).reshape(N * oh * ow, C * K)

    def _unfold_adjoint(self, cols: Any) -> Any:
        (kh, kw), (oh, ow) = self.k, self.out_hw
        C = cols.shape[1] // (kh * kw)
        N = cols.shape[0] // (oh * ow)
        P = cols.reshape(N, oh * ow, C * kh * kw).transpose(0, 2, 1).reshape(N, C, kh * kw, oh, ow)
        return patches_adjoint(P, self.hw, self.k, self.stride, self.padding)

    def forward(self, x):
        self.hw = D.shape(x)[2:]
        self.out_hw = tuple(
            output_size(n, kk, s, p)
            for n, kk, s, p in zip(
                self.hw, self.k, pair(self.stride), pair(self.padding), strict=True
            )
        )
        return D.per_sample_linear(self._fold, x)

    def backward(self, gy):
        return (D.per_sample_linear(self._unfold_adjoint, gy),)
