# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 4 · K-FAC's Kronecker factors — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *Part 4 of 7. Prerequisites: tutorials 03 (section 7) and 04 (section 1); the identity
# $(G \otimes A)\,\mathrm{vec}(V) = \mathrm{vec}(G V A^\top)$. Reading 15 min; running under 10 s.*
#
# K-FAC approximates a layer's block of the Fisher by one Kronecker product, $F_\ell \approx G \otimes A$,
# from two small matrices: the layer's inputs $a$ $(b, n)$ with a column of ones for the bias,
# $\tilde a = [a, 1]$, and the back-propagated (sampled) output gradients $\bar g$ $(r b, m)$:
#
# $$A = \tilde a^\top \tilde a / b, \qquad G = \bar g^\top \bar g / b \qquad\text{(Martens \& Grosse 2015, eq. 1).}$$
#
# Both are divided by $b$, the rows of $a$: the $r$ sampled gradients of a sample add up.
#
# **You will be able to** build the factors of any Linear layer and explain each convention (the
# ones column last, the $1/b$, $r$ samples). Plugged in, `tinycurv.optim.KFAC` averages, damps and
# inverts *your* factors at every step.

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
# ## T4.1 · `kfac_factors`

# %% [markdown]
# Write ``kfac_factors(a, g_bar, bias=True) -> (A, G); a (b, n), g_bar (r·b, m)``.
#
# The check compares it with the library's on: b=6 rows, n=3 inputs, m=2 outputs, with bias; r=2 sampled gradients per row: g_bar (2b, m); without a bias; b < n (b=3, n=6); float32.

# %%
def kfac_factors(a, g_bar, bias=True):
    """T4.1 · A = ãᵀã/b with ã = [a, 1] (ones last), G = ḡᵀḡ/b; b = rows of a."""
    b = a.shape[0]
    if bias:
        a = np.concatenate([a, np.ones((b, 1), dtype=a.dtype)], axis=1)
    return a.T @ a / b, g_bar.T @ g_bar / b


# %%
verdict = course.check("T4.1", kfac_factors)

# %% [markdown]
# <details><summary><b>Hint</b> (T4.1)</summary>
#
# ã = [a, 1] (a column of ones LAST, only with a bias); A = ãᵀã / b and G = ḡᵀḡ / b, both divided by b = a.shape[0], the rows of a (eq. 1). Keep the dtype of a.
#
# </details>

# %% [markdown]
# ## Plug it in: K-FAC trains with your factors

# %%
if course.passed("T4.1"):
    make = lambda model: optim.KFAC(model, nn.CrossEntropyLoss(), lr=0.3, damping=0.01, seed=0)
    reference, _ = train(make, 60)
    with course.plug_in("kfac_factors", kfac_factors) as plugged:
        losses, model = train(make, 60)
    compare_runs("kfac_factors", reference, losses, model, plugged.calls)
else:
    print("Skipped until T4.1 passes: this cell trains K-FAC with your factors.")

# %% [markdown]
# **What you built.** `tinycurv.curvature.kfac.factors_from`. For a `Conv2d` the same function
# runs on the unfolded patches (rows = b·L): read `docs/kfac.md` for the scaling. Next:
# [track 5](05_zeta_star.ipynb), ISAAC, which keeps only the input side — and never forms it.
