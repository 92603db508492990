# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · The K-FAC optimiser
#
# Notebook 03 built K-FAC's *approximation*: the curvature of each layer as one Kronecker product
# $G \otimes A$. This notebook turns it into an optimiser — J. Martens & R. Grosse, *Optimizing neural
# networks with Kronecker-factored approximate curvature*, ICML 2015 (M&G below; section numbers
# refer to the arXiv version, 1503.05671) — and trains with it.
#
# **What you will see**
#
# 1. the K-FAC step of one layer, $G^{-1}\,\nabla\,A^{-1}$: two small solves instead of one big one,
#    checked against the dense Kronecker system and against `tinycurv.optim.KFAC`;
# 2. one K-FAC step on linear regression with exact factors lands on the least-squares solution;
# 3. damping: factored Tikhonov damping and the $\pi$-correction, checked numerically;
# 4. factor averaging (an exponential moving average) and the period of the inverse updates;
# 5. training on the digits against SGD and Adam, per step *and* per second;
# 6. a damping sweep, and how to tell a result from amplified rounding noise;
# 7. step size, momentum and damping from the quadratic model (M&G §6.4, §6.5, §7): the $2 \times 2$
#    solve for the step size $\alpha$ and momentum $\mu$ checked densely, the reduction ratio $\rho$, and
#    $\lambda$ dancing to the Levenberg–Marquardt rule during training.
#
# **The idea in one equation.** A Newton-like step preconditions the gradient with a curvature
# matrix, $\Delta\theta = -\eta\, C^{-1}\nabla L$. K-FAC takes $C$ block-diagonal, one block
# $G_\ell \otimes A_\ell$ per layer (M&G §3, §4.2). Write the gradient of layer $\ell$ as a matrix,
# $\nabla_\ell = \nabla_{[W_\ell | b_\ell]} L$ ($m \times (n+1)$), flattened row-major; two identities of
# the Kronecker product,
#
# $$
# (G \otimes A)^{-1} = G^{-1} \otimes A^{-1},
# \qquad
# (G \otimes A)\,\operatorname{vec}(X) = \operatorname{vec}\big(G\,X\,A^\top\big),
# $$
#
# turn the $m(n+1) \times m(n+1)$ solve into two small ones:
#
# $$
# \Delta_\ell \;=\; (G_\ell \otimes A_\ell)^{-1}\operatorname{vec}(\nabla_\ell)
# \;=\; \operatorname{vec}\big(G_\ell^{-1}\,\nabla_\ell\,A_\ell^{-1}\big),
# \qquad
# [W_\ell \mid b_\ell] \;\leftarrow\; [W_\ell \mid b_\ell] - \eta\, G_\ell^{-1}\nabla_\ell A_\ell^{-1}.
# $$
#
# (M&G flatten column-major and write $\bar A \otimes G$ with the update $G^{-1}\nabla\bar A^{-1}$; with
# row-major flattening the same matrix is $G \otimes A$ and the update is the same.) $A_\ell$ is
# $(n+1) \times (n+1)$ and $G_\ell$ is $m \times m$: the cost grows with the *width* of the layers,
# not with the number of parameters squared.

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
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg  # noqa: F401  (load SciPy's BLAS now, so that the thread limit below covers it)

import tinycurv as tc
from tinycurv import nn
from tinycurv.curvature.kfac import curvature_layers, kfac_factors
from tinycurv.data import batches, load_digits
from tinycurv.optim import KFAC, SGD, Adam, NonFiniteError
from tinycurv.plotting import running_mean

tc.set_backend("numpy")
tc.set_default_dtype("float64")  # all checks below are in float64
rng = np.random.default_rng(0)  # every random number below comes from this seed
plt.rcParams.update({"figure.dpi": 120})
notebook_start = time.perf_counter()

# The matrices here are small (at most 65 x 65): BLAS threads cost more than they save, and make
# timings depend on what else the machine runs. Pin BLAS to one thread, as notebook 02 does.
try:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)
except ImportError:  # timings are then noisier, the code still runs
    pass

# %% [markdown]
# ## 1. One K-FAC step, by hand
#
# The network for the rest of the notebook: a $64 \to 32 \to 10$ tanh MLP on the full $8\times 8$ digits
# (1437 training images, 360 test images), softmax cross-entropy, $p = 2410$ parameters. We take one
# batch of 128 images, the exact factors of notebook 03 (`mode="exact"`), and compute the step of
# each layer in three ways:
#
# 1. **by hand**, two solves: $(G + \gamma I)^{-1}\,\nabla\,(A + \gamma I)^{-1}$ with a small damping
#    $\gamma = \sqrt{\lambda}$ on each factor (section 3 explains it);
# 2. **densely**: build the $m(n+1) \times m(n+1)$ matrix `kron(G + γI, A + γI)` and solve with the
#    flattened gradient;
# 3. with **`tinycurv.optim.KFAC`**: one `step` with `lr=1`, reading the step off the parameters.

# %%
X_train, y_train, X_test, y_test = load_digits()
loss_fn = nn.CrossEntropyLoss()


def make_model(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 32, rng=r), nn.Tanh(), nn.Linear(32, 10, rng=r))


def as_matrix(layer, arrays):
    # [dW | db] of one Linear layer, shape (m, n + 1), from a dict {parameter id: array}
    return np.concatenate([arrays[id(layer.weight)], arrays[id(layer.bias)][:, None]], axis=1)


model = make_model()
params = model.parameters()
layers = curvature_layers(model)
x, y = X_train[:128], y_train[:128]
damping = 1e-3
gamma = np.sqrt(damping)

factors = kfac_factors(model, loss_fn, x, y, mode="exact")
grads = dict(zip(map(id, params), tc.grad(lambda: loss_fn(model(x), y), params)))

# 3. the optimiser: one step with lr = 1 moves the parameters by exactly its Delta
before = {id(p): p.data.copy() for p in params}
KFAC(model, loss_fn, lr=1.0, damping=damping, mode="exact").step(x, y)
moved = {id(p): before[id(p)] - p.data for p in params}
for p in params:  # undo the step
    p.data = before[id(p)]

for i, (layer, (A, G)) in enumerate(zip(layers, factors), start=1):
    grad = as_matrix(layer, grads)  # (m, n + 1)
    A_damped = A + gamma * np.eye(len(A))
    G_damped = G + gamma * np.eye(len(G))
    by_hand = np.linalg.solve(G_damped, grad) @ np.linalg.inv(A_damped)  # G^-1 grad A^-1
    dense = np.linalg.solve(np.kron(G_damped, A_damped), grad.ravel()).reshape(grad.shape)
    step = as_matrix(layer, moved)
    print(f"layer {i}: A {A.shape}, G {G.shape}, dense system {np.kron(G, A).shape}")
    print(f"   by hand vs dense solve:  relative error {np.linalg.norm(by_hand - dense) / np.linalg.norm(dense):.1e}")
    print(f"   by hand vs KFAC.step:    relative error {np.linalg.norm(by_hand - step) / np.linalg.norm(step):.1e}")
    assert np.allclose(by_hand, dense, rtol=1e-8) and np.allclose(by_hand, step, rtol=1e-8)

# %% [markdown]
# Two solves with a $65 \times 65$ and a $32 \times 32$ matrix give the same step as one solve with a
# $2080 \times 2080$ matrix. (`KFAC` goes one step further: a minibatch gradient $\nabla = g^\top\tilde a$
# has rank at most $b$, so when that is cheaper it solves with $g^\top$ and $\tilde a^\top$ instead of
# $\nabla$ — the same numbers, as the check shows.)
#
# ## 2. Linear regression in one step
#
# For one `Linear` layer with the squared error, notebook 03 (§6, §8) showed that the Hessian, the
# GGN and K-FAC's $G \otimes A$ are the *same* matrix, $I \otimes A$ with $A = \frac1b\sum_n \tilde x_n\tilde x_n^\top$.
# The loss is quadratic, so one undamped step with `lr=1` is Newton's step and must land exactly on
# the minimiser — the least-squares solution of $[X, 1]\,[W \mid b]^\top \approx Y$:

# %%
X_reg = rng.standard_normal((200, 5))
W_true, b_true = rng.standard_normal((3, 5)), rng.standard_normal(3)
Y_reg = X_reg @ W_true.T + b_true + 0.1 * rng.standard_normal((200, 3))
mse = nn.MSELoss()

X1 = np.hstack([X_reg, np.ones((200, 1))])  # [x, 1]
least_squares = np.linalg.lstsq(X1, Y_reg, rcond=None)[0].T  # [W | b], (3, 6)
best_loss = mse(tc.Tensor(X1 @ least_squares.T), Y_reg).item()

print(f"least-squares loss: {best_loss:.6f}\n")
print(f"{'one K-FAC step with':34s}{'loss after':>12s}{'max |[W|b] - least squares|':>30s}")
for mode, lam in [("exact", 0.0), ("exact", 1e-4), ("exact", 1e-2), ("mc", 0.0), ("empirical", 0.0)]:
    lin = nn.Linear(5, 3, rng=1)
    start = mse(lin(X_reg), Y_reg).item()
    KFAC(lin, mse, lr=1.0, damping=lam, mode=mode, seed=0).step(X_reg, Y_reg)
    Wb = np.hstack([lin.weight.data, lin.bias.data[:, None]])
    print(f"  mode={mode!r:12s} damping={lam:<8g}{mse(lin(X_reg), Y_reg).item():12.6f}"
          f"{np.abs(Wb - least_squares).max():30.1e}")
print(f"\n(loss before the step: {start:.4f})")

# %% [markdown]
# * With exact factors and no damping the step is exact to rounding: for a quadratic, K-FAC *is*
#   Newton's method.
# * Damping shortens the step, a little or a lot: $\lambda = 10^{-2}$ adds $\sqrt\lambda = 0.1$ to both
#   factors, whose eigenvalues here lie between 0.7 and 1.3 ($A$) and are exactly 1 ($G$), so every
#   direction of the step shrinks by about a fifth — and a fifth of the way still to go is, on a
#   quadratic, $(1/5)^2$ of the initial excess loss.
# * `mode="mc"` replaces $G = I$ by a sampled estimate (one Gaussian label per sample): close, not exact.
# * `mode="empirical"` uses the true residuals: $G = \frac1b\sum_n r_nr_n^\top$ is as large as the
#   *squared* error, so far from the solution it is far too large, and the step far too short.
#
# ## 3. Damping: factored Tikhonov and the π-correction
#
# A curvature matrix is a *local* model, and a nearly singular one (notebook 03 found 9 exact zero
# eigenvalues of the GGN and many tiny ones): an undamped step along a direction of tiny curvature
# is huge, and is trusted far outside the region where the quadratic model holds. The classical fix
# is Tikhonov damping, $C + \lambda I$. But $G \otimes A + \lambda I$ is not a Kronecker product, so its
# inverse is no longer two small inverses. K-FAC damps the *factors* instead (M&G §6.3):
#
# $$
# (G + \gamma_G I) \otimes (A + \gamma_A I)
# \;=\; G \otimes A \;+\; \underbrace{\gamma_A\, G \otimes I + \gamma_G\, I \otimes A}_{\text{cross terms}} \;+\; \gamma_A\gamma_G\, I,
# \qquad \gamma_A\gamma_G = \lambda .
# $$
#
# That is Tikhonov damping plus two cross terms. Splitting $\lambda$ as $\gamma_A = \pi\sqrt\lambda$,
# $\gamma_G = \sqrt\lambda/\pi$, M&G choose $\pi$ to make the two cross terms equally large (in the trace
# norm, $\lVert G\otimes I\rVert_* = \operatorname{tr}(G)\dim A$):
#
# $$
# \pi \;=\; \sqrt{\frac{\operatorname{tr}(A)/\dim A}{\operatorname{tr}(G)/\dim G}} .
# $$
#
# Each factor is then damped in proportion to its own scale. `KFAC(..., pi_correction=True)` uses
# this split, the default uses $\pi = 1$; here is the function that computes the two dampings,
# `tinycurv.curvature.kfac.kfac_dampings` (it computes $\pi$ on the device: on a GPU no number travels to
# the host):

# %%
from tinycurv.curvature.kfac import kfac_dampings  # what KFAC calls at each refactorisation

print(inspect.getsource(kfac_dampings))

# %% [markdown]
# How far is the factored damping from true Tikhonov damping? We measure
# $\lVert (G + \gamma_G I)\otimes(A + \gamma_A I) - (G\otimes A + \lambda I)\rVert_F \,/\, \lVert G\otimes A + \lambda I\rVert_F$
# for the factors of section 1, with and without the $\pi$-correction:

# %%
lam = 1e-2
print(f"damping lambda = {lam}")
for i, (A, G) in enumerate(factors, start=1):
    tikhonov = np.kron(G, A) + lam * np.eye(len(A) * len(G))
    pi = np.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
    for label, p in [("pi = 1", 1.0), (f"pi = {pi:.2f}", pi)]:
        gA, gG = p * np.sqrt(lam), np.sqrt(lam) / p
        factored = np.kron(G + gG * np.eye(len(G)), A + gA * np.eye(len(A)))
        print(f"  layer {i} (tr A/dim A = {np.trace(A) / len(A):.3f}, tr G/dim G = {np.trace(G) / len(G):.4f}), "
              f"{label:9s}: relative distance to G(x)A + lambda I = "
              f"{np.linalg.norm(factored - tikhonov) / np.linalg.norm(tikhonov):.3f}")

# %% [markdown]
# In the first layer $A$ (covariances of the pixels) and $G$ (covariances of back-propagated
# gradients) live on scales 30 times apart. With $\pi = 1$ each gets $\sqrt\lambda = 0.1$: the small
# factor $G$ is swamped by its damping, and the cross term $\gamma_G\, I \otimes A$ dominates the damped
# product, which lands far from $G\otimes A + \lambda I$. The $\pi$-correction ($\pi \approx 5.6$) shifts
# the damping onto $A$ and brings the product five times closer. In the output layer the two scales
# are alike, $\pi \approx 1$, and the correction changes little. At this $\lambda$ — larger than most
# entries of $G \otimes A$ — neither is close to Tikhonov damping; both are cheap to invert. Whether
# the closer match also trains better is a different question (section 6).
#
# ## 4. Averaging the factors, and how often to invert them
#
# **Factor averaging** (M&G §5). One minibatch — and, with `mode="mc"`, one sampled label per
# sample — gives a noisy estimate of $A$ and $G$. K-FAC keeps a running average across steps,
#
# $$
# F \;\leftarrow\; \varepsilon_k\, F + (1 - \varepsilon_k)\, F_\text{batch},
# \qquad
# \varepsilon_k = \min\!\big(1 - \tfrac1k,\; \varepsilon\big)
# \quad\text{at the $k$-th update,}
# $$
#
# for $F = A, G$. Until $1 - 1/k$ reaches $\varepsilon$ (at $k = 20$ for the default $\varepsilon = 0.95$)
# this is the plain mean of the batches so far; then it forgets old batches with a memory of about
# $1/(1-\varepsilon) = 20$ steps, since the parameters — and the curvature with them — move.
#
# We train for two epochs with `KFAC(mode="mc")` and, before each step, also compute the batch's own
# factors with `kfac_factors`, sampled (`"mc"`, the kind of estimate the optimiser averages, from
# its own draws) and exact (`"exact"`, no label noise), to compare with the optimiser's average
# `opt.state["G"]`:

# %%
model = make_model()
out_layer = curvature_layers(model)[1]
opt = KFAC(model, loss_fn, lr=0.3, damping=1e-2, mode="mc", ema_decay=0.95, seed=0)
trace_G = {"batch, mode='mc'": [], "batch, mode='exact'": [], "KFAC's average (state['G'])": []}
for epoch in range(2):
    for xb, yb in batches(X_train, y_train, batch_size=64, rng=epoch):
        G_mc = kfac_factors(model, loss_fn, xb, yb, mode="mc", rng=rng)[1][1]  # [layer 2][G]
        G_ex = kfac_factors(model, loss_fn, xb, yb, mode="exact")[1][1]
        opt.step(xb, yb)
        trace_G["batch, mode='mc'"].append(np.trace(G_mc))
        trace_G["batch, mode='exact'"].append(np.trace(G_ex))
        trace_G["KFAC's average (state['G'])"].append(np.trace(opt.state["G"][1]))

fig, ax = plt.subplots(figsize=(7, 3.6))
for (label, values), style in zip(trace_G.items(), [dict(color="C1", alpha=0.6, lw=1),
                                                    dict(color="C0", lw=1.2), dict(color="k", lw=2)]):
    ax.plot(np.arange(1, len(values) + 1), values, label=label, **style)
ax.axvline(20, color="gray", ls=":", lw=1)
ax.text(21, ax.get_ylim()[1] * 0.95, r"$1 - 1/k$ reaches $\varepsilon = 0.95$", fontsize=8, va="top")
ax.set(xlabel="step", ylabel=r"$\mathrm{tr}\,G$ of the output layer",
       title="K-FAC's factor average vs the factors of each batch")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()


# %% [markdown]
# The sampled batch factors (orange) scatter around the exact ones (blue): one sampled label per
# sample is a noisy estimate. The average (black) is smooth, but it *lags*: in the first epoch the
# curvature falls fast — the network learns, its predictions sharpen, and $H_n = \operatorname{diag}(p_n) - p_np_n^\top$
# shrinks — and an average over the last ~20 steps overestimates it by a factor of two or more.
# Too large a $G$ means too short a step, so early K-FAC steps are cautious; the lag is the price of
# the noise reduction. (Larger batches, or $S > 1$ sampled labels, reduce the noise instead, at a cost
# per step.)
#
# **How often to invert.** Factorising the damped factors (a Cholesky decomposition each, or an
# eigendecomposition) costs $O(n^3 + m^3)$ per layer, against $O(b\,n\,m)$ for the gradient itself —
# negligible here, dominant for layers thousands wide. Since the averaged factors change slowly,
# K-FAC may refactorise only every `inv_every` steps and reuse the stale factorisations in between
# (M&G §8). On our small network:

# %%
def train(make_opt, epochs=5, batch_size=64, seed=0, perturb=0.0, watch=None):
    # Train a fresh make_model(seed); per step: minibatch loss and cumulative time inside step().
    # A run whose loss becomes NaN or inf (step() raises NonFiniteError) ends with train_loss = inf.
    # perturb: scale the initial weights by 1 + perturb (section 6); watch(opt): called after every step.
    model = make_model(seed)
    for p in model.parameters():
        p.data = p.data * (1.0 + perturb)
    opt = make_opt(model)
    losses, clock, elapsed = [], [], 0.0
    try:
        for epoch in range(epochs):
            for xb, yb in batches(X_train, y_train, batch_size, rng=1000 * seed + epoch):
                start = time.perf_counter()
                losses.append(opt.step(xb, yb))
                elapsed += time.perf_counter() - start
                clock.append(elapsed)
                if watch is not None:
                    watch(opt)
        train_loss = loss_fn(model(X_train), y_train).item()
    except NonFiniteError:
        train_loss = np.inf
    test_accuracy = np.mean(np.argmax(model(X_test).data, axis=1) == y_test)
    return dict(loss=np.array(losses), time=np.array(clock), train_loss=train_loss,
                test_accuracy=test_accuracy, opt=opt)


inv_runs = {inv_every: train(lambda m: KFAC(m, loss_fn, lr=0.3, damping=1e-2, inv_every=inv_every, seed=0))
            for inv_every in (1, 10, 50)}
for inv_every, run in inv_runs.items():
    print(f"inv_every = {inv_every:2d}: training loss after 5 epochs {run['train_loss']:.4f}")

# %% tags=["timing"]
# a timing cell: its numbers change from run to run
for inv_every, run in inv_runs.items():
    print(f"inv_every = {inv_every:2d}: {run['time'][-1] / len(run['loss']) * 1e3:5.2f} ms per step")

# %% [markdown]
# With factors of size 65 and 32 the factorisations are a small part of a step: refactorising only
# every 10 or 50 steps saves a few milliseconds per step at most here, within the timing noise of
# a shared machine (compare the rows above). Nor does it
# hurt the training loss on this run — the averaged factors change slowly, so a stale factorisation
# is still a good preconditioner. (Exercise 3 widens the layer until the factorisations cost.)
#
# ## 5. Training on the digits: K-FAC vs SGD vs Adam
#
# Each optimiser trains the same network from the same initialisation on the same sequence of
# minibatches of 64 images. To be fair to each, its learning rate is the best of a grid of three, a
# factor of about 3 apart, judged by the training loss after 5 epochs (115 steps); the best one lies
# inside each grid, not at its edge (a wider search found no better rate):
#
# * SGD with heavy-ball momentum 0.9, $\eta \in \{0.1, 0.3, 1\}$;
# * Adam, $\eta \in \{0.01, 0.03, 0.1\}$;
# * K-FAC, `mode="mc"`, damping $\lambda = 10^{-2}$, factor average $\varepsilon = 0.95$, factorised every
#   step, no momentum, $\eta \in \{0.3, 1, 3\}$.
#
# The clock runs only inside `step()`: data loading and evaluation are not counted.

# %%
grids = {
    "SGD (momentum 0.9)": (lambda m, lr, seed=0: SGD(m, loss_fn, lr=lr, momentum=0.9), [0.1, 0.3, 1.0]),
    "Adam": (lambda m, lr, seed=0: Adam(m, loss_fn, lr=lr), [0.01, 0.03, 0.1]),
    "K-FAC": (lambda m, lr, seed=0: KFAC(m, loss_fn, lr=lr, damping=1e-2, seed=seed), [0.3, 1.0, 3.0]),
}
best_lr, five_epochs = {}, {}
for name, (make_opt, lrs) in grids.items():
    tried = {lr: train(lambda m: make_opt(m, lr)) for lr in lrs}
    best_lr[name] = min(lrs, key=lambda lr: tried[lr]["train_loss"])
    five_epochs[name] = tried[best_lr[name]]
    print(f"{name:20s} training loss after 5 epochs by lr: "
          + ", ".join(f"{lr:g}: {r['train_loss']:.4f}" for lr, r in tried.items()) + f"  -> lr = {best_lr[name]:g}")

# %% tags=["timing"]
for name, r in five_epochs.items():
    print(f"{name:20s} {r['time'][-1] / len(r['loss']) * 1e3:5.2f} ms per step, 5 epochs in {r['time'][-1]:.2f} s")

# %% [markdown]
# A K-FAC step costs several SGD or Adam steps here: a second backward sweep for the sampled labels,
# the factor products, two Cholesky factorisations and four triangular solves per layer. On a
# network this small, Python's overhead per operation is a large part of every step, which
# exaggerates the ratio; in a large network the matrix products dominate and the factorisations are
# amortised (section 4). To compare *per second* on equal terms we give SGD and Adam three times as
# many epochs — about the time K-FAC needs for five:

# %%
epochs = {"SGD (momentum 0.9)": 15, "Adam": 15, "K-FAC": 5}
runs = {name: five_epochs[name] if epochs[name] == 5 else
        train(lambda m: grids[name][0](m, best_lr[name]), epochs=epochs[name]) for name in grids}
for name, r in runs.items():
    print(f"{name:20s} lr {best_lr[name]:<5g} {epochs[name]:2d} epochs, {len(r['loss'])} steps:  "
          f"training loss {r['train_loss']:.4f}, test accuracy {r['test_accuracy']:.1%}")

means = {name: running_mean(r["loss"], 10) for name, r in runs.items()}  # as in the figure below
print(f"\n{'running mean of 10 minibatch losses at step':44s}" + "".join(f"{s:>8d}" for s in (25, 50, 75, 115)))
for name, mean in means.items():
    print(f"{name:44s}" + "".join(f"{mean[s - 1]:8.3g}" for s in (25, 50, 75, 115)))
kfac = means["K-FAC"]
behind = kfac >= np.minimum(means["SGD (momentum 0.9)"], means["Adam"])[:len(kfac)]
print(f"K-FAC's running mean is below both SGD's and Adam's from step {np.nonzero(behind)[0][-1] + 2} on")
for name in ("SGD (momentum 0.9)", "Adam"):
    print(f"{name} first reaches K-FAC's last value, {kfac[-1]:.3g}, at step {np.argmax(means[name] <= kfac[-1]) + 1}")

# %% tags=["timing"]
for name, r in runs.items():
    print(f"{name:20s} {epochs[name]:2d} epochs in {r['time'][-1]:.2f} s (inside step())")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for i, (name, r) in enumerate(runs.items()):
    steps = np.arange(1, len(r["loss"]) + 1)
    for ax, xs in ((ax0, steps), (ax1, r["time"])):
        ax.plot(xs, r["loss"], color=f"C{i}", alpha=0.25, lw=0.8)
        ax.plot(xs, running_mean(r["loss"], 10), color=f"C{i}", lw=2,
                label=f"{name}, lr {best_lr[name]:g}, {epochs[name]} epochs")
ax0.set(xlabel="training step", ylabel="minibatch loss (running mean of 10 steps)", yscale="log",
        title="Loss per step")
ax1.set(xlabel="wall-clock time inside step() (s, CPU, 1 BLAS thread)", title="Loss per second")
for ax in (ax0, ax1):
    ax.grid(alpha=0.3, which="both")
ax0.legend(fontsize=8)
fig.suptitle("64-32-10 tanh MLP on the digits, batch 64, same initialisation and minibatch order", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# One seed is one sample. Rerunning the three configurations with two more seeds (another
# initialisation, another order of the minibatches, other sampled labels) shows how much of the
# differences is noise:

# %%
for name, r in runs.items():
    finals = [r["train_loss"]] + [train(lambda m: grids[name][0](m, best_lr[name], seed=seed), epochs=epochs[name],
                                        seed=seed)["train_loss"] for seed in (1, 2)]
    print(f"{name:20s} {epochs[name]:2d} epochs, training loss for seeds 0, 1, 2: " + ", ".join(f"{v:.4f}" for v in finals))

# %% [markdown]
# * **Per step** K-FAC starts *behind*: its running mean of the minibatch loss at steps 25, 50 and 75 is
#   0.655, 0.261 and 0.134, against Adam's 0.385, 0.19 and 0.0971 and SGD's 0.394, 0.202 and 0.109 —
#   plausibly the lag of the factor average (section 4): too large a $G$ early on means too short a
#   step. K-FAC is below both only from step 88 on, and then pulls away: its running mean at its last
#   step, 0.00817 at step 115, SGD reaches only at step 327 and Adam at step 311. Once the factors have
#   caught up, each step uses the curvature and gets further.
# * **Per second** the lead is gone on this small network: a K-FAC step costs several SGD or Adam steps
#   (the timing cells above: two to five on the shared machine these lines were written on), and over
#   the same time budget the three methods end at similar training losses — K-FAC lowest on seed 0, but
#   not on every seed. The test accuracies (96–97.5%) differ by a handful of the 360 test images.
# * The seeds show K-FAC's final loss varying most between runs: its large learning rate and the
#   sampled labels make it more sensitive to the luck of the draw than Adam.
#
# That is the usual picture, and the reason K-FAC is interesting at scale: its advantage is per step,
# so it pays off when steps are expensive anyway (large models, large batches, many devices) and the
# extra work of the factors and the inverses is a small fraction of a step.
#
# ## 6. A damping sweep
#
# $\lambda$ is K-FAC's most important hyperparameter besides the learning rate. Its two extremes are
# easy to predict:
#
# * $\lambda \to 0$: the full, undamped step — large along every direction the factors think is flat,
#   including those that are merely badly estimated from one minibatch: unstable;
# * $\lambda \to \infty$: $(G + \sqrt\lambda I)^{-1}\nabla(A + \sqrt\lambda I)^{-1} \to \nabla/\lambda$, so K-FAC becomes
#   plain gradient descent with learning rate $\eta/\lambda$ — stable, and slow.
#
# We sweep $\lambda$ over six decades at the learning rate chosen above, with and without the
# $\pi$-correction, and add plain SGD (no momentum) with learning rate $\eta/\lambda$ for the large-$\lambda$
# limit.

# %%
lr_kfac = best_lr["K-FAC"]
dampings = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]


def final_loss(make_opt, epochs=2):
    # (training loss after `epochs`, stable?): stable if perturbing the initial weights by one part
    # in 10^10 changes that loss by less than 0.1%. An unstable run's loss is rounding noise, amplified.
    loss = train(make_opt, epochs=epochs)["train_loss"]
    again = train(make_opt, epochs=epochs, perturb=1e-10)["train_loss"]
    return loss, bool(abs(again - loss) < 1e-3 * abs(loss))


makers = {
    "K-FAC, pi = 1": lambda lam: (lambda m: KFAC(m, loss_fn, lr=lr_kfac, damping=lam, seed=0)),
    "K-FAC, pi-correction": lambda lam: (lambda m: KFAC(m, loss_fn, lr=lr_kfac, damping=lam, pi_correction=True, seed=0)),
    "SGD, lr = eta/lambda": lambda lam: (lambda m: SGD(m, loss_fn, lr=lr_kfac / lam)) if lam >= 1 else None,
}
sweep = {name: [final_loss(make(lam)) if make(lam) else (np.nan, True) for lam in dampings] for name, make in makers.items()}
print(f"{'damping':>10s}" + "".join(f"{name:>26s}" for name in sweep))
for j, lam in enumerate(dampings):
    print(f"{lam:10g}" + "".join(f"{v:26.4f}" if stable else f"{'unstable':>26s}" for v, stable in (s[j] for s in sweep.values())))
print("\nunstable: perturbing the initial weights by one part in 10^10 changes the loss after 46 steps by more than 0.1%")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
styles = [dict(color="C2", marker="o"), dict(color="C3", marker="s", ls="--"), dict(color="C0", marker="^", ls=":")]
labels = [r"K-FAC, $\pi = 1$", r"K-FAC, $\pi$-correction", r"plain SGD, lr $= \eta/\lambda$"]
for values, style, label in zip(sweep.values(), styles, labels):
    loss = np.array([v for v, _ in values])
    unstable = np.array([not stable for _, stable in values])
    ax.loglog(dampings, loss, label=label, ms=5, **style)
    ax.loglog(np.array(dampings)[unstable], loss[unstable], ls="none", marker=style["marker"], ms=5,
              color="white", markeredgecolor=style["color"])  # open: unstable (rounding noise)
ax.plot([], [], ls="none", marker="o", color="white", markeredgecolor="gray", label="open marker: unstable run")
ax.axhline(loss_fn(make_model()(X_train), y_train).item(), color="gray", ls=":", lw=1,
           label="loss at initialisation")
ax.set(xlabel=r"damping $\lambda$", ylabel="training loss after 2 epochs (46 steps)",
       title=fr"K-FAC damping sweep (lr $\eta$ = {lr_kfac:g}, mode='mc')")
ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")
plt.show()

# %% [markdown]
# The curve is a valley, with its walls where the two limits above put them:
#
# * **too little damping**: at $\lambda \le 10^{-3}$ (and at $10^{-2}$ with the $\pi$-correction) the run is
#   *unstable*: perturbing the initial weights by one part in $10^{10}$ changes the loss after 46 steps
#   by more than 0.1% — by several percent to tens of percent. The steps blow up along directions that
#   one minibatch and one sampled label per sample make look flat, and an exploding run amplifies
#   every difference, down to the last bit of rounding: its loss is not a reproducible number (a
#   re-execution on another machine once printed 9.94 where the saved notebook said 15.89). The table
#   therefore says *unstable*; the open markers show this execution's values, far *above* the loss at
#   initialisation or close to it — either way, nothing was learnt;
# * **too much damping** ($\lambda \ge 1$): K-FAC's losses fall on top of plain SGD's with learning rate
#   $\eta/\lambda$, within a few percent — the preconditioner has become a multiple of the identity;
# * **in between**, around $\lambda = 0.01$–$0.1$, the curvature helps. The learning rate and the damping
#   interact (large $\lambda$ shrinks the step like a smaller $\eta$): this sweep prefers $\lambda = 0.1$
#   at $\eta = 1$, while section 5 picked $\eta$ with $\lambda = 0.01$ held fixed. Tune them together.
#
# The **$\pi$-correction** moves the valley to larger $\lambda$. In the first layer it gives $A$ most of
# the damping and $G$ a fifth of its share ($\pi \approx 5.6$, section 3) — but $G$ is the factor estimated
# from sampled labels, the noisy one, and its small, poorly estimated eigenvalues are exactly what
# damping must hold in check. At $\lambda \ge 0.1$ the two variants agree. (M&G use the correction
# together with rules that choose the step length from the quadratic model and *adapt* $\lambda$ during
# training: section 7.)

# %% [markdown]
# ## 7. Step size, momentum and damping from the quadratic model
#
# Sections 5 and 6 tuned K-FAC's learning rate on a grid and its damping $\lambda$ by a sweep. M&G tune
# neither by hand (§6.4, §6.5, §7). At every step they ask a *quadratic model* of the loss, built with
# the exact curvature of the minibatch, how long the step should be and how much of the previous step
# to add; and, by comparing its prediction with what then happened, how far to trust it next time.
#
# **The model** (M&G §6.4). In this section $\Delta = -\breve F^{-1}\nabla h$ is the K-FAC direction pointing
# *downhill*, as in M&G: per layer it is $-G^{-1}\nabla A^{-1}$ of section 1 (with factored damping),
# $\breve F$ being K-FAC's damped block-diagonal approximation and $h$ the loss of the minibatch. The model
# of $h(\theta + \delta)$ is
#
# $$
# M(\delta) \;=\; \tfrac12\,\delta^\top\big(F + (\lambda + \eta)\,I\big)\,\delta \;+\; \nabla h^\top\delta \;+\; h(\theta),
# $$
#
# with $F$ the **exact** GGN of the minibatch (notebook 03; for softmax cross-entropy it equals the
# Fisher), never formed: only products $Fv$ are needed (a JVP and a VJP, `tinycurv.curvature.ggn_vp`).
# $\eta$ is M&G's weight-decay coefficient, zero in this notebook (not the learning rate of sections 5–6,
# which this rule no longer needs).
#
# **Why rescale $\Delta$?** $\Delta$ minimises K-FAC's *own* model, with $\breve F$ in place of $F$, and $\breve F$
# is off in known ways: block-diagonal, Kronecker-factored, averaged over past minibatches (section 4
# saw the average overestimate $G$ by a factor of two early on, which makes steps too short), damped
# factor by factor rather than by $\lambda I$ (section 3). Its direction is good; its length is not to be
# trusted. M&G fix the length with the exact model along $\Delta$ (§6.4) and add the previous update
# $\delta_0$ as a second direction (§7) — momentum, with its coefficient chosen by the model too:
#
# $$
# \delta = \alpha\,\Delta + \mu\,\delta_0,
# \qquad
# \begin{bmatrix}\alpha\\ \mu\end{bmatrix}
# = -\begin{bmatrix}\Delta^\top\tilde F\,\Delta & \Delta^\top\tilde F\,\delta_0\\ \delta_0^\top\tilde F\,\Delta & \delta_0^\top\tilde F\,\delta_0\end{bmatrix}^{-1}
# \begin{bmatrix}\nabla h^\top\Delta\\ \nabla h^\top\delta_0\end{bmatrix},
# \qquad
# \tilde F = F + (\lambda + \eta)\, I ,
# $$
#
# the minimum of $M$ over the plane spanned by $\Delta$ and $\delta_0$, where
# $M(\delta) - M(0) = \tfrac12\,(\alpha\,\nabla h^\top\Delta + \mu\,\nabla h^\top\delta_0) < 0$. At the first step there is no $\delta_0$:
# $\mu = 0$ and $\alpha = -\nabla h^\top\Delta \,/\, \Delta^\top\tilde F\Delta$ (§6.4's $\alpha^*$). The cost is two GGN-vector
# products per step, $F\Delta$ and $F\delta_0$, in one batched sweep. `KFAC(model, loss_fn, damping=λ,
# step_rule="qmodel")` takes this step; `lr` and `momentum` are then not used.
#
# **How far to trust the model: the reduction ratio** (M&G §6.5). After the step, on the same minibatch,
#
# $$
# \rho \;=\; \frac{h(\theta + \delta) - h(\theta)}{M(\delta) - M(0)}
# $$
#
# compares the decrease obtained with the decrease predicted. $\rho \approx 1$: the model was right.
# $\rho \ll 1$, or $\rho < 0$: the step went further than the model holds (the loss fell much less than
# promised, or rose). $\rho > 1$: the loss fell by more than the model promised. The
# **Levenberg–Marquardt rule** moves $\lambda$ accordingly, every $T_1$ steps:
#
# $$
# \lambda \;\leftarrow\;
# \begin{cases}
# \omega_1\,\lambda & \text{if } \rho > \tfrac34,\\[2pt]
# \lambda / \omega_1 & \text{if } \rho < \tfrac14,\\[2pt]
# \lambda & \text{otherwise,}
# \end{cases}
# \qquad
# \omega_1 = \big(\tfrac{19}{20}\big)^{T_1},\quad T_1 = 5 ,
# $$
#
# so $\lambda$ changes by at most a factor $1/\omega_1 \approx 1.29$ per adaptation: a factor of 10 takes
# about 45 steps. A larger $\lambda$ damps the model more (shorter, more gradient-like steps) and — in
# tinycurv, where one $\lambda$ serves both — the K-FAC direction too, $\sqrt\lambda$ on each factor (M&G
# adapt a separate damping $\gamma$ of the factors, §6.6). `KFAC(..., adapt_damping=True, adapt_every=T₁)`
# keeps the current $\lambda$ in `opt.state["damping"]`, the $\lambda$ after every adaptation in
# `opt.state["damping_history"]` and the last $\rho$ in `opt.state["reduction_ratio"]`.
#
# **Checked on a tiny network.** A $64 \to 4 \to 10$ tanh MLP ($p = 310$), batches of 32, exact factors,
# and $T_1 = 1$, so that every step exercises both rules ($\omega_1 = 0.95$). At each step we recompute
# everything densely — the $310 \times 310$ GGN (`tinycurv.curvature.dense.ggn`), $\Delta$ from the factors
# the step used (`opt.state["A"]`, `opt.state["G"]`) and `kfac_direction`, the $2 \times 2$ solve, $M$, $\rho$
# and `levenberg_marquardt` — and compare with what the optimiser did:

# %%
from tinycurv.curvature import dense
from tinycurv.curvature.kfac import kfac_direction, levenberg_marquardt


def flat(arrays):
    # one vector in model.parameters() order, each array row-major: the order of dense.ggn's axes
    return np.concatenate([np.ravel(a) for a in arrays])


r = np.random.default_rng(1)
tiny = nn.Sequential(nn.Linear(64, 4, rng=r), nn.Tanh(), nn.Linear(4, 10, rng=r))
tiny_params = tiny.parameters()
opt = KFAC(tiny, loss_fn, damping=1e-2, mode="exact", step_rule="qmodel", adapt_damping=True, adapt_every=1)
omega = (19 / 20) ** 1  # omega_1 = (19/20)^T1 with T1 = adapt_every = 1
print(f"tiny net: p = {sum(p.data.size for p in tiny_params)}, batches of 32, lambda_0 = {opt.damping}, T1 = 1\n")
prev = None  # delta_0, the previous update
for t in range(4):
    xb, yb = X_train[32 * t:32 * (t + 1)], y_train[32 * t:32 * (t + 1)]
    lam = float(opt.state["damping"][0]) if "damping" in opt.state else opt.damping  # this step's lambda
    grads = tc.grad(lambda: loss_fn(tiny(xb), yb), tiny_params)
    F_damped = dense.ggn(tiny, loss_fn, xb, yb) + lam * np.eye(len(flat(grads)))  # F + lambda I (no weight decay)
    theta = flat([p.data for p in tiny_params])
    h_before = opt.step(xb, yb)
    update = flat([p.data for p in tiny_params]) - theta  # what KFAC did
    h_after = loss_fn(tiny(xb), yb).item()

    # Delta = -(the K-FAC direction), from the factors this step used and this batch's gradient
    by_id = dict(zip(map(id, tiny_params), grads))
    Delta = {}
    for layer, A, G in zip(curvature_layers(tiny), opt.state["A"], opt.state["G"]):
        D = -kfac_direction(as_matrix(layer, by_id), A, G, lam)  # (m, n + 1)
        Delta[id(layer.weight)], Delta[id(layer.bias)] = D[:, :-1], D[:, -1]
    Delta, grad = flat([Delta[id(p)] for p in tiny_params]), flat(grads)

    # the dense 2x2 solve (1x1 at the first step, where there is no delta_0), M, rho, and the LM rule
    U = np.stack([Delta] if prev is None else [Delta, prev], axis=1)  # (p, 1 or 2)
    coef = -np.linalg.solve(U.T @ F_damped @ U, U.T @ grad)  # [alpha, mu]
    delta = U @ coef
    M = 0.5 * delta @ F_damped @ delta + grad @ delta  # M(delta) - M(0)
    rho = (h_after - h_before) / M
    alpha, mu = coef[0], (coef[1] if prev is not None else 0.0)
    lam_next = levenberg_marquardt(lam, rho, omega)
    print(f"step {t + 1}: lambda = {lam:.5f}   alpha = {alpha:.4f}, mu = {mu:+.4f}   "
          f"|KFAC's update - (alpha Delta + mu delta_0)| / |.| = {np.linalg.norm(update - delta) / np.linalg.norm(delta):.0e}")
    print(f"        M(delta) - M(0) = {M:.4f}, h(theta + delta) - h(theta) = {h_after - h_before:.4f}:  "
          f"rho = {rho:.4f} (KFAC: {opt.state['reduction_ratio'][0]:.4f}) -> lambda = {lam_next:.5f} "
          f"(KFAC: {opt.state['damping'][0]:.5f})")
    assert np.allclose(update, delta, rtol=1e-9, atol=1e-12)
    assert np.isclose(rho, opt.state["reduction_ratio"][0], rtol=1e-8)
    assert np.isclose(lam_next, opt.state["damping"][0], rtol=1e-12)
    prev = update


# %% [markdown]
# The optimiser's update is the dense $\alpha\Delta + \mu\delta_0$ to rounding, and its $\rho$ and new
# $\lambda$ are the dense ones. The numbers themselves are worth a look. At the first step
# $\alpha = 1.67$: the exact model lengthens the K-FAC direction by two thirds. At the next steps
# $\alpha \approx 0.45$–$0.54$, so the direction is now too long, and $\mu$ takes either sign — the
# model takes back part of the previous step ($\mu < 0$) or extends it ($\mu > 0$). $\rho$ stays near 1
# (0.77 to 1.07), so $\lambda$ falls at every step, by $\omega_1 = 0.95$.
#
# **The damping dance on the digits.** Now section 5's problem — the same initialisation and minibatches,
# `mode="mc"`, 5 epochs (115 steps), $T_1 = 5$ — with four variants, next to section 5's fixed-step
# K-FAC (lr 1, $\lambda = 0.01$, the best of its grid):
#
# * `step_rule="qmodel"` with $\lambda = 0.01$ held fixed: what $\alpha$ and $\mu$ do on their own;
# * the same with `adapt_damping=True`, from $\lambda_0 = 0.01$ and from $\lambda_0 = 1$, a hundred times too much;
# * section 5's fixed step (lr 1) with `adapt_damping=True` from $\lambda_0 = 0.01$: $\rho$ then judges a step
#   that the model did not choose.
#
# `train` (section 4) calls `watch(opt)` after every step; we use it to record $\rho$ at each adaptation
# (the optimiser keeps only the last one).

# %%
def reduction_ratios(log):
    # watch(opt) for train(): after every step, append the rho of a new adaptation to log
    def watch(opt):
        if len(opt.state.get("damping_history", ())) > len(log):
            log.append(float(opt.state["reduction_ratio"][0]))
    return watch


dance = {  # name: KFAC's options (mode="mc"; the initialisation and minibatches of section 5)
    "qmodel, lambda = 0.01 fixed": dict(step_rule="qmodel", damping=1e-2),
    "qmodel + LM, lambda_0 = 0.01": dict(step_rule="qmodel", damping=1e-2, adapt_damping=True),
    "qmodel + LM, lambda_0 = 1": dict(step_rule="qmodel", damping=1.0, adapt_damping=True),
    "fixed step lr 1 + LM, lambda_0 = 0.01": dict(lr=1.0, damping=1e-2, adapt_damping=True),
}
dance_runs = {"fixed step lr 1, lambda = 0.01 (section 5)": dict(runs["K-FAC"], rho=[])}
for name, options in dance.items():
    rhos = []
    run = train(lambda m: KFAC(m, loss_fn, seed=0, **options), watch=reduction_ratios(rhos))
    dance_runs[name] = dict(run, rho=rhos)

marks = (25, 50, 75, 115)
print(f"{'K-FAC, 5 epochs (115 steps)':42s}{'training':>9s}{'test':>7s}   running mean of 10 minibatch losses")
print(f"{'':42s}{'loss':>9s}{'acc.':>7s}   " + "".join(f"{f'step {s}':>11s}" for s in marks))
for name, r in dance_runs.items():
    mean = running_mean(r["loss"], 10)
    print(f"{name:42s}{r['train_loss']:9.4f}{r['test_accuracy']:7.1%}   " + "".join(f"{mean[s - 1]:11.3g}" for s in marks))
fixed = running_mean(dance_runs["fixed step lr 1, lambda = 0.01 (section 5)"]["loss"], 10)
for name in ("qmodel, lambda = 0.01 fixed", "qmodel + LM, lambda_0 = 0.01"):
    behind = np.nonzero(fixed >= running_mean(dance_runs[name]["loss"], 10))[0]
    print(f"the fixed step's running mean is below that of '{name}' from step {behind[-1] + 2} on")
print()
for name, r in dance_runs.items():
    if r["rho"]:
        rho, lam = np.array(r["rho"]), np.asarray(r["opt"].state["damping_history"])
        at = r["opt"].adapt_every * np.arange(1, len(rho) + 1)
        print(f"{name}: {len(rho)} adaptations, lambda fell {np.sum(rho > 0.75)}x, held "
              f"{np.sum((rho >= 0.25) & (rho <= 0.75))}x, rose {np.sum(rho < 0.25)}x; rho from {rho.min():.3f} to "
              f"{rho.max():.3f}\n    lambda: {r['opt'].damping:g} at the start, highest {lam.max():.3g} (step "
              f"{at[np.argmax(lam)]}), lowest {lam.min():.3g}, last {lam[-1]:.3g}")

# %% tags=["timing"]
for name, r in dance_runs.items():
    print(f"{name:42s}{r['time'][-1] / len(r['loss']) * 1e3:6.2f} ms per step")


# %%
def as_label(name):
    return name.replace("lambda_0", "@").replace("lambda", r"$\lambda$").replace("@", r"$\lambda_0$")


fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15.5, 4.8), dpi=120)
colours = dict(zip(dance_runs, ["k", "C0", "C1", "C2", "C3"]))
for name, r in dance_runs.items():
    c = colours[name]
    ax2.plot(np.arange(1, len(r["loss"]) + 1), running_mean(r["loss"], 10), color=c, lw=1.6, label=as_label(name))
    if r["rho"]:
        at = r["opt"].adapt_every * np.arange(1, len(r["rho"]) + 1)  # the steps that adapt lambda: T1, 2 T1, ...
        lam = np.asarray(r["opt"].state["damping_history"])
        ax0.step(np.r_[0, at], np.r_[r["opt"].damping, lam], where="post", color=c, lw=1.6)
        ax1.plot(at, r["rho"], "o-", color=c, ms=3.5, lw=0.8)
band = ax1.axhspan(0.25, 0.75, color="gray", alpha=0.2, label=r"$1/4 \leq \rho \leq 3/4$: $\lambda$ is held")
ax1.axhline(1.0, color="gray", ls=":", lw=1)
ax1.set_yscale("symlog", linthresh=1.0)
ax0.set(yscale="log", xlabel="training step", ylabel=r"damping $\lambda$ (after each adaptation)",
        title=r"$\lambda$ over training (Levenberg–Marquardt, $T_1 = 5$)")
ax1.set(xlabel="training step", ylabel=r"reduction ratio $\rho$ (linear in [-1, 1], log outside)",
        title=r"$\rho$ at each adaptation ($\lambda$ falls above the band, rises below)")
ax2.set(yscale="log", xlabel="training step", ylabel="minibatch loss (running mean of 10 steps)",
        title="Loss per step")
for ax in (ax0, ax1, ax2):
    ax.grid(alpha=0.3, which="both")
handles, labels = ax2.get_legend_handles_labels()
fig.legend(handles + [band], labels + [band.get_label()], loc="lower center", ncol=3, fontsize=9)
fig.suptitle("K-FAC on the digits (mode='mc', batch 64, 5 epochs): step size and damping from the quadratic model",
             fontsize=11)
fig.tight_layout(rect=(0, 0.14, 1, 1))
plt.show()

# %% [markdown]
# What the figure and the table show:
#
# * **The model's step length helps early, and needs no learning rate.** With $\lambda = 0.01$ held
#   fixed, the quadratic-model run is far ahead of the fixed step for its first hundred steps (running
#   means 0.161 against 0.655 at step 25, 0.0439 against 0.134 at step 75) — plausibly because $\alpha$
#   lengthens the steps while the lagging factor average (section 4) makes $\Delta$ too short (exercise
#   1 measures it). But the fixed step overtakes it for good at step 106 and ends lower: training loss
#   0.0022 against 0.0141, about where the fixed step with lr 0.3 ended in section 5 (0.0138). What the
#   quadratic model buys here is not the lowest loss but no learning-rate search — in section 5's grid,
#   lr 3 ended hundreds of times higher than lr 1. It costs more per step: two GGN-vector products, in
#   one batched sweep (the timing cell above).
# * **With the model's own step there is no dance.** $\rho$ never falls below ¾ (from $\lambda_0 = 0.01$
#   it stays between 0.755 and 1.275, from $\lambda_0 = 1$ between 1.057 and 2.040): the step is the
#   minimiser of the model, and the model is, if anything, pessimistic ($\rho > 1$: the loss fell by
#   more than it predicted — most of all with $\lambda = 1$, whose $\lambda I$ term makes the model far
#   too steep). So Levenberg–Marquardt only ever *lowers* $\lambda$, by $\omega_1$ at each of the 23
#   adaptations: from 0.01 to $2.7 \cdot 10^{-5}$, with little effect on the loss (0.0113 against 0.0141
#   with $\lambda$ fixed; the orange and blue curves lie on top of each other for most of the run). From
#   $\lambda_0 = 1$ it recovers, but at its fixed pace: $\lambda$ is back at 0.01 only around step 90,
#   and this run trails the one from $\lambda_0 = 0.01$ all along (0.0279).
# * **The dance appears when the step is not the model's.** With the fixed step (lr 1), $\rho$ is below
#   ¼ — negative, in fact: the loss rose on the very batch the step was computed from — at 8 of the
#   first 10 adaptations (the middle panel), and $\lambda$ climbs from 0.01 to 0.0778 (step 55); then
#   the steps become reliable ($\rho > ¾$ at most later adaptations) and $\lambda$ falls back to 0.01:
#   11 rises, 11 falls, 1 hold. This run ends with the lowest running-mean minibatch loss (0.00483 at
#   step 115), while its training loss (0.0032) is a little above the unadapted run's (0.0022) — a
#   difference well inside the seed-to-seed spread of section 5's K-FAC (0.0022 to 0.0380).
#
# So on this small, noisy problem the quadratic model replaces the learning-rate search and gives fast
# early progress, not a lower final loss; the Levenberg–Marquardt rule moves $\lambda$ the right way but
# slowly (by design: $\omega_1$ bounds the change), and behind the model's own step it has only ever
# lowered $\lambda$ here. One seed, one network: a hint, not a verdict.

# %% tags=["timing"]
print(f"notebook run time (up to here): {time.perf_counter() - notebook_start:.1f} s")

# %% [markdown]
# ## Exercises
#
# 1. **Step length from the model.** Section 7 chooses $\alpha$ (and $\mu$) inside the optimiser without
#    reporting them. Along section 5's fixed-step run, compute at every step the step length
#    $\alpha^\star = \nabla L^\top\Delta \,/\, \Delta^\top (C + \lambda I)\,\Delta$ that minimises the quadratic model along the step
#    $-\alpha\Delta$ (here $\Delta = G^{-1}\nabla A^{-1}$ per layer, as in sections 1–6, and $C$ the exact GGN of the
#    minibatch), with one GGN-vector product (`tinycurv.curvature.ggn_vp`, notebook 03), and plot it
#    during training. Is the learning rate chosen in section 5 close to it — early, and late? Does
#    that explain where the fixed step overtakes the quadratic-model rule in section 7?
# 2. **Which factors?** Train with `mode="exact"`, `"mc"` and `"empirical"` (same learning rate and
#    damping). Compare the curves per step and per second, and relate what you see to notebook 03's
#    factor errors (§9) and to section 2's one-step experiment.
# 3. **When inverses cost.** Widen the hidden layer to 1024 units and time a step with
#    `inv_every=1` and `inv_every=20`. Estimate the cost of each part of a step (forward, two backward
#    sweeps, the factor products $\tilde a^\top\tilde a$ and $\bar g^\top\bar g$, two Cholesky factorisations,
#    the solves) from the layer sizes, and check the estimate against the measured times.

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 04.1 · Factored Tikhonov damping and the π-correction
#
# Write `kfac_dampings(A, G, damping, pi_correction=False) -> (γ_A, γ_G), two numbers`.

# %%
def kfac_dampings(A, G, damping, pi_correction=False):
    """04.1 · (γ_A, γ_G) = (π√λ, √λ/π), π = sqrt((tr A/dim A)/(tr G/dim G)) or 1."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("04.1", kfac_dampings)


# %% [markdown]
# <details><summary><b>Hint</b> (04.1)</summary>
#
# γ_A = π√λ and γ_G = √λ/π (so γ_A·γ_G = λ), with π = sqrt((tr A / dim A) / (tr G / dim G)), or π = 1 without the correction (M&G 2015, §6.3).
#
# </details>

# %% [markdown]
# ### 04.2 · K-FAC's step of one layer
#
# Write `kfac_direction(grad, A, G, damping) -> (G + √λ I)⁻¹ ∇ (A + √λ I)⁻¹, (m, n+1)`.

# %%
def kfac_direction(grad, A, G, damping):
    """04.2 · (G + √λ I)⁻¹ ∇ (A + √λ I)⁻¹, two solves with the damped factors."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("04.2", kfac_direction)


# %% [markdown]
# <details><summary><b>Hint</b> (04.2)</summary>
#
# (G ⊗ A)⁻¹ vec(∇) = vec(G⁻¹ ∇ A⁻¹) for symmetric factors: G (m×m) acts on the rows of ∇ from the left, A ((n+1)×(n+1)) on its columns from the right; each damped by √λ. Use np.linalg.solve rather than inv where you can.
#
# </details>

# %% [markdown]
# ### 04.3 · The running average of a factor
#
# Write `ema_factor(old, new, k, ema_decay) -> the average after the k-th update`.

# %%
def ema_factor(old, new, k, ema_decay):
    """04.3 · ε_k old + (1 − ε_k) new with ε_k = min(1 − 1/k, decay) (0 at k = 1)."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("04.3", ema_factor)

# %% [markdown]
# <details><summary><b>Hint</b> (04.3)</summary>
#
# ε_k = min(1 − 1/k, ema_decay) weighs the old average and 1 − ε_k the new batch's factor: early on it is the plain mean of the k factors so far (M&G 2015, §5).
#
# </details>
