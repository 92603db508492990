# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 3 · Hessian-vector products: forward-over-reverse — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *Part 3 of 7. Prerequisites: tutorial 02, section 3; tracks 1–2. Reading 10 min; running under
# 20 s.*
#
# Replace every parameter's data by $\theta + \varepsilon v$ and run the ordinary backward sweep:
# every primitive's `backward` computes on duals, and the gradient comes back as
# $\nabla L(\theta + \varepsilon v) = \nabla L(\theta) + \varepsilon\, H v$ (Pearlmutter 1994). No
# Hessian is ever formed; the cost is a small multiple of a gradient.
#
# **You will be able to** compute $Hv$ for any network with one sweep, and know the two details that
# make such a transform safe: restore the parameters afterwards (`finally:`), and clear `p.grad`
# before the sweep (gradients accumulate).
#
# You write `hvp(closure, params, vectors)`. Plugged in, it is what `SeriesSFN` (tutorial 07) calls
# for its power iteration, its series of HVPs and its 2×2 model — and the network trains.

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
# ## T3.1 · `hvp`
#
# For each parameter: `p.data = Dual(p.data, v)` and `p.grad = None`; call `closure().backward()`;
# each `p.grad` is then `Dual(∇L, H·v)`. Return the tangents, and put `p.data` (and `p.grad`) back
# whatever happens. The grader calls your function twice on the same network: the second answer must
# equal the first.

# %% [markdown]
# Write ``hvp(closure, params, vectors) -> [H·v], arrays shaped like params``.
#
# The check compares it with the library's on: a 2-3-1 tanh MLP, MSE; a 4-5-3 tanh MLP, cross-entropy; a 3-4-4-2 tanh MLP, MSE, batch 1.

# %%
def hvp(closure, params, vectors):
    """T3.1 · H·v by forward-over-reverse: reverse mode on Dual(θ, v) gives Dual(∇L, H·v)."""
    saved = [(p.data, p.grad) for p in params]
    try:
        for p, v in zip(params, vectors):
            p.data, p.grad = Dual(p.data, v), None
        closure().backward()
        return [p.grad.tangent if isinstance(p.grad, Dual) else np.zeros(p.shape) for p in params]
    finally:
        for p, (data, grad) in zip(params, saved):
            p.data, p.grad = data, grad


# %%
verdict = course.check("T3.1", hvp)

# %% [markdown]
# <details><summary><b>Hint</b> (T3.1)</summary>
#
# Set p.data = Dual(p.data, v) and p.grad = None for every parameter, call closure().backward(): each p.grad comes back as Dual(∇L, H·v). Return the tangents and restore p.data (and p.grad) in a finally.
#
# </details>

# %% [markdown]
# ## Plug it in: saddle-free Newton trains with your HVPs
#
# `SeriesSFN` approximates $(|H| + \lambda I)^{-1} g$ by a series of HVPs (track 7). The plug adapts
# your function to `tc.hvp`'s `batched=True` (one call per direction).

# %%
if course.passed("T3.1"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=10, acceleration=2)
    reference, _ = train(make, 15)
    with course.plug_in("hvp", hvp) as plugged:
        losses, model = train(make, 15)
    compare_runs("hvp", reference, losses, model, plugged.calls)
else:
    print("Skipped until T3.1 passes: this cell trains SeriesSFN with your hvp.")

# %% [markdown]
# SeriesSFN may warn that it enlarged its scale $V$: its series checks that the terms shrink and retries with a larger $V$ when one grows (track 7). The warning comes from the library, in both runs.

# %% [markdown]
# **What you built.** `tinycurv.functional.hvp` in a dozen lines; the library's adds batched
# directions, checks of the shapes and dtypes, and a parameter that is computed on the tape. Next:
# [track 4](04_kfac_factors.ipynb), curvature without any HVP.
