"""Mutation testing: plant one-line bugs, one at a time; do verify and the test suite notice?

Each mutation replaces one unique piece of source text (usually a formula) in a copy of the repo
(``tinycurv/``, ``tests/``, ``pyproject.toml`` and the top-level docs, copied to a temporary
directory), then runs

* ``python -m tinycurv verify`` (caught: a non-zero exit status), and
* ``pytest -x -q`` on the mutation's relevant test files (caught: a failing test),

with ``PYTHONPATH`` set to the copy. A mutation whose original text no longer occurs exactly once
in the current source is reported as stale (the sources change: re-check, then update it).

    python tools/mutation.py --list                  # the mutations, and which are stale
    python tools/mutation.py --only verify           # verify against every mutant
    python tools/mutation.py -k kfac --jobs 2        # both, on the mutants matching "kfac"

The unmutated copy is run first (verify, and each set of test files used): a baseline that fails
makes that column "baseline-fail" instead of counting every mutant as caught.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# test files by area (relative to the repository root)
ENGINE = ["tests/test_engine_primitives.py", "tests/test_engine_properties.py"]
FUNCTIONAL = ["tests/test_functional.py"]
DAMPING = ["tests/test_damping.py"]
LAYERS = ["tests/test_nn_layers.py", "tests/test_cnn_everything.py"]
LOSSES = ["tests/test_losses.py"]
DENSE = ["tests/test_curvature_dense.py"]
KFAC = ["tests/test_kfac.py", "tests/test_kfac_step.py"]
KFAC_FAMILY = ["tests/test_kfac_family.py"]
ISAAC_MATH = ["tests/test_isaac_math.py"]
ISAAC_OPTIM = ["tests/test_isaac_optim.py"]
GN = ["tests/test_grouped_newton.py"]
GN_STEP = ["tests/test_grouped_step.py"]
SFN_MATH = ["tests/test_sfn_math.py"]
SFN_OPTIM = ["tests/test_sfn_optim.py"]
EXACT_SFN = ["tests/test_exact_sfn.py"]
BASELINE = ["tests/test_optim_baseline.py", "tests/test_crosscheck_torch.py"]


@dataclass(frozen=True)
class Mutation:
    """Replace ``original`` (occurring exactly once in ``file``) by ``replacement``."""

    name: str
    file: str
    original: str
    replacement: str
    description: str
    tests: list[str] = field(default_factory=list)

    @property
    def area(self) -> str:
        if self.file.startswith("tinycurv/optim/"):
            return "optim"
        if self.file.startswith("tinycurv/nn/"):
            return "layers"
        if self.file in ("tinycurv/ops.py", "tinycurv/dual.py", "tinycurv/plumbing.py"):
            return "engine"
        return "math"


M = Mutation
MUTATIONS: list[Mutation] = [
    # ---------------------------------------------------------------- math: curvature/*.py
    M("kfac-homogeneous-zeros", "tinycurv/curvature/statistics.py",
      "xp.ones((a.shape[0], 1), dtype=a.dtype)", "xp.zeros((a.shape[0], 1), dtype=a.dtype)",
      "K-FAC: bias column of ã is 0 instead of 1", KFAC + DENSE),
    M("kfac-direction-ones", "tinycurv/curvature/kfac.py",
      "# the bias column of ã = [a, 1]\n            a = xp.concatenate([a, xp.ones(",
      "# the bias column of ã = [a, 1]\n            a = xp.concatenate([a, xp.zeros(",
      "kfac_direction (rank-b form): bias column of ã is 0", KFAC),
    M("kfac-pi-sqrt", "tinycurv/curvature/kfac.py",
      "xp.where(ok, xp.sqrt(xp.where(ok, tA, 1.0) / xp.where(ok, tG, 1.0)), 1.0)",
      "xp.where(ok, xp.where(ok, tA, 1.0) / xp.where(ok, tG, 1.0), 1.0)",
      "K-FAC π without the square root", KFAC),
    M("kfac-pi-swap", "tinycurv/curvature/kfac.py",
      "return pi * root, root / pi", "return root / pi, pi * root",
      "K-FAC π split to the wrong factors", KFAC),
    M("kfac-damping-squared", "tinycurv/curvature/kfac.py",
      "K[diagonal, diagonal] += gamma", "K[diagonal, diagonal] += gamma * gamma",
      "K-FAC adds γ² instead of γ", KFAC),
    M("kfac-rank-b-no-G", "tinycurv/curvature/kfac.py",
      "return solve_G(g.T) @ solve_A(a.T).T", "return g.T @ solve_A(a.T).T",
      "K-FAC rank-b form skips (G + γI)⁻¹", KFAC),
    M("kfac-full-no-G", "tinycurv/curvature/kfac.py",
      "return solve_A(solve_G(grad).T).T", "return solve_A(grad.T).T",
      "K-FAC full form skips (G + γI)⁻¹", KFAC),
    M("kfac-G-scale", "tinycurv/curvature/kfac.py",
      "return (a_t.T * c) @ a_t, (g_bar.T * c) @ g_bar",
      "return (a_t.T * c) @ a_t, (g_bar.T * c) @ g_bar * 2",
      "K-FAC: factor G twice too large", KFAC),
    M("kfac-conv-sqrtL", "tinycurv/curvature/statistics.py",
      "gb * math.sqrt(locations) if locations", "gb * locations if locations",
      "KFC: g_bar rows scaled by L instead of √L", KFAC),
    M("kfac-empirical-b", "tinycurv/curvature/statistics.py",
      "sweeps = [[b * gl for gl in g]]", "sweeps = [[gl for gl in g]]",
      "empirical Fisher: per-sample gradients without the factor b", KFAC),
    M("kfac-exact-column", "tinycurv/curvature/statistics.py",
      "return [S[:, :, c] for c in range(S.shape[2])]",
      "return [S[:, :, c] for c in range(S.shape[2] - 1)]",
      "exact mode: last column of the Hessian square root dropped", KFAC),
    M("kfac-mc-sqrtS", "tinycurv/curvature/statistics.py",
      "out.append(leaf.grad * (f.shape[0] * scale))", "out.append(leaf.grad * f.shape[0])",
      "mc mode: S sampled gradients not divided by √S", KFAC),
    M("dense-ggn-b", "tinycurv/curvature/dense.py",
      "xp.reshape(HJ, (b * m, p)) / b", "xp.reshape(HJ, (b * m, p))",
      "dense GGN: (1/b) missing", DENSE),
    M("dense-fisher-b", "tinycurv/curvature/dense.py",
      "return P.T @ P / b", "return P.T @ P / (b * b)",
      "dense Fisher: 1/b² instead of 1/b", DENSE),
    M("isaac-input-b", "tinycurv/curvature/isaac.py",
      "K_inv = _damped_inverse(a @ a.T, 1.0 / (b * lam_a))",
      "K_inv = _damped_inverse(a @ a.T, 1.0 / lam_a)",
      "ISAAC eq. 20: b×b input side without 1/b", ISAAC_MATH),
    M("isaac-input-n-side", "tinycurv/curvature/isaac.py",
      "K_inv = _damped_inverse(a.T @ a, 1.0 / (b * lam_a))",
      "K_inv = _damped_inverse(a.T @ a, 1.0 / (n * lam_a))",
      "ISAAC eq. 17 side (b > n): A = aᵀa/n instead of /b", ISAAC_MATH),
    M("isaac-output-b", "tinycurv/curvature/isaac.py",
      "scale = 1.0 / (b * lam_g)", "scale = 1.0 / lam_g",
      "ISAAC output side: G without 1/b", ISAAC_MATH),
    M("isaac-woodbury-sign", "tinycurv/curvature/isaac.py",
      "return g.T - correction", "return g.T + correction",
      "ISAAC Woodbury correction with the wrong sign", ISAAC_MATH),
    M("isaac-kron-G-b", "tinycurv/curvature/isaac.py",
      "G = (g_bar.T @ g_bar) / b  # eq. 14", "G = (g_bar.T @ g_bar) / g_bar.shape[0]  # eq. 14",
      "ISAAC eq. 17 reference: G = ḡᵀḡ/(r·b) instead of /b", ISAAC_MATH),
    M("gn-gbar-direction", "tinycurv/curvature/grouped.py",
      "_vdot(direction[i], grads[i])", "_vdot(direction[i], direction[i])",
      "GroupedNewton: ḡ_s = ⟨u_s, u_s⟩ instead of ⟨u_s, g⟩", GN),
    M("gn-third-order", "tinycurv/curvature/grouped.py",
      "order=3)[3]", "order=3)[2]",
      "GroupedNewton: D from the second instead of the third derivative", GN),
    M("gn-tangent-scale", "tinycurv/curvature/grouped.py",
      "v[owner[i]] = xp.asarray(u)", "v[owner[i]] = 2 * xp.asarray(u)",
      "GroupedNewton: H̄ computed along 2u", GN),
    M("gn-step-c", "tinycurv/curvature/grouped_step.py",
      "c = 0.5 * lam_int", "c = lam_int",
      "cubic step: c = λ instead of λ/2", GN_STEP),
    M("gn-step-K", "tinycurv/curvature/grouped_step.py",
      "K = schur / np.outer(d_R, d_R)", "K = schur * np.outer(d_R, d_R)",
      "cubic step: K = diag(d) H diag(d) instead of diag(d)⁻¹ H diag(d)⁻¹", GN_STEP),
    M("gn-step-eta", "tinycurv/curvature/grouped_step.py",
      "eta[R] = (Q @ y) / d_R", "eta[R] = (Q @ y) * d_R",
      "cubic step: η = diag(d) y instead of diag(d)⁻¹ y", GN_STEP),
    M("gn-step-b", "tinycurv/curvature/grouped_step.py",
      "b = Q.T @ (g_hat / d_R)", "b = Q.T @ g_hat",
      "cubic step: b without diag(d)⁻¹", GN_STEP),
    M("gn-step-cbrt", "tinycurv/curvature/grouped_step.py",
      "d = np.cbrt(np.abs(D))  # App. D", "d = np.sqrt(np.abs(D))  # App. D",
      "cubic step: d = |D|^(1/2) instead of |D|^(1/3)", GN_STEP),
    M("sfn-term", "tinycurv/curvature/sfn.py",
      "v = _axpy(-1.0 / V, H2v, v)", "v = _axpy(-2.0 / V, H2v, v)",
      "SFN series: Y = I − 2H²/V", SFN_MATH),
    M("sfn-prefactor", "tinycurv/curvature/sfn.py",
      "return _scale(1.0 / math.sqrt(V), limit)", "return _scale(1.0 / V, limit)",
      "SFN series: prefactor V⁻¹ instead of V^(−1/2)", SFN_MATH),
    M("sfn-damping-ratio", "tinycurv/curvature/sfn.py",
      "series_coefficients(order, damping / math.sqrt(V))",
      "series_coefficients(order, damping / V)",
      "SFN series: d = λ/V instead of λ/√V", SFN_MATH),
    M("sfn-coefficient-index", "tinycurv/curvature/sfn.py",
      "S = _axpy(c[n], v, S)", "S = _axpy(c[n - 1], v, S)",
      "SFN series: coefficients shifted by one", SFN_MATH),
    M("sfn-recurrence", "tinycurv/curvature/sfn.py",
      "c.append((c[-1] + (-1) ** n * _binom_half(n)) / (1 - d * d))",
      "c.append((c[-1] + (-1) ** n * _binom_half(n + 1)) / (1 - d * d))",
      "SFN coefficients: recurrence with binom(½, n+1)", SFN_MATH),
    M("sfn-wynn-previous", "tinycurv/curvature/sfn.py",
      "_axpy(1.0, previous[m + 1], inverse)", "_axpy(1.0, previous[m], inverse)",
      "Wynn ε: ε_{s−1}⁽ᵐ⁾ instead of ε_{s−1}⁽ᵐ⁺¹⁾", SFN_MATH),
    M("sfn-samelson", "tinycurv/curvature/sfn.py",
      "return _scale(_reciprocal(_dot(v, v)), v)", "return _scale(_reciprocal(_norm(v)), v)",
      "Samelson inverse v/‖v‖ instead of v/vᵀv", SFN_MATH),
    M("sfn-abs", "tinycurv/curvature/sfn.py",
      "shifted = xp.abs(eigenvalues) + damping", "shifted = eigenvalues + damping",
      "dense reference (|H| + λI)⁻¹ without the absolute value", SFN_MATH),
    # ---------------------------------------------------------------- layers: nn/*.py
    M("maxpool-fill-zero", "tinycurv/nn/layers.py",
      "fill=-xp.inf", "fill=0.0",
      "MaxPool2d pads with 0 instead of −∞", LAYERS),
    M("maxpool-argmin", "tinycurv/nn/layers.py",
      "first_max = xp.argmax(values, axis=2)", "first_max = xp.argmin(values, axis=2)",
      "MaxPool2d takes the minimum", LAYERS),
    M("avgpool-sum", "tinycurv/nn/layers.py",
      "return self.windows(x).mean(axis=2)", "return self.windows(x).sum(axis=2)",
      "AvgPool2d sums instead of averaging", LAYERS),
    M("linear-bias-sign", "tinycurv/nn/layers.py",
      "if self.bias is not None:\n            out = out + self.bias\n"
      "        return tap(self, x.data",
      "if self.bias is not None:\n            out = out - self.bias\n"
      "        return tap(self, x.data",
      "Linear subtracts its bias", LAYERS),
    M("conv-bias-sign", "tinycurv/nn/layers.py",
      "out = out + self.bias\n        out = tap(", "out = out - self.bias\n        out = tap(",
      "Conv2d subtracts its bias", LAYERS),
    M("conv-layout", "tinycurv/nn/layers.py",
      ".transpose(0, 2, 1)", ".transpose(0, 1, 2)",
      "Conv2d output (N·L, out) reshaped to NCHW without the transpose", LAYERS),
    M("elu-alpha", "tinycurv/nn/layers.py",
      "(ops.where(positive, 0.0, x).exp() - 1.0) * self.alpha",
      "(ops.where(positive, 0.0, x).exp() - 1.0)",
      "ELU ignores α", LAYERS),
    M("conv-output-size", "tinycurv/nn/conv.py",
      "return (size + 2 * padding - k) // stride + 1", "return (size + padding - k) // stride + 1",
      "window count with one-sided padding", LAYERS),
    M("conv-window-stride", "tinycurv/nn/conv.py",
      "slice(j, j + sw * (ow - 1) + 1, sw)", "slice(j, j + sw * (ow - 1) + 1, sh)",
      "im2col: the column stride uses the row stride", LAYERS),
    M("conv-adjoint-index", "tinycurv/nn/conv.py",
      "x[:, :, r, c] += P[:, :, i * kw + j]", "x[:, :, r, c] += P[:, :, j * kh + i]",
      "col2im (the backward of im2col) scatters kernel offsets transposed", LAYERS),
    M("conv-pad-axes", "tinycurv/nn/conv.py",
      "(ph, ph), (pw, pw)), constant_values=fill", "(ph, ph), (ph, ph)), constant_values=fill",
      "im2col pads the width by the height padding", LAYERS),
    M("record-g", "tinycurv/nn/record.py",
      "self.record.g = gy", "self.record.g = 2 * gy",
      "recorded output gradient g doubled", KFAC + ISAAC_OPTIM),
    M("mse-half", "tinycurv/nn/losses.py",
      "(r * r).sum() * (0.5 / outputs.shape[0])", "(r * r).sum() * (1.0 / outputs.shape[0])",
      "MSE without the ½", LOSSES),
    M("ce-mean", "tinycurv/nn/losses.py",
      "loss = -picked.sum() * (1.0 / b)", "loss = -picked.sum()",
      "cross-entropy summed instead of averaged", LOSSES),
    M("ce-hessian-sign", "tinycurv/nn/losses.py",
      "dtype=p.dtype) - p[:, :, None] * p[:, None, :]",
      "dtype=p.dtype) + p[:, :, None] * p[:, None, :]",
      "CE Hessian diag(p) + ppᵀ", LOSSES + DENSE),
    M("ce-hessian-sqrt", "tinycurv/nn/losses.py",
      "dtype=p.dtype) - p[:, :, None] * q[:, None, :]",
      "dtype=p.dtype) - q[:, :, None] * q[:, None, :]",
      "CE Hessian square root diag(√p) − √p√pᵀ", LOSSES + KFAC),
    # ---------------------------------------------------------------- engine: ops.py, dual.py
    M("ops-sub-backward", "tinycurv/ops.py",
      "unbroadcast(D.neg(gy), sy)", "unbroadcast(gy, sy)",
      "Sub backward: +gy for the subtrahend", ENGINE),
    M("ops-mul-backward", "tinycurv/ops.py",
      "gw = unbroadcast(D.mul(gy, x), D.shape(y))", "gw = unbroadcast(D.mul(gy, y), D.shape(y))",
      "Mul backward: ∂(xy)/∂y = y", ENGINE),
    M("ops-div-backward", "tinycurv/ops.py",
      "D.neg(D.div(D.mul(gy, x), D.mul(y, y)))", "D.div(D.mul(gy, x), D.mul(y, y))",
      "Div backward: +x/y² for the divisor", ENGINE),
    M("ops-pow-backward", "tinycurv/ops.py",
      "D.power(self.x, self.c - 1.0)", "D.power(self.x, self.c - 2.0)",
      "Pow backward: c·x^(c−2)", ENGINE),
    M("ops-exp-backward", "tinycurv/ops.py",
      "return (D.mul(gy, self.y),)", "return (gy,)",
      "Exp backward: derivative 1", ENGINE),
    M("ops-log-backward", "tinycurv/ops.py",
      "return (D.div(gy, self.x),)", "return (D.mul(gy, self.x),)",
      "Log backward: x instead of 1/x", ENGINE),
    M("ops-tanh-backward", "tinycurv/ops.py",
      "D.sub(1.0, D.mul(self.y, self.y))", "D.sub(1.0, self.y)",
      "Tanh backward: 1 − tanh instead of 1 − tanh²", ENGINE),
    M("ops-sigmoid-backward", "tinycurv/ops.py",
      "D.mul(self.y, D.sub(1.0, self.y))", "D.mul(self.y, self.y)",
      "Sigmoid backward: σ² instead of σ(1 − σ)", ENGINE),
    M("ops-relu-backward", "tinycurv/ops.py",
      "return (D.mul(gy, self.mask),)", "return (gy,)",
      "ReLU backward ignores the mask", ENGINE),
    M("ops-where-backward", "tinycurv/ops.py",
      "gx = unbroadcast(D.where(self.cond, gy, zero), sx)",
      "gx = unbroadcast(D.where(self.cond, zero, gy), sx)",
      "Where backward: cotangent sent to the wrong branch", ENGINE),
    M("ops-lse-backward", "tinycurv/ops.py",
      "D.exp(D.sub(self.x, self.lse))", "D.exp(D.sub(self.lse, self.x))",
      "LogSumExp backward: exp(lse − x)", ENGINE),
    M("ops-logsoftmax-backward", "tinycurv/ops.py",
      "return (D.sub(gy, D.mul(D.exp(self.y), total)),)",
      "return (D.add(gy, D.mul(D.exp(self.y), total)),)",
      "LogSoftmax backward: + softmax·Σgy", ENGINE),
    M("ops-mean", "tinycurv/ops.py",
      "return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / count)",
      "return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / (count + 1))",
      "mean divides by count + 1", ENGINE),
    M("dual-mul", "tinycurv/dual.py",
      "None if tx is None else mul(tx, yp_)", "None if tx is None else mul(tx, xp_)",
      "forward mode: d(xy) = dx·x + x·dy", ENGINE + FUNCTIONAL),
    M("dual-sub", "tinycurv/dual.py",
      "None if ty is None else neg(ty))", "None if ty is None else ty)",
      "forward mode: d(x − y) = dx + dy", ENGINE + FUNCTIONAL),
    M("dual-div", "tinycurv/dual.py",
      "t = _tsum(tx, None if ty is None else neg(mul(p, ty)))",
      "t = _tsum(tx, None if ty is None else mul(p, ty))",
      "forward mode: d(x/y) with +(x/y)·dy", ENGINE + FUNCTIONAL),
    M("dual-power", "tinycurv/dual.py",
      "mul(mul(c, power(x.primal, c - 1)), x.tangent)",
      "mul(mul(c, power(x.primal, c - 2)), x.tangent)",
      "forward mode: d(xᶜ) = c·xᶜ⁻²·dx", ENGINE + FUNCTIONAL),
    M("dual-exp", "tinycurv/dual.py",
      "return Dual(e, mul(e, x.tangent))", "return Dual(e, x.tangent)",
      "forward mode: d exp(x) = dx", ENGINE + FUNCTIONAL),
    M("dual-log", "tinycurv/dual.py",
      "return Dual(log(x.primal), div(x.tangent, x.primal))",
      "return Dual(log(x.primal), mul(x.tangent, x.primal))",
      "forward mode: d log(x) = x·dx", ENGINE + FUNCTIONAL),
    M("dual-tanh", "tinycurv/dual.py",
      "return Dual(y, mul(sub(1.0, mul(y, y)), x.tangent))",
      "return Dual(y, mul(sub(1.0, y), x.tangent))",
      "forward mode: d tanh = (1 − tanh)·dx", ENGINE + FUNCTIONAL),
    M("dual-sigmoid-tangent", "tinycurv/dual.py",
      "return Dual(s, mul(mul(s, sub(1.0, s)), x.tangent))",
      "return Dual(s, mul(mul(s, s), x.tangent))",
      "forward mode: dσ = σ²·dx", ENGINE + FUNCTIONAL),
    M("dual-sigmoid-value", "tinycurv/dual.py",
      "return 0.5 * (1.0 + xp.tanh(0.5 * x))", "return 0.5 * (1.0 + xp.tanh(x))",
      "σ(x) computed as (1 + tanh x)/2", ENGINE + LAYERS),
    M("dual-matmul-stacked", "tinycurv/plumbing.py",
      "@ xp.concatenate([y, dy], axis=0)", "@ xp.concatenate([dy, y], axis=0)",
      "forward mode: stacked product dx·dy + x·y", ENGINE + FUNCTIONAL),
    M("dual-matmul-rows", "tinycurv/plumbing.py",
      "t += D.matmul(x, dy)  # t is a fresh product",
      "t -= D.matmul(x, dy)  # t is a fresh product",
      "forward mode: stacked-rows product dx·y − x·dy", ENGINE + FUNCTIONAL),
    M("dual-sum-batched", "tinycurv/dual.py",
      "t_axes = tuple(a + 1 for a in axes) if is_batched(x) else axes",
      "t_axes = tuple(a for a in axes) if is_batched(x) else axes",
      "batched forward mode: sum over the wrong tangent axes", ENGINE + FUNCTIONAL),
    M("dual-matmul-general", "tinycurv/plumbing.py",
      "    t += t2\n    return t", "    t -= t2\n    return t",
      "forward mode (batched/3-D): d(xy) = dx·y − x·dy", ENGINE + FUNCTIONAL),
    M("dual-where", "tinycurv/dual.py",
      "t = where(cond, zero if tx is None else tx, zero if ty is None else ty)",
      "t = where(cond, zero if ty is None else ty, zero if tx is None else tx)",
      "forward mode: where takes the other branch's tangent", ENGINE + FUNCTIONAL),
    # ---------------------------------------------------------------- optimisers: optim/*.py
    M("base-update-sign", "tinycurv/optim/base.py",
      "p.data = p.data - scale * d", "p.data = p.data + scale * d",
      "every optimiser steps uphill", BASELINE),
    M("sgd-dampening", "tinycurv/optim/sgd.py",
      "buffers = [beta * b + d for b, d", "buffers = [beta * b + (1 - beta) * d for b, d",
      "SGD momentum with dampening (1 − μ)", BASELINE),
    M("sgd-nesterov", "tinycurv/optim/sgd.py",
      "return [d + beta * b for d, b in zip(directions, buffers, strict=True)]",
      "return [d + b for d, b in zip(directions, buffers, strict=True)]",
      "SGD Nesterov d + b instead of d + μb", BASELINE),
    M("sgd-buffer-start", "tinycurv/optim/sgd.py",
      "buffers = [d.copy() for d in directions]", "buffers = [0 * d for d in directions]",
      "SGD momentum buffer starts at 0 instead of the first direction", BASELINE),
    M("sgd-weight-decay", "tinycurv/optim/sgd.py",
      "return [g + weight_decay * p.data", "return [g - weight_decay * p.data",
      "L2 weight decay with the wrong sign", BASELINE),
    M("adam-beta2", "tinycurv/optim/adam.py",
      "v = [beta2 * vi + (1.0 - beta2) * (d * d)", "v = [beta2 * vi + (1.0 - beta1) * (d * d)",
      "Adam second moment weighted by 1 − β₁", BASELINE),
    M("adam-beta1", "tinycurv/optim/adam.py",
      "m = [beta1 * mi + (1.0 - beta1) * d", "m = [beta1 * mi + (1.0 - beta2) * d",
      "Adam first moment weighted by 1 − β₂", BASELINE),
    M("adam-root-correction", "tinycurv/optim/adam.py",
      "root_correction = math.sqrt(1.0 - beta2**t)", "root_correction = 1.0 - beta2**t",
      "Adam: v̂ bias correction without the square root", BASELINE),
    M("adam-bias-correction", "tinycurv/optim/adam.py",
      "return steps, lr / (1.0 - beta1**t)", "return steps, lr",
      "Adam: no bias correction of m", BASELINE),
    M("adam-eps-inside", "tinycurv/optim/adam.py",
      "mi / (xp.sqrt(vi) / root_correction + eps)", "mi / (xp.sqrt(vi + eps) / root_correction)",
      "Adam: ε inside the square root", BASELINE),
    M("kfac-momentum-dampening", "tinycurv/optim/kfac.py",
      "directions = momentum_directions(st, directions, self.momentum, nesterov=False)\n"
      "            self.apply_update(",
      "directions = momentum_directions(st, [(1 - self.momentum) * d for d in directions], "
      "self.momentum, nesterov=False)\n            self.apply_update(",
      "K-FAC momentum with dampening v ← μv + (1 − μ)Δ", KFAC),
    M("kfac-no-weight-decay", "tinycurv/optim/kfac.py",
      "grads = _with_weight_decay(s.grads, self.params, self.weight_decay)\n"
      "        directions = list(grads)",
      "grads = list(s.grads)\n        directions = list(grads)",
      "K-FAC ignores weight decay", KFAC),
    M("kfac-ema-A-only", "tinycurv/optim/kfac.py",
      '((A_new, self.state["A"]), (G_new, self.state["G"]))', '((A_new, self.state["A"]),)',
      "K-FAC moving average applied to A but not G", KFAC),
    M("kfac-never-refresh", "tinycurv/optim/kfac.py",
      "update_inverses = missing or self.t % self.inv_every == 0", "update_inverses = missing",
      "K-FAC never refreshes its inverses", KFAC),
    M("kfac-factors-once", "tinycurv/optim/kfac.py",
      "update_factors = first or self.t % self.factor_every == 0", "update_factors = first",
      "K-FAC never updates its factors after the first step", KFAC),
    M("kfac-ema-decay", "tinycurv/optim/kfac.py",
      "eps = min(1.0 - 1.0 / k, self.ema_decay) if k > 1 else 0.0",
      "eps = self.ema_decay if k > 1 else 0.0",
      "K-FAC EMA without the min(1 − 1/k, ·) warm-up", KFAC),
    M("isaac-no-weight-decay", "tinycurv/optim/isaac.py",
      "directions = _with_weight_decay(directions, self.params, self.weight_decay)",
      "directions = list(directions)",
      "ISAAC ignores weight decay", ISAAC_OPTIM),
    M("isaac-swap-dampings", "tinycurv/optim/isaac.py",
      "isaac_math.zeta(g, a, s.g_bar[i], lam_g, lam_a)",
      "isaac_math.zeta(g, a, s.g_bar[i], lam_a, lam_g)",
      "ISAAC passes λ_a and λ_g swapped", ISAAC_OPTIM),
    M("isaac-adam-no-correction", "tinycurv/optim/isaac.py",
      "self.apply_update(steps, scale=step_size)", "self.apply_update(steps, scale=self.lr)",
      "ISAAC's Adam base without bias correction", ISAAC_OPTIM),
    M("gn-momentum", "tinycurv/optim/grouped_newton.py",
      "u = [m * ui + keep * gi for ui, gi", "u = [m * ui + gi for ui, gi",
      "GroupedNewton direction without (1 − dampening)", GN),
    M("gn-keep", "tinycurv/optim/grouped_newton.py",
      "m, keep = self.momentum, 1.0 - self.dampening", "m, keep = self.momentum, self.dampening",
      "GroupedNewton: dampening instead of 1 − dampening", GN),
    M("gn-negative-rates", "tinycurv/optim/grouped_newton.py",
      "rates = [self.lr * max(e, 0.0) for e in eta]", "rates = [self.lr * e for e in eta]",
      "GroupedNewton keeps negative rates", GN),
    M("gn-smoothing", "tinycurv/optim/grouped_newton.py",
      "[r * e + (1.0 - r) * es for e, es", "[(1.0 - r) * e + r * es for e, es",
      "GroupedNewton smoothing weights swapped", GN),
    M("gn-update-every", "tinycurv/optim/grouped_newton.py",
      "if self.t % self.update_every == 0:", "if self.t % self.update_every <= 1:",
      "GroupedNewton recomputes the rates too often", GN),
    M("gn-plateau-rates", "tinycurv/optim/grouped_newton.py",
      'self.state["rates"] = [factor * r for r in self.state["rates"]]',
      'self.state["rates"] = [r for r in self.state["rates"]]',
      "GroupedNewton plateau: lr halved but the current rates kept", GN),
    M("lm-threshold", "tinycurv/curvature/damping.py",
      "elif rho < 0.25 or", "elif rho < 0.1 or",
      "Levenberg–Marquardt (shared): λ raised only below ρ = 0.1", SFN_OPTIM + SFN_MATH + DAMPING),
    M("lm-decay", "tinycurv/curvature/damping.py",
      "damping = omega * damping", "damping = damping / omega",
      "Levenberg–Marquardt (shared): λ raised when the model is good (ρ > ¾)",
      SFN_OPTIM + SFN_MATH + DAMPING),
    M("lm-array-decay", "tinycurv/curvature/damping.py",
      "xp.where(rho > 0.75, omega * damping,", "xp.where(rho > 0.75, damping / omega,",
      "Levenberg–Marquardt on device arrays (K-FAC): λ raised when the model is good",
      KFAC_FAMILY + DAMPING),
    M("sfn-model-change", "tinycurv/curvature/sfn.py",
      "return [alpha, mu], -0.5 * (beta1 * z1 + beta2 * z2)",
      "return [alpha, mu], -0.5 * beta1 * z1",
      "subspace model reduction misses the δ_prev term", SFN_OPTIM + SFN_MATH),
    M("sfn-subspace-abs", "tinycurv/curvature/sfn.py",
      "denominator = abs(nu) + lam  # |ν| + λ", "denominator = nu + lam  # |ν| + λ",
      "2×2 saddle-free model without the absolute eigenvalues", SFN_OPTIM + SFN_MATH),
    M("sfn-subspace-1d", "tinycurv/curvature/sfn.py",
      "denominator = abs(A[0][0]) + lam * g11", "denominator = abs(A[0][0]) + lam",
      "1×1 model: λ instead of λ·uᵀu", SFN_OPTIM + SFN_MATH),
    M("sfn-reference-model", "tinycurv/curvature/sfn.py",
      "return 0.5 * curvature - alpha * g_u - mu * g_d",
      "return curvature - alpha * g_u - mu * g_d",
      "model change without the ½ of the quadratic term", SFN_OPTIM + SFN_MATH),
    M("sfn-combine", "tinycurv/optim/sfn.py",
      "return _axpby(alpha, u, mu, delta_prev)", "return _axpby(alpha, u, 1.0, delta_prev)",
      "δ = αu + δ_prev (μ dropped)", SFN_OPTIM),
    M("sfn-fixed-momentum", "tinycurv/optim/sfn.py",
      "alpha, mu = self.lr, self.momentum", "alpha, mu = self.lr, 0.0",
      "SFN fixed mode ignores momentum", SFN_OPTIM),
    M("reduction-ratio", "tinycurv/curvature/damping.py",
      "return (new_loss - loss) / change if change != 0",
      "return (loss - new_loss) / change if change != 0",
      "reduction ratio ρ with the wrong sign (floats: SFN, HF)", SFN_OPTIM + SFN_MATH + DAMPING),
    M("reduction-ratio-array", "tinycurv/curvature/damping.py",
      "xp.where(change != 0, (new_loss - loss) / change, xp.nan)",
      "xp.where(change != 0, (loss - new_loss) / change, xp.nan)",
      "reduction ratio ρ with the wrong sign (device arrays: K-FAC)", KFAC_FAMILY + DAMPING),
    M("exact-sfn-damping", "tinycurv/optim/exact_sfn.py",
      "u = sfn_math.abs_hessian_inverse(H, dense.flatten(g), lam)",
      "u = sfn_math.abs_hessian_inverse(H, dense.flatten(g), 2 * lam)",
      "ExactSFN: u with damping 2λ", EXACT_SFN),
    M("sfn-reject-damping", "tinycurv/optim/sfn.py",
      'self.state["damping"] = max(lam / self.damping_decay, self.min_damping)',
      'self.state["damping"] = max(lam, self.min_damping)',
      "SFN: an undone step does not raise λ", SFN_OPTIM),
    M("sfn-scale-rule", "tinycurv/optim/sfn.py",
      "V = max(V, math.sqrt(H2g2 / g2))", "V = max(V, H2g2 / g2)",
      "SFN scale: running max of ‖H²g‖²/‖g‖² instead of ‖H²g‖/‖g‖", SFN_OPTIM),
]


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def status(m: Mutation, root: Path = ROOT) -> str:
    """``"ok"``, or why the mutation cannot be applied to the current source."""
    path = root / m.file
    if not path.is_file():
        return "stale (file missing)"
    count = path.read_text().count(m.original)
    return "ok" if count == 1 else f"stale ({count} occurrences)"


def make_copy(root: Path, m: Mutation | None) -> Path:
    """A copy of the package, the tests and the docs, with ``m`` applied."""
    work = Path(tempfile.mkdtemp(prefix="mutant-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in ("tinycurv", "tests", "docs"):
        if (root / name).is_dir():
            shutil.copytree(root / name, work / name, ignore=ignore)
    for path in root.glob("*.md"):
        shutil.copy2(path, work / path.name)
    shutil.copy2(root / "pyproject.toml", work / "pyproject.toml")
    if m is not None:
        target = work / m.file
        text = target.read_text()
        target.write_text(text.replace(m.original, m.replacement, 1))
    return work


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYCURV_")}
    env.update(PYTHONPATH=str(work), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def failing_checks(work: Path, timeout: float) -> set[str] | str:
    """The names of the checks that ``python -m tinycurv verify`` reports as FAIL (empty: exit 0),
    or ``"timeout"`` / ``"crash"`` when it did not get as far as the table."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tinycurv", "verify"],
            cwd=work, env=_env(work), capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    if proc.returncode == 0:
        return set()
    lines = proc.stdout.splitlines()
    failed = {line.split()[0] for line in lines if line.rstrip().endswith("FAIL")}
    return failed or "crash"


def verify_result(failed: set[str] | str, baseline: set[str]) -> str:
    """Caught when a check that passes on the unmutated copy fails (or verify crashes)."""
    if isinstance(failed, str):
        return f"caught ({failed})"
    new = sorted(failed - baseline)
    return f"caught ({', '.join(new[:3])}{', …' if len(new) > 3 else ''})" if new else "survived"


def failing_tests(work: Path, tests: list[str], timeout: float, stop: bool) -> set[str] | str:
    """pytest on ``tests`` (``-x`` if ``stop``): the ids of the failed tests (empty: all passed),
    or ``"timeout"`` / ``"error (…)"``."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-o", "addopts=", "-p", "no:cacheprovider"]
    tests = [t for t in tests if (work / t).exists()]  # test files come and go
    if not tests:
        return "error (no test file)"
    try:
        proc = subprocess.run(
            cmd + ["-x"] * stop + tests, cwd=work, env=_env(work), capture_output=True, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    if proc.returncode == 0:
        return set()
    if proc.returncode != 1:
        return f"error (pytest {proc.returncode})"
    failed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")}
    return failed or {"?"}


def suite_result(work: Path, tests: list[str], timeout: float, baseline: set[str] | str) -> str:
    """Caught when a test that passes on the unmutated copy fails. ``-x`` when the baseline is
    clean; otherwise the whole files run and the baseline's own failures are discounted."""
    if isinstance(baseline, str):
        return "baseline-" + baseline
    failed = failing_tests(work, tests, timeout, stop=not baseline)
    if failed == "timeout":
        return "caught (timeout)"
    if isinstance(failed, str):
        return failed
    return "caught" if failed - baseline else "survived"


def caught(result: str | None) -> bool:
    return bool(result) and result.startswith("caught")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("verify", "suite"), help="run only one of the two")
    parser.add_argument("-k", dest="pattern", help="regex on name, file or description")
    parser.add_argument("--area", choices=("math", "layers", "engine", "optim"))
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    parser.add_argument("--verify-timeout", type=float, default=300)
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--root", default=str(ROOT), help="the repository (default: this one)")
    args = parser.parse_args(argv)
    if args.list:
        return _list(args, Path(args.root))
    # one snapshot of the sources for the whole run: the working tree may change meanwhile
    root = make_copy(Path(args.root), None)
    try:
        return _run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _select_mutations(args: argparse.Namespace) -> list[Mutation]:
    return [
        m for m in MUTATIONS
        if (not args.pattern or re.search(args.pattern, f"{m.name} {m.file} {m.description}"))
        and (not args.area or m.area == args.area)
    ]


def _list(args: argparse.Namespace, root: Path) -> int:
    selected = _select_mutations(args)
    states = {m.name: status(m, root) for m in selected}
    for m in selected:
        print(f"{m.name:28} {m.area:7} {m.file:36} {states[m.name]:22} {m.description}")
    print(f"{len(selected)} mutations, {sum(s != 'ok' for s in states.values())} stale")
    return 0


def _run(args: argparse.Namespace, root: Path) -> int:

    selected = _select_mutations(args)
    states = {m.name: status(m, root) for m in selected}
    live = [m for m in selected if states[m.name] == "ok"]
    do_verify, do_suite = args.only in (None, "verify"), args.only in (None, "suite")

    baseline_verify: set[str] = set()
    baseline_suite: dict[tuple[str, ...], set[str] | str] = {}
    if not args.no_baseline:
        work = make_copy(root, None)
        try:
            if do_verify:
                failed = failing_checks(work, args.verify_timeout)
                if isinstance(failed, str):
                    print(f"baseline verify: {failed}; cannot judge the mutants")
                    return 1
                baseline_verify = failed
                names = ", ".join(sorted(failed))
                print(f"baseline verify: {names + ' FAIL' if failed else 'passes'}")
            if do_suite:
                for tests in sorted({tuple(m.tests) for m in live if m.tests}):
                    failed = failing_tests(work, list(tests), args.timeout, stop=True)
                    if failed and not isinstance(failed, str):  # which ones, without -x
                        failed = failing_tests(work, list(tests), args.timeout, stop=False)
                    baseline_suite[tests] = failed
                    print(f"baseline {' '.join(tests)}: {failed or 'passes'}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def one(m: Mutation) -> dict[str, str | None]:
        start, work = time.time(), make_copy(root, m)
        try:
            v = s = None
            if do_verify:
                v = verify_result(failing_checks(work, args.verify_timeout), baseline_verify)
            if do_suite and m.tests:
                base = baseline_suite.get(tuple(m.tests), set())
                s = suite_result(work, m.tests, args.timeout, base)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        took = time.time() - start
        print(f"  {m.name:28} verify: {v or '-':40} suite: {s or '-':18} {took:4.0f} s", flush=True)
        return {"name": m.name, "area": m.area, "file": m.file, "description": m.description,
                "verify": v, "suite": s}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, live))
    results += [{"name": m.name, "area": m.area, "file": m.file, "description": m.description,
                 "verify": states[m.name], "suite": states[m.name]}
                for m in selected if states[m.name] != "ok"]

    print()
    print(f"{'mutation':28} {'area':7} {'verify':40} {'suite':18} description")
    for r in results:
        print(f"{r['name']:28} {r['area']:7} {r['verify'] or '-':40} {r['suite'] or '-':18} "
              f"{r['description']}")
    print()
    for column in ("verify", "suite"):
        ran = [r for r in results if r[column] and not r[column].startswith(("stale", "baseline"))
               and not r[column].startswith("error")]
        if ran:
            n = sum(caught(r[column]) for r in ran)
            print(f"{column}: caught {n}/{len(ran)} = {100 * n / len(ran):.0f}%")
            for area in ("math", "layers", "engine", "optim"):
                sub = [r for r in ran if r["area"] == area]
                if sub:
                    k = sum(caught(r[column]) for r in sub)
                    print(f"    {area:7} {k}/{len(sub)}")
            survivors = [r["name"] for r in ran if not caught(r[column])]
            print(f"    survivors: {', '.join(survivors) or 'none'}")
    stale = [m.name for m in selected if states[m.name] != "ok"]
    if stale:
        print(f"stale (not run): {', '.join(stale)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
