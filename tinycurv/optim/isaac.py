"""ISAAC: SGD or Adam on gradients conditioned by input-based curvature (ζ* or ζ) per layer.

Petersen, Sutter, Borgelt, Huh, Kuehne, Sun & Deussen, "ISAAC Newton: Input-based Approximate
Curvature for Newton's Method", ICLR 2023. The pure math (eq. 17, 20, 21; Theorems 1–4) lives in
``tinycurv.curvature.isaac``, whose conventions this module follows: for a ``Linear`` layer with
weight W (m, n), ``a`` (rows, n) are its inputs and ``g`` (rows, m) the gradients of the batch
loss with respect to its pre-activations, so that ∇W = gᵀa.

One step
--------
1. One forward pass with every ``Linear``/``Conv2d`` layer recorded (``nn.record``, through
   ``tinycurv.curvature.kfac.layer_statistics``) and the true-label backward sweep: the loss, each
   layer's ``a`` and ``g``, and the gradients of all other parameters (biases included).
2. Only if some conditioned layer uses a finite ``lam_g``: the extra backward sweep(s) of the
   same forward pass that give ``g_bar`` (K-FAC's code: ``"mc"`` sampled labels, r =
   ``mc_samples``; ``"exact"`` the loss Hessian's square root, r = m outputs; ``"empirical"``
   the true-label per-sample gradients, no extra sweep).
3. Per conditioned layer the direction replaces the weight's gradient::

       zeta_star = gᵀ (I_b + aaᵀ/(b·lam_a))⁻¹ a = lam_a·gᵀa (A + lam_a I)⁻¹        (eq. 21)
       zeta      = lam_g (G + lam_g I)⁻¹ · zeta_star                                 (eq. 17, 20)

   (``A = aᵀa/b``, ``G = g_barᵀg_bar/b``, b = rows of ``a``). ``lam_g = math.inf`` gives ζ*,
   which needs the inputs only (Theorem 3). Every other parameter keeps its plain gradient.
4. The directions feed the base rule: ``base="sgd"`` (PyTorch's SGD: ``momentum``,
   ``nesterov``, ``weight_decay``) or ``base="adam"`` (PyTorch's Adam: ``betas``, ``eps``,
   ``weight_decay``). Weight decay is added to the *conditioned* direction, ``d = ζ + wd·θ``,
   exactly what the reference code does (its layer rewrites ``.grad``; ``torch.optim`` then adds
   the decay), so the decay itself is not preconditioned.

Biases take the plain gradient
------------------------------
The reference layer (``isaac.Linear`` in Felix-Petersen/isaac) conditions only the weight; its
bias gradient is ``grad_output.sum(0)``, the plain gradient. So does this optimiser: the paper's
ζ acts on ``gᵀa``, which has no bias column.

Choosing the layers (the paper's experiment on which layers to condition)
-------------------------------------------------------------------------
``layers`` selects among the ``Linear``/``Conv2d`` layers in model order
(``tinycurv.curvature.kfac.curvature_layers``): ``"all"``, ``"first"``, ``"last"`` or a list of
indices (negative ones count from the end; ``[]`` conditions nothing: the base rule alone). The
reference example conditions the first 3 of 5 layers (``layers=[0, 1, 2]``), with λ_a = 10
(its README suggests starting from 1) and plain SGD at lr 1 (0.1 for the unconditioned baseline).

Convolutions
------------
For ``Conv2d`` ``a`` is the unfolded patch matrix (b·L, n = in·kh·kw) and ``g`` (b·L, m): ISAAC's
b is then the number of rows b·L, and the (m, n) result is reshaped to the weight's
(out, in, kh, kw).

Cost (what keeps ζ* at the price of SGD)
----------------------------------------
* The weight gradient gᵀa of a conditioned layer is never formed: during the forward pass its
  weight is marked as not requiring a gradient (restored right after), so the backward sweep
  skips that product; the reference implementation likewise replaces it in the layer's backward.
  This needs a bias to carry the backward sweep through the layer; a bias-free conditioned
  layer still forms gᵀa, which is then discarded.
* ζ* for b ≤ n: ``K = I_b + aaᵀ/(b·lam_a)`` (b²n), its inverse (b³) and the products
  ``(gᵀK⁻¹)a`` when m ≤ n (m·b² + the gradient-sized m·b·n), else ``gᵀ(K⁻¹a)``. For b > n
  (convolutions, large batches) the n×n side of eq. 17 is cheaper and used. Extra over SGD:
  O(b²n + b³) per layer, and no (m, n) temporary beyond the direction itself.
* The finite-``lam_g`` side uses the (r·b)×(r·b) Woodbury form of eq. 20 when r·b ≤ m, else the
  m×m side.
* No host synchronisation: both damped matrices are positive definite by construction
  (eigenvalues ≥ 1) and are inverted by ``xp.linalg.inv`` without the host-side pivot check of
  ``tinycurv.curvature.linalg`` (see ``_damped_inverse``); the only transfer is the returned
  loss. (NaN inputs give a NaN update, and the next step's loss raises ``NonFiniteError``.)

State: ``self.state["momentum_buffer"]`` (SGD with momentum) or ``self.state["m"]``,
``self.state["v"]`` (Adam), one array per parameter, as the plain ``SGD``/``Adam``; the sampling
generator is ``self.rng`` (``tinycurv.backend.SavableGenerator(seed)``), whose state travels in
``state_dict()["rng"]``, so a checkpoint resumes exactly (on CuPy, whose generator state cannot be
read, saving re-seeds from a spawned child seed: see ``SavableGenerator``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.kfac import MODES, curvature_layers, layer_statistics
from tinycurv.optim.adam import adam_steps
from tinycurv.optim.base import Hyperparameter, Optimizer, choice, integer, make_generator, number
from tinycurv.optim.sgd import _check_nonnegative, _with_weight_decay, momentum_directions

__all__ = ["BASES", "ISAAC", "LAYER_CHOICES", "HyperparameterError"]

LAYER_CHOICES = ("all", "first", "last")
#: The base rules and their hyperparameters with defaults (PyTorch's SGD and Adam).
BASES: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
}


class HyperparameterError(TypeError, ValueError):
    """A keyword the chosen base rule does not take (both a TypeError and a ValueError)."""


class ISAAC(Optimizer):
    """ISAAC (Petersen et al., ICLR 2023): ζ* or ζ per layer, then SGD or Adam.

    Parameters
    ----------
    model : Module
        The network; its ``Linear``/``Conv2d`` layers can be conditioned.
    loss_fn : MSELoss or CrossEntropyLoss
        ``loss_fn(outputs, targets)``, the scalar batch loss (and, for finite ``lam_g``, the
        sampled targets / Hessian square roots of ``g_bar``).
    lr : float
        Step size ≥ 0 of the base rule (η* of eq. 18 for SGD). Default 0.1; the reference
        example trains with lr 1 and plain SGD.
    lam_a : float
        λ_a > 0, damping of the input factor A; ``math.inf`` leaves the input side unconditioned.
        Default 1, the reference README's suggested starting point.
    lam_g : float
        λ_g > 0, damping of the output factor G; ``math.inf`` (default) gives ζ* (eq. 21) and
        needs no ``g_bar``; a finite value gives ζ (eq. 17/20) with an extra backward sweep.
    layers : {"all", "first", "last"} or list of int
        Which ``Linear``/``Conv2d`` layers (indices in model order) are conditioned; the others
        take the plain gradient.
    base : {"sgd", "adam"}
        The rule the conditioned directions feed.
    g_bar_mode : {"mc", "exact", "empirical"}
        How ``g_bar`` is computed (finite ``lam_g`` only): sampled labels, the loss Hessian's
        square root, or the true-label per-sample gradients (Remark 4).
    mc_samples : int
        r, sampled labels per sample (``g_bar_mode="mc"``).
    seed : int
        Seeds ``self.rng = tinycurv.backend.SavableGenerator(seed)`` (the backend's generator,
        same stream as ``default_rng(seed)``) when ``rng`` is not given.
    rng : generator or int, optional
        A backend generator for the sampled labels (its state is saved only if it is a
        ``SavableGenerator`` or a NumPy generator); an int seeds one generator, once.
    on_nonfinite : {"raise", "skip"}
        What a step with a non-finite loss, gradient or update does (``Optimizer``).
    **base_hyperparameters
        For ``base="sgd"``: ``momentum`` (≥ 0), ``nesterov`` (bool), ``weight_decay`` (≥ 0).
        For ``base="adam"``: ``betas`` (two numbers in [0, 1)), ``eps`` (≥ 0),
        ``weight_decay`` (≥ 0). Semantics as ``tinycurv.optim.SGD`` / ``Adam``.

    Raises
    ------
    ValueError
        For a bad ``layers``, ``base``, ``g_bar_mode`` or out-of-range number.
    HyperparameterError
        (a TypeError and a ValueError) for a keyword the base rule does not take.

    Examples
    --------
    >>> opt = ISAAC(model, nn.CrossEntropyLoss(), lr=1.0, lam_a=10.0, layers=[0, 1, 2])
    >>> loss = opt.step(x, y)                                  # ζ* on the first three layers
    >>> opt = ISAAC(model, loss_fn, 1e-3, 1.0, lam_g=1.0, base="adam", betas=(0.9, 0.99))
    """

    lr = Hyperparameter(number())
    lam_a = Hyperparameter(number(low_open=True, allow_inf=True))
    lam_g = Hyperparameter(number(low_open=True, allow_inf=True))
    layers = Hyperparameter()
    base = Hyperparameter()
    g_bar_mode = Hyperparameter(choice(*MODES))
    mc_samples = Hyperparameter(integer())
    seed = Hyperparameter()
    # the base rule's (checked by _base_hyperparameters); only those of the chosen base are set
    momentum = Hyperparameter()
    nesterov = Hyperparameter()
    betas = Hyperparameter()
    eps = Hyperparameter()
    weight_decay = Hyperparameter()

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.1,
        lam_a: float = 1.0,
        lam_g: float = math.inf,
        layers: str | Sequence[int] = "all",
        base: str = "sgd",
        *,
        g_bar_mode: str = "mc",
        mc_samples: int = 1,
        seed: int | None = 0,
        rng: Any = None,
        on_nonfinite: str = "raise",
        **base_hyperparameters: Any,
    ) -> None:
        super().__init__(
            model,
            loss_fn,
            on_nonfinite,
            lr=lr,
            lam_a=lam_a,
            lam_g=lam_g,
            layers=_normalise_layers(layers),
            base=base,
            g_bar_mode=g_bar_mode,
            mc_samples=mc_samples,
            seed=seed,
            **_base_hyperparameters(base, base_hyperparameters),
        )
        self.rng = make_generator(seed, rng)
        self._plan()

    # -- which layers are conditioned ------------------------------------------------------------

    def _plan(self) -> None:
        """Resolve ``layers`` to (curvature-layer index, weight index, layer) triples."""
        all_layers = curvature_layers(self.model)
        chosen = _select(self.hyperparameters["layers"], len(all_layers))
        position = {id(p): i for i, p in enumerate(self.params)}
        self._conditioned = [
            (i, position[id(all_layers[i].weight)], all_layers[i])
            for i in chosen
            if id(all_layers[i].weight) in position
        ]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``; then the conditioned layers are found again."""
        super().load_state_dict(state)
        self._plan()

    # -- one step --------------------------------------------------------------------------------

    def _update(self, x: Any, y: Any) -> Any:
        lam_a, lam_g = self.lam_a, self.lam_g
        finite_g = not math.isinf(lam_g) and bool(self._conditioned)
        mode = self.g_bar_mode if finite_g else None  # no extra sweep for ζ* (Theorem 3)
        skipped = [layer.weight for _, _, layer in self._conditioned if _has_bias(layer)]
        with _no_weight_gradient(skipped):  # gᵀa of these layers is never formed
            s = layer_statistics(self.model, self.loss_fn, x, y, mode, self.mc_samples, self.rng)
        directions = _full_gradients(self.params, s.grads, skipped)
        s.grads = None  # the directions own the gradients from here on
        for i, iw, layer in self._conditioned:
            a, g = s.a[i], s.g[i]
            if a is None or g is None:  # the layer was not reached by the loss
                directions[iw] = xp.zeros_like(layer.weight.data)
                continue
            left = _conditioned_output_grads(g, s.g_bar[i], lam_g) if finite_g else g.T
            zeta = _conditioned_inputs(left, a, lam_a)  # eq. 21 (ζ*) or eq. 20 (ζ), (m, n)
            directions[iw] = xp.reshape(zeta, layer.weight.shape)
            s.a[i] = s.g[i] = None  # let the layer's records go as soon as they are used
        loss = s.loss
        del s  # the remaining records and g_bar, before the update allocates
        self._base_step(directions)
        return loss

    def _base_step(self, directions: list[Any]) -> None:
        """θ ← θ − (SGD or Adam applied to the directions), PyTorch semantics."""
        directions = _with_weight_decay(directions, self.params, self.weight_decay)
        if self.base == "sgd":
            if self.momentum > 0:
                directions = momentum_directions(
                    self.state, directions, self.momentum, self.nesterov
                )
            self.apply_update(directions, scale=self.lr)
            return
        steps, step_size = adam_steps(
            self.state, directions, self.betas, self.eps, self.lr, self.t + 1
        )
        self.apply_update(steps, scale=step_size)


# ------------------------------------------------------------------------------------------------
# the conditioned direction (the math of tinycurv.curvature.isaac, cost-ordered and sync-free)
# ------------------------------------------------------------------------------------------------
def _damped_inverse(M: Any, scale: float) -> Any:
    """``(I + scale·M)⁻¹`` for a symmetric PSD ``M`` (modified in place), by an explicit inverse.

    ``I + scale·M`` has eigenvalues in [1, 1 + scale·‖M‖], so the inverse is as accurate as a
    solve (relative error ~ eps·cond) and, as in the reference code (``torch.inverse``), it is
    formed explicitly: for the small b×b (or n×n) matrices here the inverse costs b³ and then
    only matrix products follow, which is several times faster than ``xp.linalg.solve`` with
    hundreds of right-hand sides. No host-side check (``tinycurv.curvature.linalg.cho_factor``
    checks the pivots on the host, a device sync) and, on NumPy, no SciPy: its triangular solves
    run on SciPy's own OpenBLAS thread pool, which, interleaved with NumPy's products on a busy
    machine, costs tens of milliseconds per call.
    """
    M *= scale
    M += xp.eye(M.shape[0], dtype=M.dtype)
    return xp.linalg.inv(M)


def _conditioned_inputs(left: Any, a: Any, lam_a: float) -> Any:
    """``left · lam_a a (A + lam_a I)⁻¹``, (m, n), for ``left`` (m, rows) and ``a`` (rows, n).

    With ``left = gᵀ`` this is ζ* (eq. 21); with ``left = lam_g (G + lam_g I)⁻¹ gᵀ`` it is ζ
    (eq. 20). The products are ordered by cost.
    """
    if math.isinf(lam_a):
        return left @ a  # Theorem 1 (ii): the input side is the identity
    rows, n = a.shape
    m = left.shape[0]
    if rows <= n:  # eq. 20/21: left (I_b + aaᵀ/(b·lam_a))⁻¹ a, b×b
        K_inv = _damped_inverse(a @ a.T, 1.0 / (rows * lam_a))
        return (left @ K_inv) @ a if m <= n else left @ (K_inv @ a)
    K_inv = _damped_inverse(a.T @ a, 1.0 / (rows * lam_a))  # eq. 17 with b > n: (I_n + A/lam_a)⁻¹
    return left @ (a @ K_inv) if rows <= m else (left @ a) @ K_inv


def _conditioned_output_grads(g: Any, g_bar: Any, lam_g: float) -> Any:
    """``lam_g (G + lam_g I)⁻¹ gᵀ``, (m, rows), with ``G = g_barᵀ g_bar / rows`` (eq. 20, left)."""
    rows, m = g.shape
    scale = 1.0 / (rows * lam_g)
    if g_bar.shape[0] <= m:  # Woodbury, eq. 20: gᵀ − ḡᵀ (I_rb + ḡḡᵀ/(b·lam_g))⁻¹ ḡ gᵀ/(b·lam_g)
        K_inv = _damped_inverse(g_bar @ g_bar.T, scale)
        correction = g_bar.T @ (K_inv @ (g_bar @ g.T))
        correction *= scale
        return g.T - correction
    return _damped_inverse(g_bar.T @ g_bar, scale) @ g.T  # m×m side: (I_m + G/lam_g)⁻¹ gᵀ


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _has_bias(layer: Any) -> bool:
    bias = getattr(layer, "bias", None)
    return bias is not None and bool(bias.requires_grad)


@contextlib.contextmanager
def _no_weight_gradient(weights: list[Any]) -> Iterator[None]:
    """Mark ``weights`` as not requiring a gradient (so backward skips gᵀa), then restore."""
    saved = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad = False
        yield
    finally:
        for w, req in zip(weights, saved, strict=True):
            w.requires_grad = req


def _full_gradients(params: list[Any], grads: list[Any], skipped: list[Any]) -> list[Any]:
    """One entry per parameter: the gradients in order, ``None`` for the ``skipped`` weights."""
    skip = {id(w) for w in skipped}
    it = iter(grads)
    out = [None if id(p) in skip else next(it) for p in params]
    if next(it, None) is not None:
        raise RuntimeError("ISAAC: the model's parameters changed since the optimiser was made")
    return out


def _normalise_layers(layers: Any) -> str | list[int]:
    """``"all"``/``"first"``/``"last"``, or a list of ints (checked against the model later)."""
    if isinstance(layers, str):
        if layers not in LAYER_CHOICES:
            raise ValueError(
                f"ISAAC: layers must be one of {LAYER_CHOICES} or a list of layer indices, "
                f"got {layers!r}"
            )
        return layers
    if not isinstance(layers, list | tuple | range):
        raise ValueError(
            f"ISAAC: layers must be one of {LAYER_CHOICES} or a list of layer indices, "
            f"got {type(layers).__name__} {layers!r}"
        )
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"ISAAC: layer indices must be integers, got {i!r} in {layers!r}")
        out.append(int(i))
    return out


def _select(layers: str | list[int], count: int) -> list[int]:
    """Indices (sorted, distinct) into the ``count`` Linear/Conv2d layers."""
    if layers == "all":
        return list(range(count))
    if layers in ("first", "last"):
        if count == 0:
            raise ValueError(f"ISAAC: layers={layers!r}, but the model has no Linear/Conv2d layer")
        return [0] if layers == "first" else [count - 1]
    bad = [i for i in layers if not -count <= i < count]
    if bad:
        raise ValueError(
            f"ISAAC: layer indices {bad} out of range: the model has {count} Linear/Conv2d "
            f"layer(s), indices 0..{count - 1} (or negative from the end)"
        )
    return sorted({i % count for i in layers})


def _base_hyperparameters(base: str, given: dict[str, Any]) -> dict[str, Any]:
    """The base rule's hyperparameters: defaults updated by ``given``, validated."""
    if base not in BASES:
        raise ValueError(f"ISAAC: base must be one of {tuple(BASES)}, got {base!r}")
    unknown = sorted(set(given) - set(BASES[base]))
    if unknown:
        raise HyperparameterError(
            f"ISAAC: unknown hyperparameter(s) {unknown} for base={base!r}; "
            f"it takes {sorted(BASES[base])}"
        )
    hp = {**BASES[base], **given}
    if base == "sgd":
        _check_nonnegative("ISAAC", momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        if hp["nesterov"] and hp["momentum"] <= 0:
            raise ValueError("ISAAC: nesterov=True needs momentum > 0")
        return {
            "momentum": float(hp["momentum"]),
            "nesterov": bool(hp["nesterov"]),
            "weight_decay": float(hp["weight_decay"]),
        }
    _check_nonnegative("ISAAC", eps=hp["eps"], weight_decay=hp["weight_decay"])
    betas = tuple(float(b) for b in hp["betas"])
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"ISAAC: betas must be two numbers in [0, 1), got {hp['betas']!r}")
    return {"betas": betas, "eps": float(hp["eps"]), "weight_decay": float(hp["weight_decay"])}
