# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 6 · GroupedNewton's cubic-regularised step
#
# *Part 6 of 7. Prerequisites: tutorial 06, sections 1–6; eigendecomposition; a scalar root-finder
# (`scipy.optimize.brentq`). Reading 20 min; running under 10 s.*
#
# GroupedNewton summarises the loss along a direction by $\bar g$ $(S)$, $\bar H$ $(S \times S)$ and the
# diagonal $D$ of the order-3 term, and takes the global minimiser of the cubic model (App. D)
#
# $$m(\eta) = -\bar g^\top \eta + \tfrac12 \eta^\top \bar H \eta + \tfrac{\lambda}{6}\,\|\mathrm{diag}(d)\,\eta\|^3,
# \qquad d = |D|^{1/3}.$$
#
# Its stationary points solve $\eta = (\bar H + \tfrac{\lambda}{2} r\,\mathrm{diag}(d)^2)^{-1}\bar g$ with
# $r = \|\mathrm{diag}(d)\eta\|$, and the global minimiser is the one at which that matrix is positive
# semi-definite. In $y = \mathrm{diag}(d)\eta$ with $K = \mathrm{diag}(d)^{-1}\bar H\mathrm{diag}(d)^{-1} = Q\,\mathrm{diag}(\kappa)\,Q^\top$
# and $b = Q^\top \mathrm{diag}(d)^{-1}\bar g$ this is one scalar equation,
# $\|y(r)\| = r$ with $y_j = b_j / (\kappa_j + \tfrac{\lambda}{2} r)$, to be solved above
# $r_0 = \max(0, -2\kappa_\min/\lambda)$.
#
# **You will be able to** reduce a cubic-regularised model to a secular equation and solve it.
# Plugged in, your step sets GroupedNewton's per-layer learning rates. (The library's version also
# handles zeros in $D$, the "hard case" and a failed root-finder.)

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


# %%
from scipy.optimize import brentq  # a scalar root-finder, for T6.1


# %% [markdown]
# ## T6.1 · `grouped_newton_step` (for $D$ without zeros and $\lambda > 0$)

# %% [markdown]
# Write ``grouped_newton_step(g_bar, H_bar, D, lam_int) -> eta (S,), the global minimiser``.
#
# The check compares it with the library's on: S=2, H_bar positive definite, lam_int = 1; S=3, positive definite, lam_int = 0.1; S=3, positive definite, lam_int = 100 (a short step); S=4, H_bar indefinite, lam_int = 1.

# %%
def grouped_newton_step(g_bar, H_bar, D, lam_int):
    """T6.1 · The global minimiser of the cubic model (App. D), D without zeros, lam_int > 0.

    In y = diag(d)η with K = diag(d)⁻¹H_bar diag(d)⁻¹ = Q diag(κ) Qᵀ and b = Qᵀ diag(d)⁻¹g_bar
    the stationary points are y_j = b_j/(κ_j + c r), r = ‖y‖, c = λ/2; the minimiser is the
    root r of ‖y(r)‖ = r with κ_min + c r ≥ 0.
    """
    raise NotImplementedError  # your code here


# %%
verdict = course.check("T6.1", grouped_newton_step)

# %% [markdown]
# <details><summary><b>Hint</b> (T6.1)</summary>
#
# With d = |D|^(1/3), c = lam_int/2 and K = diag(d)⁻¹H_bar diag(d)⁻¹ = Q diag(κ) Qᵀ, b = Qᵀ(g_bar/d): y_j = b_j/(κ_j + c·r) and r = ‖y‖. Find r with scipy.optimize.brentq on h(r) = ‖y(r)‖ − r, starting above r0 = max(0, −κ_min/c); then η = (Q y)/d.
#
# </details>

# %% [markdown]
# ## Plug it in: GroupedNewton trains with your step

# %%
if course.passed("T6.1"):
    make = lambda model: optim.GroupedNewton(model, nn.CrossEntropyLoss(), lr=0.5, update_every=5)
    reference, _ = train(make, 40)
    with course.plug_in("grouped_newton_step", grouped_newton_step) as plugged:
        losses, model = train(make, 40)
    compare_runs("grouped_newton_step", reference, losses, model, plugged.calls)
else:
    print("Skipped until T6.1 passes: this cell trains GroupedNewton with your step.")

# %% [markdown]
# **What you built.** The core of `tinycurv.curvature.grouped_step`. Next: [track 7](07_sfn_series.ipynb),
# saddle-free Newton from a series of HVPs.
