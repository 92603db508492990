# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Hessian-free optimisation and the natural gradient
#
# Both methods solve a damped linear system in the curvature at every step,
# $$
# \theta \leftarrow \theta - \alpha\,(C + \lambda I)^{-1} g ,
# $$
# without ever forming $C$: **conjugate gradients** (CG) needs only products $Cv$. Hessian-free
# (Martens 2010) takes $C = G$, the generalised Gauss–Newton matrix, and wraps CG in damping and
# backtracking heuristics; the natural gradient (Amari 1998) takes $C = F$, the Fisher.
#
# **Objectives.** After this notebook you can
#
# 1. compute GGN-vector products with `GGNOperator` and solve $(G + \lambda I)x = g$ with
#    `conjugate_gradient`, and predict how fast CG converges from the spectrum of $G$;
# 2. explain why the exact Fisher of a softmax output *is* the GGN, and how a sampled Fisher
#    approaches it ($\propto 1/\sqrt{S}$);
# 3. run `HessianFree` and `NaturalGradient` on the digits and compare them with K-FAC and SGD,
#    per step and per second.
#
# Derivations: `docs/diagnostics.md` (§1, §2, §6, §8). Exercises at the end; solutions in
# `solutions/10_hessian_free_and_natural_gradient.ipynb`.

# %%
# Where tinycurv is not installed yet (Colab, a fresh environment), install it from GitHub;
# its dependencies (NumPy, SciPy, matplotlib, scikit-learn, ...) are all this notebook needs.
import importlib.util

if importlib.util.find_spec("tinycurv") is None:
    # %pip install --quiet "tinycurv @ git+https://github.com/tinycurv/tinycurv"

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import nn
from tinycurv.curvature import dense
from tinycurv.curvature.estimators import fisher_output_matrix
from tinycurv.curvature.matrix_free import GGNOperator, conjugate_gradient
from tinycurv.data import batches, load_digits
from tinycurv.optim.hessian_free import HessianFree, levenberg_marquardt
from tinycurv.optim.kfac import KFAC
from tinycurv.optim.natural_gradient import NaturalGradient
from tinycurv.optim.sgd import SGD

plt.rcParams.update({"figure.dpi": 120})
notebook_start = time.perf_counter()
X_train, y_train, X_test, y_test = load_digits()
loss_fn = nn.CrossEntropyLoss()


def make_model(hidden=16, seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, hidden, rng=r), nn.Tanh(), nn.Linear(hidden, 10, rng=r))


def flat(arrays):
    return tc.asnumpy(dense.flatten(arrays))


# %% [markdown]
# ## 1. Conjugate gradients on the GGN
#
# On one batch of $b$ samples with outputs $f_n$, Jacobians $J_n$ and loss Hessians $H_n$,
# $$
# G v = \frac1b\sum_n J_n^\top H_n J_n v :
# $$
# a forward-mode sweep gives $J_n v$, then $u_n = H_n J_n v / b$, then one backward sweep gives
# $\sum_n J_n^\top u_n$. `GGNOperator(model, loss_fn, x)` records the forward pass once and
# reuses it for every product, so each product costs a dual forward and a backward sweep.
#
# CG minimises $\varphi(x) = \tfrac12 x^\top A x - b^\top x$ with $A = G + \lambda I$, $b = g$. Its
# error in the $A$-norm after $i$ iterations is bounded by
# $$
# \|x_i - x_*\|_A \le 2\left(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\right)^i \|x_0 - x_*\|_A,
# \qquad \kappa = \frac{\lambda_{\max}(G) + \lambda}{\lambda_{\min}(G) + \lambda}.
# $$
# The damping bounds $\kappa$: the GGN of a network is very ill-conditioned (often singular: its rank
# is at most $b\,m$), so without damping CG would crawl.

# %%
model = make_model()
params = model.parameters()
x, y = X_train[:64], y_train[:64]
G_dense = tc.asnumpy(dense.ggn(model, loss_fn, x))  # (p, p), for reference only
g = tc.grad(lambda: loss_fn(model(x), y), params)
eig = np.linalg.eigvalsh(G_dense)
p = G_dense.shape[0]
print(f"p = {p} parameters; GGN eigenvalues from {eig[0]:.1e} to {eig[-1]:.3f}, "
      f"rank {np.sum(eig > 1e-10 * eig[-1])} (b·m = {64 * 10})")

G = GGNOperator(model, loss_fn, x)
v = [np.random.default_rng(1).standard_normal(q.shape) for q in params]
print("|G v - dense G v| =", np.abs(flat(G(v)) - G_dense @ flat(v)).max())

# %% tags=["roundoff"]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for i, lam in enumerate([1e-1, 1e-2, 1e-3]):
    A = G_dense + lam * np.eye(p)
    exact = np.linalg.solve(A, flat(g))
    result = conjugate_gradient(lambda v: [a + lam * b for a, b in zip(G(v), v)], g,
                                tol=1e-10, max_iter=300, keep=True)
    errors = [flat(result.iterates[k]) - exact for k in sorted(result.iterates)]
    a_norm = np.sqrt([e @ A @ e for e in errors])
    kappa = (eig[-1] + lam) / (max(eig[0], 0.0) + lam)
    bound = 2 * ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** np.arange(len(errors))
    ax.semilogy(a_norm / a_norm[0], color=f"C{i}", label=f"λ = {lam:g}: CG ({result.iterations} it.)")
    ax.semilogy(bound, color=f"C{i}", ls=":", lw=1)
    print(f"λ = {lam:g}: κ = {kappa:9.1f}, {result.iterations:3d} iterations, "
          f"|x - solve| = {np.abs(flat(result.x) - exact).max():.1e}")
ax.set_ylim(1e-11, 3)
ax.set_xlabel("CG iteration"); ax.set_ylabel("relative A-norm error")
ax.legend(fontsize=8); ax.set_title("CG on G + λI (dotted: the κ bound)")
plt.show()

# %% [markdown]
# * CG reaches `numpy.linalg.solve`'s answer to rounding, through products only.
# * The bound (dotted) is pessimistic: CG adapts to the whole spectrum, not just its ends. The GGN has
#   a few large eigenvalues and a huge cluster near zero; CG removes the outliers in a few iterations,
#   and after that the cluster — shifted to $\approx\lambda$ — looks well conditioned. That is why
#   Hessian-free can **truncate** CG (Martens stops when $\varphi$ stops improving; 250 iterations at
#   most) and still get most of the reduction.
# * Smaller damping means a larger $\kappa$ and more iterations: Hessian-free adapts $\lambda$ to
#   keep the model trustworthy (§3), and thereby also the cost of CG.

# %% [markdown]
# ## 2. The exact Fisher of a softmax is the GGN
#
# The Fisher replaces $H_n$ by $E_{y\sim p(\cdot\mid f_n)}[\nabla_f \ell\,\nabla_f \ell^\top]$. For the
# softmax cross-entropy $\nabla_f \ell = \pi - e_y$ with $\pi = \mathrm{softmax}(f)$, and
# $$
# E_y\big[(\pi - e_y)(\pi - e_y)^\top\big] = \pi\pi^\top - 2\pi\pi^\top + \mathrm{diag}(\pi)
# = \mathrm{diag}(\pi) - \pi\pi^\top = \nabla_f^2 \ell ,
# $$
# whatever the label: so $F = G$ exactly (the same for MSE; in general whenever the outputs are the
# natural parameters of an exponential family). A **Monte-Carlo Fisher** samples $S$ labels per
# input from the model; it is unbiased, with an error $\propto 1/\sqrt S$. The **empirical Fisher**
# uses the true labels instead and is a different matrix altogether.

# %%
with tc.no_grad():
    f = model(x).data
H = tc.asnumpy(loss_fn.hessian(f))
pi = tc.asnumpy(loss_fn.probabilities(f))
expectation = sum(pi[:, c, None, None] * np.einsum("ni,nj->nij", pi - np.eye(10)[c], pi - np.eye(10)[c])
                  for c in range(10))
print("max |E_y[(π - e_y)(π - e_y)ᵀ] - ∇²ℓ| over the batch:", np.abs(expectation - H).max())

samples = [1, 4, 16, 64, 256, 1024]
errors = [np.mean([np.linalg.norm(tc.asnumpy(fisher_output_matrix(loss_fn, f, kind="mc", mc_samples=S, rng=s)) - H)
                   for s in range(5)]) for S in samples]
F_emp = tc.asnumpy(dense.fisher(model, loss_fn, x, y, kind="empirical"))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(samples, errors, "o-", label="MC Fisher: ‖M_S − H‖")
ax.loglog(samples, errors[0] / np.sqrt(samples), "k:", label="∝ 1/√S")
ax.set_xlabel("samples S per input"); ax.legend(); plt.show()
print(f"empirical Fisher vs GGN: relative difference "
      f"{np.linalg.norm(F_emp - G_dense) / np.linalg.norm(G_dense):.2f}")

# %% [markdown]
# ## 3. Hessian-free, natural gradient, K-FAC and SGD on the digits
#
# One `HessianFree` step (defaults from Martens 2010 and Martens & Sutskever 2012):
#
# 1. $x \approx (G + \lambda I)^{-1}g$ by CG, started from $0.95\,x_\text{prev}$ and stopped by the
#    progress test;
# 2. **CG backtracking**: among the iterates $x_{\lceil 1.3^j\rceil}$ take the one with the lowest
#    loss (later iterates can overfit the minibatch's quadratic);
# 3. the **reduction ratio** $\rho = \dfrac{L(\theta - p) - L(\theta)}{M(p) - M(0)}$ against the
#    quadratic model $M(p) - M(0) = -g^\top p + \tfrac12 p^\top G p$, and the Levenberg–Marquardt rule
#    $\lambda \leftarrow \tfrac32\lambda$ if $\rho < \tfrac14$, $\lambda \leftarrow \tfrac23\lambda$
#    if $\rho > \tfrac34$;
# 4. an Armijo line search on $\alpha$.
#
# `NaturalGradient` takes $\theta \leftarrow \theta - \eta\,(F + \lambda I)^{-1}g$ with fixed $\eta$ and $\lambda$.

# %%
print([round(levenberg_marquardt(1.0, rho), 3) for rho in (-1.0, 0.1, 0.5, 0.9)])


def train(make_opt, steps=150, batch_size=128):
    model = make_model(hidden=32)
    opt = make_opt(model)
    losses, clock, cpu = [], [], 0.0
    while len(losses) < steps:
        for xb, yb in batches(X_train, y_train, batch_size, rng=len(losses)):
            t0 = time.process_time()
            losses.append(opt.step(xb, yb))
            cpu += time.process_time() - t0
            clock.append(cpu)
            if len(losses) == steps:
                break
    with tc.no_grad():
        accuracy = float((tc.asnumpy(model(X_test).data).argmax(1) == y_test).mean())
    return np.array(losses), np.array(clock), accuracy, opt


methods = {
    "SGD (lr 0.1, momentum 0.9)": lambda m: SGD(m, loss_fn, lr=0.1, momentum=0.9),
    "K-FAC (lr 0.3, λ 1e-2)": lambda m: KFAC(m, loss_fn, lr=0.3, damping=1e-2, seed=0),
    "Hessian-free (λ ≥ 1e-2)": lambda m: HessianFree(m, loss_fn, min_damping=1e-2),
    "natural gradient (exact F)": lambda m: NaturalGradient(m, loss_fn),
}
runs = {name: train(make) for name, make in methods.items()}
for name, (losses, clock, accuracy, opt) in runs.items():
    print(f"{name:28s} loss (last 10) {losses[-10:].mean():.4f}  test accuracy {accuracy:.3f}  "
          f"{1e3 * clock[-1] / len(losses):6.1f} ms/step")
hf = runs["Hessian-free (λ ≥ 1e-2)"][3]
print(f"Hessian-free at the end: λ = {hf.state['damping']:.3g}, ρ = {hf.state['rho']:.2f}, "
      f"{hf.state['cg_iterations']} CG iterations, chose iterate {hf.state['cg_chosen']}")


# %%
def smooth(v, k=10):
    return np.convolve(v, np.ones(k) / k, mode="valid")


fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for name, (losses, clock, _, _) in runs.items():
    ax0.semilogy(smooth(losses), label=name)
    ax1.semilogy(clock[9:], smooth(losses), label=name)
ax0.set_xlabel("step"); ax1.set_xlabel("CPU seconds"); ax0.set_ylabel("minibatch loss (10-step mean)")
ax0.legend(fontsize=8); plt.show()


# %% [markdown]
# * **Per step** the curvature methods are far ahead of SGD: each of their steps solves a damped
#   Gauss–Newton system (Hessian-free and the natural gradient the same system up to the damping
#   rule, since $F = G$ here). Hessian-free ends lowest; its bumps are steps that the minibatch's
#   quadratic model over-trusted, after which ρ drops and λ grows again.
# * **Per second** the order changes: a Hessian-free step makes tens of CG iterations, each a
#   GGN-vector product (≈ 1.5–2 gradients), and a natural-gradient step up to 50; K-FAC inverts
#   small Kronecker factors instead and is the fastest here by the clock. On a problem this small
#   the CG-based methods pay for solving each system well — Martens' HF pays off with large
#   batches, where the curvature is estimated well and one step can go far.
# * Without the floor `min_damping=1e-2` (try it), λ shrinks whenever the minibatch model is
#   trustworthy, CG then fits each minibatch too well and the test accuracy suffers.

# %% [markdown]
# ## Exercises
#
# **E1 · Conjugate gradients from scratch.** Write `my_cg(matvec, b, iters)` on flat NumPy vectors,
# starting from $x_0 = 0$, returning the list of iterates $[x_0, x_1, \ldots, x_{\text{iters}}]$.
# The check compares them with `conjugate_gradient(..., keep=True)` on the damped GGN of §1.
#
# **E2 · The reduction ratio and the damping rule.** Write `reduction_ratio(loss_before,
# loss_after, g, p, Gp)` for the step $\theta \to \theta - p$ (flat vectors; $G p$ given) and
# `damping_update(lam, rho)` (Martens' rule, with a NaN $\rho$ treated like a bad one). The check
# scripts a sequence of $\rho$ and compares with `levenberg_marquardt`, and recomputes $\rho$ for a
# real step.
#
# **E3 · A dense natural-gradient step.** Write `natural_gradient_step(theta, g, F, lam, lr)`
# returning $\theta - \eta(F + \lambda I)^{-1}g$ (flat). The check builds the Monte-Carlo Fisher
# with `dense.fisher(kind="mc", rng=seed)` and compares with one step of
# `NaturalGradient(fisher="mc", solver="dense", seed=seed)`, which draws the same labels.

# %%
def my_cg(matvec, b, iters):
    """Iterates [x_0, ..., x_iters] of CG on A x = b from x_0 = 0 (flat NumPy vectors)."""
    raise NotImplementedError  # E1: your code here


# %%
lam = 1e-2
A = G_dense + lam * np.eye(p)
reference = conjugate_gradient(lambda v: [a + lam * b for a, b in zip(G(v), v)], g,
                               tol=0.0, max_iter=15, keep=True)
try:
    mine = my_cg(lambda v: A @ v, flat(g), 15)
    gap = max(np.abs(m - flat(reference.iterates[i])).max() for i, m in enumerate(mine))
    print(f"E1: largest difference to the library's iterates: {gap:.1e}")
    assert gap < 1e-8
except NotImplementedError:
    print("E1: not attempted yet")


# %%
def reduction_ratio(loss_before, loss_after, g, p, Gp):
    """ρ = (L(θ − p) − L(θ)) / (M(p) − M(0)) with M(p) − M(0) = −gᵀp + ½ pᵀGp."""
    raise NotImplementedError  # E2: your code here


def damping_update(lam, rho):
    """Martens' rule: λ·3/2 if ρ < 1/4 (or NaN), λ·2/3 if ρ > 3/4, else λ."""
    raise NotImplementedError  # E2: your code here


# %%
try:
    lam_mine = lam_lib = 1.0
    for rho in (0.9, 0.9, 0.1, 0.5, -2.0, float("nan"), 0.8):
        lam_mine, lam_lib = damping_update(lam_mine, rho), levenberg_marquardt(lam_lib, rho)
        assert abs(lam_mine - lam_lib) < 1e-12, (rho, lam_mine, lam_lib)
    step = np.linalg.solve(G_dense + 0.1 * np.eye(p), flat(g))  # p = (G + λI)⁻¹ g
    closure = lambda: loss_fn(model(x), y)
    theta = [q.data for q in params]
    with tc.no_grad():
        before = closure().item()
        for q, d in zip(params, dense.unflatten(step, params)):
            q.data = q.data - d
        after = closure().item()
    for q, t in zip(params, theta):
        q.data = t
    rho = reduction_ratio(before, after, flat(g), step, G_dense @ step)
    print(f"E2: the damping rule matches; ρ of the step with λ = 0.1: {rho:.3f}")
except NotImplementedError:
    print("E2: not attempted yet")


# %%
def natural_gradient_step(theta, g, F, lam, lr):
    """θ − lr·(F + λI)⁻¹ g on flat vectors."""
    raise NotImplementedError  # E3: your code here


# %%
try:
    seed, S = 7, 4
    twin = make_model()
    F_mc = tc.asnumpy(dense.fisher(twin, loss_fn, x, y, kind="mc", mc_samples=S, rng=seed))
    g_twin = flat(tc.grad(lambda: loss_fn(twin(x), y), twin.parameters()))
    mine = natural_gradient_step(flat([q.data for q in twin.parameters()]), g_twin, F_mc, 0.1, 0.3)
    NaturalGradient(twin, loss_fn, lr=0.3, damping=0.1, fisher="mc", mc_samples=S, seed=seed,
                    solver="dense").step(x, y)
    gap = np.abs(mine - flat([q.data for q in twin.parameters()])).max()
    print(f"E3: largest difference to NaturalGradient's step: {gap:.1e}")
    assert gap < 1e-10
except NotImplementedError:
    print("E3: not attempted yet")

# %%
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")
