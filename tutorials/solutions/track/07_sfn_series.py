# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 7 · Saddle-free Newton: a series of HVPs and Wynn's ε — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *Part 7 of 7. Prerequisites: tutorial 07, section 2; the binomial series; tracks 3 and 6 help.
# Reading 25 min; running under 25 s.*
#
# Saddle-free Newton steps along $(|H| + \lambda I)^{-1} g$: negative curvature repels instead of
# attracting. Oldewage et al. (TMLR 2024) expand it in powers of $Y = I - H^2/V$,
#
# $$(|H| + \lambda I)^{-1} = V^{-1/2} \sum_{n \ge 0} c_n Y^n, \qquad
# c_0 = \tfrac{1}{1 + d},\; c_n = \frac{c_{n-1} + (-1)^n \binom{1/2}{n}}{1 - d^2},\; d = \lambda/\sqrt V,$$
#
# convergent for $V \ge \lambda_\max(H)^2/2$, with two HVPs per term. Wynn's vector
# $\varepsilon$-algorithm extrapolates the partial sums $S_n$ to their limit.
#
# **You will be able to** turn a matrix function into a series of HVPs and accelerate it. You write
# the coefficients, the series and Wynn's $\varepsilon$; `SeriesSFN` then trains with them.

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import math

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import Dual, Function, course, nn, optim
from tinycurv import dual as D
from tinycurv.data import batches, load_digits

tc.set_backend("numpy")
tc.set_default_dtype("float64")
plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})
X_train, y_train, X_test, y_test = load_digits()  # 8x8 digits: 1437 training images


def train(make_optimizer, steps, seed=0):
    """Train a 64-32-10 tanh MLP on the digits, batch 64; return the losses and the model."""
    model = nn.Sequential(nn.Linear(64, 32, rng=seed), nn.Tanh(), nn.Linear(32, 10, rng=seed + 1))
    opt = make_optimizer(model)
    rng, losses = np.random.default_rng(seed), []
    while len(losses) < steps:
        for x, y in batches(X_train, y_train, 64, rng=rng, drop_last=True):
            losses.append(opt.step(x, y))
            if len(losses) == steps:
                break
    return np.array(losses), model


def accuracy(model):
    """Test accuracy of the model on the 360 held-out digits."""
    with tc.no_grad():
        return float((model(X_test).numpy().argmax(axis=1) == y_test).mean())


def compare_runs(name, reference, losses, model, calls):
    """Print and plot the run with the student's piece against the library's own run."""
    print(f"the library called your {name} {calls} times")
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy(model):.1%}")
    print(f"largest difference from the library's own run: {np.abs(losses - reference).max():.1e}")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.semilogy(reference, lw=3, alpha=0.4, label="the library's own")
    ax.semilogy(losses, "--", label=f"with your {name}")
    ax.set(xlabel="step", ylabel="minibatch loss")
    ax.legend()
    plt.show()


# %% [markdown]
# ## T7.1 · `series_coefficients`
#
# At $d = 1$ the recurrence reads $0/0$; there $c_n = (-1)^n\binom{1/2}{n+1}$.

# %% [markdown]
# Write ``series_coefficients(order, damping_ratio=0.0) -> [c₀, …, c_{N−1}]``.
#
# The check compares it with the library's on: N = 1, d = 0; N = 6, d = 0 (the binomial series of 1/√(1 − y)); N = 8, d = 0.3; N = 10, d = 2; N = 5, d = 1.

# %%
def _binom_half(n):
    out = 1.0
    for j in range(n):
        out *= (0.5 - j) / (j + 1)
    return out


def series_coefficients(order, damping_ratio=0.0):
    """T7.1 · c₀ = 1/(1 + d), cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n))/(1 − d²); d = 1 separately."""
    d = damping_ratio
    if d == 1:
        return [(-1) ** n * _binom_half(n + 1) for n in range(order)]
    c = [1 / (1 + d)]
    for n in range(1, order):
        c.append((c[-1] + (-1) ** n * _binom_half(n)) / (1 - d * d))
    return c


# %%
verdict = course.check("T7.1", series_coefficients)


# %% [markdown]
# <details><summary><b>Hint</b> (T7.1)</summary>
#
# c₀ = 1/(1 + d) and cₙ = (cₙ₋₁ + (−1)ⁿ binom(½, n))/(1 − d²), with binom(½, n) = Πⱼ₌₀ⁿ⁻¹ (½ − j)/(j + 1); at d = 1 (0/0) use cₙ = (−1)ⁿ binom(½, n + 1).
#
# </details>

# %% [markdown]
# ## T7.2 · `series_operator`
#
# $v_0 = v$, $v_n = v_{n-1} - H(Hv_{n-1})/V$, $S_n = S_{n-1} + c_n v_n$ and $u = V^{-1/2} S_{N-1}$.
# Vectors are lists of arrays (one per parameter); `hvp_fn` maps such a list to another.

# %% [markdown]
# Write ``series_operator(hvp_fn, vectors, order, scale, damping=0.0) -> [u] ≈ (|H| + λI)⁻¹ v, arrays shaped like vectors``.
#
# The check compares it with the library's on: N = 1 (no HVP); N = 6, λ = 0; N = 12, λ = 0.5, V = 1.5 λ_max²; float32, N = 5, λ = 0.1.

# %%
def series_operator(hvp_fn, vectors, order, scale, damping=0.0):
    """T7.2 · u = V^(−1/2) Σₙ cₙ Yⁿ v with Y = I − H²/V: N terms, 2(N − 1) HVPs."""
    c = series_coefficients(order, damping / math.sqrt(scale))
    v = list(vectors)
    S = [c[0] * a for a in v]
    for n in range(1, order):
        H2v = hvp_fn(hvp_fn(v))
        v = [a - h / scale for a, h in zip(v, H2v)]
        S = [s + c[n] * a for s, a in zip(S, v)]
    return [s / math.sqrt(scale) for s in S]


# %%
verdict = course.check("T7.2", series_operator)


# %% [markdown]
# <details><summary><b>Hint</b> (T7.2)</summary>
#
# v₀ = v, vₙ = vₙ₋₁ − H(H vₙ₋₁)/V (two HVPs per term), Sₙ = Sₙ₋₁ + cₙ vₙ with cₙ = series_coefficients(N, λ/√V); return V^(−1/2)·S_{N−1}. Vectors are lists of arrays.
#
# </details>

# %% [markdown]
# ## T7.3 · `wynn_epsilon`
#
# $\varepsilon_{-1}^{(m)} = 0$, $\varepsilon_0^{(m)} = S_m$ and
# $\varepsilon_{s+1}^{(m)} = \varepsilon_{s-1}^{(m+1)} + \big(\varepsilon_s^{(m+1)} - \varepsilon_s^{(m)}\big)^{-1}$
# with Samelson's inverse $v^{-1} = v / v^\top v$ (over the whole vector); after $2k$ columns
# $\varepsilon_{2k}^{(0)}$ is exact for $S_m = S + \sum_{j=1}^k a_j r_j^m$.

# %% [markdown]
# Write ``wynn_epsilon(partial_sums, k) -> vector (a list of arrays), ε_{2k}``.
#
# The check compares it with the library's on: k = 0: the last partial sum; k = 1 on 5 partial sums of two geometric terms; k = 2, exact for two geometric terms; a sequence that has converged (all sums equal), k = 1.

# %%
def wynn_epsilon(partial_sums, k):
    """T7.3 · ε_{2k}⁽⁰⁾ of the last 2k + 1 partial sums, Samelson inverse v/(vᵀv)."""
    last = [np.array(a, copy=True) for a in partial_sums[-1]]
    if k == 0:
        return last
    shapes = [a.shape for a in last]
    current = [np.concatenate([np.ravel(a) for a in s]) for s in partial_sums[-(2 * k + 1) :]]
    previous = None  # ε₋₁ = 0
    for _ in range(2 * k):
        column = []
        for m in range(len(current) - 1):
            delta = current[m + 1] - current[m]
            size = max(np.linalg.norm(current[m]), np.linalg.norm(current[m + 1]))
            if np.linalg.norm(delta) <= 8 * np.finfo(float).eps * size:
                return last  # the sequence has converged: nothing to accelerate
            inverse = delta / (delta @ delta)
            column.append(inverse if previous is None else previous[m + 1] + inverse)
        previous, current = current, column
    pieces = np.split(current[0], np.cumsum([math.prod(s) for s in shapes])[:-1])
    return [p.reshape(s) for p, s in zip(pieces, shapes)]


# %%
verdict = course.check("T7.3", wynn_epsilon)

# %% [markdown]
# <details><summary><b>Hint</b> (T7.3)</summary>
#
# Start from ε₋₁ = 0 and ε₀⁽ᵐ⁾ = S_m (the last 2k + 1 sums); ε_{s+1}⁽ᵐ⁾ = ε_{s−1}⁽ᵐ⁺¹⁾ + (ε_s⁽ᵐ⁺¹⁾ − ε_s⁽ᵐ⁾)⁻¹ with Samelson's inverse v⁻¹ = v/(vᵀv) over the whole vector; 2k columns, return ε_{2k}⁽⁰⁾. If a difference is 0 return the last sum.
#
# </details>

# %% [markdown]
# ## Plug them in: SeriesSFN trains with your series
#
# First your plain series (no acceleration). The library's series also stops when a term grows (the
# scale $V$ was too small) and enlarges $V$; yours does not, so the run re-estimates $V$ at every
# step with a margin of 2.

# %%
if course.passed("T7.1") and course.passed("T7.2"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=8, acceleration=0,
                                         scale_every=1, scale_margin=2.0)
    reference, _ = train(make, 12)
    with course.plug_in("series_operator", series_operator) as plugged:
        losses, model = train(make, 12)
    compare_runs("series_operator", reference, losses, model, plugged.calls)
else:
    print("Skipped until T7.1 and T7.2 passes: this cell trains SeriesSFN with your series.")

# %% [markdown]
# Then the accelerated series ($N = 10$, $k = 2$) of the library, with your coefficients and your Wynn $\varepsilon$ inside it; the library's own checks still enlarge $V$ where a term grows (the warnings).

# %%
if course.passed("T7.1") and course.passed("T7.3"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=10, acceleration=2)
    reference, _ = train(make, 12)
    with course.plug_in("series_coefficients", series_coefficients) as p1, \
            course.plug_in("wynn_epsilon", wynn_epsilon) as p2:
        losses, model = train(make, 12)
    compare_runs("series_coefficients and wynn_epsilon", reference, losses, model,
                 p1.calls + p2.calls)
else:
    print("Skipped until T7.1 and T7.3 passes: this cell trains SeriesSFN with your Wynn ε.")

# %% [markdown]
# **What you built.** Equations (1)–(4) of `tinycurv/curvature/sfn.py`. You have now written a
# primitive, forward mode, HVPs and the core of four second-order methods, and each one trained a
# network inside the real library. [COURSE.md](../../../COURSE.md) lists what to read next.
