# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Automatic differentiation: tensors, the tape, reverse mode
#
# Everything in tinycurv — gradients, Hessian-vector products, K-FAC, ISAAC, Newton steps — rests on
# one small engine. This first notebook takes it apart.
#
# **What you will see**
#
# 1. a `Tensor` and the *tape* it records (`creator`, `parents`);
# 2. one primitive, `tinycurv.ops.Tanh`, with its `forward` rule and its `backward` rule side by side;
# 3. `backward()`, the reverse sweep that applies the chain rule from the loss back to the leaves;
# 4. a gradient check by central finite differences, in float64, with its relative error;
# 5. a 1-D function and its derivative: the engine against finite differences and the exact formula.
#
# **The idea in one equation.** A program is a composition of primitives,
# $L = f_K \circ \dots \circ f_2 \circ f_1(\theta)$. By the chain rule its gradient is a product of
# Jacobians,
#
# $$
# \nabla_\theta L^\top \;=\; \underbrace{\tfrac{\partial L}{\partial y_K}}_{=1}\,
# J_{f_K}\, J_{f_{K-1}} \cdots J_{f_1}.
# $$
#
# *Reverse mode* evaluates this product from the left: it starts with the cotangent
# $\bar y_K = \partial L / \partial y_K = 1$ and hands it backwards through each primitive, which maps
# the cotangent of its output to the cotangents of its inputs,
#
# $$
# \bar x \;=\; J_f^\top\, \bar y \qquad \text{(a vector-Jacobian product, VJP).}
# $$
#
# No Jacobian is ever formed: each primitive only knows how to multiply one by a vector. One forward
# sweep plus one backward sweep gives the derivative with respect to *all* inputs, at a cost of a
# small constant times the forward pass.

# %%
# Where tinycurv is not installed yet (Colab, a fresh environment), install it from GitHub;
# its dependencies (NumPy, SciPy, matplotlib, scikit-learn, ...) are all this notebook needs.
import importlib.util

if importlib.util.find_spec("tinycurv") is None:
    # %pip install --quiet "tinycurv @ git+https://github.com/tinycurv/tinycurv"

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import inspect

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import Function, Tensor, ops

tc.set_backend("numpy")
tc.set_default_dtype("float64")  # numerical checks need float64 (notebook 08 says why)
rng = np.random.default_rng(0)  # every random number below comes from this seed
plt.rcParams.update({"figure.dpi": 120, "axes.grid": True, "grid.alpha": 0.3})

# %% [markdown]
# ## 1. A tensor and the tape
#
# A `Tensor` wraps an array, `tensor.data`. A leaf created with `requires_grad=True` is something we
# want the gradient *of the loss with respect to*. Every operation on tensors runs a primitive and,
# if any input requires a gradient, records on the output
#
# * `creator` — the primitive (a `Function` instance) that made it, holding what its backward rule
#   will need;
# * `parents` — the tensors it was computed from.
#
# Following `parents` from the output back to the leaves walks the **tape**: the computation graph,
# recorded while the forward pass ran. Let us build
#
# $$
# y = \tanh(w\,x + b), \qquad x = 0.5,\; w = -1.5,\; b = 0.3 .
# $$

# %%
x = Tensor(0.5, requires_grad=True, name="x")
w = Tensor(-1.5, requires_grad=True, name="w")
b = Tensor(0.3, requires_grad=True, name="b")

z = x * w + b
y = z.tanh()
print("y =", y.item())
print("y.creator =", type(y.creator).__name__, "  y.parents =", y.parents)
print("z.creator =", type(z.creator).__name__, "   z.parents =", z.parents)
print("x.creator =", x.creator, "  (a leaf)")


# %% [markdown]
# A few lines print the whole tape as a tree, output at the top, leaves at the bottom:

# %%
def show_tape(t, indent=0):
    """Print the tape below tensor t: the primitive that made each node, or 'leaf'."""
    made_by = "leaf" if t.creator is None else type(t.creator).__name__
    label = f" '{t.name}'" if t.name else ""
    print("    " * indent + f"{made_by:<5}{label:<5} value = {t.item():+.4f}")
    for parent in t.parents:
        show_tape(parent, indent + 1)


show_tape(y)

# %% [markdown]
# `Function.apply` is where a node joins the tape: it runs the primitive's `forward` on the raw
# arrays, wraps the result in a new `Tensor`, and stores `creator` and `parents` on it (only when some
# input requires a gradient, and not inside `with tc.no_grad():`).

# %%
print(inspect.getsource(Function.apply))

# %% [markdown]
# ## 2. One primitive: forward and backward side by side
#
# Each primitive in `tinycurv/ops.py` is a small class with an explicit `forward` (arrays in, array
# out) and `backward` (the cotangent of the output in, one cotangent per input out). For
# $y = \tanh(z)$,
#
# $$
# \frac{dy}{dz} = 1 - \tanh^2 z = 1 - y^2
# \quad\Longrightarrow\quad
# \bar z = \bar y\,(1 - y^2).
# $$
#
# The forward rule keeps $y$ on `self`, because the backward rule needs it:

# %%
print(inspect.getsource(ops.Tanh))
print(inspect.getsource(ops.Mul))

# %% [markdown]
# All the array math goes through `D` (`tinycurv.dual`), whose functions accept plain arrays *or* dual
# numbers. That detail looks cosmetic here; in notebook 02 it is what turns this same `backward` into
# a Hessian-vector product.
#
# We can drive a primitive by hand, without any tensor: forward on an array, then backward with the
# cotangent $\bar y = 1$.

# %%
tanh_fn = ops.Tanh()
z_value = np.array(0.5 * -1.5 + 0.3)
y_value = tanh_fn.forward(z_value)
(z_bar,) = tanh_fn.backward(np.array(1.0))
print(f"forward : tanh({z_value:+.3f}) = {y_value:+.6f}")
print(f"backward: z_bar = 1 * (1 - y^2) = {z_bar:+.6f}")

# %% [markdown]
# ## 3. `backward()`: the reverse sweep
#
# `y.backward()` orders the tape so that every node comes after its parents (a topological sort),
# then visits it in reverse, calling each `creator.backward` and summing the cotangents that arrive at
# each node; leaves store theirs in `.grad`. This is the whole loop:

# %%
print(inspect.getsource(Tensor.backward))

# %%
y.backward()

slope = 1 - y.item() ** 2  # tanh'(z)
by_hand = {"x": slope * w.item(), "w": slope * x.item(), "b": slope}
for leaf in (x, w, b):
    print(f"dy/d{leaf.name} = {float(leaf.grad):+.12f}   by hand: {by_hand[leaf.name]:+.12f}")

# %% [markdown]
# Gradients **accumulate**: a second `backward()` adds to `.grad` (that is what lets a leaf used
# twice receive both contributions). Clear them between steps, as every optimiser does:

# %%
y.backward()
print("after a second backward():", float(x.grad), "(twice the gradient)")
for leaf in (x, w, b):
    leaf.zero_grad()
print("after zero_grad():        ", x.grad)

# %% [markdown]
# ## 4. Checking a gradient by central finite differences
#
# The engine is only useful if it is right. The standard check perturbs one parameter at a time,
#
# $$
# \frac{\partial L}{\partial \theta_i} \;\approx\; \frac{L(\theta + h\,e_i) - L(\theta - h\,e_i)}{2h},
# $$
#
# whose error is $O(h^2)$ from truncation plus about $\epsilon_\text{mach}\,|L| / h$ from rounding.
# In float64 ($\epsilon_\text{mach} \approx 2.2\times 10^{-16}$) the two balance near
# $h \approx \epsilon_\text{mach}^{1/3} \approx 10^{-5}$, which leaves a relative error around
# $10^{-10}$: far below any real bug, far above zero. We report
#
# $$
# \text{rel. error} = \frac{\lVert g_\text{engine} - g_\text{FD} \rVert}{\max(\lVert g_\text{engine}\rVert, \lVert g_\text{FD}\rVert)} .
# $$
#
# The test function is a small layer with a penalty — a matrix product, a broadcast bias, `tanh`, a
# power, a mean and a sum, so six different primitives must all be right:
#
# $$
# L(W, c) = \operatorname{mean}\big(\tanh(X W^\top + c)^2\big) + 0.01\,\lVert W \rVert^2 .
# $$

# %%
X = rng.standard_normal((5, 4))
W = Tensor(rng.standard_normal((3, 4)), requires_grad=True, name="W")
c = Tensor(rng.standard_normal(3), requires_grad=True, name="c")
params = [W, c]


def loss():
    return ((Tensor(X) @ W.T + c).tanh() ** 2).mean() + (W * W).sum() * 0.01


def numerical_grad(f, params, h=1e-5):
    """Central differences of the scalar f() in every entry of every parameter."""
    grads = []
    for p in params:
        g = np.zeros_like(p.data)
        for i in np.ndindex(p.shape):
            saved = p.data[i]
            p.data[i] = saved + h
            up = f().item()
            p.data[i] = saved - h
            down = f().item()
            p.data[i] = saved
            g[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def rel_error(a, b):
    a, b = np.concatenate([np.ravel(t) for t in a]), np.concatenate([np.ravel(t) for t in b])
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))


for p in params:
    p.zero_grad()
loss().backward()
engine = [W.grad, c.grad]
fd = numerical_grad(loss, params)
err = rel_error(engine, fd)
print("dL/dc engine:", np.round(c.grad, 8))
print("dL/dc FD    :", np.round(fd[1], 8))
print(f"relative error over all {W.size + c.size} entries (float64, h = 1e-5): {err:.1e}")
assert err < 1e-8

# %% [markdown]
# How does the error depend on $h$? Sweeping it shows the two regimes of the error formula above:
# truncation ($\propto h^2$) on the right, rounding ($\propto \epsilon_\text{mach}/h$) on the left.

# %%
steps = np.logspace(-12, -1, 23)
errors = [rel_error(engine, numerical_grad(loss, params, h)) for h in steps]

fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.loglog(steps, errors, "o-", ms=4, label="central differences vs engine")
eps = np.finfo(np.float64).eps
# guide lines through the measured end points: slope +2 (truncation), slope -1 (rounding)
ax.loglog(steps, errors[-3] * (steps / steps[-3]) ** 2, "--", color="gray", label=r"truncation $\propto h^2$")
ax.loglog(steps, errors[0] * steps[0] / steps, ":", color="gray", label=r"rounding $\propto \epsilon/h$")
ax.axvline(eps ** (1 / 3), color="C3", lw=1, label=r"$h = \epsilon^{1/3}$")
ax.set(xlabel="step $h$", ylabel="relative error of the gradient",
       title="Finite-difference gradient check (float64)", ylim=(1e-12, 1))
ax.legend(fontsize=8, loc="upper center")
plt.show()
print(f"best h = {steps[int(np.argmin(errors))]:.0e}, smallest relative error = {min(errors):.1e}")


# %% [markdown]
# ## 5. A function and its derivative
#
# Take the 1-D function
#
# $$
# f(x) = \tanh(2x)\,e^{-x^2/4} + 0.1\,x^2,
# \qquad
# f'(x) = \big[2\,(1-\tanh^2 2x) - \tfrac{x}{2}\tanh 2x\big]\,e^{-x^2/4} + 0.2\,x .
# $$
#
# Applied elementwise to a vector of 400 points, its Jacobian is diagonal, so one backward sweep of
# $\sum_i f(x_i)$ returns all 400 derivatives $f'(x_i)$ at once ($J^\top \mathbf{1}$ is the diagonal).

# %%
def f(x):
    return (x * 2.0).tanh() * (x * x * -0.25).exp() + x * x * 0.1


def f_prime_exact(x):
    t = np.tanh(2 * x)
    return (2 * (1 - t**2) - 0.5 * x * t) * np.exp(-(x**2) / 4) + 0.2 * x


grid = np.linspace(-4, 4, 400)
xs = Tensor(grid.copy(), requires_grad=True)
f(xs).sum().backward()
d_engine = xs.grad

h = 1e-5
d_fd = (f(Tensor(grid + h)).numpy() - f(Tensor(grid - h)).numpy()) / (2 * h)
d_exact = f_prime_exact(grid)
print(f"max |engine - exact| = {np.abs(d_engine - d_exact).max():.1e}")
print(f"max |FD     - exact| = {np.abs(d_fd - d_exact).max():.1e}")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4))
ax0.plot(grid, f(Tensor(grid)).numpy(), color="k", label="$f(x)$")
ax0.plot(grid, d_engine, color="C0", lw=2, label="$f'(x)$, engine (reverse mode)")
ax0.plot(grid[::12], d_fd[::12], "o", ms=4, mfc="none", color="C1",
         label="$f'(x)$, central differences")
ax0.axhline(0, color="gray", lw=0.5)
ax0.set(xlabel="$x$", ylabel="value", title="A function and its derivative")
ax0.legend(fontsize=8)

floor = 1e-18  # errors that are exactly 0 (equal to the last bit) are drawn here
ax1.semilogy(grid, np.maximum(np.abs(d_fd - d_exact), floor), ".", ms=3, color="C1",
             label="central differences - exact")
ax1.semilogy(grid, np.maximum(np.abs(d_engine - d_exact), floor), ".", ms=3, color="C0",
             label="engine - exact")
ax1.axhline(np.finfo(np.float64).eps, color="gray", lw=0.8, ls="--", label=r"machine $\epsilon$ (float64)")
ax1.set(xlabel="$x$", ylabel="absolute error of $f'(x)$",
        title="Error against the exact derivative", ylim=(3e-19, 1e-7))
ax1.text(-4, 2.2e-18, "exactly equal (error 0)", fontsize=7, color="C0")
ax1.legend(fontsize=8, loc="upper right")
fig.tight_layout()
plt.show()

# %% [markdown]
# The engine's derivative agrees with the exact formula to rounding (at most a few $10^{-16}$, and
# often to the last bit): reverse mode is *exact* differentiation
# carried out in floating point. Finite differences carry their own $O(h^2)$ + rounding error,
# around $10^{-10}$ here. That is why they make a good *check* and a poor *method*: one check costs
# two loss evaluations per parameter.
#
# **Next:** notebook 02 pushes dual numbers through the very same `backward` rules to get
# Hessian-vector products.
#
# ## Exercises
#
# 1. **Add a primitive.** Write `class Softplus(Function)` with `forward(x)` returning
#    $\log(1 + e^x)$ and `backward(gy)` returning `(gy * sigmoid(x),)`, using only functions of
#    `tinycurv.dual` (`D.log`, `D.exp`, `D.add`, `D.mul`, `D.sigmoid`). Apply it with
#    `Softplus.apply(t)` and check its gradient with `numerical_grad` (relative error below $10^{-8}$).
# 2. **A Jacobian, one row at a time.** For $Y = \tanh(X W^\top)$ (shape 5×3), `Y.backward(grad=E)`
#    with a one-hot cotangent `E` gives one row of the Jacobian $\partial Y / \partial W$. Assemble
#    the whole 15×12 Jacobian with 15 backward sweeps and compare it with finite differences.
#    How many *forward*-mode sweeps would the same Jacobian need?
# 3. **Step sizes.** The one-sided difference $(L(\theta + h e_i) - L(\theta))/h$ has truncation
#    error $O(h)$. Add it to the $h$-sweep plot: what is its best $h$, and its best relative error?
#    Explain both with the error formula.

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 01.1 · A primitive: the sigmoid's forward and backward
#
# Write `class Sigmoid(Function): forward(self, x) -> y;  backward(self, gy) -> (gx,)`.

# %%
class Sigmoid(Function):
    """01.1 · y = σ(x) = 1/(1 + e⁻ˣ); backward: gx = gy·y·(1 − y)."""

    def forward(self, x):
        raise NotImplementedError  # your code here

    def backward(self, gy):
        raise NotImplementedError  # your code here


# %%
verdict = course.check("01.1", Sigmoid)


# %% [markdown]
# <details><summary><b>Hint</b> (01.1)</summary>
#
# σ(x) = 1/(1 + e⁻ˣ) and σ'(x) = σ(x)(1 − σ(x)). Keep y = σ(x) on self in forward; backward returns a tuple, (gy·y·(1 − y),). Use D.sigmoid(x) (tinycurv.dual) so that duals work.
#
# </details>

# %% [markdown]
# ### 01.2 · Unbroadcasting a cotangent
#
# Write `unbroadcast(g, shape) -> array of shape `shape``.

# %%
def unbroadcast(g, shape):
    """01.2 · Sum the cotangent g over the axes that broadcasting added or stretched."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("01.2", unbroadcast)


# %% [markdown]
# <details><summary><b>Hint</b> (01.2)</summary>
#
# Broadcasting copied the input along some axes, so its cotangent is the SUM over them: the leading axes g has in excess, and the axes where shape has 1 but g does not. Sum with keepdims=True, then reshape to `shape`.
#
# </details>

# %% [markdown]
# ### 01.3 · A gradient check: central finite differences
#
# Write `numerical_grad(f, x, h=1e-5) -> array shaped like x (f(x) is a float)`.

# %%
def numerical_grad(f, x, h=1e-5):
    """01.3 · Central differences of the scalar f in every entry of x (x is restored)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("01.3", numerical_grad)


# %% [markdown]
# <details><summary><b>Hint</b> (01.3)</summary>
#
# For every entry i: (f(x + h·eᵢ) − f(x − h·eᵢ)) / (2h). Perturb x[i] in place, evaluate, and restore it (np.ndindex(x.shape) visits every entry).
#
# </details>

# %% [markdown]
# ### 01.4 · The vector-Jacobian product of a matrix product
#
# Write `matmul_vjp(x, w, gy) -> (gx, gw) for y = x @ w, x (b, n), w (n, m), gy (b, m)`.

# %%
def matmul_vjp(x, w, gy):
    """01.4 · The cotangents of y = x @ w: gx = gy wᵀ (b, n), gw = xᵀ gy (n, m)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("01.4", matmul_vjp)

# %% [markdown]
# <details><summary><b>Hint</b> (01.4)</summary>
#
# Each cotangent has the shape of its input: gx = gy wᵀ (b, n) and gw = xᵀ gy (n, m). Check the shapes first: (b, m)·(m, n) and (n, b)·(b, m).
#
# </details>
