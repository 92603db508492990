# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · ISAAC: input-based curvature, and its four theorems
#
# K-FAC (notebook 04) preconditions each layer's gradient with two Kronecker factors: $A$, built from
# the layer's **inputs**, and $G$, built from gradients back-propagated with labels *sampled from the
# model* — one extra backward sweep — and it solves an $n \times n$ and an $m \times m$ system per
# layer. F. Petersen, T. Sutter, C. Borgelt, D. Huh, H. Kuehne, Y. Sun & O. Deussen, *ISAAC Newton:
# Input-based Approximate Curvature for Newton's Method*, ICLR 2023 (arXiv 2305.00604; equation and
# theorem numbers below are the paper's) make two observations:
#
# * give each factor its **own damping**, $\lambda_g$ and $\lambda_a$, and scale the step by
#   $\lambda_g\lambda_a$: the direction $\zeta$ (eq. 17) can then be rewritten with Woodbury's identity
#   (eq. 20) so that only $b \times b$ systems are solved, $b$ the batch size — cheap whenever the
#   batch is smaller than the layer is wide;
# * let $\lambda_g \to \infty$: the output side becomes the identity, and what is left, $\zeta^\star$
#   (eq. 21), needs **only the inputs** $a$ — no sampled labels, no extra backward sweep, and a cost
#   of $O(b^2 n + b^3)$ on top of plain SGD.
#
# **What you will see**
#
# 1. K-FAC's damped step for one layer, and ISAAC's $\zeta$ (eq. 17), checked against the dense
#    Kronecker system;
# 2. the Woodbury form (eq. 20), with $b \times b$ solves, equal to eq. 17 over a grid of dampings
#    (Theorem 1);
# 3. the limits of Theorem 1 — undamped K-FAC as $\lambda \to 0$, the gradient as $\lambda \to \infty$ —
#    and of Theorem 3, $\zeta \to \zeta^\star$ as $\lambda_g \to \infty$, with their rates;
# 4. Theorem 2: $\zeta$ is always a descent direction;
# 5. Theorem 3: $\zeta^\star$ does not depend on $\bar g$, and `tinycurv.optim.ISAAC` never samples a label for it;
# 6. Theorem 4: for linear regression, $\zeta^\star/\lambda_a$ is the damped Gauss–Newton step of the
#    library's dense GGN;
# 7. what eq. 17, eq. 20 and eq. 21 cost as the layer widens (measured);
# 8. both dampings scanned on the digits — the paper's Figure 1 in miniature;
# 9. $\zeta^\star$ in selected layers only.
#
# **The idea in one equation.** For a layer with inputs $a$ (batch $\times\, n$) and output gradients
# $g$ (batch $\times\, m$), weight gradient $\nabla_W L = g^\top a$ and factors
# $A = a^\top a / b$, $G = \bar g^\top \bar g / b$,
#
# $$
# \zeta \;=\; \lambda_g\lambda_a\,(G + \lambda_g I)^{-1}\, g^\top a\, (A + \lambda_a I)^{-1}
# \;\xrightarrow{\;\lambda_g \to \infty\;}\;
# \zeta^\star \;=\; \lambda_a\, g^\top a\,(A + \lambda_a I)^{-1}
# \;=\; g^\top \big(I_b + \tfrac{1}{b\lambda_a}\, a a^\top\big)^{-1} a .
# $$

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
import io
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg  # noqa: F401  (load SciPy's BLAS now, so that the thread limit below covers it)
from IPython.display import Image, display
from matplotlib.colors import LogNorm
from PIL import Image as PILImage

import tinycurv as tc
from tinycurv import nn
from tinycurv.curvature.dense import ggn
from tinycurv.curvature.isaac import zeta, zeta_kron, zeta_star
from tinycurv.curvature.kfac import curvature_layers, sampled_output_gradients
from tinycurv.data import batches, load_digits
from tinycurv.optim import ISAAC, SGD, NonFiniteError
from tinycurv.plotting import running_mean

tc.set_backend("numpy")
tc.set_default_dtype("float64")  # all checks below are in float64
rng = np.random.default_rng(0)  # every random number below comes from this seed
plt.rcParams.update({"figure.dpi": 120})
notebook_start, notebook_cpu = time.perf_counter(), time.process_time()

# The matrices here are small: BLAS threads cost more than they save, and make timings depend on
# what else the machine runs. Pin BLAS to one thread, as notebooks 02 and 04 do.
try:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)
except ImportError:  # timings are then noisier, the code still runs
    pass


def rel_error(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


def show(fig, colours=96):
    # Display a figure as a PNG with a palette of `colours` colours, and close it: it looks the
    # same as plt.show()'s full-colour PNG at about half the size (as in notebook 03).
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    out = io.BytesIO()
    PILImage.open(buf).convert("RGB").quantize(colours).save(out, format="png", optimize=True)
    display(Image(out.getvalue()))


def show_code(fn):
    # Print a function's source without its docstring: the lines that compute.
    lines = inspect.getsource(fn).splitlines()
    start = next(i for i, line in enumerate(lines) if '\"\"\"' in line)
    end = start if lines[start].count('\"\"\"') == 2 else next(
        i for i in range(start + 1, len(lines)) if '\"\"\"' in lines[i])
    print("\n".join(lines[:start] + lines[end + 1:]))


# %% [markdown]
# ## 1. One layer: K-FAC's damped step and ISAAC's $\zeta$
#
# Take one `Linear` layer, $z = a W^\top$, with weight $W$ of shape $m \times n$ (outputs × inputs), and
# a batch of $b$ samples. tinycurv's ISAAC code uses the paper's names:
#
# | symbol | shape | what |
# |---|---|---|
# | $a$ | $b \times n$ | the layer's inputs |
# | $g$ | $b \times m$ | gradients of the *batch* loss w.r.t. the pre-activations $z$, so that $\nabla_W L = g^\top a$ |
# | $\bar g$ | $rb \times m$ | $r$ back-propagated gradients per sample — $r = 1$ sampled label (Remark 1) or $r = m$ columns of the loss Hessian's square root |
# | $A = a^\top a / b$ | $n \times n$ | K-FAC's input factor (eq. 14) |
# | $G = \bar g^\top \bar g / b$ | $m \times m$ | K-FAC's output factor (eq. 14) |
#
# K-FAC approximates the layer's block of the GGN by $G \otimes A$ (eq. 13; notebook 03 §7). With
# Tikhonov damping $\lambda$ on *each* factor (the paper's eq. 16; notebook 04 gave each factor
# $\sqrt\lambda$ instead), and the identity $(P \otimes Q)\operatorname{vec}(X) = \operatorname{vec}(P X Q)$
# for symmetric $Q$ and row-major $\operatorname{vec}$ (eq. 19), its step is
#
# $$
# W \;\leftarrow\; W - \eta\,(G + \lambda I)^{-1}\, g^\top a\,(A + \lambda I)^{-1} \qquad \text{(eq. 16)}.
# $$
#
# ISAAC separates the two dampings and multiplies by both:
#
# $$
# \zeta \;=\; \lambda_g\lambda_a\,(G + \lambda_g I_m)^{-1}\, g^\top a\,(A + \lambda_a I_n)^{-1},
# \qquad W \;\leftarrow\; W - \eta^\star \zeta \qquad \text{(eq. 17, 18)}.
# $$
#
# For $\lambda_g = \lambda_a = \lambda$ this *is* the damped K-FAC step with $\eta = \eta^\star\lambda^2$. The
# factor $\lambda_g\lambda_a$ is what makes the limits of section 3 exist: the preconditioner
# $\lambda_g(G + \lambda_g I)^{-1} \otimes \lambda_a(A + \lambda_a I)^{-1}$ has eigenvalues
# $\frac{\lambda_g}{\gamma_i + \lambda_g}\cdot\frac{\lambda_a}{\alpha_j + \lambda_a} \in (0, 1]$ ($\gamma_i$, $\alpha_j$ the
# eigenvalues of $G$ and $A$): directions of curvature far below the damping keep their gradient,
# directions of large curvature are shrunk. $\zeta$ is never longer than the gradient.
#
# The network for the whole notebook is a $64 \to 32 \to 32 \to 10$ tanh MLP on the $8\times 8$ digits
# (1437 training images), softmax cross-entropy. For sections 1–5 we take its first layer
# ($n = 64$ pixels in, $m = 32$ units out) on a batch of $b = 16$ images, at initialisation, with
# $\bar g$ from one sampled label per sample. `sampled_output_gradients` returns $a$, $g$ and $\bar g$ for
# every layer from one forward pass and its backward sweeps — the same sweeps the K-FAC optimiser runs.

# %%
X_train, y_train, X_test, y_test = load_digits()
loss_fn = nn.CrossEntropyLoss()


def make_model(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 32, rng=r), nn.Tanh(), nn.Linear(32, 32, rng=r), nn.Tanh(),
                         nn.Linear(32, 10, rng=r))


model = make_model()
b = 16
x, y = X_train[:b], y_train[:b]
a_layers, g_layers, g_bar_layers = sampled_output_gradients(model, loss_fn, x, y, mode="mc", rng=0)
a, g, g_bar = a_layers[0], g_layers[0], g_bar_layers[0]  # the first layer
m, n = g.shape[1], a.shape[1]
A, G = a.T @ a / b, g_bar.T @ g_bar / b  # eq. 14
grad = g.T @ a  # the weight gradient, m x n

first = curvature_layers(model)[0]
engine_grad = tc.grad(lambda: loss_fn(model(x), y), [first.weight])[0]
print(f"a {a.shape}, g {g.shape}, g_bar {g_bar.shape};  A {A.shape}, G {G.shape}")
print(f"g^T a vs the engine's gradient of the first weight: relative error {rel_error(grad, engine_grad):.1e}")
print(f"rank of A: {np.linalg.matrix_rank(A)} of {n}   (b = {b} samples, and 4 of the 64 pixels "
      f"are 0 in every training image: {int(np.sum(X_train.max(axis=0) == 0))})")

# %% [markdown]
# $A$ is singular — it has rank at most $b$ — so the *undamped* K-FAC step does not exist for this
# layer; damping is not optional. Eq. 17 in tinycurv is `zeta_kron`: two Cholesky solves, with every
# damped factor written as $\lambda(M + \lambda I)^{-1} = (I + M/\lambda)^{-1}$ so that $\lambda = \infty$ is
# allowed and means "this side is the identity":

# %%
show_code(zeta_kron)

# %% [markdown]
# Three checks, for $\lambda_g = 0.1$, $\lambda_a = 0.5$: the Kronecker identity (eq. 19) on a random
# matrix; $\zeta$ against the dense $2048 \times 2048$ system — we multiply rather than solve,
# $\;(G + \lambda_g I) \otimes (A + \lambda_a I)\,\operatorname{vec}(\zeta) = \lambda_g\lambda_a \operatorname{vec}(g^\top a)$; and,
# for $\lambda_g = \lambda_a = \lambda$, $\zeta / \lambda^2$ against eq. 16's damped K-FAC step by two
# `np.linalg.solve`s.

# %%
lam_g, lam_a = 0.1, 0.5
P, Q, Z = rng.standard_normal((m, m)), A + lam_a * np.eye(n), rng.standard_normal((m, n))
print(f"eq. 19, (P kron Q) vec(Z) = vec(P Z Q):       relative error {rel_error(np.kron(P, Q) @ Z.ravel(), (P @ Z @ Q).ravel()):.1e}")

z17 = zeta_kron(g, a, g_bar, lam_g, lam_a)
K = np.kron(G + lam_g * np.eye(m), A + lam_a * np.eye(n))  # (m n) x (m n), row-major vec
residual = rel_error(K @ z17.ravel(), lam_g * lam_a * grad.ravel())
print(f"eq. 17 vs the dense Kronecker system {K.shape}: relative residual {residual:.1e}")

lam = 0.3
kfac_damped = np.linalg.solve(G + lam * np.eye(m), grad) @ np.linalg.inv(A + lam * np.eye(n))  # eq. 16
print(f"zeta(lam, lam) / lam^2 vs damped K-FAC (eq. 16):  relative error "
      f"{rel_error(zeta_kron(g, a, g_bar, lam, lam) / lam**2, kfac_damped):.1e}")
del K

# %% [markdown]
# ## 2. The Woodbury form: $b \times b$ instead of $n \times n$ (eq. 20, Theorem 1)
#
# Eq. 17 solves with $A + \lambda_a I$ ($n \times n$) and $G + \lambda_g I$ ($m \times m$). But both factors
# are *thin* products: $A = a^\top a / b$ has rank $\le b$. Woodbury's identity trades the $n \times n$
# inverse for a $b \times b$ one:
#
# $$
# \lambda_a (A + \lambda_a I_n)^{-1} \;=\; \Big(I_n + \tfrac{1}{b\lambda_a} a^\top a\Big)^{-1}
# \;=\; I_n - \tfrac{1}{b\lambda_a}\, a^\top \Big(I_b + \tfrac{1}{b\lambda_a} a a^\top\Big)^{-1} a ,
# $$
#
# and likewise on the output side with $\bar g$ (an $rb \times rb$ system). Multiplying out gives the
# paper's eq. 20,
#
# $$
# \zeta = \Big(I_m - \tfrac{1}{b\lambda_g}\,\bar g^\top \big(I_{rb} + \tfrac{1}{b\lambda_g}\bar g \bar g^\top\big)^{-1} \bar g\Big)\,
# g^\top\,
# \Big(I_b - \tfrac{1}{b\lambda_a}\, a a^\top \big(I_b + \tfrac{1}{b\lambda_a}\, a a^\top\big)^{-1}\Big)\, a
# \qquad \text{(eq. 20)}.
# $$
#
# Theorem 1 states that eq. 17 = eq. 20. The right bracket simplifies further: with
# $K = I_b + aa^\top/(b\lambda_a)$ it is $I_b - (K - I_b)K^{-1} = K^{-1}$, so the input side is just
# $g^\top K^{-1} a$. tinycurv uses that form — the same number in exact arithmetic, without the
# subtraction of two nearly equal matrices — and falls back to the $n \times n$ side when $b > n$,
# where that one is smaller:

# %%
from tinycurv.curvature import isaac as isaac_math

show_code(isaac_math._times_input_side)
print()
show_code(zeta)


# %% [markdown]
# We check Theorem 1's identity on a grid $\lambda_g, \lambda_a \in \{10^{-6}, 10^{-4}, \dots, 10^{6}\}$ three
# ways: tinycurv's eq. 20 (`zeta`) against its eq. 17 (`zeta_kron`), and eq. 20 *exactly as printed* —
# both brackets in their "identity minus" form, written out below with NumPy — against `zeta`.

# %% tags=["roundoff"]
def eq20_as_printed(g, a, g_bar, lam_g, lam_a):
    b, rb, m = a.shape[0], g_bar.shape[0], g.shape[1]
    K_g = np.eye(rb) + g_bar @ g_bar.T / (b * lam_g)
    left = np.eye(m) - g_bar.T @ np.linalg.solve(K_g, g_bar) / (b * lam_g)  # m x m
    K_a = np.eye(b) + a @ a.T / (b * lam_a)
    right = np.eye(b) - a @ a.T @ np.linalg.inv(K_a) / (b * lam_a)  # b x b
    return left @ g.T @ right @ a


GRID = 10.0 ** np.arange(-6, 7, 2)
err_17_20 = np.array([[rel_error(zeta(g, a, g_bar, lg, la), zeta_kron(g, a, g_bar, lg, la))
                       for la in GRID] for lg in GRID])
err_printed = np.array([[rel_error(eq20_as_printed(g, a, g_bar, lg, la), zeta(g, a, g_bar, lg, la))
                         for la in GRID] for lg in GRID])
print("relative error of eq. 20 (zeta) vs eq. 17 (zeta_kron), worst over lam_g, for each lam_a:")
print("   lam_a: " + "".join(f"{la:9.0e}" for la in GRID))
print("   error: " + "".join(f"{e:9.1e}" for e in err_17_20.max(axis=0)))
print("relative error of eq. 20 as printed vs zeta, worst over lam_g, for each lam_a:")
print("   error: " + "".join(f"{e:9.1e}" for e in err_printed.max(axis=0)))
print(f"||A|| = {np.linalg.norm(A, 2):.2f}, machine epsilon = {np.finfo(float).eps:.1e}")

# %% [markdown]
# The forms agree to $10^{-12}$ or better for every $\lambda_a \ge 10^{-2}$. Below that the disagreement grows like
# $1/\lambda_a$ — but *which* form is off? Both lose digits for a singular $A$ and a tiny $\lambda_a$:
#
# * eq. 17 solves with $I_n + A/\lambda_a$, whose condition number is $1 + \lVert A\rVert/\lambda_a$; rounding $A$
#   itself already costs up to $\epsilon\,\lVert A\rVert/\lambda_a$ ($\approx 2\cdot 10^{-9}$ at $\lambda_a = 10^{-6}$);
# * eq. 20 as printed subtracts from $g^\top a$ a matrix that cancels almost all of it: for $b < n$ the
#   gradient lies in the row space of $a$, and $\zeta \to 0$ like $\lambda_a$ there.
#
# tinycurv's $g^\top K^{-1} a$ has neither problem: $K = I_b + aa^\top/(b\lambda_a)$ is large but well
# scaled, and nothing cancels. An independent reference confirms it: with the thin SVD
# $a = U S V^\top$, $\;\lambda_a\,g^\top a\,(A + \lambda_a I)^{-1} = g^\top U\,\operatorname{diag}\!\big(\tfrac{s_k\lambda_a}{s_k^2/b + \lambda_a}\big)V^\top$,
# a formula with no subtraction at all.

# %% tags=["roundoff"]
U, s, Vt = np.linalg.svd(a, full_matrices=False)
print(f"{'lam_a':>8s}{'zeta (eq. 20, K^-1 form)':>28s}{'zeta_kron (eq. 17)':>22s}{'eq. 20 as printed':>22s}")
for la in (1e-2, 1e-4, 1e-6):
    exact = (g.T @ U) * (s * la / (s**2 / b + la)) @ Vt  # zeta* by the SVD: the input side only
    print(f"{la:8.0e}{rel_error(zeta_star(g, a, la), exact):28.1e}"
          f"{rel_error(zeta_kron(g, a, None, math.inf, la), exact):22.1e}"
          f"{rel_error(eq20_as_printed(g, a, g_bar, 1e300, la), exact):22.1e}")

# %% [markdown]
# (`lam_g = 1e300` turns the printed left bracket into the identity to all digits, so all three
# columns compute $\zeta^\star$, the input side alone.) The simplified Woodbury form is accurate to
# $10^{-15}$ at every damping; the other two lose digits in proportion to $1/\lambda_a$. The speed of
# eq. 20 comes with accuracy, provided it is written without the cancellation.
#
# ## 3. Theorem 1's limits, and Theorem 3's
#
# Theorem 1 also says where $\zeta$ goes at the ends of the damping scale:
#
# * **(i)** $\lambda_g, \lambda_a \to 0$: $\;\zeta / (\lambda_g\lambda_a) \to G^{-1}\, g^\top a\, A^{-1}$, **undamped K-FAC**
#   (this needs invertible factors);
# * **(ii)** $\lambda_g, \lambda_a \to \infty$: $\;\zeta \to g^\top a$, **the gradient**.
#
# Theorem 3 takes one damping alone to infinity: $\lambda_g \to \infty$ at fixed $\lambda_a$ gives $\zeta^\star$.
# From the eigenvalues of section 1 the errors have simple bounds,
#
# $$
# \text{(i)}\;\; \le \lambda\,\big(\lVert G^{-1}\rVert + \lVert A^{-1}\rVert\big), \qquad
# \text{(ii)}\;\; \le \frac{\lVert G\rVert + \lVert A\rVert}{\lambda}, \qquad
# \text{Thm 3:}\;\; \lVert \zeta - \zeta^\star\rVert \le \frac{\lVert G\rVert}{\lambda_g}\,\lVert\zeta^\star\rVert ,
# $$
#
# linear in $\lambda$ resp. $1/\lambda$. Limit (i) cannot be taken on the first layer ($A$ is singular), so
# this section uses the **middle** layer ($32 \to 32$, tanh inputs) on a batch of 256 images, where
# both factors are invertible.

# %%
a_mid, g_mid, g_bar_mid = (v[1] for v in sampled_output_gradients(
    model, loss_fn, X_train[:256], y_train[:256], mode="mc", rng=1))
A_mid, G_mid = a_mid.T @ a_mid / 256, g_bar_mid.T @ g_bar_mid / 256
grad_mid = g_mid.T @ a_mid
kfac_undamped = np.linalg.solve(G_mid, grad_mid) @ np.linalg.inv(A_mid)  # G^-1 g^T a A^-1
star_mid = zeta_star(g_mid, a_mid, 1.0)
eig_A, eig_G = np.linalg.eigvalsh(A_mid), np.linalg.eigvalsh(G_mid)
print(f"middle layer, b = 256: eigenvalues of A in [{eig_A[0]:.1e}, {eig_A[-1]:.1e}], "
      f"of G in [{eig_G[0]:.1e}, {eig_G[-1]:.1e}]")

lams = 10.0 ** np.arange(-13, 9, 0.5)
limit_i = [rel_error(zeta(g_mid, a_mid, g_bar_mid, lam, lam) / lam**2, kfac_undamped) for lam in lams]
limit_ii = [rel_error(zeta(g_mid, a_mid, g_bar_mid, lam, lam), grad_mid) for lam in lams]
limit_3 = [rel_error(zeta(g_mid, a_mid, g_bar_mid, lam, 1.0), star_mid) for lam in lams]
bound_i = lams * (1 / eig_G[0] + 1 / eig_A[0])
bound_ii = (eig_G[-1] + eig_A[-1]) / lams
bound_3 = eig_G[-1] / lams
for lam in (1e-12, 1e-9, 1e4, 1e8):
    k = int(np.argmin(np.abs(lams - lam)))
    print(f"lam = {lam:7.0e}:  (i) {limit_i[k]:.1e} (bound {bound_i[k]:.1e})   (ii) {limit_ii[k]:.1e} "
          f"(bound {bound_ii[k]:.1e})   Thm 3 {limit_3[k]:.1e} (bound {bound_3[k]:.1e})")
assert all(e <= 1.01 * bd + 1e-12 for e, bd in zip(limit_i, bound_i))
assert all(e <= 1.01 * bd + 1e-12 for e, bd in zip(limit_ii, bound_ii))
assert all(e <= 1.01 * bd + 1e-12 for e, bd in zip(limit_3, bound_3))

# %%
fig, ax = plt.subplots(figsize=(7.5, 4))
curves = [(limit_i, bound_i, "C0", r"(i) $\zeta/\lambda^2$ vs undamped K-FAC, $\lambda_g = \lambda_a = \lambda$"),
          (limit_ii, bound_ii, "C3", r"(ii) $\zeta$ vs the gradient $g^\top a$, $\lambda_g = \lambda_a = \lambda$"),
          (limit_3, bound_3, "C2", r"Thm 3: $\zeta$ vs $\zeta^\star$, $\lambda_g = \lambda$, $\lambda_a = 1$")]
for errors, bound, colour, label in curves:
    ax.loglog(lams, errors, "o-", ms=3, color=colour, label=label)
    ax.loglog(lams, bound, ":", color=colour, lw=1)
ax.loglog([], [], ":", color="gray", label="the bounds above (linear in $\\lambda$ or $1/\\lambda$)")
ax.axvline(eig_G[0], color="C0", lw=0.8, ls="--")
ax.text(eig_G[0] * 1.6, 1e-4, "smallest\neigenvalue\nof $G$", fontsize=8, color="C0")
ax.set(xlabel=r"damping $\lambda$ (log scale)", ylabel="relative error (log scale)", ylim=(1e-10, 3),
       title="Theorem 1's two limits and Theorem 3's (middle layer, b = 256)")
ax.legend(fontsize=8, loc="lower center")
ax.grid(alpha=0.3, which="major")
show(fig)

# %% [markdown]
# Each error falls on a straight line of slope $+1$ or $-1$, just under its bound (dotted), and none
# of them hits a rounding floor — even at $\lambda = 10^{-13}$, where $\zeta$ itself is $10^{-26}$ times the
# K-FAC step. Two scales set where the limits start:
#
# * undamped K-FAC is approached only once $\lambda$ is well below the **smallest** eigenvalue of the
#   factors ($3\cdot 10^{-7}$ for $G$ here): every practical damping is far from K-FAC's Newton step;
# * the gradient is approached once $\lambda$ exceeds the **largest** eigenvalues (about 2), and
#   $\zeta^\star$ once $\lambda_g$ exceeds $\lVert G\rVert \approx 0.06$. The output factor is small here — the
#   loss Hessian of softmax cross-entropy has eigenvalues below 1, back-propagation through the layers
#   above shrinks it further, and it shrinks again as the predictions sharpen (notebook 04 §4) — so
#   $\lambda_g = \infty$ differs little from $\lambda_g = 1$. That is the practical content of Theorem 3.
#
# ## 4. Theorem 2: $\zeta$ is a descent direction
#
# The preconditioner of $\zeta$ is symmetric positive definite for every $\lambda_g, \lambda_a > 0$, with
# eigenvalues in $(\ell, 1]$, $\ell = \frac{\lambda_g}{\lVert G\rVert + \lambda_g}\cdot\frac{\lambda_a}{\lVert A\rVert + \lambda_a}$. Hence
#
# $$
# \ell\,\lVert g^\top a\rVert^2 \;\le\; \langle \zeta,\, g^\top a\rangle \;\le\; \lVert g^\top a\rVert^2 ,
# $$
#
# so $\langle \zeta, \nabla_W L\rangle > 0$ and a small step $W - \eta\zeta$ decreases the loss (Theorem 2). We
# check both inequalities on a $25 \times 25$ grid of dampings, $10^{-6}$ to $10^{6}$, for the first layer,
# and on 300 random layers of random shapes and scales:

# %% [markdown]
# **An erratum: Remark 2.** The paper relates the two directions by $\zeta^\star = M\zeta$ with
# $M = \bar g^\top \bar g/(b\lambda_g)$. That misses the identity: from eq. 17,
# $\zeta = \lambda_g(G + \lambda_g I)^{-1}\zeta^\star$ with $G = \bar g^\top\bar g/b$, so
# $\zeta^\star = (I + \bar g^\top\bar g/(b\lambda_g))\,\zeta$. The cell below measures both forms
# (`tinycurv verify` checks the corrected one as `isaac-remark2`; `tinycurv reproduce isaac-remark2`
# sweeps $\lambda_g$ on a larger layer: the printed form is off by 65–100%).

# %%
from tinycurv import curvature

rng = np.random.default_rng(5)
b_, m_, n_ = 6, 7, 5
g_, a_, g_bar_ = rng.standard_normal((b_, m_)), rng.standard_normal((b_, n_)), rng.standard_normal((b_, m_))
for lam_g in (1e-3, 1.0, 1e3):
    z = curvature.zeta(g_, a_, g_bar_, lam_g, 0.5)
    z_star = curvature.zeta_star(g_, a_, 0.5)
    M = g_bar_.T @ g_bar_ / (b_ * lam_g)
    printed = np.linalg.norm(M @ z - z_star) / np.linalg.norm(z_star)
    corrected = np.linalg.norm(z + M @ z - z_star) / np.linalg.norm(z_star)
    print(f"lam_g = {lam_g:g}: printed form off by {printed:.0%}, corrected form {corrected:.1e}")

# %%
grid = 10.0 ** np.linspace(-6, 6, 25)
sq = np.sum(grad * grad)
norm_G, norm_A = np.linalg.norm(G, 2), np.linalg.norm(A, 2)
inner = np.zeros((len(grid), len(grid)))
cosine = np.zeros_like(inner)
lower = np.zeros_like(inner)
for i, lg in enumerate(grid):
    for j, la in enumerate(grid):
        z = zeta(g, a, g_bar, lg, la)
        inner[i, j] = np.sum(z * grad)
        cosine[i, j] = inner[i, j] / (np.linalg.norm(z) * np.sqrt(sq))
        lower[i, j] = lg / (norm_G + lg) * la / (norm_A + la)
print(f"first layer, 625 dampings: min <zeta, g^T a> / (l ||g^T a||^2) = {np.min(inner / (lower * sq)):.4f} (>= 1), "
      f"max <zeta, g^T a> / ||g^T a||^2 = {np.max(inner / sq):.4f} (<= 1)")

worst_low, worst_high = np.inf, 0.0
for _ in range(300):
    bb, mm, nn_, r = (int(v) for v in rng.integers(1, 40, size=4))
    r = min(r, 3)
    g_r = rng.standard_normal((bb, mm)) * 10.0 ** rng.uniform(-3, 1)
    a_r = rng.standard_normal((bb, nn_)) * 10.0 ** rng.uniform(-2, 2)
    gb_r = rng.standard_normal((r * bb, mm)) * 10.0 ** rng.uniform(-2, 2)
    lg, la = 10.0 ** rng.uniform(-4, 4, size=2)
    grad_r = g_r.T @ a_r
    ip = np.sum(zeta(g_r, a_r, gb_r, lg, la) * grad_r) / np.sum(grad_r * grad_r)
    low = lg / (np.linalg.norm(gb_r.T @ gb_r / bb, 2) + lg) * la / (np.linalg.norm(a_r.T @ a_r / bb, 2) + la)
    worst_low, worst_high = min(worst_low, ip / low), max(worst_high, ip)
print(f"300 random layers:        min <zeta, g^T a> / (l ||g^T a||^2) = {worst_low:.4f} (>= 1), "
      f"max <zeta, g^T a> / ||g^T a||^2 = {worst_high:.4f} (<= 1)")
assert np.min(inner / (lower * sq)) >= 1 - 1e-9 and worst_low >= 1 - 1e-9
assert np.max(inner / sq) <= 1 + 1e-12 and worst_high <= 1 + 1e-12

# %% [markdown]
# The inner product is always positive — but how far does $\zeta$ turn *away* from the gradient? The
# cosine of the angle between them, over the grid:

# %%
fig, ax = plt.subplots(figsize=(6, 4.5))
edges = 10.0 ** np.linspace(-6.25, 6.25, 26)  # cell edges of the log-spaced grid
mesh = ax.pcolormesh(edges, edges, cosine, cmap="viridis", vmin=0, vmax=1)
ax.set(xscale="log", yscale="log", xlabel=r"input damping $\lambda_a$ (log scale)",
       ylabel=r"output damping $\lambda_g$ (log scale)",
       title=r"$\cos\angle(\zeta,\, g^\top a)$, first layer, b = 16")
ax.axvline(norm_A, color="w", ls="--", lw=1)
ax.axhline(norm_G, color="w", ls="--", lw=1)
ax.text(norm_A * 1.4, 2e-6, r"$\lambda_a = \|A\|$", color="w", fontsize=8)
ax.text(2e-6, norm_G * 1.4, r"$\lambda_g = \|G\|$", color="w", fontsize=8)
fig.colorbar(mesh, ax=ax, label="cosine (1 = the gradient's direction)")
show(fig, colours=192)  # more colours for the colour bar
print(f"smallest cosine on the grid: {cosine.min():.3f}  (never below 0: Theorem 2)")

# %% [markdown]
# Above and to the right of the dashed lines — dampings larger than the factors' norms — $\zeta$ is the
# gradient (cosine 1, Theorem 1 ii). Below them the curvature turns it, by up to about 80° here, but
# never past 90°. Each side turns it on its own (the top rows: the input side alone; the right
# columns: the output side alone), and the two turns add up in the lower left. There, far below the
# factors' eigenvalues, the map stops changing: the direction has settled, and only the length of
# $\zeta$ keeps shrinking.
#
# ## 5. Theorem 3: $\zeta^\star$ needs only the inputs
#
# At $\lambda_g = \infty$ the output side is the identity and
#
# $$
# \zeta^\star \;=\; \lambda_a\, g^\top a\,(A + \lambda_a I)^{-1} \;=\; g^\top \Big(I_b + \tfrac{1}{b\lambda_a}\, a a^\top\Big)^{-1} a
# \qquad \text{(eq. 21)}:
# $$
#
# $g$ and $a$ are what backpropagation computes anyway for the gradient $g^\top a$; the only extra work
# is the $b \times b$ matrix $aa^\top$ and its solve. $\bar g$ — and with it the sampled labels and the extra
# backward sweep of K-FAC — is gone. In tinycurv `zeta` with `lam_g = math.inf` returns
# `zeta_star`, whatever `g_bar` is:

# %%
g_bar_exact = sampled_output_gradients(model, loss_fn, x, y, mode="exact")[2][0]  # r = 32 rows per sample
nonsense = 100 * rng.standard_normal(g_bar.shape)
for la in (1e-3, 1.0, 1e3):
    star = zeta_star(g, a, la)
    same = all(np.array_equal(zeta(g, a, gb, math.inf, la), star) for gb in (g_bar, g_bar_exact, nonsense, None))
    print(f"lam_a = {la:6g}: zeta(lam_g = inf) == zeta_star for sampled, exact, random and no g_bar: {same}")
    assert same

# %% [markdown]
# The optimiser `tinycurv.optim.ISAAC` applies $\zeta^\star$ to every chosen layer's weight and the plain
# gradient to everything else (biases included, as the paper's reference code does), then hands the
# directions to SGD (or Adam). With `lr = 1` and no momentum, one step must move each weight by
# exactly $\zeta^\star$ computed from the $a$ and $g$ that `nn.record` captures — and, with
# `lam_g = math.inf`, its random generator must not draw a single number:

# %%
lam_a = 0.5
net = make_model()
with nn.record(net) as records:
    loss_fn(net(x), y).backward()
want = {id(layer.weight): zeta_star(rec.g, rec.a, lam_a) for layer, rec in records.items()}
plain = {id(p): p.grad.copy() for p in net.parameters()}  # the gradients, for the biases
for p in net.parameters():
    p.zero_grad()

opt = ISAAC(net, loss_fn, lr=1.0, lam_a=lam_a, lam_g=math.inf)
before = {id(p): p.data.copy() for p in net.parameters()}
rng_state = str(opt.rng.bit_generator.state)
opt.step(x, y)
for name, p in net.named_parameters():
    moved = before[id(p)] - p.data
    expected = want.get(id(p), plain[id(p)])
    print(f"{name:9s} moved by {'zeta*' if id(p) in want else 'its gradient':12s} relative error {rel_error(moved, expected):.1e}")
    assert rel_error(moved, expected) < 1e-12
print("random numbers drawn by the step:", "none" if str(opt.rng.bit_generator.state) == rng_state else "some")

# %% [markdown]
# ## 6. Theorem 4: linear regression, where $\zeta^\star$ is the Gauss–Newton step
#
# For one `Linear` layer without bias and the squared error, $L = \frac1b\sum_n \tfrac12\lVert W x_n - y_n\rVert^2$,
# the loss Hessian w.r.t. the outputs is $I_m$ for every sample, so the GGN — which for a linear model
# *is* the Hessian (notebook 03 §6) — is exactly $I_m \otimes A$ with $A = x^\top x/b$, and K-FAC's output
# factor is $G = I_m$. Then the damped Gauss–Newton step is
#
# $$
# (\text{GGN} + \lambda_a I)^{-1}\operatorname{vec}(\nabla_W L) \;=\; \operatorname{vec}\big(\nabla_W L\,(A + \lambda_a I)^{-1}\big)
# \;=\; \operatorname{vec}(\zeta^\star)/\lambda_a
# \qquad \text{(Theorem 4)}.
# $$
#
# We check it against the library's **dense** GGN (`tinycurv.curvature.dense.ggn`, built from forward-mode
# Jacobians, with no ISAAC code involved), for a batch smaller ($b = 5$) and larger ($b = 40$) than the
# $n = 8$ inputs; then through the optimiser, whose step with `lr = 1/lam_a` must be that Gauss–Newton step.

# %%
mse = nn.MSELoss()
lr_rng = np.random.default_rng(4)
for b_reg in (5, 40):
    x_reg, y_reg = lr_rng.standard_normal((b_reg, 8)), lr_rng.standard_normal((b_reg, 3))
    reg = nn.Sequential(nn.Linear(8, 3, bias=False, rng=lr_rng))
    W = reg[0].weight
    GGN = ggn(reg, mse, x_reg, y_reg)  # 24 x 24
    grad_W = tc.grad(lambda: mse(reg(x_reg), y_reg), [W])[0]
    with nn.record(reg) as rec:
        mse(reg(x_reg), y_reg).backward()
    a_reg, g_reg = rec[reg[0]].a, rec[reg[0]].g
    W.zero_grad()
    A_reg = x_reg.T @ x_reg / b_reg
    print(f"b = {b_reg}: max |GGN - kron(I_3, A)| = {np.abs(GGN - np.kron(np.eye(3), A_reg)).max():.1e}")
    for la in (1e-3, 0.1, 1.0, 10.0):
        gauss_newton = np.linalg.solve(GGN + la * np.eye(24), grad_W.ravel()).reshape(3, 8)
        before = W.data.copy()
        ISAAC(reg, mse, lr=1 / la, lam_a=la).step(x_reg, y_reg)
        step, W.data = before - W.data, before  # read the step off, then undo it
        err_fn = rel_error(zeta_star(g_reg, a_reg, la) / la, gauss_newton)
        err_opt = rel_error(step, gauss_newton)
        print(f"   lam_a = {la:6g}: zeta*/lam_a vs (GGN + lam_a I)^-1 grad: {err_fn:.1e};  ISAAC step (lr = 1/lam_a): {err_opt:.1e}")
        assert err_fn < 1e-10 and err_opt < 1e-10

# %% [markdown]
# Two footnotes to the theorem:
#
# * the paper's proof says "$\zeta^\star = \zeta$". With the exact $\bar g$ of the squared error ($G = I_m$) the
#   output side is $\lambda_g(1 + \lambda_g)^{-1} I$, so exactly $\zeta = \frac{\lambda_g}{1 + \lambda_g}\,\zeta^\star$: the same
#   direction, a different length;
# * for $b > n$, $A$ is invertible and as $\lambda_a \to 0$ the step becomes Newton's step on a quadratic:
#   one step of $W \leftarrow W - \zeta^\star/\lambda_a$ lands on the least-squares solution, with an error
#   proportional to $\lambda_a$.

# %%
# the last problem of the loop above: b = 40 > n = 8 inputs
g_bar_mse = sampled_output_gradients(reg, mse, x_reg, y_reg, mode="exact")[2][0]  # 3 rows per sample
print(f"exact g_bar of the squared error: G = I? {np.allclose(g_bar_mse.T @ g_bar_mse / b_reg, np.eye(3))}")
for lg in (1e-2, 1.0, 1e2):
    err = rel_error(zeta(g_reg, a_reg, g_bar_mse, lg, 0.1), lg / (1 + lg) * zeta_star(g_reg, a_reg, 0.1))
    print(f"   lam_g = {lg:5g}: zeta vs lam_g/(1 + lam_g) zeta*: relative error {err:.1e}")

W_least_squares = np.linalg.lstsq(x_reg, y_reg, rcond=None)[0].T
for la in (1e-2, 1e-5, 1e-8):
    W_one_step = W.data - zeta_star(g_reg, a_reg, la) / la
    print(f"lam_a = {la:5.0e}: one step W - zeta*/lam_a vs least squares: relative error {rel_error(W_one_step, W_least_squares):.1e}")


# %% [markdown]
# ## 7. What it costs
#
# Per layer, with $r = 1$ sampled gradient per sample (matrix products and factorisations; the gradient
# $g^\top a$ itself costs $bmn$):
#
# | form | systems solved | extra cost on top of the gradient |
# |---|---|---|
# | eq. 17, `zeta_kron` | $n \times n$ and $m \times m$ | $O(bn^2 + bm^2 + n^3 + m^3 + mn(n + m))$ |
# | eq. 20, `zeta` | $b \times b$ twice | $O(b^2(n + m) + b^3 + bmn)$, plus the extra backward sweep for $\bar g$ |
# | eq. 21, `zeta_star` | $b \times b$ once | $O(b^2 n + b^3)$ |
#
# For a square layer $n = m$ at a fixed batch, eq. 17 grows like $n^3$ and the other two like $n^2$ — the
# price of the gradient itself. We time the three functions on random layers of width
# $n = m = 32 \dots 1024$ at $b = 32$ (CPU time of this process, BLAS on one thread, fastest of three runs
# after a warm-up, as in notebook 02):

# %%
def best_time(fn, repeats=3):
    fn()  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


b_cost = 32
widths = [32, 64, 128, 256, 512, 1024]
timings = {"eq. 17 (zeta_kron)": [], "eq. 20 (zeta)": [], "eq. 21 (zeta_star)": [], "gradient": []}
for w in widths:
    g_w, a_w = rng.standard_normal((b_cost, w)) / b_cost, rng.standard_normal((b_cost, w))
    gb_w = rng.standard_normal((b_cost, w))
    timings["eq. 17 (zeta_kron)"].append(best_time(lambda: zeta_kron(g_w, a_w, gb_w, 1.0, 1.0)))
    timings["eq. 20 (zeta)"].append(best_time(lambda: zeta(g_w, a_w, gb_w, 1.0, 1.0)))
    timings["eq. 21 (zeta_star)"].append(best_time(lambda: zeta_star(g_w, a_w, 1.0)))
    timings["gradient"].append(best_time(lambda: g_w.T @ a_w))
print(f"{'width':>6s}" + "".join(f"{name:>22s}" for name in timings))  # gradient: g^T a
for k, w in enumerate(widths):
    print(f"{w:6d}" + "".join(f"{v[k] * 1e3:19.3f} ms" for v in timings.values()))

# %% tags=["timing"]
fig, ax = plt.subplots(figsize=(6.5, 4))
styles = ["o-", "s-", "^-", "x:"]
for (name, values), style in zip(timings.items(), styles):
    ax.loglog(widths, np.array(values) * 1e3, style, ms=5, label=name if name != "gradient" else r"the gradient $g^\top a$")
w_arr = np.array(widths, dtype=float)
t17 = timings["eq. 17 (zeta_kron)"][-1] * 1e3
ax.loglog(w_arr, t17 * (w_arr / w_arr[-1]) ** 3, "--", color="gray", lw=1, label=r"slope 3: $\propto n^3$")
t21 = timings["eq. 21 (zeta_star)"][-1] * 1e3
ax.loglog(w_arr, t21 * (w_arr / w_arr[-1]) ** 2, ":", color="gray", lw=1, label=r"slope 2: $\propto n^2$")
ax.set(xlabel="layer width $n = m$ (log scale)", ylabel="CPU time (ms, log scale)",
       title=f"One layer's direction at batch b = {b_cost} (CPU, 1 BLAS thread)")
ax.set_xticks(widths, [str(w) for w in widths])
ax.minorticks_off()
ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")
show(fig)
print(f"width {widths[-1]}: eq. 17 / eq. 21 = {timings['eq. 17 (zeta_kron)'][-1] / timings['eq. 21 (zeta_star)'][-1]:.0f}x, "
      f"eq. 21 / gradient = {timings['eq. 21 (zeta_star)'][-1] / timings['gradient'][-1]:.1f}x")


# %% [markdown]
# At small widths every form costs a fixed overhead of a few Python calls and small LAPACK calls
# (tenths of a millisecond), so the curves start flat. From a width of about 128 the
# Kronecker form turns onto the $n^3$ line — its two Cholesky factorisations and triangular solves
# with $n$ right-hand sides — while eq. 20 and eq. 21 follow the gradient's $n^2$ line and end just
# above it: $\zeta^\star = (g^\top K^{-1})\, a$ *is* the gradient's product $(\cdot)\,a$ plus $b^2 n$ for the
# $b \times b$ side, so at width 1024 it costs little more than one gradient and the Kronecker form
# dozens (printed above). $\zeta$ and $\zeta^\star$ cost almost the same here because $\bar g$ was given; in an optimiser
# $\zeta$ also needs the extra backward sweep that makes $\bar g$, which $\zeta^\star$ does not.
#
# ## 8. Both dampings on the digits: the paper's Figure 1 in miniature
#
# The paper's Figure 1 scans both dampings on a logarithmic grid, one training run per cell. We do
# the same at toy scale, and ask in particular how the column $\lambda_g = \infty$ — $\zeta^\star$, no $\bar g$ at
# all — compares with the finite $\lambda_g$. The setting: the $64 \to 32 \to 32 \to 10$ MLP,
# ISAAC on all three layers with plain SGD as the base rule (`lr = 3`, a rate at which plain SGD
# overshoots on this network), batches of 64, **30 steps**, the same initialisation and minibatch order for every cell,
# $\bar g$ from one sampled label per sample for finite $\lambda_g$. Each cell is the training loss on
# all 1437 images afterwards. As in the paper's figure, $\lambda_g$ runs along the
# horizontal axis and $\lambda_a$ along the vertical one; the last column and row are $\lambda = \infty$ (that
# side switched off), and the corner $\lambda_g = \lambda_a = \infty$ is plain SGD.

# %%
def train(make_opt, steps, batch_size=64, seed=0):
    # Train make_model(seed) for `steps` minibatch steps. Returns the minibatch losses, the CPU time
    # per step and the loss on the whole training set (inf if the run blew up: NonFiniteError).
    net = make_model(seed)
    opt = make_opt(net)
    losses, cpu, epoch = [], 0.0, 0
    try:
        while len(losses) < steps:
            for xb, yb in batches(X_train, y_train, batch_size, rng=1000 * seed + epoch):
                start = time.process_time()
                losses.append(opt.step(xb, yb))
                cpu += time.process_time() - start
                if len(losses) == steps:
                    break
            epoch += 1
        final = loss_fn(net(X_train), y_train).item()
    except NonFiniteError:
        final = np.inf
    return dict(loss=np.array(losses), final=final, ms_per_step=1e3 * cpu / max(len(losses), 1))


lr_isaac, steps = 3.0, 30
lam_values = [1e-2, 1e-1, 1.0, 10.0, math.inf]
final_loss = np.zeros((len(lam_values), len(lam_values)))  # rows lam_g, columns lam_a
for i, lg in enumerate(lam_values):
    for j, la in enumerate(lam_values):
        run = train(lambda net: ISAAC(net, loss_fn, lr=lr_isaac, lam_a=la, lam_g=lg, seed=0), steps)
        final_loss[i, j] = run["final"]
initial_loss = loss_fn(make_model()(X_train), y_train).item()
sgd_runs = {lr: train(lambda net: SGD(net, loss_fn, lr=lr), steps) for lr in (0.3, 1.0, 3.0)}
print(f"loss at initialisation: {initial_loss:.3f}")


def progress(run):
    # A run whose minibatch loss ever exceeded twice the loss at initialisation was unstable: its
    # final loss is chaotic (the last bit of any sum changes it), so it is not printed.
    if not np.isfinite(run["final"]):
        return "blew up"
    return "unstable" if run["loss"].max() > 2 * initial_loss else f"{run['final']:.3f}"


print("plain SGD after 30 steps: " + ", ".join(f"lr {lr:g}: {progress(run)}" for lr, run in sgd_runs.items()))
best = np.unravel_index(np.argmin(final_loss), final_loss.shape)
print(f"ISAAC, lr {lr_isaac:g}: best cell lam_g = {lam_values[best[0]]:g}, lam_a = {lam_values[best[1]]:g}: "
      f"{final_loss[best]:.3f};  best with lam_g = inf (zeta*): {final_loss[-1].min():.3f}")


# %%
def lam_label(v):
    return r"$\infty$" if math.isinf(v) else f"$10^{{{int(round(np.log10(v)))}}}$"


fig, ax = plt.subplots(figsize=(7, 5.4))
grid = final_loss.T  # as in the paper's Figure 1: lam_g along x (columns), lam_a along y (rows)
shown = np.minimum(grid, 1e3)  # a blown-up run is drawn in the top colour
vmax = 2.5  # above the loss at initialisation: the run did not learn
norm = LogNorm(vmin=0.1, vmax=vmax)
im = ax.imshow(shown, cmap="viridis", norm=norm, origin="lower")
for i in range(len(lam_values)):
    for j in range(len(lam_values)):
        v = grid[i, j]
        text = "blew up" if not np.isfinite(v) else (f"{v:.0f}" if v >= 10 else f"{v:.2f}")
        red, green, blue, _ = im.cmap(norm(shown[i, j]))
        dark = 0.3 * red + 0.6 * green + 0.1 * blue < 0.5  # white text on dark cells
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color="w" if dark else "k")
ticks = range(len(lam_values))
ax.set_xticks(ticks, [lam_label(v) for v in lam_values])
ax.set_yticks(ticks, [lam_label(v) for v in lam_values])
ax.axhline(len(lam_values) - 1.5, color="w", lw=3)  # set the infinite column and row apart
ax.axvline(len(lam_values) - 1.5, color="w", lw=3)
ax.set(xlabel=r"output damping $\lambda_g$ (log scale; $\infty$: $\zeta^\star$)",
       ylabel=r"input damping $\lambda_a$ (log scale; $\infty$: $A$ not used)",
       title=f"Training loss after {steps} steps of ISAAC on all layers\n(lr {lr_isaac:g}, batch 64, one seed)")
ax.text(len(lam_values) - 1, len(lam_values) - 1.42, "plain SGD", ha="center", fontsize=7)
cbar = fig.colorbar(im, ax=ax, extend="max")
cbar.set_ticks([0.1, 0.2, 0.5, 1.0, 2.0], labels=["0.1", "0.2", "0.5", "1", "2"])
cbar.minorticks_off()
cbar.set_label(f"training loss (log scale; above {vmax:g}: no progress)")
show(fig, colours=192)  # more colours for the colour bar

# %% [markdown]
# Reading the map:
#
# * **Top right, plain SGD** at this learning rate overshoots: the loss ends far above where it
#   started. The top row ($\lambda_a = \infty$, only $G$ used) recovers only at the smallest $\lambda_g$ (its
#   left end), where the output side shrinks the whole step. The digits' pixels are all positive, with a mean
#   far from zero, so $A$ has one eigenvalue of about 10 (the mean image) and the rest below 1: the
#   *input* curvature is what makes a large step unstable, and $\lambda_a \approx 1$ treats exactly that direction.
# * **Small dampings** (the left column, the bottom row): $\zeta$ is shrunk along almost every direction —
#   its length goes like $\lambda_g\lambda_a$ as $\lambda \to 0$ (eq. 18: the effective learning rate of K-FAC is
#   $\eta^\star\lambda_g\lambda_a$) — and 30 steps move the network little. A smaller damping would need a larger `lr`.
# * **In between**, $\lambda_a \approx 1$: $\zeta$ damps the mean-image direction and keeps the rest, and the
#   loss after 30 steps is several times lower than plain SGD's at its best learning rate (printed above).
# * **The right column**, $\lambda_g = \infty$: $\zeta^\star$ is as good as the best finite $\lambda_g$ in its row — without
#   a single sampled label. Section 3 said why: $\lVert G\rVert$ is small, so $\lambda_g \ge 1$ already makes the
#   output side nearly the identity. Only where $\lambda_a$ is too large for this `lr` does a small $\lambda_g$
#   help, by shrinking the step from the output side instead.
#
# This is one seed, one learning rate and 30 steps of a toy problem, not the paper's experiment. The
# *shape* — a broad valley in $\lambda_a$, flat in $\lambda_g$ once $\lambda_g$ is large — is what to take away.
#
# ## 9. $\zeta^\star$ in selected layers only
#
# Since $\zeta^\star$ needs only the layer's input, each layer can be conditioned or not on its own;
# the paper also conditions only some of the layers and leaves the rest to SGD (its experiment E3). `ISAAC(..., layers=...)`
# takes `"first"`, `"last"`, `"all"`, or a list of indices (`[]`: plain SGD). We train 60 steps
# (about 2.7 epochs) with $\lambda_a = 1$, $\lambda_g = \infty$ and `lr = 3`, for three seeds (initialisation
# and minibatch order), and compare with plain SGD at `lr = 1`, its best rate in section 8.

# %%
choices = {"none (SGD, lr 3)": [], "first": "first", "last": "last", "all": "all"}
layer_runs = {}
for label, layers in choices.items():
    layer_runs[label] = [train(lambda net: ISAAC(net, loss_fn, lr=3.0, lam_a=1.0, layers=layers), 60, seed=seed)
                         for seed in range(3)]
layer_runs["SGD, lr 1"] = [train(lambda net: SGD(net, loss_fn, lr=1.0), 60, seed=seed) for seed in range(3)]
for label, runs in layer_runs.items():
    finals = ", ".join(progress(r) for r in runs)
    print(f"{label:18s} training loss after 60 steps, seeds 0-2: {finals:28s} "
          f"CPU per step {np.mean([r['ms_per_step'] for r in runs]):.2f} ms")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw=dict(width_ratios=[1.6, 1]))
colours = {"none (SGD, lr 3)": "C7", "first": "C0", "last": "C1", "all": "C2", "SGD, lr 1": "k"}
for label, runs in layer_runs.items():
    r = runs[0]
    steps_ = np.arange(1, len(r["loss"]) + 1)
    ax0.plot(steps_, r["loss"], color=colours[label], alpha=0.25, lw=0.8)
    ls = "--" if label.startswith("SGD") else "-"
    ax0.plot(steps_, running_mean(r["loss"], 5), color=colours[label], lw=2, ls=ls,
             label=f"$\\zeta^\\star$ in: {label}" if not label.startswith(("SGD", "none")) else label)
ax0.set(xlabel="training step", ylabel="minibatch loss (log scale)", yscale="log",
        title="Seed 0: minibatch loss (faint) and running mean of 5")
ax0.legend(fontsize=8)
ax0.grid(alpha=0.3, which="both")

labels = list(layer_runs)
finals = np.array([[r["final"] for r in layer_runs[k]] for k in labels])
for k, label in enumerate(labels):
    ax1.scatter(np.full(3, k), np.minimum(finals[k], 1e3), color=colours[label], zorder=3)  # 1e3: blew up
ax1.set_xticks(range(len(labels)), ["none\n(SGD, lr 3)", "first", "last", "all", "SGD\nlr 1"], fontsize=8)
ax1.set(yscale="log", ylabel="training loss after 60 steps (log scale)",
        title="Three seeds", xlabel=r"layers conditioned ($\lambda_a = 1$, lr 3)")
ax1.grid(alpha=0.3, which="both")
fig.tight_layout()
show(fig)

# %% [markdown]
# * **None** — SGD at `lr = 3` — overshoots, as in section 8: unstable for every seed (the loss ends near
#   40, right panel).
# * Conditioning the **last** layer alone does not stop the explosion: two of the three seeds are
#   unstable, and the loss stays above 1 (right panel); conditioning the **first** — the layer that sees the raw pixels, with their large mean — ends lower (0.3–0.9 in
#   the right panel), about as low as plain SGD at its best rate, but every one of its runs went
#   through a spike above twice the initial loss on the way (printed as unstable: where such a run
#   ends depends on the last bits of its sums, so it differs from machine to machine).
# * Conditioning **all** three does best by far, three to four times below the best plain SGD on
#   every seed: at `lr = 3` the hidden layers profit from their input curvature too.
# * The cost: a step with $\zeta^\star$ in all three layers takes about 1.3 to 1.5 times the CPU time
#   of an SGD step here, varying from run to run (the $b \times b$ matrices are $64 \times 64$; on a
#   network this small Python's per-call overhead is a large part of both), and conditioning fewer
#   layers costs less.
#
# (Centring the pixels by hand would remove much of the first layer's problem; the input-side
# preconditioner $(A + \lambda_a I)^{-1}$ damps the mean direction — and any other direction of large input
# curvature — automatically, in every layer.)
#
# Everything above ran in:

# %%
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s wall clock, "
      f"{time.process_time() - notebook_cpu:.1f} s CPU")

# %% [markdown]
# ## Exercises
#
# 1. **The learning rate and the two dampings.** Eq. 18 relates ISAAC's $\eta^\star$ to K-FAC's learning
#    rate, $\eta = \eta^\star\lambda_g\lambda_a$. Redo the heat map of section 8 with `lr = 0.3 / (lam_g * lam_a)` on
#    the finite cells (keep `lr = 3` where a $\lambda$ is infinite). Which region is best now? On the
#    diagonal $\lambda_g = \lambda_a = \lambda$ this is K-FAC with damping $\lambda$ on each factor and $\eta = 0.3$:
#    compare it with notebook 04's damping sweep.
# 2. **The empirical Fisher (Remark 4).** With `g_bar_mode="empirical"` ISAAC builds $G$ from the
#    true-label per-sample gradients, $\bar g = b\,g$, so finite $\lambda_g$ needs no extra backward sweep
#    either. (a) For a single sample ($b = 1$), form the first layer's empirical Fisher
#    $\operatorname{vec}(\nabla_W \ell)\operatorname{vec}(\nabla_W \ell)^\top$ ($2048 \times 2048$) and show that it equals
#    $G \otimes A$ (`np.kron`) exactly, so that eq. 17 is an exact damped step there. (b) Add a row with
#    `g_bar_mode="empirical"` and $\lambda_g = 0.1$ to section 8's map: better or worse than the sampled $\bar g$?
# 3. **When the batch is larger than the layer.** `zeta_star` switches to the $n \times n$ side when
#    $b > n$. Time `zeta_star` for $n = 64$ and $b = 16, 32, \dots, 1024$ and find the crossover; then time
#    `ISAAC` against `SGD` per step on a $784 \to 1024 \to 1024 \to 10$ MLP with batch 128
#    (random inputs are enough). How much of the step is the $b \times b$ solve?

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 05.1 · ISAAC's ζ by its Kronecker form (eq. 17)
#
# Write `zeta_kron(g, a, g_bar, lam_g, lam_a) -> (m, n)`.

# %%
def zeta_kron(g, a, g_bar, lam_g, lam_a):
    """05.1 · ζ = λ_g λ_a (G + λ_g I)⁻¹ gᵀa (A + λ_a I)⁻¹ (eq. 17), ∞ = identity."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("05.1", zeta_kron)


# %% [markdown]
# <details><summary><b>Hint</b> (05.1)</summary>
#
# ζ = lam_g lam_a (G + lam_g I)⁻¹ gᵀa (A + lam_a I)⁻¹ with A = aᵀa/b, G = ḡᵀḡ/b (eq. 14, 17); lam = math.inf makes that side the identity.
#
# </details>

# %% [markdown]
# ### 05.2 · ISAAC's ζ*: the gradient conditioned by the inputs (eq. 21)
#
# Write `zeta_star(g, a, lam_a) -> (m, n); g (b, m), a (b, n), lam_a > 0 or math.inf`.

# %%
def zeta_star(g, a, lam_a):
    """05.2 · ζ* = gᵀ (I_b + a aᵀ/(b λ_a))⁻¹ a (eq. 21); the n×n side when b > n."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("05.2", zeta_star)


# %% [markdown]
# <details><summary><b>Hint</b> (05.2)</summary>
#
# ζ* = gᵀ (I_b + a aᵀ/(b·lam_a))⁻¹ a: one b×b solve (np.linalg.solve(K, a)). For b > n the n×n form gᵀa (I_n + aᵀa/(b·lam_a))⁻¹ is cheaper and equal. Keep the dtype (np.eye(b, dtype=a.dtype)).
#
# </details>

# %% [markdown]
# ### 05.3 · The Woodbury identity: a b×b solve for an n×n inverse (eq. 20)
#
# Write `input_side(a, lam_a) -> lam_a (A + lam_a I_n)⁻¹, (n, n), via a b×b solve`.

# %%
def input_side(a, lam_a):
    """05.3 · λ_a (A + λ_a I)⁻¹ = I_n − aᵀ (b λ_a I_b + a aᵀ)⁻¹ a (Woodbury, a b×b solve)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("05.3", input_side)


# %% [markdown]
# <details><summary><b>Hint</b> (05.3)</summary>
#
# Woodbury: lam_a (aᵀa/b + lam_a I)⁻¹ = I_n − aᵀ (b·lam_a I_b + a aᵀ)⁻¹ a. Only the b×b matrix is inverted (solved).
#
# </details>

# %% [markdown]
# ### 05.4 · ISAAC's ζ with both dampings, and λ_g = ∞
#
# Write `zeta(g, a, g_bar, lam_g, lam_a) -> (m, n); g_bar (r·b, m) or None for lam_g=inf`.

# %%
def zeta(g, a, g_bar, lam_g, lam_a):
    """05.4 · ζ = λ_g (G + λ_g I)⁻¹ ζ*, and ζ* itself for λ_g = ∞ (Theorem 3)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("05.4", zeta)

# %% [markdown]
# <details><summary><b>Hint</b> (05.4)</summary>
#
# ζ = lam_g (G + lam_g I)⁻¹ ζ*, with G = ḡᵀḡ/b and ζ* from 05.2; lam_g = math.inf returns ζ* itself. (The cheaper Woodbury form of eq. 20 solves an (r·b)×(r·b) system.)
#
# </details>
