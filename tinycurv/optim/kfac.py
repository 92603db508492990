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
(``on_failure="skip"``) or raises ``LinAlgError`` (``"raise"``). The pure functions are looked up
at every call (``optim.base.PureFunctions``): a replaced ``tinycurv.curvature.kfac.<f>`` or
``tinycurv.curvature.<f>`` changes the step. Details, costs: docs/kfac.md.

Options beyond M&G's plain step (docs/kfac.md §9–§14): ``damping_mode="exact"`` ((G ⊗ A + λI)⁻¹
from the eigendecompositions), ``kl_clip`` (Ba et al. 2017), ``step_rule="qmodel"`` (α, μ from
the quadratic model, M&G §7), ``adapt_damping`` (Levenberg–Marquardt, M&G §6.5),
``eigen_correction`` (EKFAC, George et al. 2018), ``kfac_approx="reduce"`` (Eschenhagen et al.
2023). The defaults give the plain step above, bit for bit.
"""

from __future__ import annotations

from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature import damping as damping_module
from tinycurv.curvature import dense as dense_module
from tinycurv.curvature import kfac as kfac_module
from tinycurv.curvature.linalg import check_factors, cho_factor
from tinycurv.curvature.statistics import MODES, curvature_layers, homogeneous, layer_statistics
from tinycurv.nn.layers import Linear
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    PureFunctions,
    SkipStep,
    check_range,
    choice,
    flag,
    integer,
    make_generator,
    number,
)
from tinycurv.optim.sgd import _with_weight_decay, momentum_directions
from tinycurv.tensor import no_grad

__all__ = ["KFAC"]

# the pure functions, looked up at every call (a replaced one changes the step)
kfac_math, damping_math = PureFunctions(kfac_module), PureFunctions(damping_module)
dense_math = PureFunctions(dense_module)

SOLVERS = ("cholesky", "eigen")
STEP_RULES = ("fixed", "qmodel")


def _optional_positive(owner: str, name: str, value: Any) -> float | None:
    """A ``Hyperparameter`` kind: None (off) or a number > 0."""
    return None if value is None else check_range(owner, name, value, low_open=True)


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
    damping_mode : {"factored", "exact"}: factored Tikhonov damping (eq. 3) or the exact
        ``(G ⊗ A + λI)⁻¹`` from the factors' eigendecompositions (``kfac_direction_exact``;
        ``solver`` and ``pi_correction`` then unused)
    kl_clip : None or κ > 0: scale every Δ by ν = min(1, sqrt(κ / (lr² Σ Δᵀ∇))), so that
        ν² lr² Σ Δᵀ∇ ≤ κ (Ba et al. 2017; on the device, before momentum)
    kfac_approx : {"expand", "reduce"}, the factors of a ``Conv2d`` (``factors_from``;
        Eschenhagen et al. 2023)
    step_rule : {"fixed", "qmodel"}: θ ← θ − lr·v, or δ = αΔ + μδ₀ with (α, μ) minimising the
        quadratic model of the exact minibatch GGN (M&G §7, ``qmodel_coefficients``; one
        batched ``curvature.ggn_vp`` per step; ``lr`` and ``momentum`` unused)
    adapt_damping : Levenberg–Marquardt λ (M&G §6.5, ``levenberg_marquardt``) every
        ``adapt_every`` (T₁) steps, ω = (19/20)^T₁; on the device (λ a (1,) array in ``state``)
    eigen_correction : EKFAC (George et al. 2018): the eigenbasis of A, G (refreshed every
        ``inv_every`` steps) with the scaling s re-estimated from per-sample gradients
        (``ekfac_scaling``) at every factor update; Δ = ``ekfac_direction(∇, U_A, U_G, s, λ)``

    ``state``: ``"A"``, ``"G"`` (averaged factors per layer), ``"A_chol"``/``"G_chol"`` (lower
    Cholesky factors of the damped factors) or ``"A_inv"``/``"G_inv"`` (``solver="eigen"``),
    or ``"A_evals"``, ``"A_evecs"``, ``"G_evals"``, ``"G_evecs"`` (``damping_mode="exact"``),
    ``"factor_updates"`` (k), ``"momentum_buffer"``; ``"scaling"`` (EKFAC's s per layer);
    ``"delta"`` (δ₀, ``step_rule="qmodel"``); ``"damping"``, ``"damping_history"`` and
    ``"reduction_ratio"`` (``adapt_damping``); ``state_dict()["rng"]`` the generator.
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
    damping_mode = Hyperparameter(choice(*kfac_math.DAMPING_MODES))
    kl_clip = Hyperparameter(_optional_positive)
    kfac_approx = Hyperparameter(choice(*kfac_math.KFAC_APPROX))
    step_rule = Hyperparameter(choice(*STEP_RULES))
    adapt_damping = Hyperparameter(flag)
    adapt_every = Hyperparameter(integer())
    eigen_correction = Hyperparameter(flag)

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
        damping_mode: str = "factored",
        kl_clip: float | None = None,
        kfac_approx: str = "expand",
        step_rule: str = "fixed",
        adapt_damping: bool = False,
        adapt_every: int = 5,
        eigen_correction: bool = False,
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
            damping_mode=damping_mode,
            kl_clip=kl_clip,
            kfac_approx=kfac_approx,
            step_rule=step_rule,
            adapt_damping=adapt_damping,
            adapt_every=adapt_every,
            eigen_correction=eigen_correction,
        )
        self.rng = make_generator(seed, rng)

    # -- one step ---------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        st = self.state
        first = "A" not in st
        update_factors = first or self.t % self.factor_every == 0
        missing = self._keys()[0] not in st
        update_inverses = missing or self.t % self.inv_every == 0
        needs_g_bar = update_factors or (self.eigen_correction and update_inverses)
        mode = self.mode if needs_g_bar else None
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
        if self.eigen_correction and s.g_bar is not None:
            st["scaling"] = self._scaling(s, keep, updates, update_factors, update_inverses)
        directions = self._directions(s, keep)
        if self.kl_clip is not None:
            directions = self._kl_clipped(directions, s)
        adapting = self.adapt_damping and (self.t + 1) % self.adapt_every == 0
        if self.step_rule == "fixed" and not adapting:  # the plain K-FAC step (λ maybe adapted)
            if self.momentum > 0:
                directions = momentum_directions(st, directions, self.momentum, nesterov=False)
            self.apply_update(directions, scale=self.lr)
            return s.loss
        delta, value = self._model_step(x, y, s, directions)
        self.apply_update(delta, scale=-1.0)
        if adapting:
            self._adapt(x, y, s.loss, value)
        return s.loss

    def _damping(self) -> Any:
        """λ: the adapted (1,) array in ``state`` (``adapt_damping``), else the hyperparameter."""
        return self.state.get("damping", self.damping)

    def _model_step(self, x: Any, y: Any, s: Any, directions: list[Any]) -> tuple[list, Any]:
        """δ and M(δ) = ½δᵀ(F + (λ + η)I)δ + ∇ᵀδ, F the minibatch GGN by ``curvature.ggn_vp``.

        ``"qmodel"``: δ = αΔ + μδ₀ (M&G §7, ``qmodel_coefficients``), Δ = −K-FAC direction;
        ``"fixed"``: δ = −lr·v (momentum as the plain step), M(δ) for the adaptive damping.
        """
        st = self.state
        grads = _flat(_with_weight_decay(s.grads, self.params, self.weight_decay))
        lam = self._damping() + self.weight_decay
        shapes = [d.shape for d in directions]
        if self.step_rule == "qmodel":
            step = [-d for d in directions]  # Δ
            prev = st.get("delta")
            vectors = [step] if prev is None else [step, prev]
        else:
            if self.momentum > 0:
                directions = momentum_directions(st, directions, self.momentum, nesterov=False)
            vectors = [[-self.lr * d for d in directions]]
        stacked = [xp.stack([v[i] for v in vectors]) for i in range(len(shapes))]
        products = dense_math.ggn_vp(self.model, self.loss_fn, x, y, stacked, batched=True)
        flat = [_flat([P[k] for P in products]) for k in range(len(vectors))]
        if self.step_rule == "qmodel":
            prev_flat = None if prev is None else _flat(prev)
            F_prev = None if prev is None else flat[1]
            alpha, mu, value = kfac_math.qmodel_coefficients(
                _flat(step), prev_flat, grads, flat[0], F_prev, lam
            )
            delta = [alpha * d for d in step]
            if prev is not None:
                delta = [d + mu * p for d, p in zip(delta, prev, strict=True)]
            st["delta"] = delta
            return delta, value
        delta, v = vectors[0], _flat(vectors[0])
        value = 0.5 * xp.dot(v, flat[0] + lam * v) + xp.dot(grads, v)
        return delta, value

    def _adapt(self, x: Any, y: Any, loss: Any, value: Any) -> None:
        """ρ = (h(θ + δ) − h(θ)) / M(δ) on the same batch; λ by ``levenberg_marquardt`` (§6.5).

        On the device: λ, ρ are (1,) arrays, the history a (k,) array (no host transfer).
        """
        with no_grad():
            new_loss = self.loss_fn(self.model(x), y).data
        rho = xp.reshape(damping_math.reduction_ratio(new_loss, loss, value), (1,))
        omega = (19.0 / 20.0) ** self.adapt_every
        lam = self._damping()
        if isinstance(lam, float):
            lam = xp.full((1,), lam, dtype=rho.dtype)
        lam = damping_math.levenberg_marquardt(lam, rho, omega)
        st = self.state
        history = st.get("damping_history")
        st["damping"], st["reduction_ratio"] = lam, rho
        st["damping_history"] = lam if history is None else xp.concatenate([history, lam])

    def _scaling(self, s: Any, keep: list[int], k: int, averaged: bool, new_basis: bool) -> list:
        """EKFAC's s per layer: the batch's in the current basis, averaged as A and G unless the
        basis was just refreshed (then s restarts from the batch's own)."""
        st = self.state
        eps = min(1.0 - 1.0 / k, self.ema_decay) if averaged and k > 1 else 0.0
        out = []
        for j, i in enumerate(keep):
            batch = kfac_math.ekfac_scaling(
                s.a[i], s.g_bar[i], s.layers[i], st["A_evecs"][j], st["G_evecs"][j], s.samples
            )
            if not new_basis and eps > 0 and "scaling" in st:
                batch = eps * st["scaling"][j] + (1.0 - eps) * batch
            out.append(batch)
        return out

    def _rank_b_weights(self, b: int) -> list[Any]:
        """Weights of the Linear layers (with bias) whose Δ uses the rank-b form ∇ = gᵀã."""
        if (
            self.weight_decay
            or self.damping_mode == "exact"
            or self.kl_clip is not None
            or self.step_rule != "fixed"
            or self.adapt_damping
            or self.eigen_correction
        ):
            return []
        return [
            layer.weight
            for layer in curvature_layers(self.model)
            if isinstance(layer, Linear)
            and layer.bias is not None
            and self._index(layer.weight) is not None
            and _rank_b_is_cheaper(layer.out_features, layer.in_features + 1, b)
        ]

    @staticmethod
    def _layer_grad(grads: list[Any], iw: int, ib: int | None, m: int) -> Any:
        """``[∇W | ∇b]`` (m, n+1) of one layer from the per-parameter gradients."""
        grad = xp.reshape(grads[iw], (m, -1))
        if ib is not None:
            grad = xp.concatenate([grad, grads[ib][:, None]], axis=1)
        return grad

    def _index(self, p: Any) -> int | None:
        for i, q in enumerate(self.params):
            if q is p:
                return i
        return None

    def _average(self, s: Any, keep: list[int], updates: int) -> tuple[tuple[list, list], int]:
        """EMA of A and G, ε_k = min(1 − 1/k, ema_decay) at the k-th update (M&G 2015 §5)."""
        k = updates + 1
        eps = min(1.0 - 1.0 / k, self.ema_decay) if k > 1 else 0.0
        batch = [
            kfac_math.factors_from(
                s.a[i], s.g_bar[i], s.layers[i], 1.0 - eps, self.kfac_approx, s.samples
            )
            for i in keep
        ]
        A_new, G_new = [A for A, _ in batch], [G for _, G in batch]
        if eps > 0:  # F ← ε F + (1 − ε) F_batch, the second term already scaled
            for F_new, F_old in ((A_new, self.state["A"]), (G_new, self.state["G"])):
                for F, old in zip(F_new, F_old, strict=True):
                    F += eps * old
        return (A_new, G_new), k

    def _keys(self) -> tuple[str, ...]:
        """The ``state`` keys of the factorisations refreshed every ``inv_every`` steps."""
        if self.damping_mode == "exact" or self.eigen_correction:
            return ("A_evals", "A_evecs", "G_evals", "G_evecs")
        return ("A_chol", "G_chol") if self.solver == "cholesky" else ("A_inv", "G_inv")

    def _kl_clipped(self, directions: list[Any], s: Any) -> list[Any]:
        """Δ·ν, ν = min(1, sqrt(κ / (lr² Σ Δᵀ∇))) (Ba et al. 2017 §5), on the device (0-d ν)."""
        grads = _with_weight_decay(s.grads, self.params, self.weight_decay)
        quad = sum(xp.sum(d * g) for d, g in zip(directions, grads, strict=True))
        quad = xp.maximum(self.lr**2 * quad, xp.finfo(quad.dtype).tiny)
        nu = xp.minimum(1.0, xp.sqrt(self.kl_clip / quad))
        return [d * nu for d in directions]

    def _factorise(self, A_list: list[Any], G_list: list[Any]) -> dict[str, list[Any]]:
        """Cholesky factors (or eigen-inverses) of every damped factor; raises LinAlgError."""
        if self._keys()[0] == "A_evals":  # eigendecompositions of the undamped factors
            out: dict[str, list[Any]] = {k: [] for k in self._keys()}
            for A, G in zip(A_list, G_list, strict=True):
                for key, value in zip(self._keys(), kfac_math.kfac_eigen(A, G), strict=True):
                    out[key].append(value)
            return out
        keys = self._keys()
        out = {keys[0]: [], keys[1]: []}
        labels = []
        for i, (A, G) in enumerate(zip(A_list, G_list, strict=True)):
            damped = kfac_math.damped_factors(A, G, self._damping(), self.pi_correction)
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
        direction = kfac_math.kfac_direction
        lam = self._damping()
        for j, i in enumerate(keep):
            layer = s.layers[i]
            iw = self._index(layer.weight)
            ib = self._index(layer.bias) if getattr(layer, "bias", None) is not None else None
            m = layer.weight.shape[0]
            a, g = s.a[i], s.g[i]
            if a is None or g is None:  # the layer was not reached by the loss
                directions[iw] = xp.zeros_like(layer.weight.data)
                continue
            if self.eigen_correction:
                grad = self._layer_grad(grads, iw, ib, m)
                U_A, U_G = st["A_evecs"][j], st["G_evecs"][j]
                V = kfac_math.ekfac_direction(grad, U_A, U_G, st["scaling"][j], lam)
                directions[iw] = xp.reshape(
                    V[:, : V.shape[1] - (ib is not None)], layer.weight.shape
                )
                if ib is not None:
                    directions[ib] = V[:, -1]
                continue
            if self.damping_mode == "exact":
                eigen = tuple(st[k][j] for k in self._keys())
                solves = {"damping_mode": "exact", "eigen": eigen}
            elif self.solver == "cholesky":
                solves = {"factors": (st["A_chol"][j], st["G_chol"][j])}
            else:
                solves = {"inverses": (st["A_inv"][j], st["G_inv"][j])}
            A, G = st["A"][j], st["G"][j]
            rows, n = a.shape[0], a.shape[1] + (ib is not None)
            if grads[iw] is None or not self.weight_decay and _rank_b_is_cheaper(m, n, rows):
                a_t = homogeneous(a, layer)  # ∇ = gᵀã of rank ≤ rows, never formed
                V = direction(None, A, G, lam, self.pi_correction, g=g, a=a_t, **solves)
            else:
                grad = self._layer_grad(grads, iw, ib, m)
                V = direction(grad, A, G, lam, self.pi_correction, **solves)
            directions[iw] = xp.reshape(V[:, : V.shape[1] - (ib is not None)], layer.weight.shape)
            if ib is not None:
                directions[ib] = V[:, -1]
        return directions


def _flat(arrays: list[Any]) -> Any:
    """The row-major concatenation of ``arrays`` (``curvature.flatten``'s order)."""
    return xp.concatenate([xp.reshape(a, (-1,)) for a in arrays])


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
