"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015; KFC for convolutions).

Per ``Linear``/``Conv2d`` layer, with the math of ``tinycurv.curvature.kfac`` (eq. numbers there):

    A ← ε_k A + (1 − ε_k) A_batch,  G likewise,  ε_k = min(1 − 1/k, ema_decay)        (M&G §5)
    Δ = kfac_direction(∇ + wd·θ, A, G, λ, π) = (G + γ_G I)⁻¹ (∇ + wd·θ) (A + γ_A I)⁻¹ (eq. 2, 3)
    v ← μ v + Δ  (v = Δ at the first step; ``optim.sgd.momentum_directions``),  θ ← θ − lr·v

k counts factor updates (every ``factor_every`` steps; on the others no extra backward sweep).
The damped factors are Cholesky-factored (or inverted via ``eigh``) every ``inv_every`` steps
and kept in ``state``; ``kfac_direction`` receives them as ``factors=``/``inverses=``, and the
rank-b form ``g=, a=`` (∇ = gᵀã) when that is cheaper. Parameters of no such layer take the
plain gradient. A damped factor that is not positive definite skips the step with a warning
(``on_failure="skip"``) or raises ``LinAlgError`` (``"raise"``). ``kfac_direction`` is looked up
at every call, so a replaced ``tinycurv.curvature.kfac.kfac_direction`` (or its re-export
``tinycurv.curvature.kfac_direction``) changes the step. Details, costs: docs/kfac.md.
"""

from __future__ import annotations

from typing import Any

import tinycurv.curvature as curvature
from tinycurv.backend import xp
from tinycurv.curvature import kfac as kfac_math
from tinycurv.curvature.linalg import check_factors, cho_factor
from tinycurv.curvature.statistics import MODES, curvature_layers, homogeneous, layer_statistics
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
from tinycurv.optim.sgd import _with_weight_decay, momentum_directions

__all__ = ["KFAC"]

SOLVERS = ("cholesky", "eigen")
_PURE_DIRECTION = kfac_math.kfac_direction  # to tell which of its two names was replaced


def _kfac_direction() -> Any:
    """The current ``kfac_direction``: the re-export if only it was replaced, else the module's."""
    exported = curvature.kfac_direction
    return exported if exported is not _PURE_DIRECTION else kfac_math.kfac_direction


class KFAC(Optimizer):
    """K-FAC with factored Tikhonov damping, EMA factors, optional π-correction and momentum.

    Parameters
    ----------
    model : Module; its ``Linear``/``Conv2d`` layers are preconditioned
    loss_fn : MSELoss or CrossEntropyLoss
    lr : step size η > 0
    damping : λ ≥ 0 (eq. 3)
    mode : {"mc", "exact", "empirical"}, how G is estimated (``layer_statistics``)
    inv_every : refactorise the damped factors every this many steps
    factor_every : update the factors every this many steps
    ema_decay : ε in [0, 1) of the factors' moving average (0: the batch's factors only)
    momentum : μ ≥ 0, v ← μ v + Δ (no dampening)
    pi_correction : split the damping by π (eq. 3)
    solver : {"cholesky", "eigen"}, Cholesky factors or explicit inverses from ``eigh``
    mc_samples : sampled targets per sample (``mode="mc"``)
    seed, rng : the generator of the sampled targets (``optim.base.make_generator``)
    weight_decay : wd ≥ 0, added to the gradient before preconditioning
    on_failure : {"skip", "raise"}, for a damped factor that is not positive definite
    on_nonfinite : {"raise", "skip"} (``Optimizer``)

    ``state``: ``"A"``, ``"G"`` (averaged factors per layer), ``"A_chol"``/``"G_chol"`` (lower
    Cholesky factors of the damped factors) or ``"A_inv"``/``"G_inv"`` (``solver="eigen"``),
    ``"factor_updates"`` (k), ``"momentum_buffer"``; ``state_dict()["rng"]`` the generator.
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
        skip = self._rank_b_weights(len(x))  # their gᵀa is never formed (rank-b form)
        s = layer_statistics(self.model, self.loss_fn, x, y, mode, self.mc_samples, self.rng, skip)
        keep = [i for i, layer in enumerate(s.layers) if self._index(layer.weight) is not None]
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
        directions = self._directions(s, keep)
        if self.momentum > 0:
            directions = momentum_directions(st, directions, self.momentum, nesterov=False)
        self.apply_update(directions, scale=self.lr)
        return s.loss

    def _rank_b_weights(self, b: int) -> list[Any]:
        """Weights of the Linear layers (with bias) whose Δ uses the rank-b form ∇ = gᵀã."""
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
        """EMA of A and G, ε_k = min(1 − 1/k, ema_decay) at the k-th update (M&G 2015 §5)."""
        k = updates + 1
        eps = min(1.0 - 1.0 / k, self.ema_decay) if k > 1 else 0.0
        batch = [kfac_math.factors_from(s.a[i], s.g_bar[i], s.layers[i], 1.0 - eps) for i in keep]
        A_new, G_new = [A for A, _ in batch], [G for _, G in batch]
        if eps > 0:  # F ← ε F + (1 − ε) F_batch, the second term already scaled
            for F_new, F_old in ((A_new, self.state["A"]), (G_new, self.state["G"])):
                for F, old in zip(F_new, F_old, strict=True):
                    F += eps * old
        return (A_new, G_new), k

    def _factorise(self, A_list: list[Any], G_list: list[Any]) -> dict[str, list[Any]]:
        """Cholesky factors (or eigen-inverses) of every damped factor; raises LinAlgError."""
        keys = ("A_chol", "G_chol") if self.solver == "cholesky" else ("A_inv", "G_inv")
        out: dict[str, list[Any]] = {keys[0]: [], keys[1]: []}
        labels = []
        for i, (A, G) in enumerate(zip(A_list, G_list, strict=True)):
            damped = kfac_math.damped_factors(A, G, self.damping, self.pi_correction)
            for key, K, name in zip(keys, damped, "AG", strict=True):
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

    def _directions(self, s: Any, keep: list[int]) -> list[Any]:
        """Δ for every parameter: ``kfac_direction`` per layer, the gradient for the rest."""
        st = self.state
        grads = _with_weight_decay(s.grads, self.params, self.weight_decay)
        directions = list(grads)
        direction = _kfac_direction()
        for j, i in enumerate(keep):
            layer = s.layers[i]
            iw = self._index(layer.weight)
            ib = self._index(layer.bias) if getattr(layer, "bias", None) is not None else None
            m = layer.weight.shape[0]
            a, g = s.a[i], s.g[i]
            if a is None or g is None:  # the layer was not reached by the loss
                directions[iw] = xp.zeros_like(layer.weight.data)
                continue
            solves = (
                {"factors": (st["A_chol"][j], st["G_chol"][j])}
                if self.solver == "cholesky"
                else {"inverses": (st["A_inv"][j], st["G_inv"][j])}
            )
            A, G = st["A"][j], st["G"][j]
            rows, n = a.shape[0], a.shape[1] + (ib is not None)
            if grads[iw] is None or not self.weight_decay and _rank_b_is_cheaper(m, n, rows):
                a_t = homogeneous(a, layer)  # ∇ = gᵀã of rank ≤ rows, never formed
                V = direction(None, A, G, self.damping, self.pi_correction, g=g, a=a_t, **solves)
            else:
                grad = xp.reshape(grads[iw], (m, -1))
                if ib is not None:
                    grad = xp.concatenate([grad, grads[ib][:, None]], axis=1)
                V = direction(grad, A, G, self.damping, self.pi_correction, **solves)
            directions[iw] = xp.reshape(V[:, : V.shape[1] - (ib is not None)], layer.weight.shape)
            if ib is not None:
                directions[ib] = V[:, -1]
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
