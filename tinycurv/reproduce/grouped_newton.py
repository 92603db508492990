"""GroupedNewton (Wolinski): Figs. 1–4 of the paper, scaled to a CPU, on MNIST.

A declared host-side helper (NumPy data, the clock, matplotlib). Three entries:

* ``grouped-newton-fig1-2``: H̄ and H̄⁻¹ (the S × S "Hessian according to the partition", S = 10
  groups of LeNet-5) on the full training set at initialisation and at the best epoch; are
  the off-diagonal terms negligible? (The paper uses CIFAR-10, which is not available here.)
* ``grouped-newton-fig3``: the per-group learning rates of the same training run;
* ``grouped-newton-fig4``: the training loss of the reference's MNIST MLP
  (784–1024–200–100–10, tanh) with GroupedNewton, Adam and K-FAC, several seeds.

Settings from the reference code (``p-wol/GroupedNewton``, ``run_lenet_cifar.sh`` and
``run_mlp_mnist.sh``): weights N(0, 1)/√fan_in, biases 0, tanh, batch 100, inputs normalised by
(x − 0.1307)/0.3081; LeNet: ``damping=.3`` (our ``lr``), ``damping_int=3``; MLP: ``damping=.1``,
``damping_int=1``; T = ``period_hg`` = 10, momentum .9, dampening .9, ``mom_lrs`` .5. Algorithm 1
draws the curvature batch from a separate sampler, B′ = T·B: ``curvature_batch="sampler"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinycurv import nn
from tinycurv.reproduce.common import (
    Check,
    Context,
    Entry,
    Result,
    default_dtype,
    evaluate,
    figure,
    mnist,
    mnist_folder,
    normalised,
    train,
)

PAPER = "Wolinski, Adapting Newton's method to neural networks through a summary of " \
    "higher-order derivatives (GroupedNewton)"  # fmt: skip
GROUPS = ("conv1.w", "conv1.b", "conv2.w", "conv2.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b",
          "fc3.w", "fc3.b")  # fmt: skip


def _reference_init(model: Any, rng: np.random.Generator) -> Any:
    """The reference's ``sigma_w=1, sigma_b=0``, no scaling: W ~ N(0, 1)/√fan_in, b = 0."""
    from tinycurv.backend import asarray

    for p in model.parameters():
        if p.ndim == 1:
            p.data = asarray(np.zeros(p.shape), dtype=p.dtype)
        else:
            fan_in = int(np.prod(p.shape[1:]))
            p.data = asarray(rng.standard_normal(p.shape) / np.sqrt(fan_in), dtype=p.dtype)
    return model


def lenet5(seed: int = 0) -> Any:
    """LeNet-5 of the reference (6-16-120-84-10, tanh, max-pool 2) for 28×28 inputs: the
    first convolution pads by 2, so that the second gives 5×5 maps as on 32×32 CIFAR images."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=rng), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120, rng=rng), nn.Tanh(), nn.Linear(120, 84, rng=rng), nn.Tanh(),
        nn.Linear(84, 10, rng=rng),
    )  # fmt: skip
    return _reference_init(model, rng)


def perceptron(seed: int = 0) -> Any:
    """The reference's MNIST MLP 784–1024–200–100–10, tanh."""
    from tinycurv.bench.grouped_newton_mnist import perceptron as build

    return build(seed)


# --------------------------------------------------------------------------------------------
# the LeNet-5 training run shared by Figs. 1–2 and 3
# --------------------------------------------------------------------------------------------
LENET = {
    "full": dict(train=2000, test=2000, epochs=10, batch=100, update_every=10),
    "quick": dict(train=100, test=200, epochs=2, batch=25, update_every=2),
}
LENET_LR, LENET_LAM_INT = 0.3, 3.0
_RUNS: dict[tuple, dict[str, Any]] = {}


def _images(X: np.ndarray) -> np.ndarray:
    return normalised(X).reshape(len(X), 1, 28, 28)


def lenet_run(ctx: Context) -> dict[str, Any]:
    """Train LeNet-5 with GroupedNewton; the weights at initialisation and at the best epoch
    (lowest test loss), per-epoch rows and the rates. Cached for the process."""
    key = (ctx.quick, str(mnist_folder(ctx.data)))
    if key in _RUNS:
        return _RUNS[key]
    from tinycurv.optim import GroupedNewton

    cfg = LENET["quick" if ctx.quick else "full"]
    X, y, Xt, yt = mnist(ctx)
    X, y = _images(X[: cfg["train"]]), y[: cfg["train"]]
    Xt, yt = _images(Xt[: cfg["test"]]), yt[: cfg["test"]]
    loss_fn = nn.CrossEntropyLoss()
    steps_per_epoch = len(X) // cfg["batch"]
    with default_dtype("float32"):
        model = lenet5(seed=0)
        init = model.state_dict()
        opt = GroupedNewton(model, loss_fn, lr=LENET_LR, lam_int=LENET_LAM_INT,
                            update_every=cfg["update_every"])  # fmt: skip
        rows, best = [], (math.inf, None, -1)
        bar = ctx.bar(cfg["epochs"] * steps_per_epoch, "LeNet-5 GroupedNewton")
        for epoch in range(cfg["epochs"]):
            losses, _ = train(opt, X, y, cfg["batch"], steps_per_epoch, seed=epoch, bar=bar)
            reduced = opt.end_epoch(float(np.mean(losses)))
            test_loss, acc = evaluate(model, loss_fn, Xt, yt)
            rows.append(dict(epoch=epoch + 1, train_loss=float(np.mean(losses)),
                             test_loss=test_loss, test_accuracy=acc,
                             lr_halved=reduced))  # fmt: skip
            if test_loss < best[0]:
                best = (test_loss, model.state_dict(), epoch + 1)
        bar.close()
    run = dict(cfg=cfg, init=init, best=best[1], best_epoch=best[2], epochs=rows, X=X, y=y,
               rates=np.array(opt.history["rates"]), updates=opt.history["updates"])  # fmt: skip
    _RUNS[key] = run
    return run


def full_batch_summary(weights: dict, X: np.ndarray, y: np.ndarray, chunk: int, bar: Any):
    """ḡ and H̄ of the mean loss over all of ``(X, y)`` along the full-batch gradient u = g.

    Both are linear in the loss, so they are sums over chunks weighted by the chunk's share.
    """
    from tinycurv.backend import asarray, asnumpy
    from tinycurv.curvature.grouped import grouped_gradient_and_hessian
    from tinycurv.functional import grad

    loss_fn = nn.CrossEntropyLoss()
    model = lenet5()
    model.load_state_dict(weights)
    params = model.parameters()
    chunks = [(X[i : i + chunk], y[i : i + chunk]) for i in range(0, len(X), chunk)]

    def closure(xc: np.ndarray, yc: np.ndarray):
        xb = asarray(xc, dtype=params[0].dtype)
        return lambda: loss_fn(model(xb), yc)

    g = None
    for xc, yc in chunks:
        gc = grad(closure(xc, yc), params)
        w = len(xc) / len(X)
        g = [w * a for a in gc] if g is None else [a + w * b for a, b in zip(g, gc, strict=True)]
    g_bar, H_bar = 0.0, 0.0
    for xc, yc in chunks:
        gb, Hb = grouped_gradient_and_hessian(closure(xc, yc), params, g)
        w = len(xc) / len(X)
        g_bar, H_bar = g_bar + w * asnumpy(gb), H_bar + w * asnumpy(Hb)
        bar.update(len(xc))
    return np.asarray(g_bar, dtype=float), np.asarray(H_bar, dtype=float)


def _normalised(M: np.ndarray) -> np.ndarray:
    """``M_st / √(|M_ss M_tt|)``: the scale-free picture of a summary matrix."""
    d = np.sqrt(np.abs(np.diag(M)))
    d[d == 0] = 1.0
    return M / np.outer(d, d)


FIG12_OFFDIAG, FIG12_STEP = 0.1, 0.1
FIG12_CHUNK = {"full": 250, "quick": 50}


def fig1_2(ctx: Context) -> Result:
    run = lenet_run(ctx)
    X, y = run["X"], run["y"]
    rows, mats, checks = [], {}, []
    bar = ctx.bar(2 * len(X), "full-batch H̄")
    with default_dtype("float32"):
        for point, weights in (("initialisation", run["init"]),
                               (f"best epoch ({run['best_epoch']})", run["best"])):  # fmt: skip
            g_bar, H_bar = full_batch_summary(
                weights, X, y, FIG12_CHUNK["quick" if ctx.quick else "full"], bar
            )
            H_inv = np.linalg.inv(H_bar)
            mats[point] = (H_bar, H_inv)
            for s in range(len(GROUPS)):
                for t in range(len(GROUPS)):
                    rows.append(dict(point=point, row=GROUPS[s], column=GROUPS[t],
                                     H_bar=H_bar[s, t], H_bar_inverse=H_inv[s, t],
                                     g_bar=g_bar[s] if t == 0 else "" ))  # fmt: skip
            C = _normalised(H_bar)
            off = C - np.diag(np.diag(C))
            eta = np.linalg.solve(H_bar, g_bar)  # Newton's per-group rates (no cubic term)
            eta_diag = g_bar / np.diag(H_bar)  # what a diagonal approximation would give
            step_change = np.linalg.norm(eta - eta_diag) / np.linalg.norm(eta)
            largest = float(np.abs(off).max())
            share = float(np.linalg.norm(off) / np.linalg.norm(C))
            checks.append(Check(
                f"{point}: the off-diagonal terms of H̄ are not negligible",
                bool(largest >= FIG12_OFFDIAG and step_change >= FIG12_STEP),
                f"largest |H̄_st|/√(|H̄_ss H̄_tt|) = {largest:.2f}, off-diagonal share of the "
                f"normalised H̄ {share:.2f}; dropping them changes the Newton rates H̄⁻¹ḡ by "
                f"{100 * step_change:.0f}% (PASS if ≥ {FIG12_OFFDIAG:g} and ≥ "
                f"{100 * FIG12_STEP:.0f}%)",
            ))  # fmt: skip
    bar.close()

    fig, axes = figure(ncols=2, nrows=2, size=(5.4, 4.6))
    for i, (point, (H_bar, H_inv)) in enumerate(mats.items()):
        for j, (name, M) in enumerate((("H̄", H_bar), ("H̄⁻¹", H_inv))):
            ax = axes[i, j]
            image = ax.imshow(_normalised(M), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_xticks(range(len(GROUPS)), GROUPS, rotation=90, fontsize=7)
            ax.set_yticks(range(len(GROUPS)), GROUPS, fontsize=7)
            ax.set_title(f"{name} at {point}", fontsize=9)
            ax.set_xlabel("group t")
            ax.set_ylabel("group s")
            fig.colorbar(image, ax=ax, label="M_st / √|M_ss M_tt|")
    fig.suptitle(f"GroupedNewton Figs. 1–2: LeNet-5 on {len(X)} MNIST images (full batch), "
                 "along the full-batch gradient")  # fmt: skip
    fig.tight_layout()
    return Result(rows, fig, checks)


FIG3_SPREAD = 10.0


def fig3(ctx: Context) -> Result:
    run = lenet_run(ctx)
    rates = run["rates"]  # (steps, S)
    rows = [dict(step=t, **{GROUPS[s]: rates[t, s] for s in range(rates.shape[1])})
            for t in range(len(rates))]  # fmt: skip
    rows += [dict(step="", **r) for r in run["epochs"]]  # the per-epoch losses, after the rates
    fig, axes = figure(ncols=2, size=(6.0, 4.4))
    steps_per_epoch = run["cfg"]["train"] // run["cfg"]["batch"]
    positive_rates = rates[rates > 0]
    floor = 0.3 * positive_rates.min() if positive_rates.size else 1e-6  # where 0 is drawn
    for s in range(rates.shape[1]):
        style = "-" if s % 2 == 0 else "--"
        axes[0, 0].plot(np.arange(len(rates)) / steps_per_epoch, np.maximum(rates[:, s], floor),
                        style, color=f"C{s // 2}", label=GROUPS[s])  # fmt: skip
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylim(bottom=0.7 * floor)
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel(f"learning rate of the group (log; 0 drawn at {floor:.1g})")
    axes[0, 0].legend(fontsize=7, ncol=2)
    axes[0, 0].grid(True, which="both", alpha=0.3)
    epochs = run["epochs"]
    axes[0, 1].plot([r["epoch"] for r in epochs], [r["train_loss"] for r in epochs], "o-",
                    label="training (epoch mean)")  # fmt: skip
    axes[0, 1].plot([r["epoch"] for r in epochs], [r["test_loss"] for r in epochs], "s-",
                    label="test")  # fmt: skip
    axes[0, 1].set_xlabel("epoch")
    axes[0, 1].set_ylabel("cross-entropy loss")
    axes[0, 1].legend()
    axes[0, 1].grid(True, alpha=0.3)
    fig.suptitle("GroupedNewton Fig. 3: per-group learning rates, LeNet-5 on MNIST")
    fig.tight_layout()

    last = rates[-1]
    positive = last[last > 0]
    spread = float(positive.max() / positive.min()) if len(positive) > 1 else 1.0
    first = rates[0]
    moved = int(np.sum(np.abs(np.log((last + 1e-30) / (first + 1e-30))) > np.log(2)))
    zero = ", ".join(f"{GROUPS[s]} {100 * np.mean(rates[:, s] == 0):.0f}%"
                     for s in range(rates.shape[1]))  # fmt: skip
    check = Check(
        "the learning rates differ strongly between groups and evolve during training",
        bool(spread >= FIG3_SPREAD),
        f"at the last step the positive rates span a factor {spread:.3g} "
        f"({len(positive)}/{len(last)} groups positive; from {positive.min():.3g} to "
        f"{positive.max():.3g}); {moved}/{len(last)} groups changed by more than 2× since the "
        f"first update (PASS if the spread ≥ {FIG3_SPREAD:g}×)",
    )
    note = f"share of the steps at rate 0 (η_s < 0 removed, App. F): {zero}"
    return Result(rows, fig, [check], notes=[note])


# --------------------------------------------------------------------------------------------
# Fig. 4: the MNIST MLP against Adam and K-FAC
# --------------------------------------------------------------------------------------------
FIG4 = {
    "full": dict(train=6000, epochs=3, batch=100, update_every=10, seeds=(0, 1)),
    "quick": dict(train=200, epochs=1, batch=20, update_every=5, seeds=(0, 1)),
}
FIG4_METHODS = ("GroupedNewton (sampler, B′ = T·B)", "GroupedNewton (training batch)", "Adam",
                "K-FAC")  # fmt: skip
FIG4_KFAC = dict(lr=3e-2, damping=0.03, factor_every=10, inv_every=100, ema_decay=0.95,
                 weight_decay=0.003)  # fmt: skip
FIG4_COMPARABLE = 1.5


def _fig4_optimizer(method: str, model: Any, X: np.ndarray, y: np.ndarray, T: int) -> Any:
    from tinycurv.optim import KFAC, Adam, GroupedNewton

    loss_fn = nn.CrossEntropyLoss()
    if method.startswith("GroupedNewton"):
        sampler = "sampler" in method
        return GroupedNewton(model, loss_fn, update_every=T,
                             curvature_batch="sampler" if sampler else None,
                             curvature_data=(X, y) if sampler else None)  # fmt: skip
    if method == "Adam":
        return Adam(model, loss_fn, lr=1e-3)
    return KFAC(model, loss_fn, seed=0, **FIG4_KFAC)


def fig4(ctx: Context) -> Result:
    cfg = FIG4["quick" if ctx.quick else "full"]
    X, y, _, _ = mnist(ctx)
    X, y = normalised(X[: cfg["train"]]), y[: cfg["train"]]
    loss_fn = nn.CrossEntropyLoss()
    steps = len(X) // cfg["batch"]
    rows, seconds = [], {}
    bar = ctx.bar(len(FIG4_METHODS) * len(cfg["seeds"]) * cfg["epochs"] * steps, "MLP on MNIST")
    with default_dtype("float32"):
        Xh = X.astype(np.float32)
        for seed in cfg["seeds"]:
            for method in FIG4_METHODS:
                model = perceptron(seed)
                opt = _fig4_optimizer(method, model, Xh, y, cfg["update_every"])
                total = 0.0
                for epoch in range(cfg["epochs"]):
                    losses, clock = train(opt, Xh, y, cfg["batch"], steps,
                                          seed=seed * 100 + epoch, bar=bar)  # fmt: skip
                    total += clock[-1]
                    if hasattr(opt, "end_epoch") and np.all(np.isfinite(losses)):
                        opt.end_epoch(float(np.mean(losses)))
                    full_loss, acc = evaluate(model, loss_fn, Xh, y)
                    rows.append(dict(method=method, seed=seed, epoch=epoch + 1,
                                     epoch_mean_loss=float(np.mean(losses)),
                                     train_loss=full_loss, train_accuracy=acc,
                                     seconds=total))  # fmt: skip
                seconds[method, seed] = total
    bar.close()

    def curve(method: str) -> np.ndarray:
        return np.array([[r["train_loss"] for r in rows if r["method"] == method
                          and r["seed"] == s] for s in cfg["seeds"]])  # fmt: skip

    fig, axes = figure(ncols=2, size=(6.0, 4.4))
    epochs = np.arange(1, cfg["epochs"] + 1)
    minimum = {}
    for i, method in enumerate(FIG4_METHODS):
        c = curve(method)
        minimum[method] = float(np.mean(np.nanmin(np.where(np.isfinite(c), c, np.nan), axis=1)))
        for k in range(len(c)):
            axes[0, 0].plot(epochs, c[k], "o-", color=f"C{i}", alpha=0.35 + 0.3 * (k == 0),
                            label=method if k == 0 else None)  # fmt: skip
        mean_seconds = np.mean([seconds[method, s] for s in cfg["seeds"]])
        axes[0, 1].bar(i, mean_seconds, color=f"C{i}")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel(f"training loss (all {len(X)} training images)")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].grid(True, which="both", alpha=0.3)
    axes[0, 1].set_xticks(range(len(FIG4_METHODS)),
                          ["GN sampler", "GN train batch", "Adam", "K-FAC"])  # fmt: skip
    axes[0, 1].set_ylabel("training time (s, mean over seeds)")
    fig.suptitle(f"GroupedNewton Fig. 4: MLP 784–1024–200–100–10 (tanh) on {len(X)} MNIST "
                 f"images, batch {cfg['batch']}, seeds {list(cfg['seeds'])}")  # fmt: skip
    fig.tight_layout()

    gn = minimum[FIG4_METHODS[0]]
    other = min(minimum["Adam"], minimum["K-FAC"])
    check = Check(
        "GroupedNewton reaches a minimum training loss comparable with Adam's and K-FAC's",
        bool(gn <= FIG4_COMPARABLE * other),
        f"minimum training loss (mean over seeds): GroupedNewton (sampler) {gn:.4g}, "
        f"GroupedNewton (training batch) {minimum[FIG4_METHODS[1]]:.4g}, Adam "
        f"{minimum['Adam']:.4g}, K-FAC {minimum['K-FAC']:.4g}; PASS if GroupedNewton ≤ "
        f"{FIG4_COMPARABLE}× the better of Adam and K-FAC",
    )
    t_gn = {m: np.mean([seconds[m, s] for s in cfg["seeds"]]) for m in FIG4_METHODS[:2]}
    note = (f"curvature batch: the paper's sampler (B′ = {cfg['update_every']}·{cfg['batch']} = "
            f"{cfg['update_every'] * cfg['batch']}) took {t_gn[FIG4_METHODS[0]]:.0f} s, the "
            f"training batch {t_gn[FIG4_METHODS[1]]:.0f} s per run")  # fmt: skip
    return Result(rows, fig, [check], notes=[note])


# --------------------------------------------------------------------------------------------
# the entries
# --------------------------------------------------------------------------------------------
_LENET_FULL = (
    f"LeNet-5 (6-16-120-84-10, tanh; padding 2 for 28×28) on the first {LENET['full']['train']}"
    f" MNIST training images, GroupedNewton (lr = {LENET_LR}, lam_int = {LENET_LAM_INT:g}, "
    f"T = 10, batch 100, curvature on the training batch) for {LENET['full']['epochs']} epochs;"
    f" best epoch = lowest loss on {LENET['full']['test']} test images"
)
ENTRIES = [
    Entry(
        name="grouped-newton-fig1-2",
        paper=PAPER,
        figure="Figs. 1–2 (H̄ and H̄⁻¹ of LeNet-5)",
        paper_setting="LeNet-5 on CIFAR-10, H̄ and its inverse on the full batch at "
        "initialisation and at the best epoch (CIFAR-10 is not available here: MNIST)",
        full=_LENET_FULL + "; H̄ over all those training images along the full-batch gradient",
        quick="100 training images, batch 25, T = 2, 2 epochs; H̄ over the 100 images",
        why="CIFAR-10 is not on this machine; LeNet's batched dual sweep costs ≈ 40 ms per image "
        "for H̄ on a CPU, so the full batch is 2,000 images, not 60,000",
        claim="the off-diagonal terms of H̄ (and H̄⁻¹) are not negligible",
        run=fig1_2,
    ),
    Entry(
        name="grouped-newton-fig3",
        paper=PAPER,
        figure="Fig. 3 (per-group learning rates)",
        paper_setting="the learning rate of each of the 10 groups of LeNet-5 during training "
        "(CIFAR-10)",
        full=_LENET_FULL,
        quick="the quick run of grouped-newton-fig1-2",
        why="the same run as grouped-newton-fig1-2 (computed once per process)",
        claim="the learning rates differ strongly between groups and evolve during training "
        "(our reading of Fig. 3)",
        run=fig3,
    ),
    Entry(
        name="grouped-newton-fig4",
        paper=PAPER,
        figure="Fig. 4 (MLP on MNIST against Adam and K-FAC)",
        paper_setting="the reference's MLP 784–1024–200–100–10 (tanh) on MNIST, batch 100, "
        "GroupedNewton (curvature batch B′ = T·B = 1000 from a separate sampler) against Adam "
        "and K-FAC, training loss over epochs, several seeds",
        full=f"the same network and settings on the first {FIG4['full']['train']} training "
        f"images, {FIG4['full']['epochs']} epochs, seeds 0 and 1; GroupedNewton with the "
        "paper's sampler (B′ = 10·100) and with the training batch; Adam lr 1e-3; K-FAC as the "
        "reference (damping .03, weight decay .003, factors every 10, inverses every 100 "
        f"steps; no KL clipping here: lr {FIG4_KFAC['lr']:g}, the best of 3e-3, 1e-2, 3e-2, "
        "1e-1 after one epoch)",
        quick="200 images, batch 20, T = 5 (B′ = 100), one epoch, seeds 0 and 1",
        why="one GroupedNewton summary on B′ = 1000 images costs ≈ 7 s on a CPU; 3 epochs of "
        "6,000 images fit in minutes",
        claim="GroupedNewton reaches a minimum training loss comparable with Adam's and K-FAC's",
        run=fig4,
    ),
]
