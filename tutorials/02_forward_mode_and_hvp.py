# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Forward mode, dual numbers and Hessian-vector products
#
# Second-order methods need curvature, but a network with $n$ parameters has an $n \times n$ Hessian
# that nobody can store. What they *can* afford is the product of the Hessian with a vector, $Hv$,
# computed exactly at the cost of a few gradients. This notebook builds that product from two pieces:
#
# 1. **forward mode** by dual numbers: the directional derivative (a Jacobian-vector product, JVP);
# 2. **forward-over-reverse**: run notebook 01's reverse mode on dual numbers, and the gradient comes
#    back with $Hv$ as its tangent (Pearlmutter 1994).
#
# Then we assemble the dense Hessian of a tiny network from HVPs and check it, batch $k$ directions
# in one sweep, *measure* what an HVP costs against a gradient, and take third derivatives along a
# direction with `tinycurv.taylor`.

# %%
# Where tinycurv is not installed yet (Colab, a fresh environment), install it from GitHub;
# its dependencies (NumPy, SciPy, matplotlib, scikit-learn, ...) are all this notebook needs.
import importlib.util

if importlib.util.find_spec("tinycurv") is None:
    # %pip install --quiet "tinycurv @ git+https://github.com/tinycurv/tinycurv"

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import contextlib
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import Dual, Tensor, nn
from tinycurv import dual as D

tc.set_backend("numpy")
tc.set_default_dtype("float64")  # all checks below are in float64
rng = np.random.default_rng(0)
plt.rcParams.update({"figure.dpi": 120})


# %% [markdown]
# ## 1. Dual numbers by hand
#
# A dual number $a + \varepsilon b$ carries a value $a$ (the *primal*) and a derivative $b$ (the
# *tangent*), with the rule $\varepsilon^2 = 0$. Arithmetic then does calculus by itself:
#
# $$
# (a + \varepsilon b)(c + \varepsilon d) = ac + \varepsilon\,(ad + bc),
# \qquad
# f(a + \varepsilon b) = f(a) + \varepsilon\, f'(a)\, b .
# $$
#
# Seed the input with tangent $b = 1$ and the output's tangent is $f'(a)$. For
# $f(x) = x\,e^{-x^2}$, $\;f'(x) = (1 - 2x^2)\,e^{-x^2}$:

# %%
def f(x):
    return x * D.exp(-(x * x))


a = 1.5
out = f(Dual(a, 1.0))
print(out)
print(f"f(a)  = {out.primal:+.12f}   exact {a * np.exp(-a * a):+.12f}")
print(f"f'(a) = {out.tangent:+.12f}   exact {(1 - 2 * a * a) * np.exp(-a * a):+.12f}")

# %% [markdown]
# Each function of `tinycurv.dual` is ordinary code plus one line of calculus. `D.tanh`, for instance:

# %%
print(inspect.getsource(D.tanh))

# %% [markdown]
# **Nesting.** A primal or a tangent may itself be a dual. Feeding $\mathrm{Dual}(\mathrm{Dual}(a, 1), 1)$
# through $f$ differentiates the derivative: the tangent of the tangent is $f''(a)$. (`tinycurv.taylor`
# nests three levels for $f'''$, section 7.) Here $f''(x) = (4x^3 - 6x)\,e^{-x^2}$:

# %%
out2 = f(Dual(Dual(a, 1.0), 1.0))
print(f"f''(a) = {out2.tangent.tangent:+.12f}   exact {(4 * a**3 - 6 * a) * np.exp(-a * a):+.12f}")

# %% [markdown]
# ## 2. JVPs on a network: `tinycurv.jvp`
#
# For a loss $L(\theta)$ and a direction $v$, forward mode replaces every parameter's data by
# $\mathrm{Dual}(\theta, v)$ and runs the forward pass once; the loss comes out as
#
# $$
# L(\theta + \varepsilon v) = L(\theta) + \varepsilon\, \nabla L(\theta)^\top v .
# $$
#
# Our test network for the rest of the notebook is a tiny `tinycurv.nn` MLP, $2 \to 3 \to 1$ with
# `tanh`, on 16 random regression samples with `MSELoss`
# ($L = \frac{1}{b}\sum_n \tfrac12\lVert f(x_n) - y_n\rVert^2$). It has 13 parameters.

# %%
model = nn.Sequential(nn.Linear(2, 3, rng=rng), nn.Tanh(), nn.Linear(3, 1, rng=rng))
X = rng.standard_normal((16, 2))
Y = np.sin(2 * X[:, :1]) + 0.1 * rng.standard_normal((16, 1))
loss_fn = nn.MSELoss()
params = model.parameters()
names = [f"{n} {p.shape}" for n, p in model.named_parameters()]
print(model)
print("parameters:", names, "->", model.num_parameters(), "numbers")


def closure():
    return loss_fn(model(X), Y)


def flatten(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def unflatten(vector):
    out, start = [], 0
    for p in params:
        out.append(vector[start:start + p.size].reshape(p.shape))
        start += p.size
    return out


@contextlib.contextmanager
def shifted(step):
    """Temporarily move the parameters to theta + step (step: list shaped like params)."""
    saved = [p.data for p in params]
    for p, s in zip(params, step):
        p.data = p.data + s
    try:
        yield
    finally:
        for p, d in zip(params, saved):
            p.data = d


def rel_error(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))


# %%
v = [rng.standard_normal(p.shape) for p in params]
value, directional = tc.jvp(closure, params, v)

h = 1e-5
with shifted([h * t for t in v]):
    up = closure().item()
with shifted([-h * t for t in v]):
    down = closure().item()
fd = (up - down) / (2 * h)
g_dot_v = flatten(tc.grad(closure, params)) @ flatten(v)

print(f"L(theta)         = {float(value):.12f}")
print(f"JVP (dual)       = {float(directional):+.12f}")
print(f"grad . v (rev.)  = {g_dot_v:+.12f}")
print(f"central diff.    = {fd:+.12f}   relative error of the JVP: {abs(directional - fd) / abs(fd):.1e}")

# %% [markdown]
# Forward mode gives *one* directional derivative per sweep, reverse mode the whole gradient per
# sweep. For a scalar loss reverse mode wins — unless we want to differentiate the gradient itself.
#
# ## 3. Hessian-vector products: forward-over-reverse
#
# The Hessian-vector product is the directional derivative of the gradient:
#
# $$
# H v \;=\; \frac{d}{dt}\,\nabla L(\theta + t v)\Big|_{t=0}.
# $$
#
# So: compute the gradient (reverse mode) *on dual numbers* $\mathrm{Dual}(\theta, v)$ (forward mode).
# Every `forward` and every `backward` in `tinycurv.ops` does its math with `tinycurv.dual` functions,
# so on dual data the backward sweep differentiates itself, and each gradient arrives as
#
# $$
# \mathrm{Dual}\big(\nabla L(\theta),\; H v\big).
# $$
#
# This is Pearlmutter's $\mathcal{R}\{\cdot\}$-operator — B. A. Pearlmutter, *Fast exact multiplication
# by the Hessian*, Neural Computation 6(1):147–160, 1994: $Hv$ exactly, in one forward and one backward
# sweep, without ever forming $H$. Here it is by hand, with nothing but the parts from notebook 01:

# %%
saved = [p.data for p in params]
for p, t in zip(params, v):
    p.data, p.grad = Dual(p.data, t), None  # theta + eps * v
closure().backward()  # the ordinary reverse sweep, on duals
by_hand = [p.grad for p in params]
for p, d in zip(params, saved):
    p.data, p.grad = d, None

print("type of the gradient:", type(by_hand[0]).__name__)
print("its primal is the gradient:", np.allclose(flatten([g.primal for g in by_hand]),
                                                 flatten(tc.grad(closure, params))))
Hv = tc.hvp(closure, params, v)  # the same thing, packaged
print("its tangent is tc.hvp:     ", np.allclose(flatten([g.tangent for g in by_hand]), flatten(Hv)))

# %% [markdown]
# Check it against central differences of the gradient,
# $\;Hv \approx \big(\nabla L(\theta + hv) - \nabla L(\theta - hv)\big) / 2h$:

# %%
with shifted([h * t for t in v]):
    g_up = flatten(tc.grad(closure, params))
with shifted([-h * t for t in v]):
    g_down = flatten(tc.grad(closure, params))
Hv_fd = (g_up - g_down) / (2 * h)
print("Hv (forward-over-reverse):", np.round(flatten(Hv)[:5], 8), "...")
print("Hv (central differences): ", np.round(Hv_fd[:5], 8), "...")
print(f"relative error: {rel_error(flatten(Hv), Hv_fd):.1e}")

# %% [markdown]
# ## 4. The dense Hessian of a tiny network, from HVPs
#
# With $n = 13$ parameters we can afford the whole Hessian: its $j$-th column is $H e_j$, one HVP
# per basis vector. Finite differences of the gradient give an independent estimate.

# %%
n = model.num_parameters()
basis = np.eye(n)
H = np.stack([flatten(tc.hvp(closure, params, unflatten(e))) for e in basis], axis=1)


def grad_at(step):
    with shifted(unflatten(step)):
        return flatten(tc.grad(closure, params))


H_fd = np.stack([(grad_at(h * e) - grad_at(-h * e)) / (2 * h) for e in basis], axis=1)

print(f"Hessian {H.shape}: relative error vs finite differences {rel_error(H, H_fd):.1e}")
print(f"symmetry:  max |H - H^T| = {np.abs(H - H.T).max():.1e}   (finite differences: "
      f"{np.abs(H_fd - H_fd.T).max():.1e})")
eigenvalues = np.linalg.eigvalsh(H)
print("eigenvalues:", np.round(eigenvalues, 4))

# %%
starts = np.cumsum([0] + [p.size for p in params])
labels = ["W1", "b1", "W2", "b2"]
# the b2-b2 entry is exactly 1 (d^2 L / d b2^2 = mean of 1 for the MSE loss) and would wash out the
# colours of everything else: clip the colour scale at the largest *other* magnitude
limit = np.sort(np.abs(H).ravel())[-2]

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
panels = [
    (H, "H from 13 HVPs", dict(cmap="RdBu_r", vmin=-limit, vmax=limit)),
    (H_fd, "H from finite differences of the gradient", dict(cmap="RdBu_r", vmin=-limit, vmax=limit)),
    (np.log10(np.abs(H - H_fd) + 1e-18), "log10 |H(HVP) - H(finite differences)|",
     dict(cmap="viridis", vmin=-14, vmax=-9)),
]
for ax, (M, title, style) in zip(axes, panels):
    im = ax.imshow(M, **style)
    for s in starts[1:-1]:
        ax.axhline(s - 0.5, color="k", lw=0.8)
        ax.axvline(s - 0.5, color="k", lw=0.8)
    centres = (starts[:-1] + starts[1:] - 1) / 2
    ax.set_xticks(centres, labels)
    ax.set_yticks(centres, labels)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, extend="both" if M is not panels[2][0] else "neither")
fig.suptitle("Hessian of the 2-3-1 tanh MLP (MSE loss), blocks by parameter", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things to read off:
#
# * the two estimates agree to about $10^{-10}$ relative or better — forward-over-reverse is exact,
#   the finite differences carry the usual $O(h^2)$ + rounding error (right panel);
# * $H$ is **symmetric** to rounding, as a Hessian of a smooth function must be (the order of the two
#   differentiations does not matter);
# * some eigenvalues are **negative**: at a generic point of a neural network the Hessian is
#   *indefinite*. A Newton step $-H^{-1}\nabla L$ would then move *uphill* along those directions —
#   why notebook 03 introduces the positive semi-definite GGN and Fisher, and notebook 07
#   saddle-free Newton.
#
# ## 5. Batched tangents: $k$ directions in one sweep
#
# A tangent may carry a leading axis of $k$ directions, shape $(k,) + \theta\text{.shape}$. The primal
# work is done once and every product with a tangent becomes one larger (BLAS-friendly) operation.
# With `batched=True` and the 13 basis vectors as directions, one call returns the whole Hessian:

# %%
# direction j is the basis vector e_j, cut into blocks shaped like the parameters: (13,) + p.shape
directions = [np.eye(n)[:, s:e].reshape((n,) + p.shape) for p, s, e in zip(params, starts[:-1], starts[1:])]
H_batched = np.concatenate([hv.reshape(n, -1) for hv in tc.hvp(closure, params, directions, batched=True)], axis=1)
print("tangent shapes:", [d.shape for d in directions])
print(f"max |H_batched - H| = {np.abs(H_batched - H).max():.1e}")

# %% [markdown]
# How much does batching save? Count the work. In an HVP each product of two duals costs three
# products of arrays, $(A + \varepsilon\dot A)(B + \varepsilon \dot B) = AB + \varepsilon(\dot A B + A\dot B)$;
# with $k$ directions the primal product $AB$ is shared and only the $2k$ tangent products remain:
#
# $$
# \frac{\text{cost of } k \text{ separate HVPs}}{\text{cost of one batched HVP}} \;\approx\;
# \frac{3k}{1 + 2k} \;\xrightarrow{k\to\infty}\; 1.5 .
# $$
#
# On a CPU that is roughly the whole gain (a little more in practice: the Python work of a sweep is
# shared too); on a GPU batching also fills the device and saves kernel
# launches and Python overhead, so the gain is larger (notebook 08). We measure on a
# $64 \to 128 \to 128 \to 10$ tanh MLP with a batch of 128 and cross-entropy loss.
#
# *Timing protocol.* We want to count *work*, so we pin the BLAS library to one thread (via
# `threadpoolctl`, when installed) and read the **CPU time of this process**
# (`time.process_time`) rather than the wall clock: time spent waiting while other programs use the
# CPU does not count, so the numbers hold up on a busy shared machine. Each number is the fastest of
# five runs after a warm-up, and the candidates run in interleaved rounds (all of them once, then all
# again, …). Timings still vary from machine to machine; the *ratios* are what to
# look at.

# %% tags=["timing"]
try:
    from threadpoolctl import threadpool_limits
except ImportError:  # timings are then noisier, the code still runs
    threadpool_limits = None


def one_thread():
    return threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext()


def best_times(candidates, rounds=5):
    """{name: least CPU time in seconds} of each function over `rounds` interleaved rounds."""
    for fn in candidates.values():  # warm-up
        fn()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.process_time()  # CPU time of this process, all its threads
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return best


def mlp_problem(sizes, batch, seed=0):
    """A tanh MLP with the given layer sizes, a random classification batch and its closure."""
    r = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, rng=r))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    net = nn.Sequential(*layers)
    xb, yb = r.standard_normal((batch, sizes[0])), r.integers(0, sizes[-1], size=batch)
    ce = nn.CrossEntropyLoss()
    return net, (lambda: ce(net(xb), yb))


net_small, closure_small = mlp_problem([64, 128, 128, 10], batch=128)
p_small = net_small.parameters()
ks = [1, 2, 4, 8, 16]
candidates = {}
for k in ks:
    V = [rng.standard_normal((k,) + p.shape) for p in p_small]  # k directions per parameter
    candidates["loop", k] = lambda V=V, k=k: [tc.hvp(closure_small, p_small, [d[i] for d in V])
                                              for i in range(k)]
    candidates["batched", k] = lambda V=V: tc.hvp(closure_small, p_small, V, batched=True)
with one_thread():
    best = best_times(candidates)
t_loop = [best["loop", k] for k in ks]
t_batched = [best["batched", k] for k in ks]
for k, a, b in zip(ks, t_loop, t_batched):
    print(f"k = {k:2d}: {k:2d} separate HVPs {a * 1e3:6.1f} ms   one batched HVP {b * 1e3:6.1f} ms"
          f"   speed-up {a / b:.2f}  (count: {3 * k / (1 + 2 * k):.2f})")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4))
ax0.plot(ks, np.array(t_loop) * 1e3, "o-", label="k separate HVPs")
ax0.plot(ks, np.array(t_batched) * 1e3, "s-", label="one batched HVP (k directions)")
ax0.set(xlabel="number of directions k", ylabel="CPU time (ms)", title="Time for k Hessian-vector products")
ax0.legend(fontsize=8)
ax0.grid(alpha=0.3)
kk = np.linspace(1, max(ks), 100)
ax1.plot(ks, np.array(t_loop) / np.array(t_batched), "o-", label="measured")
ax1.plot(kk, 3 * kk / (1 + 2 * kk), "--", color="gray", label="matmul count $3k/(1+2k)$")
ax1.axhline(1, color="k", lw=0.5)
ax1.set(xlabel="number of directions k", ylabel="speed-up of batching",
        title="Batched vs separate HVPs (CPU, 1 thread)", ylim=(0, 2.5))
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. What does an HVP cost? Measured
#
# "An HVP costs about as much as a few gradients" — let us count, then measure. The work of an MLP is
# its matrix products; per `Linear` layer with input $A$ (batch × in) and weight $W$:
#
# | sweep | gradient (plain arrays) | HVP (every operand a dual) |
# |---|---|---|
# | forward $\;Z = A W^\top$ | 1 | 3: $\;AW^\top,\; \dot A W^\top,\; A \dot W^\top$ |
# | backward $\;\bar A = \bar Z W$ | 1 | 3 |
# | backward $\;\bar W = \bar Z^\top A$ | 1 | 3 |
# | **total** | **3** | **9** |
#
# Each product of duals costs three matmuls, $(A + \varepsilon\dot A)(B + \varepsilon\dot B) =
# AB + \varepsilon(\dot A B + A \dot B)$, so every layer is $9/3 = 3\times$ as expensive. The *first*
# layer is cheaper: its input $A$ is data — a constant, $\dot A = 0$ — and nobody needs $\bar A$, so it
# costs 2 matmuls in the gradient and 4 in the HVP. The predicted ratio is therefore a little below
# 3, the more so the wider the input. (Elementwise work — `tanh`, the loss — adds the same kind of
# factor, but is cheap next to the matmuls.)
#
# We time a gradient and an HVP on a $784 \to 512 \to 512 \to 10$ tanh MLP (MNIST-sized input), batch
# 256, cross-entropy, float64:

# %% tags=["timing"]
sizes, batch = [784, 512, 512, 10], 256
net, closure_net = mlp_problem(sizes, batch)
p_net = net.parameters()
v_net = [rng.standard_normal(p.shape) for p in p_net]

with one_thread():
    best = best_times({
        "forward": lambda: closure_net(),
        "JVP": lambda: tc.jvp(closure_net, p_net, v_net),
        "gradient": lambda: tc.grad(closure_net, p_net),
        "HVP": lambda: tc.hvp(closure_net, p_net, v_net),
    })
t_forward, t_jvp, t_grad, t_hvp = best["forward"], best["JVP"], best["gradient"], best["HVP"]

# the matmul count of the table above, in multiply-adds, layer by layer
layers = list(zip(sizes[:-1], sizes[1:]))
grad_flops = sum(batch * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(layers))
hvp_flops = sum(batch * a * b * (4 if i == 0 else 9) for i, (a, b) in enumerate(layers))

print(f"forward {t_forward * 1e3:6.1f} ms   JVP {t_jvp * 1e3:6.1f} ms   "
      f"gradient {t_grad * 1e3:6.1f} ms   HVP {t_hvp * 1e3:6.1f} ms")
print(f"HVP / gradient: measured {t_hvp / t_grad:.2f}, predicted by the matmul count {hvp_flops / grad_flops:.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
bars = ax.bar(["forward", "JVP", "gradient", "HVP"], np.array([t_forward, t_jvp, t_grad, t_hvp]) * 1e3,
              color=["C7", "C2", "C0", "C3"])
ax.bar_label(bars, fmt="%.0f ms", fontsize=8)
ax.set(ylabel="CPU time (ms, best of 5)",
       title=f"MLP {'-'.join(map(str, sizes))}, batch {batch}, float64, CPU 1 thread")
ax.margins(y=0.15)
plt.show()

# %% [markdown]
# The measured ratio sits close to the matmul count — usually a little below it, since the count
# ignores the elementwise work and BLAS runs some matrix shapes faster than others. An HVP is a small constant number of gradients,
# *independent of the number of parameters* — which is why every curvature method of the later
# notebooks (CG, power iteration, GroupedNewton's $S \times S$ summary, saddle-free Newton's series)
# is written in terms of HVPs. (The same sweep computes the gradient on the way — the primal of the
# dual, as section 3 showed — though `tc.hvp` returns only the tangent.)
#
# ## 7. `tinycurv.taylor`: higher derivatives along a direction
#
# Restrict the loss to a line, $\varphi(t) = L(\theta + t\,u)$. Its derivatives at $t = 0$ are
#
# $$
# \varphi'(0) = \nabla L^\top u, \qquad
# \varphi''(0) = u^\top H u, \qquad
# \varphi'''(0) = \nabla^3 L\,[u, u, u].
# $$
#
# `tinycurv.taylor` nests duals three deep, $\mathrm{Dual}(\mathrm{Dual}(\mathrm{Dual}(\theta, u), u), u)$,
# and reads all of them off one forward sweep (8 components per number). Cubic regularisation
# (notebook 06) needs exactly $\varphi'''$. We check against the JVP, the HVP, and finite-difference
# stencils of $\varphi$:
#
# $$
# \varphi'' \approx \frac{\varphi(h) - 2\varphi(0) + \varphi(-h)}{h^2}, \qquad
# \varphi''' \approx \frac{\varphi(2h) - 2\varphi(h) + 2\varphi(-h) - \varphi(-2h)}{2h^3}.
# $$

# %% tags=["roundoff"]
u_rng = np.random.default_rng(1)  # its own seed: this section does not depend on the ones above
u = [u_rng.standard_normal(p.shape) for p in params]  # a random direction
phi0, d1, d2, d3 = tc.taylor(closure, params, u, order=3)


def phi(t, direction=u):
    with shifted([t * a for a in direction]):
        return closure().item()


h1, h2, h3 = 1e-5, 1e-4, 1e-3  # each stencil has its own best step
fd1 = (phi(h1) - phi(-h1)) / (2 * h1)
fd2 = (phi(h2) - 2 * phi(0) + phi(-h2)) / h2**2
fd3 = (phi(2 * h3) - 2 * phi(h3) + 2 * phi(-h3) - phi(-2 * h3)) / (2 * h3**3)
other = [f"{float(tc.jvp(closure, params, u)[1]):16.9f}",  # phi' = grad . u by forward mode
         f"{flatten(u) @ flatten(tc.hvp(closure, params, u)):16.9f}",  # phi'' = u.Hu by an HVP
         f"{'-':>16s}"]
print(f"{'':8s}{'taylor':>16s}{'JVP / u.Hu':>16s}{'finite diff.':>16s}{'rel. error':>12s}")
for name, exact, alt, fd_value in zip(["phi'", "phi''", "phi'''"], [d1, d2, d3], other, [fd1, fd2, fd3]):
    print(f"{name:8s}{exact:16.9f}{alt}{fd_value:16.9f}{abs(exact - fd_value) / abs(exact):12.1e}")

# %%
ts = np.linspace(-3, 3, 121)
_, eigenvectors = np.linalg.eigh(H)  # H from section 4; columns sorted by eigenvalue
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
for ax, column, which in zip(axes, [0, -1], ["most negative", "largest"]):
    e = unflatten(eigenvectors[:, column])  # a unit vector
    coefs = tc.taylor(closure, params, e, order=3)
    phis = np.array([phi(t, e) for t in ts])
    ax.plot(ts, phis, color="k", lw=2.5, label=r"$\varphi(t) = L(\theta + t e)$")
    terms = [coefs[0], coefs[1], coefs[2] / 2, coefs[3] / 6]
    for order, style in zip([1, 2, 3], ["--", "-.", ":"]):
        poly = sum(c * ts**j for j, c in enumerate(terms[: order + 1]))
        ax.plot(ts, poly, style, lw=1.5, label=f"Taylor polynomial of order {order}")
    t_newton = -coefs[1] / coefs[2]  # stationary point of the quadratic model
    ax.plot([t_newton], [phi(t_newton, e)], "v", color="C3", ms=9, label="Newton step along $e$")
    subtitle = rf"$\varphi''(0) = {coefs[2]:+.3f}$,  $\varphi'''(0) = {coefs[3]:+.3f}$"
    ax.set(xlabel="step $t$ along the unit eigenvector $e$", ylabel="loss",
           title=f"Along the eigenvector of the {which} eigenvalue\n" + subtitle,
           ylim=(phis.min() - 0.25 * np.ptp(phis), phis.max() + 0.25 * np.ptp(phis)))
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# Two lines through the same point $\theta$: the eigenvectors of section 4's Hessian, so
# $\varphi''(0)$ is exactly that eigenvalue (compare with the list printed there — a check in itself).
#
# * **Right**, positive curvature: each added Taylor term hugs $\varphi$ longer, and the Newton step
#   (the stationary point of the quadratic model, $t = -\varphi'(0)/\varphi''(0)$) lands near the
#   minimum along the line.
# * **Left**, negative curvature: $\varphi$ is a double well and $\theta$ sits near the top of the hump
#   between the wells. The quadratic model is a downward parabola whose stationary point is a
#   *maximum*, and the Newton step goes to the top of the hump: Newton's method is attracted to
#   saddle points. Notebook 07's saddle-free Newton flips the sign of such curvature; notebook 06's
#   cubic regularisation uses $\varphi'''$ to decide how far the quadratic model can be trusted.
#
# ## Exercises
#
# 1. **Curvature along the gradient.** With $g = \nabla L$, compute $g^\top H g / \lVert g\rVert^2$ with one
#    `tc.hvp` and the step $\eta^\star = \lVert g\rVert^2 / g^\top H g$ that minimises the quadratic model
#    along $-g$. Check on the tiny MLP that $L(\theta - \eta^\star g)$ is lower than $L(\theta)$ when
#    $g^\top H g > 0$ (a preview of notebook 06).
# 2. **Power iteration.** Starting from a random $v$, iterate $v \leftarrow Hv / \lVert Hv\rVert$ with
#    `tc.hvp` only. Which eigenvalue of section 4 does $v^\top H v$ converge to, and how fast? How
#    would you find the most *negative* eigenvalue with HVPs only?
# 3. **Count again.** Using the table of section 6, predict the HVP/gradient ratio for
#    $784 \to 100 \to 10$ and for $100 \to 1000 \to 1000 \to 1000 \to 10$, then measure them with
#    `mlp_problem` and `best_times`. Which prediction is closer, and why?

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 02.1 · A dual-number rule: exp
#
# Write `dual_exp(x) -> exp(x), a Dual when x is a Dual (any nesting, batched tangents)`.

# %%
def dual_exp(x):
    """02.1 · exp(p + ε·t) = exp(p) + ε·exp(p)·t, recursively for nested duals."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("02.1", dual_exp)


# %% [markdown]
# <details><summary><b>Hint</b> (02.1)</summary>
#
# exp(p + ε·t) = exp(p) + ε·exp(p)·t. If x is not a Dual return np.exp(x); else e = dual_exp(x.primal) (recursion: the primal may be a Dual) and return Dual(e, e * x.tangent).
#
# </details>

# %% [markdown]
# ### 02.2 · A dual-number rule: the quotient
#
# Write `dual_div(x, y) -> x / y elementwise; a Dual when x or y is one`.

# %%
def dual_div(x, y):
    """02.2 · (a + ε·da)/(b + ε·db) = a/b + ε·(da − (a/b)·db)/b; constants have no tangent."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("02.2", dual_div)


# %% [markdown]
# <details><summary><b>Hint</b> (02.2)</summary>
#
# (a + ε·da)/(b + ε·db) = a/b + ε·(da − (a/b)·db)/b. A plain operand is a constant (tangent 0); two plain operands give a / b.
#
# </details>

# %% [markdown]
# ### 02.3 · A JVP by one forward sweep on duals
#
# Write `jvp(closure, params, vectors) -> (L(θ), ∇L(θ)·v), two numbers`.

# %%
def jvp(closure, params, vectors):
    """02.3 · (L(θ), ∇L(θ)·v) from one forward sweep on Dual(θ, v)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("02.3", jvp)


# %% [markdown]
# <details><summary><b>Hint</b> (02.3)</summary>
#
# Replace every p.data by Dual(p.data, v) (keep the originals), run closure() inside tc.no_grad(), read out.data.primal and out.data.tangent, and restore p.data in a finally.
#
# </details>

# %% [markdown]
# ### 02.4 · Hessian-vector products: forward-over-reverse
#
# Write `hvp(closure, params, vectors) -> [H·v], arrays shaped like params`.

# %%
def hvp(closure, params, vectors):
    """02.4 · H·v by forward-over-reverse: reverse mode on Dual(θ, v) gives Dual(∇L, H·v)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("02.4", hvp)


# %% [markdown]
# <details><summary><b>Hint</b> (02.4)</summary>
#
# Set p.data = Dual(p.data, v) and p.grad = None for every parameter, call closure().backward(): each p.grad comes back as Dual(∇L, H·v). Return the tangents and restore p.data (and p.grad) in a finally.
#
# </details>

# %% [markdown]
# ### 02.5 · The dense Hessian from HVPs
#
# Write `dense_hessian(closure, params, vectors) -> H (p, p); `vectors` is unused`.

# %%
def dense_hessian(closure, params, vectors=None):
    """02.5 · The p×p Hessian, column j = H·eⱼ (row-major flattening, parameter order)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("02.5", dense_hessian)

# %% [markdown]
# <details><summary><b>Hint</b> (02.5)</summary>
#
# Column j of H is H·eⱼ: cut the basis vector eⱼ into pieces shaped like the parameters (row-major, in order), call tc.hvp, flatten the result with np.ravel and concatenate; stack the p columns.
#
# </details>
