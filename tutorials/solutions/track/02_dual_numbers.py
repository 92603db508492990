# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 2 · Dual numbers: the rules of forward mode — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *Part 2 of 7. Prerequisites: tutorial 02, sections 1–3; Taylor series to first order. Reading
# 15 min; running under 15 s.*
#
# A dual number $p + \varepsilon t$ with $\varepsilon^2 = 0$ carries a value and a derivative:
# $f(p + \varepsilon t) = f(p) + \varepsilon f'(p)\,t$. `tinycurv.dual` implements one such rule
# per operation; the primitives of `tinycurv.ops` compute with them, so on dual data every forward
# sweep is a JVP and every backward sweep an HVP. Three details make the rules general:
#
# * a **plain array is a constant** (tangent 0), and two plain operands give a plain result;
# * a **batched** tangent has shape `(k,) + primal.shape`: k directions at once (`tc.hvp(…, batched=True)`);
# * a primal may itself be a Dual (**nesting**): `Dual(Dual(x, u), u)` carries second derivatives,
#   three levels third ones (`tc.taylor`). Recursion handles any depth.
#
# **You will be able to** write a forward-mode rule that works for constants, batches and nesting.
# You write `tanh` and `mul`; plugged into `tinycurv.dual`, they carry every JVP, HVP and Taylor
# coefficient of the library — and GroupedNewton, which needs batched HVPs and third derivatives,
# trains with them.

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
# ## T2.1 · `tanh` on duals
#
# $\tanh(p + \varepsilon t) = \tanh p + \varepsilon\,(1 - \tanh^2 p)\,t$. For a Dual `x`, compute
# `y = tanh(x.primal)` with **your own function** (the primal may be a Dual) and return
# `Dual(y, (1 - y * y) * x.tangent)`; for a plain array return `np.tanh(x)`.

# %% [markdown]
# Write ``tanh(x) -> tanh(x), a Dual when x is a Dual (any nesting, batched tangents)``.
#
# The check compares it with the library's on: a plain array (a constant); Dual(x, dx), arrays (2, 3); a batched Dual: tangent (k=4,) + x.shape; a nested Dual(Dual(x, u), u): second derivatives; Dual(Dual(Dual(x, u), u), u): third derivatives (tinycurv.taylor).

# %%
def tanh(x):
    """T2.1 · tanh(p + ε·t) = tanh(p) + ε·(1 − tanh²p)·t, recursively for nested duals."""
    if not isinstance(x, Dual):
        return np.tanh(x)
    y = tanh(x.primal)
    return Dual(y, (1.0 - y * y) * x.tangent)


# %%
verdict = course.check("T2.1", tanh)


# %% [markdown]
# <details><summary><b>Hint</b> (T2.1)</summary>
#
# tanh(p + ε·t) = tanh(p) + ε·(1 − tanh²p)·t. If x is not a Dual return np.tanh(x); else y = tanh(x.primal) (recursion: the primal may be a Dual) and return Dual(y, (1 − y·y) * x.tangent).
#
# </details>

# %% [markdown]
# ## T2.2 · `mul` on duals
#
# $(a + \varepsilon\,da)(b + \varepsilon\,db) = ab + \varepsilon\,(da\,b + a\,db)$. Operators
# on Duals call `tinycurv.dual.mul` again, so nesting works by itself once the rule is right.

# %% [markdown]
# Write ``mul(x, y) -> x·y elementwise; a Dual when x or y is one``.
#
# The check compares it with the library's on: two plain arrays; Dual op Dual, shapes (2, 3); Dual op plain array (a constant); plain array op Dual; Dual (2, 3) op plain (3,): broadcasting; a batched Dual (tangent (k=3,) + shape) op plain.

# %%
def mul(x, y):
    """T2.2 · (a + ε·da)(b + ε·db) = ab + ε·(da·b + a·db); a plain operand is a constant."""
    if not isinstance(x, Dual) and not isinstance(y, Dual):
        return x * y
    if not isinstance(y, Dual):
        return Dual(x.primal * y, x.tangent * y)
    if not isinstance(x, Dual):
        return Dual(x * y.primal, x * y.tangent)
    return Dual(x.primal * y.primal, x.tangent * y.primal + x.primal * y.tangent)


# %%
verdict = course.check("T2.2", mul)

# %% [markdown]
# <details><summary><b>Hint</b> (T2.2)</summary>
#
# (a + ε·da)(b + ε·db) = ab + ε·(da·b + a·db), as ε² = 0. A plain operand is a constant (tangent 0); two plain operands give the plain product a * b.
#
# </details>

# %% [markdown]
# ## Plug them in
#
# First the derivatives of a network: a batched HVP (4 directions) and the third derivative along a
# line, with the library's rules and with yours.

# %%
if course.passed("T2.1") and course.passed("T2.2"):
    net = nn.Sequential(nn.Linear(64, 16, rng=0), nn.Tanh(), nn.Linear(16, 10, rng=1))
    params = net.parameters()
    closure = lambda: nn.CrossEntropyLoss()(net(X_train[:32]), y_train[:32])
    rng = np.random.default_rng(3)
    V = [rng.standard_normal((4,) + p.shape) for p in params]
    u = [rng.standard_normal(p.shape) for p in params]
    expected = (tc.hvp(closure, params, V, batched=True), tc.taylor(closure, params, u, order=3))
    with course.plug_in("dual.tanh", tanh) as p1, course.plug_in("dual.mul", mul) as p2:
        mine = (tc.hvp(closure, params, V, batched=True), tc.taylor(closure, params, u, order=3))
    hv_error = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(mine[0], expected[0]))
    print(f"batched H·v: relative difference {hv_error:.1e}  ({p1.calls} tanh, {p2.calls} mul calls)")
    print("Taylor coefficients, library:", np.round(expected[1], 6))
    print("Taylor coefficients, yours:  ", np.round(mine[1], 6))
else:
    print("Skipped until T2.1 and T2.2 passes: this cell differentiates a network with your rules.")

# %% [markdown]
# GroupedNewton (tutorial 06) runs on exactly these: a batched HVP per update and `taylor` for its order-3 term.

# %%
if course.passed("T2.1") and course.passed("T2.2"):
    make = lambda model: optim.GroupedNewton(model, nn.CrossEntropyLoss(), lr=0.5, update_every=5)
    reference, _ = train(make, 30)
    with course.plug_in("dual.tanh", tanh) as p1, course.plug_in("dual.mul", mul) as p2:
        losses, model = train(make, 30)
    compare_runs("tanh and mul", reference, losses, model, p1.calls + p2.calls)
else:
    print("Skipped until T2.1 and T2.2 passes: this cell trains GroupedNewton with your rules.")

# %% [markdown]
# **What you built.** Two of the rules of `tinycurv/dual.py`; read `div`, `matmul` and `getitem` there
# (broadcasting of batched tangents is what `_align` does). Next: [track 3](03_hvp.ipynb) turns
# reverse mode on duals into Hessian-vector products.
