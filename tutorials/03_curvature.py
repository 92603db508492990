# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Curvature matrices: Hessian, Gauss–Newton, Fisher — and K-FAC
#
# A Newton-like method needs a curvature matrix $C$ to precondition the gradient, $\Delta\theta = -C^{-1}\nabla L$.
# The obvious choice, the Hessian, is *indefinite* away from a minimum (notebook 02 found negative
# eigenvalues), and $-H^{-1}\nabla L$ then climbs along those directions. Second-order methods for
# neural networks therefore use one of its positive semi-definite cousins. This notebook computes all
# of them, densely, for one small network, and compares them.
#
# **What you will see**
#
# 1. the Hessian split into its two parts by the chain rule — the **generalised Gauss–Newton** (GGN) and
#    a residual term — and the split checked numerically;
# 2. the **Fisher**, with labels sampled from the model (MC) and with the true labels (*empirical*), and
#    how each compares with the GGN;
# 3. the four matrices as heat maps, side by side, and their eigenvalue spectra at three points of a
#    training run;
# 4. a linear model, for which the GGN *is* the Hessian;
# 5. **K-FAC**'s approximation: one Kronecker product $G \otimes A$ per layer, its error as a heat map, the
#    cases where it is exact, and its sampled factors converging like $1/\sqrt{S}$.
#
# **The idea in one equation.** The batch loss is a mean of per-sample losses of the network outputs,
# $L(\theta) = \frac1b\sum_n \ell_n\big(f_n\big)$ with $f_n = f(x_n; \theta) \in \mathbb{R}^m$. Write
# $J_n = \partial f_n / \partial\theta$ ($m \times p$) and $H_n = \nabla^2_f \ell_n$ ($m \times m$, the
# Hessian of the loss *in the outputs*). Differentiating twice by the chain rule,
#
# $$
# \nabla^2_\theta L
# \;=\; \underbrace{\frac1b\sum_n J_n^\top H_n\, J_n}_{\text{GGN}}
# \;+\; \underbrace{\frac1b\sum_n \sum_{c=1}^m \frac{\partial \ell_n}{\partial f_{n,c}}\, \nabla^2_\theta f_{n,c}}_{\text{residual term } R} .
# $$
#
# The first term only needs first derivatives of the network; it is positive semi-definite whenever
# every $H_n$ is, i.e. whenever the loss is convex in the outputs — true for the squared error and for
# softmax cross-entropy. The second term carries all the indefiniteness; it is weighted by the
# output gradients $\partial\ell_n/\partial f_n$, which shrink as the network fits its data.

# %%
# Where tinycurv is not installed yet (Colab, a fresh environment), install it from GitHub;
# its dependencies (NumPy, SciPy, matplotlib, scikit-learn, ...) are all this notebook needs.
import importlib.util

if importlib.util.find_spec("tinycurv") is None:
    # %pip install --quiet "tinycurv @ git+https://github.com/tinycurv/tinycurv"

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import io
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
from PIL import Image as PILImage

import tinycurv as tc
from tinycurv import Tensor, nn
from tinycurv.curvature.dense import fisher, flatten, ggn, hessian
from tinycurv.curvature.kfac import curvature_layers, kfac_factors, layer_indices
from tinycurv.data import load_digits
from tinycurv.optim import Adam

tc.set_backend("numpy")
tc.set_default_dtype("float64")  # all checks below are in float64
rng = np.random.default_rng(0)  # every random number below comes from this seed
plt.rcParams.update({"figure.dpi": 120})
notebook_start = time.perf_counter()


def show(fig, colours=128):
    # Display a figure as a PNG with a palette of `colours` colours, and close it. The heat maps
    # below have 226 x 226 entries each; a palette PNG looks the same as plt.show()'s full-colour
    # one at a third of the size, which keeps this notebook small on disk.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    out = io.BytesIO()
    PILImage.open(buf).convert("RGB").quantize(colours).save(out, format="png", optimize=True)
    display(Image(out.getvalue()))


# %% [markdown]
# ## 1. A small network on the digits
#
# Dense $p \times p$ matrices need a small $p$. We shrink scikit-learn's $8 \times 8$ digits to
# $4 \times 4$ by averaging $2 \times 2$ blocks of pixels (16 inputs, still recognisable), take a fixed
# batch of $b = 256$ training images, and use a $16 \to 8 \to 10$ tanh MLP with softmax cross-entropy:
# $p = (16 \cdot 8 + 8) + (8 \cdot 10 + 10) = 226$ parameters.
#
# The curvature depends on *where* it is measured. We train the network with Adam on this batch and
# keep three snapshots of its parameters: at initialisation, early in training (step 50), and late
# (step 300).

# %%
X_train, y_train, _, _ = load_digits()
X16 = X_train.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)  # 8x8 -> 4x4 by 2x2 means
batch = rng.choice(len(X16), size=256, replace=False)
x, y = X16[batch], y_train[batch]

model = nn.Sequential(nn.Linear(16, 8, rng=rng), nn.Tanh(), nn.Linear(8, 10, rng=rng))
loss_fn = nn.CrossEntropyLoss()
params = model.parameters()
layers = curvature_layers(model)  # the two Linear layers


def closure():
    return loss_fn(model(x), y)


def accuracy():
    return np.mean(np.argmax(model(x).data, axis=1) == y)


def rel_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


snapshots = {0: model.state_dict()}
adam = Adam(model, loss_fn, lr=0.02)
for step in range(1, 301):
    adam.step(x, y)
    if step in (50, 300):
        snapshots[step] = model.state_dict()

print(model)
print(f"x {x.shape}, y {y.shape}, p = {model.num_parameters()} parameters")
for step, state in snapshots.items():
    model.load_state_dict(state)
    print(f"step {step:3d}: loss {closure().item():.3f}, accuracy on the batch {accuracy():.1%}")
model.load_state_dict(snapshots[50])  # all sections but 5 look at this early-training point

# %% [markdown]
# ## 2. The Hessian, and its split into GGN + residual
#
# `tinycurv.curvature.dense` computes the three matrices for a model this small:
#
# * `hessian(closure, params)` — column $j$ is $He_j$, a forward-over-reverse HVP (notebook 02), with
#   64 columns per batched sweep;
# * `ggn(model, loss_fn, x, y)` — the Jacobians $J_n$ by forward mode (the parameters become batched
#   duals whose tangents are columns of the identity), the output Hessians $H_n$ from
#   `loss_fn.hessian`, then $\frac1b\sum_n J_n^\top H_n J_n$. For softmax cross-entropy
#   $H_n = \operatorname{diag}(p_n) - p_n p_n^\top$ with $p_n = \operatorname{softmax}(f_n)$.
#
# The residual term has a neat closed form too. Freeze the output gradients
# $r_n = \partial\ell_n / \partial f_n = p_n - e_{y_n}$ (for cross-entropy) as constants; then
# $R$ is the Hessian of the *linear-in-outputs* function $\theta \mapsto \frac1b\sum_n r_n^\top f(x_n;\theta)$,
# which `hessian` computes just as well. If the chain rule above is right, $H - \text{GGN} - R = 0$.

# %%
H = hessian(closure, params)
GGN = ggn(model, loss_fn, x, y)

f = model(x).data
r = loss_fn.probabilities(f) - np.eye(10)[y]  # r_n = dl_n/df_n, frozen as a constant
R = hessian(lambda: (model(x) * Tensor(r)).sum() * (1 / len(x)), params)

print(f"H, GGN, R: {H.shape}")
print(f"max |H - (GGN + R)| = {np.abs(H - GGN - R).max():.1e}   (max |H| = {np.abs(H).max():.2f})")
print(f"||R|| / ||H|| = {np.linalg.norm(R) / np.linalg.norm(H):.3f}:  the residual term is "
      f"{np.linalg.norm(R) / np.linalg.norm(H):.0%} of the Hessian here")
assert np.abs(H - GGN - R).max() < 1e-12

print("\nFrobenius norm of each parameter block of R:")
starts = np.cumsum([0] + [p.size for p in params])
block_labels = ["W1", "b1", "W2", "b2"]
print("      " + "".join(f"{name:>8s}" for name in block_labels))
for name, s, e in zip(block_labels, starts[:-1], starts[1:]):
    print(f"{name:>6s}" + "".join(f"{np.linalg.norm(R[s:e, s2:e2]):8.4f}" for s2, e2 in zip(starts[:-1], starts[1:])))

# %% [markdown]
# The rows and columns of $W_2$ and $b_2$ are exactly zero: the outputs are *linear* in the last
# layer's parameters, $f = W_2 h + b_2$, so $\nabla^2_\theta f$ has no entries there. All the
# residual curvature comes from the first layer, through the tanh and through the product $W_2 \tanh(W_1 x + b_1)$.

# %% [markdown]
# ## 3. The Fisher: sampled labels and true labels
#
# Read the loss as a negative log-likelihood, $\ell_n = -\log p(y_n \mid f_n)$ (a categorical
# distribution for cross-entropy, a unit Gaussian for the squared error). The **Fisher information**
# is the covariance of the per-sample gradients $\nabla\ell_n = J_n^\top r_n$ when the labels are drawn
# *from the model itself*:
#
# $$
# F \;=\; \frac1b\sum_n \mathbb{E}_{\hat y \sim p(\cdot\mid f_n)}\!\Big[\nabla\ell_n(\hat y)\,\nabla\ell_n(\hat y)^\top\Big]
# \;=\; \frac1b\sum_n J_n^\top\, \mathbb{E}\big[\hat r_n \hat r_n^\top\big]\, J_n .
# $$
#
# For softmax cross-entropy $\hat r_n = p_n - e_{\hat y}$, and $\mathbb{E}[\hat r_n \hat r_n^\top] =
# \operatorname{diag}(p_n) - p_np_n^\top = H_n$: **the Fisher equals the GGN** (for every loss that is
# the negative log-likelihood of an exponential family in its natural parameters; J. Martens, *New
# insights and perspectives on the natural gradient method*, JMLR 21(146), 2020). Two estimates are
# in use:
#
# * `fisher(..., kind="mc", mc_samples=S)` replaces the expectation by $S$ sampled labels per
#   sample (`loss_fn.sample_targets`) — an unbiased estimate of the GGN whose error shrinks like
#   $1/\sqrt{S}$;
# * `fisher(..., kind="empirical")` plugs in the *true* labels, $\frac1b\sum_n J_n^\top r_n r_n^\top J_n$.
#   That is not an estimate of $F$ at all: $r_nr_n^\top$ is one outer product, not $H_n$, and it
#   depends on how well the model fits (Kunstner, Hennig & Balles 2019, *Limitations of the empirical
#   Fisher approximation for natural gradient descent*, NeurIPS).

# %%
EF = fisher(model, loss_fn, x, y, kind="empirical")
MC = {S: fisher(model, loss_fn, x, y, kind="mc", mc_samples=S, rng=1) for S in (1, 10, 100)}

print("relative (Frobenius) distance to the GGN")
for S, F_S in MC.items():
    print(f"  MC Fisher, S = {S:3d} labels per sample: {rel_error(F_S, GGN):.4f}"
          f"   (x sqrt(S) = {rel_error(F_S, GGN) * np.sqrt(S):.2f})")
print(f"  empirical Fisher:                   {rel_error(EF, GGN):.4f}")

# %% [markdown]
# The MC error times $\sqrt{S}$ stays roughly constant: the $1/\sqrt{S}$ of any Monte Carlo average.
# The empirical Fisher stays far from the GGN — and no number of samples would fix that.
#
# ## 4. Four curvature matrices, side by side
#
# Each heat map is a $226 \times 226$ matrix, its rows and columns ordered like
# `flatten(model.parameters())` — $W_1$ (row-major), $b_1$, $W_2$, $b_2$ — with lines between the
# parameter blocks. All panels share one diverging colour scale centred at zero (red positive, blue
# negative, white for $|\text{entry}|$ below 1/33 of the scale), clipped at the 99.5th percentile of
# $|H|$ so that a few large entries do not wash out everything else. The second row shows each matrix minus the GGN (and, last, the MC Fisher with
# 100 sampled labels per sample minus the GGN).

# %%
block_names = ["$W_1$", "$b_1$", "$W_2$", "$b_2$"]
DIVERGING = plt.get_cmap("RdBu_r", 33)  # 33 colour steps; the white middle one is centred on 0


def heatmap(ax, M, title, limit, starts=starts, names=block_names):
    # A signed matrix on a diverging colour scale centred at 0, with lines between the blocks.
    im = ax.imshow(M, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation="nearest")
    for s in starts[1:-1]:
        ax.axhline(s - 0.5, color="k", lw=0.6)
        ax.axvline(s - 0.5, color="k", lw=0.6)
    centres = (starts[:-1] + starts[1:] - 1) / 2
    ax.set_xticks(centres, names, fontsize=8)
    ax.set_yticks(centres, names, fontsize=8)
    ax.set_title(title, fontsize=10)
    return im


limit = np.percentile(np.abs(H), 99.5)
top = [(H, "Hessian $H$"), (GGN, "GGN"), (EF, "empirical Fisher"), (MC[1], "MC Fisher, $S = 1$")]
bottom = [(R, "$H - $GGN $= R$ (residual)"), (EF - GGN, "empirical Fisher $-$ GGN"),
          (MC[1] - GGN, "MC Fisher ($S=1$) $-$ GGN"), (MC[100] - GGN, "MC Fisher ($S=100$) $-$ GGN")]
fig, axes = plt.subplots(2, 4, figsize=(13.5, 7.4), layout="constrained")
for ax, (M, title) in zip(axes.ravel(), top + bottom):
    im = heatmap(ax, M, title, limit)
fig.colorbar(im, ax=axes, shrink=0.6, extend="both", label="entry (shared scale)")
fig.suptitle("Curvature of the 16-8-10 tanh MLP (cross-entropy, b = 256) after 50 Adam steps", fontsize=11)
show(fig)

# %% [markdown]
# What to read off:
#
# * $H$ and the GGN look alike at a glance — the GGN is most of the Hessian here — but the residual
#   $R$ (bottom left) is not negligible: it sits in the first layer's blocks, and is exactly zero in
#   the rows and columns of $W_2$ and $b_2$, as the table above said;
# * the **empirical Fisher** is visibly *weaker* than the GGN and differently shaped (its error panel is
#   mostly blue on the diagonal): with the true labels, the outer products $r_nr_n^\top$ of a
#   half-trained network do not average to $H_n$;
# * the **MC Fisher** with a single sampled label per sample has the right shape and scale; its error
#   is unstructured noise, which 100 samples per sample average almost entirely away.
#
# ## 5. Eigenvalue spectra along training
#
# The GGN and both Fishers are sums of outer products $\frac1b\sum_n J_n^\top S_nS_n^\top J_n$, hence
# positive semi-definite by construction; the Hessian is not. We compute the spectra at the three
# snapshots.

# %%
spectra = {}  # eigenvalues within 1e-12 of the largest are zero to rounding: not counted as < 0
for step, state in snapshots.items():
    model.load_state_dict(state)
    H_s, GGN_s = hessian(closure, params), ggn(model, loss_fn, x, y)
    EF_s = fisher(model, loss_fn, x, y, kind="empirical")
    spectra[step] = {name: np.linalg.eigvalsh(M)[::-1] for name, M in
                     [("Hessian", H_s), ("GGN", GGN_s), ("empirical Fisher", EF_s)]}
    e = spectra[step]
    eh, eg = e["Hessian"], e["GGN"]
    print(f"step {step:3d}: loss {closure().item():.3f} | Hessian: {np.sum(eh < -1e-12 * eh[0]):3d} of {len(eh)} eigenvalues < 0, "
          f"range [{eh[-1]:+.1e}, {eh[0]:.2f}] | GGN: smallest {eg[-1]:+.0e}, "
          f"{np.sum(eg < 1e-12 * eg[0])} numerically zero | ||H - GGN|| / ||GGN|| = {rel_error(H_s, GGN_s):.2f}")
model.load_state_dict(snapshots[50])

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
styles = {"Hessian": dict(color="k", lw=2), "GGN": dict(color="C0", ls="--", lw=1.5),
          "empirical Fisher": dict(color="C1", ls=":", lw=1.5)}
for ax, (step, e) in zip(axes, spectra.items()):
    for name, values in e.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name, **styles[name])
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set(xlabel="eigenvalue index (largest first)", title=f"after {step} Adam steps")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("eigenvalue (symlog scale)")
axes[0].legend(fontsize=8, loc="lower left")
fig.suptitle("Spectra of the curvature matrices: the Hessian's tail goes negative, GGN and Fisher stay ≥ 0",
             fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# The $y$ axis is linear between $-10^{-6}$ and $10^{-6}$ and logarithmic outside, so both signs show.
#
# * At initialisation about 40% of the Hessian's eigenvalues are negative (93 of 226, not counting those
#   that are zero to rounding), the most negative about 40% the size of the largest: the residual term is as large as the GGN (section 2's formula,
#   weighted by large output gradients $r_n$). As the network fits the batch the $r_n$ shrink, and
#   with them the negative tail — by step 300 the most negative eigenvalue is about 300 times
#   smaller, but still there: the network is near, not at, a minimum.
# * The GGN is never negative. Exactly 9 of its eigenvalues are zero (up to rounding, $\sim 10^{-18}$)
#   at every snapshot: softmax is unchanged when the same number is added to every logit, so moving
#   $b_2$ along $(1, \dots, 1)$, or adding one vector to every row of $W_2$ ($1 + 8$ directions), does
#   not change the loss to any order. Many more eigenvalues are tiny. A curvature matrix that is
#   singular or nearly so cannot be inverted as it is — one reason every method of notebook 04 adds
#   *damping*.
# * The top of the GGN spectrum tracks the Hessian's; the empirical Fisher's falls off too early and
#   shrinks as the fit improves (its $r_nr_n^\top$ do), while the GGN does not.
#
# ## 6. When the GGN *is* the Hessian: a linear model
#
# If the outputs are linear in the parameters, $\nabla^2_\theta f_{n,c} = 0$ and the residual term
# vanishes whatever the loss: $H = \text{GGN}$ exactly. For a single `Linear` layer with the squared
# error, $H_n = I$ and both equal $\frac1b\sum_n J_n^\top J_n$ — the matrix of the normal equations of
# least squares. With random targets (so the residuals are far from zero):

# %%
lin = nn.Linear(16, 10, rng=rng)
mse = nn.MSELoss()
targets = rng.standard_normal((len(x), 10))
H_lin = hessian(lambda: mse(lin(x), targets), lin.parameters())
GGN_lin = ggn(lin, mse, x, targets)
print(f"Linear(16, 10) + MSE:           max |H - GGN| = {np.abs(H_lin - GGN_lin).max():.1e}"
      f"   (max |H| = {np.abs(H_lin).max():.2f})")

H_lin_ce = hessian(lambda: loss_fn(lin(x), y), lin.parameters())  # any loss: f is still linear in theta
GGN_lin_ce = ggn(lin, loss_fn, x, y)
print(f"Linear(16, 10) + cross-entropy: max |H - GGN| = {np.abs(H_lin_ce - GGN_lin_ce).max():.1e}"
      f"   (max |H| = {np.abs(H_lin_ce).max():.2f})")
assert np.abs(H_lin - GGN_lin).max() < 1e-12 and np.abs(H_lin_ce - GGN_lin_ce).max() < 1e-12

# %% [markdown]
# ## 7. K-FAC: one Kronecker product per layer
#
# Even the GGN is $p \times p$. K-FAC (Martens & Grosse 2015, *Optimizing neural networks with
# Kronecker-factored approximate curvature*, ICML) makes it affordable with two approximations.
#
# **One block per layer.** Keep only the diagonal blocks of the layers, dropping every
# block that couples two layers.
#
# **A Kronecker product per block.** A `Linear` layer computes $z = W\tilde a$ with $\tilde a = [a; 1]$
# (the bias as a last column of $W$). Its per-sample weight gradient is an outer product,
# $\nabla_{[W|b]}\ell_n = \bar g_n \tilde a_n^\top$, where $\bar g_n = \partial\ell_n/\partial z_n$. Flattened
# row-major, that is $\bar g_n \otimes \tilde a_n$, so the layer's block of the GGN, written with the
# back-propagated columns $\bar g_{n,c}$ of the loss Hessian's square root ($S_nS_n^\top = H_n$), is
#
# $$
# \text{GGN}_{\ell\ell} = \frac1b\sum_n \sum_c \big(\bar g_{n,c}\bar g_{n,c}^\top\big) \otimes \big(\tilde a_n\tilde a_n^\top\big)
# \;\approx\;
# \underbrace{\Big(\frac1b\sum_n \sum_c \bar g_{n,c}\bar g_{n,c}^\top\Big)}_{G}
# \otimes
# \underbrace{\Big(\frac1b\sum_n \tilde a_n\tilde a_n^\top\Big)}_{A} ,
# $$
#
# an expectation of a product replaced by the product of expectations — exact if the layer's inputs
# and its back-propagated gradients were independent (M&G 2015, §3). The payoff is in the inverse,
# $(G \otimes A)^{-1} = G^{-1} \otimes A^{-1}$: two small matrices instead of one big one (notebook 04).
#
# (*Convention.* M&G flatten column-major and write $\bar A \otimes G$; tinycurv flattens row-major,
# like NumPy's `reshape`, and writes `kron(G, A)` — the same matrix with the parameters in another order.)
#
# `kfac_factors(model, loss_fn, x, y, mode="exact")` returns one `(A, G)` per layer;
# `layer_indices(model, layer)` gives the positions of that layer's $[W \mid b]$, row-major, inside
# `flatten(params)`, so we can cut the matching block out of the dense GGN:

# %%
factors = kfac_factors(model, loss_fn, x, y, mode="exact")
order = np.concatenate([layer_indices(model, layer) for layer in layers])  # [W1|b1] then [W2|b2]
GGN_layers = GGN[np.ix_(order, order)]  # the GGN, parameters reordered layer by layer
kfac_matrix = np.zeros_like(GGN_layers)
sizes = [A.shape[0] * G.shape[0] for A, G in factors]
layer_starts = np.cumsum([0] + sizes)
for (A, G), s, e in zip(factors, layer_starts[:-1], layer_starts[1:]):
    kfac_matrix[s:e, s:e] = np.kron(G, A)

for i, ((A, G), s, e) in enumerate(zip(factors, layer_starts[:-1], layer_starts[1:]), start=1):
    print(f"layer {i}: A {A.shape}, G {G.shape} -> block {e - s} x {e - s};  "
          f"relative error of kron(G, A): {rel_error(kfac_matrix[s:e, s:e], GGN_layers[s:e, s:e]):.3f}")
print(f"whole matrix (block-diagonal + Kronecker): relative error {rel_error(kfac_matrix, GGN_layers):.3f}")
print(f"stored numbers: K-FAC {sum(A.size + G.size for A, G in factors)}, GGN {GGN.size}")

# %%
layer_names = ["$[W_1|b_1]$", "$[W_2|b_2]$"]
fig, axes = plt.subplots(2, 3, figsize=(12.5, 8.6), layout="constrained")
# top row: the whole matrix; bottom row: the output layer's 90 x 90 block, on its own colour scale
limit_k = np.percentile(np.abs(GGN_layers), 99.5)
panels = [(GGN_layers, "GGN (parameters ordered layer by layer)"),
          (kfac_matrix, "K-FAC: blockdiag(kron(G, A))"),
          (GGN_layers - kfac_matrix, "GGN $-$ K-FAC (the error)")]
for ax, (M, title) in zip(axes[0], panels):
    im = heatmap(ax, M, title, limit_k, starts=layer_starts, names=layer_names)
fig.colorbar(im, ax=axes[0], shrink=0.9, extend="both", label="entry")

s2 = slice(layer_starts[1], layer_starts[2])
n2 = factors[1][0].shape[0]  # tiles of kron(G, A) are (n+1) x (n+1) = 9 x 9
tiles = np.arange(0, sizes[1] + 1, n2)
tile_names = [str(digit) for digit in range(10)]  # tile i: row i of [W2 | b2], the output for digit i
limit_2 = np.percentile(np.abs(GGN_layers[s2, s2]), 99.5)
panels = [(GGN_layers[s2, s2], "layer 2 block of the GGN"),
          (kfac_matrix[s2, s2], "kron($G_2$, $A_2$)"),
          (GGN_layers[s2, s2] - kfac_matrix[s2, s2], "the error")]
for ax, (M, title) in zip(axes[1], panels):
    im = heatmap(ax, M, title, limit_2, starts=tiles, names=tile_names)
    ax.set_xlabel("output digit", fontsize=9)
fig.colorbar(im, ax=axes[1], shrink=0.9, extend="both", label="entry")
fig.suptitle("K-FAC's approximation of the GGN after 50 Adam steps\n"
             "(bottom: the output layer's block; tile (i, j) couples the rows of $[W_2 | b_2]$ that output digits i and j)",
             fontsize=11)
show(fig)

# %% [markdown]
# Inside each diagonal block the Kronecker structure is visible as a grid of tiles: the
# $(i, j)$ tile of `kron(G, A)` is $G_{ij}\,A$, the same input pattern $A$ scaled by one entry of $G$.
# The error panel shows both approximations at work: the off-diagonal (layer-coupling) blocks are
# dropped entirely, and inside the blocks the Kronecker product misses part of the structure.
#
# The zoom on the output layer (bottom row) shows why. There, $\bar g_n\bar g_n^\top$ summed over the
# columns is $H_n = \operatorname{diag}(p_n) - p_np_n^\top$, so the exact tile $(i, j)$ is
# $\frac1b\sum_n H_n[i, j]\,\tilde a_n\tilde a_n^\top$: the inputs of the samples on which the network
# hesitates between digits $i$ and $j$, weighted by how much it hesitates. Each digit, and each pair
# of digits, has its own pattern; tiles off the diagonal are strong for pairs the half-trained
# network confuses (4 and 6, for instance).
# K-FAC replaces every tile by the *same* average $A$ times the average weight $G_{ij}$, and the
# confusions of particular digit pairs are averaged away. Such correlations between $\bar g_n$ and
# $\tilde a_n$ appear as the network learns; at initialisation, where activations and
# gradients are nearly unrelated, the same blocks are much closer:

# %%
for step in (0, 50, 300):
    model.load_state_dict(snapshots[step])
    G_full = ggn(model, loss_fn, x, y)
    errors = []
    for layer, (A, G) in zip(layers, kfac_factors(model, loss_fn, x, y, mode="exact")):
        idx = layer_indices(model, layer)
        errors.append(rel_error(np.kron(G, A), G_full[np.ix_(idx, idx)]))
    print(f"step {step:3d}: relative error of kron(G, A) per layer: "
          + ", ".join(f"layer {i}: {err:.3f}" for i, err in enumerate(errors, start=1)))
model.load_state_dict(snapshots[50])

# %% [markdown]
# ## 8. Where K-FAC is exact
#
# Two cases make the "expectation of a product = product of expectations" step exact, and are the
# best unit tests of an implementation:
#
# * **one `Linear` layer with the squared error.** $H_n = I$, so the back-propagated columns are the
#   unit vectors whatever the sample: $G = I$ and the block is exactly $I \otimes A$;
# * **a single sample**, $b = 1$, any network: there is only one term in the sum.

# %%
(A_lin, G_lin), = kfac_factors(lin, mse, x, targets, mode="exact")
idx = layer_indices(lin, lin)
err_lin = np.abs(np.kron(G_lin, A_lin) - GGN_lin[np.ix_(idx, idx)]).max()
print(f"Linear(16, 10) + MSE, b = {len(x)}:  G = I? {np.allclose(G_lin, np.eye(10))};  "
      f"max |kron(G, A) - GGN| = {err_lin:.1e}")

x1, y1 = x[:1], y[:1]
G_one = ggn(model, loss_fn, x1, y1)
for i, (layer, (A, G)) in enumerate(zip(layers, kfac_factors(model, loss_fn, x1, y1, mode="exact")), start=1):
    idx = layer_indices(model, layer)
    err = np.abs(np.kron(G, A) - G_one[np.ix_(idx, idx)]).max()
    print(f"MLP, b = 1, layer {i}: max |kron(G, A) - GGN block| = {err:.1e}")
    assert err < 1e-12
assert err_lin < 1e-12

# %% [markdown]
# ## 9. Sampled factors: the error falls like $1/\sqrt{S}$
#
# `mode="exact"` needs one backward sweep per network output ($m = 10$ here) to back-propagate the
# columns of $S_n$. The original K-FAC instead samples labels from the model, $\hat y \sim p(\cdot\mid f_n)$,
# and back-propagates $\hat r_n = \nabla_f\ell_n(\hat y)$ — one sweep per sample, whatever $m$ is
# (`mode="mc"`, `mc_samples=S`, each sweep scaled by $1/\sqrt{S}$). As in section 3,
# $\mathbb{E}[\hat r_n\hat r_n^\top] = H_n$, so the sampled $G$ is an unbiased estimate of the exact one
# and its error is a Monte Carlo error, $\propto 1/\sqrt{S}$. ($A$ involves no labels: it is the same in
# every mode.) `mode="empirical"` uses the true labels and converges to nothing but itself.
#
# We average the relative error of $G$ over 6 seeds for each $S$:

# %%
exact_G = [G for _, G in kfac_factors(model, loss_fn, x, y, mode="exact")]
empirical_G = [G for _, G in kfac_factors(model, loss_fn, x, y, mode="empirical")]
sample_counts = 2 ** np.arange(8)  # S = 1, 2, ..., 128
seeds = range(6)
mc_errors = np.zeros((len(sample_counts), len(layers)))
for i, S in enumerate(sample_counts):
    for seed in seeds:
        sampled = kfac_factors(model, loss_fn, x, y, mode="mc", mc_samples=int(S), rng=seed)
        mc_errors[i] += [rel_error(G, G0) for (_, G), G0 in zip(sampled, exact_G)]
mc_errors /= len(seeds)
slopes = np.polyfit(np.log(sample_counts), np.log(mc_errors), 1)[0]
print("fitted log-log slopes of the error:", np.round(slopes, 3), "  (Monte Carlo: -0.5)")
for l, (G_emp, G0) in enumerate(zip(empirical_G, exact_G), start=1):
    print(f"layer {l}: empirical-label G, relative error {rel_error(G_emp, G0):.3f} (does not depend on S)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for l in range(len(layers)):
    ax.loglog(sample_counts, mc_errors[:, l], "o-", color=f"C{l}", ms=4, label=f"layer {l + 1}: mode='mc'")
    ax.axhline(rel_error(empirical_G[l], exact_G[l]), color=f"C{l}", ls=":", lw=1.2,
               label=f"layer {l + 1}: mode='empirical'")
guide = mc_errors[0].mean() / np.sqrt(sample_counts)
ax.loglog(sample_counts, guide, "--", color="gray", label=r"slope $-1/2$: $\propto 1/\sqrt{S}$")
ax.set(xlabel="sampled labels per sample $S$", ylabel="relative error of $G$ (mean of 6 seeds)",
       title="Sampled K-FAC factor $G$ vs its exact value", ylim=(5e-3, 1))
ax.legend(fontsize=8, loc="lower left")
ax.grid(alpha=0.3, which="both")
plt.show()
print(f"notebook run time so far: {time.perf_counter() - notebook_start:.1f} s")

# %% [markdown]
# The sampled factors follow the $1/\sqrt{S}$ line: a factor of 100 in samples buys one more digit.
# The empirical factors sit at a fixed, large distance. In an optimiser the factors are also averaged
# over steps (notebook 04), which averages the sampling noise away too — that is why K-FAC can afford
# $S = 1$.
#
# ## Exercises
#
# 1. **ReLU networks.** Replace `nn.Tanh()` by `nn.ReLU()` and recompute $R = H - \text{GGN}$. Show
#    that its diagonal blocks $W_1$–$W_1$ and $W_2$–$W_2$ vanish (to rounding) while the $W_1$–$W_2$
#    blocks do not. Why? (Which second derivatives of $f$ survive when the activation is piecewise
#    linear?)
# 2. **The empirical Fisher at a perfect fit.** For the squared error, $\mathbb{E}[\hat r\hat r^\top] = I$
#    with $\hat y \sim \mathcal N(f, I)$. Build a teacher network, let the student *be* the teacher, and add
#    unit Gaussian noise to its targets. Show that the empirical Fisher then approaches the GGN as $b$
#    grows — and that without the noise it is zero. What does that say about using it near a minimum?
# 3. **The best Kronecker product.** K-FAC's $G \otimes A$ is not the Kronecker product *closest* to
#    the GGN block. Rearrange the block $B$ ($mn \times mn$) into an $m^2 \times n^2$ matrix whose rows are
#    the flattened $n \times n$ tiles; its leading singular pair gives the nearest $G \otimes A$ in the
#    Frobenius norm (Van Loan & Pitsianis 1993). Compare its error with section 7's, per layer and
#    per snapshot.

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 03.1 · A Kronecker-factored matrix-vector product
#
# Write `kron_matvec(G, A, V) -> (G ⊗ A)·vec(V) as an (m, n) matrix; G (m, m), A (n, n)`.

# %%
def kron_matvec(G, A, V):
    """03.1 · (G ⊗ A) vec(V) = vec(G V Aᵀ) for the row-major vec, without forming G ⊗ A."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("03.1", kron_matvec)


# %% [markdown]
# <details><summary><b>Hint</b> (03.1)</summary>
#
# For the row-major vec (np.ravel), (G ⊗ A) vec(V) = vec(G V Aᵀ): G acts on the rows (the first index), A on the columns, transposed. Never form the (mn)×(mn) matrix.
#
# </details>

# %% [markdown]
# ### 03.2 · K-FAC's Kronecker factors A and G of one layer
#
# Write `kfac_factors(a, g_bar, bias=True) -> (A, G); a (b, n), g_bar (r·b, m)`.

# %%
def kfac_factors(a, g_bar, bias=True):
    """03.2 · A = ãᵀã/b with ã = [a, 1] (ones last), G = ḡᵀḡ/b; b = rows of a."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("03.2", kfac_factors)


# %% [markdown]
# <details><summary><b>Hint</b> (03.2)</summary>
#
# ã = [a, 1] (a column of ones LAST, only with a bias); A = ãᵀã / b and G = ḡᵀḡ / b, both divided by b = a.shape[0], the rows of a (eq. 1). Keep the dtype of a.
#
# </details>

# %% [markdown]
# ### 03.3 · The output Hessian of the cross-entropy
#
# Write `ce_output_hessian(logits) -> (b, k, k), ∇²_f ℓₙ for each sample`.

# %%
def ce_output_hessian(logits):
    """03.3 · diag(p) − p pᵀ per sample, p = softmax(logits) computed stably."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("03.3", ce_output_hessian)

# %% [markdown]
# <details><summary><b>Hint</b> (03.3)</summary>
#
# ℓ = logsumexp(f) − f_y, so ∇²_f ℓ = diag(p) − p pᵀ with p = softmax(f) (stable: subtract the row max). Build it for all samples at once with broadcasting.
#
# </details>
