# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 5 · ISAAC's $\zeta^\star$: the gradient conditioned by the inputs — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *Part 5 of 7. Prerequisites: tutorial 05, sections 1–5; the Woodbury identity. Reading 15 min;
# running under 10 s.*
#
# For a layer with inputs $a$ $(b, n)$ and output gradients $g$ $(b, m)$, so that $\nabla W = g^\top a$,
# ISAAC (Petersen et al., ICLR 2023) conditions the gradient by the input factor $A = a^\top a / b$ alone:
#
# $$\zeta^\star = \lambda_a\, g^\top a\,(A + \lambda_a I_n)^{-1}
# = g^\top \Big(I_b + \frac{a a^\top}{b\,\lambda_a}\Big)^{-1} a \qquad\text{(eq. 21)},$$
#
# by Woodbury: a $b \times b$ solve instead of an $n \times n$ one, cheaper when $b < n$; for
# $b > n$ the $n \times n$ side is the cheaper one, with the same $1/b$. $\lambda_a = \infty$ gives
# the plain gradient.
#
# **You will be able to** implement eq. 21 both ways and choose the cheaper side. Plugged in, it is
# the direction `tinycurv.optim.ISAAC` takes for every layer.

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
# ## T5.1 · `zeta_star`

# %% [markdown]
# Write ``zeta_star(g, a, lam_a) -> (m, n); g (b, m), a (b, n), lam_a > 0 or math.inf``.
#
# The check compares it with the library's on: b < n (b=4, n=7, m=3); b > n (b=12, n=5, m=3); b > n, m > n (b=9, n=3, m=6); one sample (b=1, n=4, m=2); lam_a = inf (b=5, n=6, m=3); float32 (b=5, n=8, m=4).

# %%
def zeta_star(g, a, lam_a):
    """T5.1 · ζ* = gᵀ (I_b + a aᵀ/(b λ_a))⁻¹ a (eq. 21); the n×n side when b > n."""
    b, n = a.shape
    if b <= n:
        K = np.eye(b, dtype=a.dtype) + (a @ a.T) / (b * lam_a)
        return g.T @ np.linalg.solve(K, a)
    K = np.eye(n, dtype=a.dtype) + (a.T @ a) / (b * lam_a)
    return np.linalg.solve(K, (g.T @ a).T).T


# %%
verdict = course.check("T5.1", zeta_star)

# %% [markdown]
# <details><summary><b>Hint</b> (T5.1)</summary>
#
# ζ* = gᵀ (I_b + a aᵀ/(b·lam_a))⁻¹ a: one b×b solve (np.linalg.solve(K, a)). For b > n the n×n form gᵀa (I_n + aᵀa/(b·lam_a))⁻¹ is cheaper and equal. Keep the dtype (np.eye(b, dtype=a.dtype)).
#
# </details>

# %% [markdown]
# ## Plug it in: ISAAC trains with your $\zeta^\star$

# %%
if course.passed("T5.1"):
    make = lambda model: optim.ISAAC(model, nn.CrossEntropyLoss(), lr=1.0, lam_a=1.0)
    reference, _ = train(make, 60)
    with course.plug_in("zeta_star", zeta_star) as plugged:
        losses, model = train(make, 60)
    compare_runs("zeta_star", reference, losses, model, plugged.calls)
else:
    print("Skipped until T5.1 passes: this cell trains ISAAC with your zeta_star.")

# %% [markdown]
# **What you built.** `tinycurv.curvature.zeta_star`; the library's also orders the three products
# by cost and never waits for the GPU (`docs/isaac.md`). Next: [track 6](06_cubic_step.ipynb),
# GroupedNewton's cubic step.
