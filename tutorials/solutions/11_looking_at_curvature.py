# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 · Solutions · Looking at curvature
#
# The curvature methods of notebooks 4–7 and 10 each make an assumption about the spectrum of the
# Hessian $H$ (or of the GGN $G$): that it is positive, that its largest eigenvalue is bounded by a
# scale, that layers differ, that inputs are correlated. Here we *look* at those spectra, without
# forming a matrix, and check what the methods assume.
#
# **Objectives.** After this notebook you can
#
# 1. compute the extreme eigenvalues of $H$ and $G$ with Lanczos (`top_eigenvalues`) and the whole
#    spectral density with stochastic Lanczos quadrature (`spectral_density`), and check both against
#    the dense matrix;
# 2. estimate traces and diagonals with Hutchinson's method, with standard errors, next to the exact
#    GGN diagonal;
# 3. follow the spectrum — and its negative part — during training, and compare the Hessian, GGN and
#    K-FAC spectra;
# 4. read off what the spectrum means for series SFN ($\lambda_i^2 \le 2V$), ISAAC (the input
#    factor's eigenvalues against $\lambda_a$) and GroupedNewton (per-layer curvature and rates).
#
# Derivations: `docs/diagnostics.md` (§3–§5, §7). Exercises at the end; solutions in
# `solutions/11_looking_at_curvature.ipynb`.

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import nn
from tinycurv.curvature import dense
from tinycurv.curvature.estimators import (ggn_diagonal, hutchinson_diagonal, hutchinson_trace,
                                           plot_spectral_density, spectral_density)
from tinycurv.curvature.grouped import grouped_summary
from tinycurv.curvature.kfac import kfac_factors
from tinycurv.curvature.matrix_free import lanczos, top_eigenvalues
from tinycurv.data import batches, load_digits
from tinycurv.optim.sgd import SGD

notebook_start = time.perf_counter()
X_train, y_train, X_test, y_test = load_digits()
loss_fn = nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(64, 16, rng=rng), nn.Tanh(), nn.Linear(16, 10, rng=rng))
params = model.parameters()
x, y = X_train[:256], y_train[:256]  # a fixed curvature batch
closure = lambda: loss_fn(model(x), y)
p = sum(q.size for q in params)


def flat(arrays):
    return tc.asnumpy(dense.flatten(arrays))


H = tc.asnumpy(dense.hessian(closure, params))  # (p, p): small enough to check everything
eig_H = np.linalg.eigvalsh(H)
print(f"p = {p}; Hessian eigenvalues in [{eig_H[0]:.4f}, {eig_H[-1]:.4f}]")

# %% [markdown]
# ## 1. Extreme eigenvalues by Lanczos, the density by stochastic Lanczos quadrature
#
# $m$ Lanczos steps from a random unit vector build an orthonormal $Q$ with $QHQ^\top = T$
# tridiagonal; the eigenvalues of $T$ (Ritz values) converge to the extreme eigenvalues first.
# tinycurv reorthogonalises every new vector against all earlier ones, so no spurious copies appear.
#
# For the density $\phi(t) = \frac1p\sum_i \delta(t - \lambda_i)$, the Ritz values $\theta_j$ with
# weights $\tau_j = S_{1j}^2$ ($T = S\Theta S^\top$) are the Gauss quadrature of
# $u^\top g(H)\,u$, exact for polynomials of degree $\le 2m-1$; averaging over random probes $u$
# estimates $\frac1p\operatorname{tr} g(H)$ without bias (Ghorbani, Krishnan & Xiao 2019).

# %%
values, _ = top_eigenvalues(closure, params, 3, steps=40, rng=0)
low, _ = top_eigenvalues(closure, params, 3, steps=80, rng=0, which="smallest")
print("top 3    Lanczos:", np.round(tc.asnumpy(values), 10), " eigh:", np.round(eig_H[::-1][:3], 10))
print("bottom 3 Lanczos:", np.round(tc.asnumpy(low), 10), " eigh:", np.round(eig_H[:3], 10))

errors = []
for m in range(2, 41, 2):
    theta = np.sort(tc.asnumpy(lanczos(lambda v: tc.hvp(closure, params, v), params, m, rng=0).ritz()[0]))
    errors.append((m, abs(theta[-1] - eig_H[-1]), abs(theta[0] - eig_H[0])))
errors = np.array(errors)

density = spectral_density(closure, params, steps=30, probes=10, rng=0)
print("moments tr(Hᵏ)/p:")
for k in (1, 2, 4):
    est = density.moment(k)
    print(f"  k = {k}: SLQ {est.value:.3e} ± {est.stderr:.1e}   dense {np.mean(eig_H**k):.3e}")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4))
ax0.semilogy(errors[:, 0], errors[:, 1] + 1e-17, "o-", label="largest")
ax0.semilogy(errors[:, 0], errors[:, 2] + 1e-17, "s-", label="smallest")
ax0.set_xlabel("Lanczos steps m"); ax0.set_ylabel("|Ritz value − eigenvalue|"); ax0.legend()
plot_spectral_density(density, ax=ax1, sigma=0.02, label="SLQ, 10 probes × 30 steps, σ = 0.02")
counts, edges = np.histogram(eig_H, bins=60)
ax1.stairs(counts / (p * np.diff(edges)) + 1e-12, edges, color="k", lw=0.7, label="dense eigh")
ax1.set_ylim(1e-4, None); ax1.legend(fontsize=8)
plt.show()

# %% [markdown]
# * The extreme eigenvalues converge geometrically in the number of steps — the largest to rounding
#   in ~20 steps for $p = 1210$, the smallest (closer to its neighbours) more slowly; the third
#   smallest needs more steps still (80 above). Lanczos needs far fewer products than power
#   iteration (exercise 1), and gives the bottom of the spectrum too.
# * The density has the shape found for every network studied so far (Sagun et al. 2017; Ghorbani
#   et al. 2019; Papyan 2019): a **bulk** at zero holding almost all the mass, a few **outliers** at
#   the top (about one per class), and a small **negative** part.
# * SLQ reproduces the moments within their standard errors with 300 HVPs, and its smoothed curve
#   follows the histogram of the 1210 exact eigenvalues. Mass and positions of the outliers are
#   accurate; the fine structure of the bulk is smoothed by σ.

# %% [markdown]
# ## 2. Traces and diagonals: Hutchinson and the exact GGN diagonal
#
# With Rademacher probes $v$, $E[v^\top C v] = \operatorname{tr} C$ and $E[v \circ Cv] = \operatorname{diag} C$.
# For the GGN, the diagonal is also available exactly: $\operatorname{diag} G = \frac1b\sum_n\sum_c (J_n^\top s_{nc})^2$
# with $S_n S_n^\top = H_n$, one backward sweep per output (BackPACK's DiagGGN).

# %%
G = tc.asnumpy(dense.ggn(model, loss_fn, x))
for name, curvature, C in (("Hessian", "hessian", H), ("GGN", "ggn", G)):
    est = hutchinson_trace(closure, params, 100, rng=0, curvature=curvature, model=model, loss_fn=loss_fn, x=x)
    print(f"tr {name:7s}: Hutchinson {est.value:.4f} ± {est.stderr:.4f}, dense {np.trace(C):.4f}")
exact = flat(ggn_diagonal(model, loss_fn, x))
print("exact GGN diagonal vs diag(dense GGN):", np.abs(exact - np.diag(G)).max())
est = hutchinson_diagonal(None, params, 100, rng=0, curvature="ggn", model=model, loss_fn=loss_fn, x=x)
live = exact > 0  # weights of always-zero pixels have no curvature at all
z = (flat(est.value) - exact)[live] / flat(est.stderr)[live]
print(f"{np.sum(~live)} entries of diag G are exactly 0 (inputs that are always 0); Hutchinson "
      f"is exact there. On the others: {np.mean(np.abs(z) < 3):.1%} within 3 standard errors, median "
      f"relative error {np.median(np.abs(flat(est.value) - exact)[live] / exact[live]):.2f}")


# %% [markdown]
# The trace is easy (the off-diagonal entries average out over $p$ terms), the diagonal is not: with
# 100 probes each entry has a relative error of order one, because its variance $\sum_{j\ne i}C_{ij}^2$
# is large next to $C_{ii}^2$. Where the exact diagonal costs $m$ backward sweeps (here 10), it wins.
#
# ## 3. The spectrum during training; Hessian, GGN and K-FAC side by side
#
# $H = G + \sum_n \sum_c \frac{\partial \ell_n}{\partial f_{nc}} \nabla^2 f_{nc}$: the second term, weighted by
# the residuals, is what makes $H$ indefinite. As the network fits the data the residuals shrink
# and the negative part with them. K-FAC approximates each layer's block of $G$ by
# $G_\ell \otimes A_\ell$, whose eigenvalues are the products of the factors' eigenvalues.

# %%
def snapshot():
    top, _ = top_eigenvalues(closure, params, 1, steps=40, rng=0)
    bottom, _ = top_eigenvalues(closure, params, 1, steps=40, rng=0, which="smallest")
    dens = spectral_density(closure, params, steps=20, probes=5, rng=1)
    negative = float(tc.asnumpy(dens.weights[dens.nodes < -0.02]).sum())  # beyond the bulk at 0
    exact = np.mean(np.linalg.eigvalsh(tc.asnumpy(dense.hessian(closure, params))) < -0.02)
    return float(top[0]), float(bottom[0]), negative, exact, dens


opt = SGD(model, loss_fn, lr=0.2, momentum=0.9)
history, densities, step = [], {}, 0
for checkpoint in (0, 10, 30, 100, 300):
    while step < checkpoint:
        for xb, yb in batches(X_train, y_train, 64, rng=step):
            opt.step(xb, yb)
            step += 1
            if step == checkpoint:
                break
    top, bottom, negative, exact, dens = snapshot()
    with tc.no_grad():
        loss = closure().item()
    history.append((checkpoint, loss, top, bottom, negative))
    densities[checkpoint] = dens
    print(f"step {checkpoint:3d}: loss {loss:.3f}  λ_max {top:6.3f}  λ_min {bottom:8.4f}  "
          f"|λ_min|/λ_max {abs(bottom) / top:.3f}  mass below −0.02: SLQ {negative:.3f}, "
          f"dense {exact:.3f}")

# %%
H = tc.asnumpy(dense.hessian(closure, params))
G = tc.asnumpy(dense.ggn(model, loss_fn, x))
eig_H, eig_G = np.linalg.eigvalsh(H), np.linalg.eigvalsh(G)
eig_K = np.concatenate([np.outer(np.linalg.eigvalsh(tc.asnumpy(Gl)), np.linalg.eigvalsh(tc.asnumpy(Al))).ravel()
                        for Al, Gl in kfac_factors(model, loss_fn, x, y, mode="exact")])

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5))
for checkpoint, dens in densities.items():
    plot_spectral_density(dens, ax=ax0, sigma=0.03, label=f"step {checkpoint}")
ax0.set_ylim(1e-4, None); ax0.legend(fontsize=8); ax0.set_title("Hessian density during training (SLQ)")
rank = np.arange(1, p + 1)
ax1.loglog(rank, np.sort(eig_H)[::-1], label="Hessian, λ > 0")
ax1.loglog(rank, -np.sort(eig_H), ":", color="C0", label="Hessian, −λ for λ < 0")
ax1.loglog(rank, np.sort(eig_G)[::-1], label="GGN")
ax1.loglog(rank, np.sort(eig_K)[::-1], label="K-FAC (exact factors)")
ax1.set_ylim(1e-8, None); ax1.set_xlabel("rank"); ax1.set_ylabel("eigenvalue"); ax1.legend(fontsize=8)
ax1.set_title(f"after {step} steps")
plt.show()

# %% [markdown]
# * The top eigenvalue **grows** over the first steps, as the outputs leave the uniform prediction,
#   and then **falls** as the softmax saturates: the loss Hessian $\mathrm{diag}(\pi) - \pi\pi^\top$ vanishes
#   as $\pi$ becomes one-hot. The negative part shrinks relative to the top but never vanishes;
#   SLQ's estimate of its mass follows the dense count (roughly: 5 probes).
# * The GGN follows the Hessian closely at the top: the outliers are GGN outliers. The Hessian's
#   negative eigenvalues are an order of magnitude below its top ones — the reason Gauss–Newton
#   methods lose little by ignoring them at this stage of training.
# * K-FAC's spectrum (exact factors) matches the top eigenvalues but not the tail: its small
#   eigenvalues are one to three orders of magnitude above the GGN's (and it is block diagonal,
#   with no curvature between layers). Its damping matters less than the GGN's for that reason.
#
# ## 4. What the spectrum explains
#
# **Series SFN** (notebook 7) applies $V^{-1/2}\sum_n c_n (I - H^2/V)^n$; component $i$ converges iff
# $|1 - \lambda_i^2/V| \le 1$, i.e. $\lambda_i^2 \le 2V$, and at rate $|1 - \lambda_i^2/V|$. Lanczos gives
# $\max_i|\lambda_i|$ in a few dozen HVPs; SLQ tells how much of the spectrum is converged after
# $N$ terms.
#
# **ISAAC's** $\zeta^*$ (notebook 5) multiplies the gradient by $\lambda_a(A + \lambda_a I)^{-1}$ from the right,
# $A = \tilde a^\top \tilde a / b$ the layer's input factor: directions with eigenvalue $\mu \ll \lambda_a$
# are left alone, those with $\mu \gg \lambda_a$ shrunk by $\lambda_a/\mu$.
#
# **GroupedNewton** (notebook 6) chooses one learning rate per layer from the $S\times S$ summary
# $\bar H_{st} = g_s^\top H g_t$; the layers' curvatures differ, and so do their rates.

# %%
lam_max = max(abs(eig_H[0]), abs(eig_H[-1]))
dens = densities[step]
nodes, weights = tc.asnumpy(dens.nodes), tc.asnumpy(dens.weights)
for V in (lam_max**2 / 2 * 0.9, lam_max**2, 100.0):
    rate = np.abs(1 - nodes**2 / V)
    ok = "converges" if lam_max**2 <= 2 * V else "DIVERGES (some λᵢ² > 2V)"
    print(f"SFN, V = {V:8.3f}: {ok}; mass with rate > 0.99 (not converged in 20 terms): "
          f"{weights[rate > 0.99].sum():.3f}")

factors = kfac_factors(model, loss_fn, x, y, mode="exact")
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for i, (A, _) in enumerate(factors):
    mu = np.sort(np.linalg.eigvalsh(tc.asnumpy(A)))[::-1]
    ax.semilogy(mu, "o-", ms=3, label=f"layer {i + 1}: A ({A.shape[0]}×{A.shape[0]})")
    print(f"layer {i + 1}: eigenvalues of A above λ_a = 10: {np.sum(mu > 10)}, above λ_a = 0.03: {np.sum(mu > 0.03)}")
for lam_a in (10.0, 0.03):
    ax.axhline(lam_a, color="k", ls=":", lw=1)
    ax.text(1, lam_a * 1.3, f"λ_a = {lam_a:g}", fontsize=8)
ax.set_xlabel("index"); ax.set_ylabel("eigenvalue of A"); ax.legend(fontsize=8); plt.show()

g = tc.grad(closure, params)
g_bar, H_bar, _ = grouped_summary(closure, params, g)
g_bar, H_bar = tc.asnumpy(g_bar), tc.asnumpy(H_bar)
for i, q in enumerate(params):
    top_i, _ = top_eigenvalues(closure, [q], 1, steps=min(q.size, 40), rng=0)  # H's diagonal block
    print(f"group {i} {str(q.shape):9s}: gᵀHg/‖g‖² {H_bar[i, i] / g_bar[i]:7.4f}   "
          f"λ_max(H_ss) {float(top_i[0]):7.4f}   stable rate 2/λ_max {2 / float(top_i[0]):7.1f}")
print("eigenvalues of the 4×4 summary H̄:", ", ".join(f"{e:.2e}" for e in np.linalg.eigvalsh(H_bar)))
print("Newton rates η = H̄⁻¹ḡ:", np.round(np.linalg.solve(H_bar, g_bar), 1))


# %% [markdown]
# * Just below $V = \lambda_{\max}^2/2$ the series diverges (the top component grows). With
#   $V = \lambda_{\max}^2$ it converges, but almost all of the spectral mass — the bulk near zero —
#   has rate ≈ 1 and is nowhere near converged after 20 terms: the series treats those directions
#   like a scaled gradient. SeriesSFN's default $V = 100$ converges safely here and leaves everything
#   unconverged: the step is then essentially $g/\sqrt V$.
# * The first layer's inputs are pixels: $A$ has a handful of large eigenvalues and a long tail.
#   With $\lambda_a = 10$ (the reference's value) hardly any eigenvalue exceeds $\lambda_a$ — $\zeta^*$ is
#   then almost the plain gradient, which is why ISAAC with $\lambda_a = 10$ behaves like SGD in
#   `tinycurv compare`; a small $\lambda_a$ conditions many directions.
# * The curvature of the layers' blocks differs by two orders of magnitude: the first layer's weights
#   tolerate a rate of a few, the last bias one a hundred times larger. One global learning rate is a
#   compromise between them; GroupedNewton's per-group rates are not.
# * The summary $\bar H$ is nearly singular — its eigenvalues span many orders of magnitude, since
#   the groups' gradients are strongly coupled — so plain Newton on it gives negative and huge
#   rates: that is why GroupedNewton regularises its step with the cubic term ($\lambda_\text{int}$)
#   and the third derivatives $D$.

# %% [markdown]
# ## Exercises
#
# **E1 · Power iteration.** Write `power_top(hvp, like, iters, seed)` returning the Rayleigh quotient
# $u^\top H u$ after `iters` power iterations from a random unit $u$ (lists of arrays shaped like
# `like`). Compare with Lanczos: the check asks for the largest-magnitude eigenvalue to 1e-3 after
# 300 iterations (and shows how many Lanczos steps give the same accuracy).
#
# **E2 · Hutchinson's trace with its standard error.** Write `my_hutchinson(hvp, like, samples, seed)`
# returning `(estimate, stderr)` from Rademacher probes. The check asks for the dense trace within
# 4 standard errors, and for the standard error to shrink like $1/\sqrt S$.
#
# **E3 · The spectrum of a Kronecker product.** Write `kron_eigenvalues(A, G)` returning the
# eigenvalues of $G\otimes A$ from those of the two factors (without forming the product). The check
# compares with `eigvalsh(np.kron(G, A))` for the K-FAC factors of the second layer.

# %%
def power_top(hvp, like, iters, seed=0):
    """uᵀHu after `iters` power iterations from a random unit u (lists of arrays like `like`)."""
    r = np.random.default_rng(seed)
    u = [r.standard_normal(a.shape) for a in like]
    for _ in range(iters):
        norm = np.sqrt(sum(np.sum(a * a) for a in u))
        u = [a / norm for a in u]
        w = hvp(u)
        rayleigh = sum(np.sum(a * b) for a, b in zip(u, w))
        u = w
    return float(rayleigh)


# %%
try:
    hvp = lambda v: tc.hvp(closure, params, v)
    mine = power_top(hvp, [q.data for q in params], 300)
    target = eig_H[np.argmax(np.abs(eig_H))]
    print(f"E1: power iteration {mine:.6f}, eigh {target:.6f}")
    assert abs(mine - target) < 1e-3
    for m in (5, 10, 20):
        theta = tc.asnumpy(lanczos(hvp, params, m, rng=0).ritz()[0])
        print(f"    Lanczos with {m:2d} steps: {theta[np.argmax(np.abs(theta))]:.6f}")
except NotImplementedError:
    print("E1: not attempted yet")


# %%
def my_hutchinson(hvp, like, samples, seed=0):
    """(estimate, standard error) of tr H from `samples` Rademacher probes."""
    r = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        v = [r.choice([-1.0, 1.0], size=a.shape) for a in like]
        values.append(sum(np.sum(a * b) for a, b in zip(v, hvp(v))))
    values = np.array(values)
    return values.mean(), values.std(ddof=1) / np.sqrt(samples)


# %%
try:
    like = [q.data for q in params]
    hvp = lambda v: tc.hvp(closure, params, v)
    errors = {}
    for S in (25, 100):
        estimate, stderr = my_hutchinson(hvp, like, S)
        errors[S] = stderr
        print(f"E2: S = {S:3d}: {estimate:.4f} ± {stderr:.4f}  (dense {np.trace(H):.4f})")
        assert abs(estimate - np.trace(H)) < 4 * stderr
    print(f"    standard error ratio {errors[25] / errors[100]:.2f} (≈ 2 = √(100/25))")
except NotImplementedError:
    print("E2: not attempted yet")


# %%
def kron_eigenvalues(A, G):
    """The eigenvalues of G ⊗ A (ascending), from those of A and G."""
    return np.sort(np.outer(np.linalg.eigvalsh(G), np.linalg.eigvalsh(A)).ravel())


# %%
try:
    A2, G2 = (tc.asnumpy(f) for f in factors[1])
    gap = np.abs(kron_eigenvalues(A2, G2) - np.linalg.eigvalsh(np.kron(G2, A2))).max()
    print(f"E3: largest difference to eigvalsh(kron(G, A)): {gap:.1e}")
    assert gap < 1e-10
except NotImplementedError:
    print("E3: not attempted yet")

# %%
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")
