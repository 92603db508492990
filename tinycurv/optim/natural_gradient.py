"""Natural gradient descent (Amari 1998): ``θ ← θ − lr·(F + λI)⁻¹ g`` with a Fisher F.

On one mini-batch of b samples with outputs fₙ ∈ ℝᵐ and Jacobians ``Jₙ = ∂fₙ/∂θ`` (m, p)::

    F = (1/b)·Σₙ Jₙᵀ Mₙ Jₙ                                     (p, p), never formed by "cg"
    Mₙ = ∇²_f ℓₙ                       fisher="exact"     (= the GGN for these losses)
    Mₙ = (1/S)·Σₛ rₙₛ rₙₛᵀ,  rₙₛ = ∇_f ℓₙ(fₙ, ŷₙₛ), ŷ ~ p(y | fₙ)   fisher="mc"   (E = exact)
    Mₙ = rₙ rₙᵀ with the true yₙ                            fisher="empirical"

For the softmax cross-entropy and the Gaussian (MSE) likelihood the outputs are natural
parameters of an exponential family, so the Fisher of the predictive distribution equals the
loss Hessian: the exact Fisher IS the GGN (Martens 2020, "New insights and perspectives on the
natural gradient method", §9). ``solver="cg"`` solves ``(F + λI) d = g`` by conjugate gradients
on Fisher-vector products (``curvature.matrix_free.GGNOperator`` with Mₙ), ``"dense"`` forms F
from the Jacobian (p forward-mode columns) and Cholesky-solves: small networks only.

Host transfers per step: CG's checks (one per ``check_every`` iterations) or, for ``"dense"``,
the Cholesky check (one); the loss.
"""

from __future__ import annotations

from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature.dense import flatten, jacobian, unflatten
from tinycurv.curvature.estimators import fisher_output_matrix
from tinycurv.curvature.linalg import cho_solve
from tinycurv.curvature.matrix_free import GGNOperator, conjugate_gradient
from tinycurv.optim.base import (
    Hyperparameter,
    NonFiniteError,
    Optimizer,
    choice,
    integer,
    make_generator,
    number,
)

FISHERS = ("exact", "mc", "empirical")
SOLVERS = ("cg", "dense")


class NaturalGradient(Optimizer):
    """Damped natural gradient descent (see the module docstring).

    Parameters
    ----------
    model : Module
        Outputs (b, m); its ``parameters()`` are updated in place.
    loss_fn : MSELoss or CrossEntropyLoss
    lr : float
        Step size > 0.
    damping : float
        λ ≥ 0 (``solver="dense"`` needs F + λI positive definite).
    fisher : {"exact", "mc", "empirical"}
    solver : {"cg", "dense"}
    mc_samples : int
        S, sampled targets per sample (``fisher="mc"``).
    cg_tol : float
        CG stops at ``‖r‖ ≤ cg_tol·‖g‖``.
    cg_max_iter : int
        At most this many Fisher-vector products per step.
    check_every : int
        CG's stopping test every this many iterations (one host transfer each).
    seed : int
        Seeds the generator of the sampled targets (when ``rng`` is None).
    rng : generator or int, optional
        The generator itself (``make_generator``).
    on_nonfinite : {"raise", "skip"}

    Notes
    -----
    ``state["cg_iterations"]``: the products of the last step's solve (0 for ``"dense"``).
    """

    lr = Hyperparameter(number(low_open=True))
    damping = Hyperparameter(number())
    fisher = Hyperparameter(choice(*FISHERS))
    solver = Hyperparameter(choice(*SOLVERS))
    mc_samples = Hyperparameter(integer())
    cg_tol = Hyperparameter(number())
    cg_max_iter = Hyperparameter(integer())
    check_every = Hyperparameter(integer())
    seed = Hyperparameter(integer(low=0))

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        lr: float = 0.3,
        damping: float = 0.1,
        fisher: str = "exact",
        solver: str = "cg",
        mc_samples: int = 1,
        cg_tol: float = 1e-4,
        cg_max_iter: int = 50,
        check_every: int = 5,
        seed: int = 0,
        rng: Any = None,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(
            model, loss_fn, on_nonfinite, lr=lr, damping=damping, fisher=fisher, solver=solver,
            mc_samples=mc_samples, cg_tol=cg_tol, cg_max_iter=cg_max_iter,
            check_every=check_every, seed=seed,
        )  # fmt: skip
        self.rng = make_generator(seed, rng)

    def _update(self, x: Any, y: Any) -> Any:
        M = lambda f: fisher_output_matrix(  # noqa: E731  (Mₙ, from the taped outputs f)
            self.loss_fn, f, y, self.fisher, self.mc_samples, self.rng
        )
        F = GGNOperator(self.model, self.loss_fn, x, output_matrix=M)
        loss, g = F.loss_and_grad(y)
        if self.solver == "dense":
            direction = self._dense_direction(F, x, g)
            iterations = 0
        else:
            lam = self.damping
            cg = conjugate_gradient(
                lambda v: [fv + lam * vi for fv, vi in zip(F(v), v, strict=True)],  # (F + λI) v
                g,
                tol=self.cg_tol,
                max_iter=self.cg_max_iter,
                check_every=self.check_every,
            )
            if cg.reason == "not finite":
                raise NonFiniteError("the gradient or the Fisher is not finite (CG)")
            direction, iterations = cg.x, cg.iterations
        self.apply_update(direction, scale=self.lr)
        self.state["cg_iterations"] = iterations
        return loss

    def _dense_direction(self, F: GGNOperator, x: Any, g: list[Any]) -> list[Any]:
        """``(F + λI)⁻¹ g`` with F formed from the Jacobian (b, m, p) and F.M = Mₙ/b."""
        J = jacobian(self.model, x)
        b, m, p = J.shape
        K = xp.reshape(J, (b * m, p)).T @ xp.reshape(F.M @ J, (b * m, p))
        K = 0.5 * (K + K.T) + self.damping * xp.eye(p, dtype=K.dtype)
        return unflatten(cho_solve(K, flatten(g), name="F + λI"), self.params)
