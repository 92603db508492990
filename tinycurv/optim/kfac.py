"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015; KFC for convolutions).

For every ``Linear``/``Conv2d`` layer, with ``[W | b]`` (m, n+1) its weight and bias and
``∇ = [∇W | ∇b]`` their gradient, one step is

    Δ = (G + γ_G I)⁻¹ ∇ (A + γ_A I)⁻¹,       θ ← θ − lr·Δ           (M&G 2015 §4.2, §6.3)

(``G ⊗ A`` approximates the layer's GGN/Fisher block on the row-major flattening of ``[W | b]``;
the inverse of a Kronecker product is the Kronecker product of the inverses, and
``(P ⊗ Q) vec(X) = vec(P X Qᵀ)``, so no (mn)×(mn) matrix is formed; M&G 2015 §4.2). The factors
come from ``tinycurv.curvature.kfac`` (``"mc"``: sampled targets, the Fisher; ``"exact"``: the loss
Hessian's square root, the GGN; ``"empirical"``: the true targets) and are smoothed across steps
by an exponential moving average with decay ``ε_k = min(1 − 1/k, ema_decay)`` at the k-th factor
update (M&G 2015 §5), so the first factors are the batch's own and the early average is
unbiased.

Damping (factored Tikhonov, M&G 2015 §6.3): ``γ_A = π·√λ`` and ``γ_G = √λ/π`` with
``λ = damping`` and ``π = 1``, or with ``pi_correction=True``::

    π = sqrt( (tr(A)/dim A) / (tr(G)/dim G) )                                 (M&G 2015 §6.3)

which splits the damping so that both factors are perturbed by the same relative amount.

Parameters that belong to no ``Linear``/``Conv2d`` layer take the plain gradient step.

Cost. The minibatch gradient is ``∇ = gᵀã``, of rank ≤ rows (b for ``Linear``): when that is
cheaper, ``Δ = ((G + γ_G I)⁻¹ gᵀ)·(ã (A + γ_A I)⁻¹)`` is formed from the (m × rows) and
(rows × n+1) solves instead of two solves with the full (m × n+1) gradient. Factors are
recomputed every ``factor_every`` steps (the extra backward sweep(s) are skipped on the other
steps) and factorised every ``inv_every`` steps (Cholesky factors, or inverses from an
eigendecomposition, kept in ``self.state``).

A factor that is not positive definite after damping (``damping = 0`` with a rank-deficient
factor, NaN or inf) cannot be inverted: the step is skipped with a ``RuntimeWarning``
(``on_failure="skip"``, leaving parameters, factors and buffers as they were) or raises
``LinAlgError`` (``on_failure="raise"``).
"""

from __future__ import annotations

import math
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.kfac import (
    MODES,
    curvature_layers,
    factors_from,
    homogeneous,
    layer_statistics,
)
from tinycurv.curvature.linalg import check_factors, cho_apply, cho_factor
from tinycurv.nn.layers import Linear
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    SkipStep,
    choice,
    flag,
    integer,
    make_generator,
    number,
)

__all__ = ["KFAC"]

SOLVERS = ("cholesky", "eigen")


class KFAC(Optimizer):
    """K-FAC with factored Tikhonov damping, EMA factors and optional π-correction.

    Parameters
    ----------
    model : Module
        The network; its ``Linear``/``Conv2d`` layers are preconditioned.
    loss_fn : MSELoss or CrossEntropyLoss
    lr : float
        Step size η > 0 (the update is θ ← θ − η·Δ).
    damping : float
        λ ≥ 0 of the factored Tikhonov damping (√λ added to each factor, or split by π).
    mode : {"mc", "exact", "empirical"}
        How G is estimated (``tinycurv.curvature.kfac.layer_statistics``).
    inv_every : int
        Recompute the damped factors' Cholesky factors / inverses every this many steps.
    factor_every : int
        Update the factors every this many steps.
    ema_decay : float
        ε in [0, 1): the factors' moving average ``F ← ε_k F + (1 − ε_k) F_batch``, with
        ``ε_k = min(1 − 1/k, ema_decay)`` at the k-th update; 0 uses the batch's factors only.
    momentum : float
        μ ≥ 0: heavy-ball on the preconditioned direction, ``v ← μ v + Δ``, θ ← θ − η v.
    pi_correction : bool
        Split the damping by π (module docstring).
    solver : {"cholesky", "eigen"}
        Cholesky factors with triangular solves, or explicit inverses from ``eigh``.
    mc_samples : int
        Sampled targets per sample (``mode="mc"``).
    seed : int, optional
        Seeds ``self.rng = tinycurv.backend.SavableGenerator(seed)`` (the backend's generator,
        same stream as ``default_rng(seed)``) when ``rng`` is not given.
    rng : generator or int, optional
        A backend generator to draw the targets with (its state is saved only if it is a
        ``SavableGenerator`` or a NumPy generator); an int seeds one generator, once.
    weight_decay : float
        L2 coefficient ≥ 0 added to the gradient of every parameter (``∇ + wd·θ``) before
        preconditioning.
    on_failure : {"skip", "raise"}
        What a factor that is not positive definite after damping does.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).

    Notes
    -----
    ``self.state`` holds ``"A"``, ``"G"`` (the averaged factors, one per layer), ``"A_chol"``,
    ``"G_chol"`` (lower Cholesky factors of the damped factors) or ``"A_inv"``, ``"G_inv"``
    (their inverses, ``solver="eigen"``), ``"factor_updates"`` and, with momentum,
    ``"momentum_buffer"``. ``state_dict()`` also holds the generator's state (key ``"rng"``),
    so a run resumed with ``load_state_dict`` draws the same targets (on CuPy, whose generator
    state cannot be read, ``state_dict()`` re-seeds from a spawned child seed: see
    ``tinycurv.backend.SavableGenerator``).
    """

    lr = Hyperparameter(number(low_open=True))
    damping = Hyperparameter(number())
    mode = Hyperparameter(choice(*MODES))
    inv_every = Hyperparameter(integer())
    factor_every = Hyperparameter(integer())
    ema_decay = Hyperparameter(number(high=1.0, high_open=True))
    momentum = Hyperparameter(number())
    pi_correction = Hyperparameter(flag)
    solver = Hyperparameter(choice(*SOLVERS))
    mc_samples = Hyperparameter(integer())
    seed = Hyperparameter()
    weight_decay = Hyperparameter(number())
    on_failure = Hyperparameter(choice("skip", "raise"))

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.1,
        damping: float = 1e-3,
        mode: str = "mc",
        inv_every: int = 1,
        factor_every: int = 1,
        ema_decay: float = 0.95,
        momentum: float = 0.0,
        pi_correction: bool = False,
        solver: str = "cholesky",
        mc_samples: int = 1,
        seed: int | None = None,
        rng: Any = None,
        weight_decay: float = 0.0,
        on_failure: str = "skip",
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            lr=lr,
            damping=damping,
            mode=mode,
            inv_every=inv_every,
            factor_every=factor_every,
            ema_decay=ema_decay,
            momentum=momentum,
            pi_correction=pi_correction,
            solver=solver,
            mc_samples=mc_samples,
            seed=seed,
            weight_decay=weight_decay,
            on_failure=on_failure,
        )
        self.rng = make_generator(seed, rng)

    # -- one step ---------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        st = self.state
        first = "A" not in st
        update_factors = first or self.t % self.factor_every == 0
        missing = ("A_chol" if self.solver == "cholesky" else "A_inv") not in st
        update_inverses = missing or self.t % self.inv_every == 0
        mode = self.mode if update_factors else None
        skip = self._rank_b_weights(len(x))  # their gᵀa is never formed (see _directions)
        s = layer_statistics(self.model, self.loss_fn, x, y, mode, self.mc_samples, self.rng, skip)
        keep = [i for i, layer in enumerate(s.layers) if self._index(layer.weight) is not None]
        layers = [s.layers[i] for i in keep]
        factors = (None, None) if first else (st["A"], st["G"])
        updates = st.get("factor_updates", 0)
        if update_factors:
            factors, updates = self._average(s, keep, updates)
        inverses = None
        if update_inverses:
            try:
                inverses = self._factorise(*factors)
            except xp.linalg.LinAlgError as err:
                F = factors[0] + factors[1]
                if not bool(xp.isfinite(xp.stack([xp.sum(f) for f in F])).all()):  # failure only
                    raise NonFiniteError(f"a K-FAC factor is not finite ({err})") from err
                if self.on_failure == "raise":
                    raise
                reason = f"a damped K-FAC factor is not positive definite ({err})"
                raise SkipStep(reason, s.loss) from err
        st["A"], st["G"], st["factor_updates"] = factors[0], factors[1], updates
        if inverses is not None:
            st.update(inverses)
        self.apply_update(self._directions(s, layers, keep), scale=self.lr)
        return s.loss

    def _rank_b_weights(self, b: int) -> list[Any]:
        """Weights of the Linear layers (with bias) whose step uses the rank-b form of ∇ = gᵀã."""
        if self.weight_decay:
            return []
        return [
            layer.weight
            for layer in curvature_layers(self.model)
            if isinstance(layer, Linear)
            and layer.bias is not None
            and self._index(layer.weight) is not None
            and _rank_b_is_cheaper(layer.out_features, layer.in_features + 1, b)
        ]

    def _index(self, p: Any) -> int | None:
        for i, q in enumerate(self.params):
            if q is p:
                return i
        return None

    def _average(self, s: Any, keep: list[int], updates: int) -> tuple[tuple[list, list], int]:
        """EMA of the factors, ε_k = min(1 − 1/k, ema_decay) at the k-th update (M&G 2015 §5)."""
        k = updates + 1
        eps = min(1.0 - 1.0 / k, self.ema_decay) if k > 1 else 0.0
        batch = [factors_from(s.a[i], s.g_bar[i], s.layers[i], 1.0 - eps) for i in keep]  # M&G §3
        A_new, G_new = [A for A, _ in batch], [G for _, G in batch]
        if eps > 0:  # F ← ε F + (1 − ε) F_batch, the second term already scaled
            for F_new, F_old in ((A_new, self.state["A"]), (G_new, self.state["G"])):
                for F, old in zip(F_new, F_old, strict=True):
                    F += eps * old
        return (A_new, G_new), k

    def _dampings(self, A: Any, G: Any) -> tuple[float, float]:
        """γ_A = π√λ, γ_G = √λ/π (factored Tikhonov damping, M&G 2015 §6.3)."""
        root = math.sqrt(self.damping)
        if not self.pi_correction:
            return root, root
        tA = float(xp.trace(A)) / A.shape[0]
        tG = float(xp.trace(G)) / G.shape[0]
        if not (tA > 0 and tG > 0 and math.isfinite(tA) and math.isfinite(tG)):
            return root, root
        pi = math.sqrt(tA / tG)  # π = sqrt((tr A/dim A)/(tr G/dim G)), M&G §6.3
        return pi * root, root / pi

    def _factorise(self, A_list: list[Any], G_list: list[Any]) -> dict[str, list[Any]]:
        """Cholesky factors (or eigen-inverses) of every damped factor; raises LinAlgError."""
        keys = ("A_chol", "G_chol") if self.solver == "cholesky" else ("A_inv", "G_inv")
        out: dict[str, list[Any]] = {keys[0]: [], keys[1]: []}
        labels = []
        for i, (A, G) in enumerate(zip(A_list, G_list, strict=True)):
            gamma_A, gamma_G = self._dampings(A, G)
            for key, F, gamma, name in ((keys[0], A, gamma_A, "A"), (keys[1], G, gamma_G, "G")):
                diagonal = xp.arange(F.shape[0])
                K = F.copy()
                K[diagonal, diagonal] += gamma  # F + γI
                label = f"{name} + γI of layer {i}"
                labels.append(label)
                out[key].append(
                    cho_factor(K, label, check=False)  # checked below, all at once
                    if self.solver == "cholesky"
                    else _eig_inverse(K, label)
                )
        if self.solver == "cholesky":  # one device sync for all factors (CuPy)
            pairs = [L for both in zip(out[keys[0]], out[keys[1]], strict=True) for L in both]
            check_factors(pairs, labels)
        return out

    def _solve(self, side: str, i: int, B: Any) -> Any:
        """(F + γI)⁻¹ B for F = A or G of layer i."""
        if self.solver == "cholesky":
            return cho_apply(self.state[f"{side}_chol"][i], B)
        return self.state[f"{side}_inv"][i] @ B

    def _directions(self, s: Any, layers: list[Any], keep: list[int]) -> list[Any]:
        """Δ for every parameter: K-FAC blocks for the layers, the gradient for the rest."""
        wd = self.weight_decay
        grads = [gr + wd * p.data if wd else gr for gr, p in zip(s.grads, self.params, strict=True)]
        directions = list(grads)
        for j, (layer, i) in enumerate(zip(layers, keep, strict=True)):
            iw = self._index(layer.weight)
            ib = self._index(layer.bias) if getattr(layer, "bias", None) is not None else None
            m = layer.weight.shape[0]
            a, g = s.a[i], s.g[i]
            if a is None or g is None:  # the layer was not reached by the loss
                directions[iw] = xp.zeros_like(layer.weight.data)
                continue
            rows, n = a.shape[0], a.shape[1] + (ib is not None)
            if grads[iw] is None or not wd and _rank_b_is_cheaper(m, n, rows):
                # ∇ = gᵀã of rank ≤ rows: solve with gᵀ and ãᵀ, never with the (m, n) gradient
                left = self._solve("G", j, g.T)  # (G + γ_G I)⁻¹ gᵀ, (m, rows)
                right = self._solve("A", j, homogeneous(a, layer).T)  # (A + γ_A I)⁻¹ ãᵀ, (n, rows)
                V = left @ right.T  # M&G §4.2 with ∇ = gᵀã
            else:
                grad = xp.reshape(grads[iw], (m, -1))
                if ib is not None:
                    grad = xp.concatenate([grad, grads[ib][:, None]], axis=1)
                V = self._solve("A", j, self._solve("G", j, grad).T).T  # G⁻¹ ∇ A⁻¹ (A symmetric)
            directions[iw] = xp.reshape(V[:, : V.shape[1] - (ib is not None)], layer.weight.shape)
            if ib is not None:
                directions[ib] = V[:, -1]
        if self.momentum > 0:
            buffers = self.state.get("momentum_buffer")
            if buffers is None:
                buffers = [d.copy() for d in directions]
            else:
                buffers = [self.momentum * v + d for v, d in zip(buffers, directions, strict=True)]
            self.state["momentum_buffer"] = buffers
            directions = list(buffers)
        return directions


def _rank_b_is_cheaper(m: int, n: int, rows: int) -> bool:
    """Whether G⁻¹gᵀ, ãA⁻¹ and their product (rows ≪ m, n) cost less than G⁻¹∇A⁻¹ on (m, n)."""
    return m * m * rows + n * n * rows + m * rows * n < m * m * n + m * n * n


def _eig_inverse(K: Any, name: str) -> Any:
    """``K⁻¹ = Q diag(1/d) Qᵀ`` from ``eigh``; LinAlgError if K is not positive definite."""
    d, Q = xp.linalg.eigh(K)
    floor = K.shape[0] * float(xp.finfo(K.dtype).eps) * float(xp.max(xp.abs(d)))
    if not bool(xp.all(d > floor)) or not bool(xp.all(xp.isfinite(d))):
        raise xp.linalg.LinAlgError(
            f"{name} (shape {tuple(K.shape)}) is not positive definite (smallest eigenvalue "
            f"{float(xp.min(d)):.3g}); increase the damping or check the inputs for NaN/inf"
        )
    return (Q / d) @ Q.T
