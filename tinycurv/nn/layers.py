"""Layers: Linear, Conv2d, pooling, Flatten and activations (PyTorch layouts and defaults)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from tinycurv import dual as D
from tinycurv import ops
from tinycurv.backend import xp
from tinycurv.nn.conv import Patches, Unfold, output_size, patches
from tinycurv.nn.init import make_rng, uniform_parameter
from tinycurv.nn.module import Module
from tinycurv.nn.record import tap
from tinycurv.tensor import Tensor


def _count(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or TypeError (not an integer) / ValueError (below ``minimum``)."""
    wanted = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be {wanted}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be {wanted}, got {value!r}")
    return int(value)


def _pair(owner: str, name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """``3`` → ``(3, 3)``; a pair is checked entry by entry, as ``_count``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            wanted = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
            raise ValueError(f"{owner}: {name} must be {wanted} or a pair of them, got {value!r}")
        return _count(owner, name, value[0], minimum), _count(owner, name, value[1], minimum)
    v = _count(owner, name, value, minimum)
    return v, v


def _check_batch(owner: Any, x: Tensor) -> None:
    """ValueError for an empty batch: nothing downstream (a loss's mean) is defined for it."""
    if x.ndim and x.shape[0] == 0:
        raise ValueError(
            f"{type(owner).__name__}: empty batch (0 samples), input of shape {x.shape}"
        )


def _as_input(x: Tensor, dtype: Any) -> Tensor:
    """Cast a constant floating input to the parameters' dtype (data arrive as float64)."""
    if x.requires_grad or D.is_dual(x.data) or x.dtype == dtype:
        return x
    return Tensor(x.data.astype(dtype))


class Linear(Module):
    """y = x Wᵀ + b with weight (out_features, in_features), bias (out_features,).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    rng : numpy.random.Generator or int, optional
        Seeds the PyTorch-like initialisation U(−1/√in, 1/√in).

    Raises
    ------
    TypeError, ValueError
        At construction, for sizes that are not positive integers; at the call, for an input
        of the wrong shape or an empty batch.
    """

    records_curvature = True

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, rng: Any = None
    ) -> None:
        in_features = _count("Linear", "in_features", in_features)
        out_features = _count("Linear", "out_features", out_features)
        rng = make_rng(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = uniform_parameter((out_features, in_features), in_features, rng, "weight")
        self.bias = uniform_parameter((out_features,), in_features, rng, "bias") if bias else None
        self._record = None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expects input (batch, "
                f"{self.in_features}), got shape {x.shape}"
            )
        _check_batch(self, x)
        x = _as_input(x, self.weight.dtype)
        out = x @ self.weight.T
        if self.bias is not None:
            out = out + self.bias
        return tap(self, x.data, out)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class Conv2d(Module):
    """2-D convolution on NCHW inputs by im2col; weight (out, in, kh, kw), bias (out,).

    The recorded input ``a`` is the unfolded patch matrix (N·oh·ow, in·kh·kw) and ``g`` the
    gradient with respect to the output at each location, (N·oh·ow, out).

    Channels and ``kernel_size`` (an int or a pair) must be positive integers, ``stride`` too,
    ``padding`` integers ≥ 0 (TypeError or ValueError at construction); an input smaller than
    the kernel or an empty batch raises ValueError at the call.
    """

    records_curvature = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        rng: Any = None,
    ) -> None:
        in_channels = _count("Conv2d", "in_channels", in_channels)
        out_channels = _count("Conv2d", "out_channels", out_channels)
        self.kernel_size = _pair("Conv2d", "kernel_size", kernel_size)
        self.stride = _pair("Conv2d", "stride", stride)
        self.padding = _pair("Conv2d", "padding", padding, minimum=0)
        rng = make_rng(rng)
        self.in_channels, self.out_channels = in_channels, out_channels
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.weight = uniform_parameter((out_channels, in_channels, kh, kw), fan_in, rng, "weight")
        self.bias = uniform_parameter((out_channels,), fan_in, rng, "bias") if bias else None
        self._record = None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expects input (N, {self.in_channels}, H, W), got shape {x.shape}"
            )
        _check_batch(self, x)
        x = _as_input(x, self.weight.dtype)
        N, _, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(f"Conv2d: input {H}×{W} is smaller than the kernel {kh}×{kw}")
        cols = Unfold.apply(x, k=self.kernel_size, stride=self.stride, padding=self.padding)
        out = cols @ self.weight.reshape(self.out_channels, -1).T
        if self.bias is not None:
            out = out + self.bias
        out = tap(self, cols.data, out)  # (N·oh·ow, out)
        return (
            out.reshape(N, oh * ow, self.out_channels)
            .transpose(0, 2, 1)
            .reshape(N, self.out_channels, oh, ow)
        )

    def __repr__(self) -> str:
        return (
            f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding})"
        )


class _Pool2d(Module):
    """Pooling windows: ``kernel_size`` and ``stride`` (default: the kernel) positive integers or
    pairs, ``padding`` at most half the kernel; a window larger than the padded input raises
    ValueError at the call."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        name = type(self).__name__
        self.kernel_size = _pair(name, "kernel_size", kernel_size)
        # the stride defaults to the kernel size, per axis
        self.stride = self.kernel_size if stride is None else _pair(name, "stride", stride)
        self.padding = _pair(name, "padding", padding, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(f"{name}: padding must be at most half the kernel size")

    def windows(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim != 4:
            raise ValueError(f"{name} expects NCHW input, got shape {x.shape}")
        _check_batch(self, x)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        H, W = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
        if kh > H or kw > W:
            padded = f" ({x.shape[2]}×{x.shape[3]} with padding {ph}×{pw})" if ph or pw else ""
            raise ValueError(
                f"{name}: the {kh}×{kw} window does not fit the padded {H}×{W} input{padded}"
            )
        return Patches.apply(x, k=self.kernel_size, stride=self.stride, padding=self.padding)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2d(_Pool2d):
    """Max over each window; the derivative flows to the (first) maximal entry."""

    def forward(self, x: Tensor) -> Tensor:
        P = self.windows(x)  # (N, C, K, oh, ow)
        values = patches(
            D.primal(x.data), self.kernel_size, self.stride, self.padding, fill=-xp.inf
        )
        first_max = xp.argmax(values, axis=2)[:, :, None]
        mask = xp.arange(values.shape[2]).reshape(1, 1, -1, 1, 1) == first_max
        return (P * mask.astype(values.dtype)).sum(axis=2)


class AvgPool2d(_Pool2d):
    """Mean over each window (zero padding counts, as PyTorch's default)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.windows(x).mean(axis=2)


class Flatten(Module):
    """(N, …) → (N, ∏…)."""

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        return x.reshape(x.shape[0], -1)

    def __repr__(self) -> str:
        return "Flatten()"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        return x.relu()

    def __repr__(self) -> str:
        return "ReLU()"


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        return x.tanh()

    def __repr__(self) -> str:
        return "Tanh()"


class Sigmoid(Module):
    """1 / (1 + exp(−x))."""

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        return x.sigmoid()

    def __repr__(self) -> str:
        return "Sigmoid()"


class ELU(Module):
    """x for x > 0, alpha·(exp(x) − 1) otherwise."""

    def __init__(self, alpha: float = 1.0) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"ELU: alpha must be a finite number, got {alpha!r}")
        if not math.isfinite(alpha):
            raise ValueError(f"ELU: alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        positive = x > 0
        negative_part = (ops.where(positive, 0.0, x).exp() - 1.0) * self.alpha
        return ops.where(positive, x, negative_part)

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"
