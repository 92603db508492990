# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Track 1 · The engine's primitives: forward and backward — solution
#
# *The solution notebook: instructors can withhold `tutorials/solutions/`.*
#
# *The build-it-yourself track ([README](../../track/README.md)), part 1 of 7. Prerequisites: tutorial 01,
# sections 1–3; the chain rule; NumPy broadcasting. Reading 15 min; running under 10 s.*
#
# Every gradient in tinycurv is a chain of **primitives**: small classes with a `forward` (arrays in,
# an array out, keeping on `self` what the derivative needs) and a `backward`, the vector-Jacobian
# product that maps the cotangent `gy` of the output to one cotangent per input. `Function.apply`
# records them on the tape; `Tensor.backward` calls their `backward` in reverse order.
#
# **You will be able to** write a primitive from its derivative, check it, and see it carry a
# network's training — and its Hessian-vector products.
#
# You write `Tanh` and `MatMul`. The grader (`course.check`) compares them with the library's
# `tinycurv.ops.Tanh` and `tinycurv.ops.MatMul` on random inputs, float32 ones and **dual numbers**
# (tutorial 02): write them with `tinycurv.dual` (`D.tanh`) and operators (`*`, `@`, `.T`), never
# `np.tanh`, and forward-over-reverse will run through them. Then `course.plug_in` puts them in
# place of the library's: every `x.tanh()`, every `@`, every `nn.Linear` and `nn.Tanh` uses yours.

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
# ## T1.1 · `Tanh`
#
# $y = \tanh x$ and $\dfrac{dy}{dx} = 1 - \tanh^2 x = 1 - y^2$, so the backward rule is
# $\bar x = \bar y\,(1 - y^2)$ elementwise. Keep `y` in `forward`; return **a tuple** from
# `backward`, one cotangent per input: `(gx,)`.

# %% [markdown]
# Write ``class Tanh(Function): forward(self, x) -> y;  backward(self, gy) -> (gx,)``.
#
# The check compares it with the library's on: a vector (5,); a matrix (3, 4); float32 (4,); a dual input (forward-over-reverse).

# %%
class Tanh(Function):
    """T1.1 · y = tanh(x); backward: gx = gy·(1 − y²), with the output y kept by forward."""

    def forward(self, x):
        """x (an array or a Dual) -> tanh(x); keep what backward needs on self."""
        self.y = D.tanh(x)  # tinycurv.dual's tanh accepts arrays and duals
        return self.y

    def backward(self, gy):
        """gy, the cotangent of y -> (gx,), a tuple with one cotangent per input."""
        return (gy * (1.0 - self.y * self.y),)


# %%
verdict = course.check("T1.1", Tanh)


# %% [markdown]
# <details><summary><b>Hint</b> (T1.1)</summary>
#
# forward keeps y = D.tanh(x) on self and returns it; backward returns (gy * (1 − y·y),): tanh' = 1 − tanh². Write it with tinycurv.dual (D.tanh, D.mul, D.sub) or operators, so that it runs on duals too.
#
# </details>

# %% [markdown]
# ## T1.2 · `MatMul`
#
# $y = x w$ with $x$ of shape $(b, n)$ and $w$ of shape $(n, m)$. The cotangents have the shapes of
# their inputs: $\bar x = \bar y\, w^\top$ $(b, n)$ and $\bar w = x^\top \bar y$ $(n, m)$. (The
# library's version also broadcasts leading batch axes; two dimensions are enough for an MLP.)

# %% [markdown]
# Write ``class MatMul(Function): forward(self, x, w) -> x @ w;  backward(self, gy) -> (gx, gw) for 2-D x (b, n), w (n, m)``.
#
# The check compares it with the library's on: square (4, 4) @ (4, 4); (3, 5) @ (5, 2); one row: (1, 4) @ (4, 3); float32 (6, 2) @ (2, 3); a dual weight and a dual cotangent (forward-over-reverse).

# %%
class MatMul(Function):
    """T1.2 · y = x @ w for 2-D x (b, n), w (n, m); backward: (gy wᵀ, xᵀ gy)."""

    def forward(self, x, w):
        """x (b, n), w (n, m) -> x @ w (b, m); keep x and w for backward."""
        self.x, self.w = x, w
        return x @ w

    def backward(self, gy):
        """gy (b, m) -> (gx (b, n), gw (n, m)), each shaped like its input."""
        return gy @ self.w.T, self.x.T @ gy


# %%
verdict = course.check("T1.2", MatMul)

# %% [markdown]
# <details><summary><b>Hint</b> (T1.2)</summary>
#
# forward keeps x and w; backward returns (gy @ w.T, x.T @ gy): each cotangent is shaped like its input.
#
# </details>

# %% [markdown]
# ## Plug them in: SGD trains a network with your primitives
#
# Inside `course.plug_in(...)` the library's `ops.Tanh` and `ops.MatMul` *are* your classes. The same
# training runs twice, with the library's primitives and with yours, from the same seed.

# %%
if course.passed("T1.1") and course.passed("T1.2"):
    make = lambda model: optim.SGD(model, nn.CrossEntropyLoss(), lr=0.5, momentum=0.9)
    reference, _ = train(make, 100)
    with course.plug_in("Tanh", Tanh) as tanh_plug, course.plug_in("MatMul", MatMul) as mm_plug:
        losses, model = train(make, 100)
    compare_runs("Tanh and MatMul", reference, losses, model, tanh_plug.calls + mm_plug.calls)
else:
    print("Skipped until T1.1 and T1.2 passes: this cell trains a network with your primitives.")

# %% [markdown]
# Because your `backward` was written with operations that accept dual numbers, the engine's
# Hessian-vector product (forward-over-reverse, track 3) runs through it unchanged:

# %%
if course.passed("T1.1") and course.passed("T1.2"):
    net = nn.Sequential(nn.Linear(64, 16, rng=0), nn.Tanh(), nn.Linear(16, 10, rng=1))
    closure = lambda: nn.CrossEntropyLoss()(net(X_train[:32]), y_train[:32])
    v = [np.random.default_rng(2).standard_normal(p.shape) for p in net.parameters()]
    expected = tc.hvp(closure, net.parameters(), v)
    with course.plug_in("Tanh", Tanh), course.plug_in("MatMul", MatMul):
        mine = tc.hvp(closure, net.parameters(), v)
    error = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(mine, expected))
    print(f"H·v through your primitives vs the library's: relative difference {error:.1e}")
else:
    print("Skipped until T1.1 and T1.2 passes: this cell computes an HVP through your primitives.")

# %% [markdown]
# **What you built.** The two primitives an MLP needs. The rest of `tinycurv/ops.py` is more of the
# same: read `Sigmoid`, `LogSoftmax` and `GetItem` next to yours. Next: [track 2](02_dual_numbers.ipynb),
# the dual numbers that your `backward` already runs on.
