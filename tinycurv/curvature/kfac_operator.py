"""K-FAC as a linear operator on the flat parameter vector (cf. curvlinops KFACLinearOperator).

    K = blockdiag(G_ℓ ⊗ A_ℓ, …, I)    (M&G 2015 eq. 1; one block per Linear/Conv2d layer)

The block of a layer acts on its ``[W | b]`` in row-major order (``kfac.layer_indices``); the
blocks sit at those positions of the parameter vector in ``model.parameters()`` order (weight
then bias per layer). **Parameters in no Linear/Conv2d layer get an identity block** — undamped
and damped alike, so ``solve`` passes them through unchanged, as ``optim.KFAC`` gives them the
plain gradient; they add their count to ``trace`` and 0 to ``logdet``. ``matvec``, ``to_dense``,
``trace``, ``logdet`` are of the undamped K; ``solve`` applies the damped inverse (factored
Tikhonov with optional π, or exact ``(G ⊗ A + λI)⁻¹``). Results are backend arrays (0-d for
``trace``, ``logdet``): no host transfer.
"""

from __future__ import annotations

from typing import Any

from tinycurv.backend import xp
from tinycurv.curvature import kfac as kfac_math
from tinycurv.curvature.linalg import cho_factor

__all__ = ["KFACOperator"]


class KFACOperator:
    """The block-diagonal K-FAC matrix of ``model`` on the batch ``(x, y)`` (p × p, never formed).

    Parameters
    ----------
    model, loss_fn, x, y : as ``kfac_factors``
    mode : {"exact", "mc", "empirical"} (``layer_statistics``)
    damping : λ ≥ 0, used by ``solve`` only
    damping_mode : {"factored", "exact"} for ``solve`` (``kfac_direction``/``kfac_direction_exact``)
    pi_correction : π of eq. 3 (``"factored"`` only)
    mc_samples, rng : the sampled targets (``"mc"``)
    kfac_approx : {"expand", "reduce"} for convolutions (``kfac_factors``)

    Attributes: ``layers``, ``factors`` ([(A, G)] per layer), ``indices`` (per layer, positions
    in the flat vector), ``rest`` (positions of the identity block), ``shape`` (p, p).
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        x: Any,
        y: Any,
        mode: str = "exact",
        damping: float = 0.0,
        *,
        damping_mode: str = "factored",
        pi_correction: bool = False,
        mc_samples: int = 1,
        rng: Any = None,
        kfac_approx: str = "expand",
    ) -> None:
        if damping_mode not in kfac_math.DAMPING_MODES:
            raise ValueError(f"KFACOperator: damping_mode must be one of {kfac_math.DAMPING_MODES}")
        self.damping, self.damping_mode, self.pi_correction = damping, damping_mode, pi_correction
        params = model.parameters()
        self.dtype = params[0].dtype
        p = sum(q.size for q in params)
        self.shape = (p, p)
        factors = kfac_math.kfac_factors(
            model, loss_fn, x, y, mode, mc_samples, rng, kfac_approx=kfac_approx
        )
        layers = kfac_math.curvature_layers(model)
        ids = {id(q) for q in params}
        keep = [i for i, layer in enumerate(layers) if id(layer.weight) in ids]
        self.layers = [layers[i] for i in keep]
        self.factors = [factors[i] for i in keep]
        self.indices = [kfac_math.layer_indices(model, layer) for layer in self.layers]
        covered = xp.zeros(p, dtype=bool)
        for idx in self.indices:
            covered[idx] = True
        self.rest = xp.nonzero(~covered)[0]  # parameters of no Linear/Conv2d layer: identity
        self._rest_count = p - sum(int(idx.size) for idx in self.indices)  # sizes are host ints
        self._eigen: list[Any] | None = None

    # -- the undamped K ---------------------------------------------------------------------------

    def _blocks(self, v: Any, apply: Any) -> Any:
        """``out[idx] = apply(j, V)`` per layer j, V its (m, n+1) slice per column; I elsewhere."""
        single = v.ndim == 1
        V = v[:, None] if single else v
        out = xp.zeros_like(V)
        out[self.rest] = V[self.rest]
        for j, (idx, (A, G)) in enumerate(zip(self.indices, self.factors, strict=True)):
            m, n = G.shape[0], A.shape[0]
            block = V[idx]  # (m·n, k), row-major [W | b]
            cols = [apply(j, xp.reshape(block[:, c], (m, n))) for c in range(V.shape[1])]
            out[idx] = xp.stack([xp.reshape(c, (-1,)) for c in cols], axis=1)
        return out[:, 0] if single else out

    def matvec(self, v: Any) -> Any:
        """``K v`` for v (p,) or (p, k): per layer ``vec(G V Aᵀ)`` (``(G ⊗ A) vec V``)."""
        return self._blocks(v, lambda j, V: self.factors[j][1] @ V @ self.factors[j][0].T)

    __matmul__ = matvec

    def to_dense(self) -> Any:
        """K as a dense (p, p) array: ``kron(G, A)`` at each layer's indices, I elsewhere."""
        K = xp.zeros(self.shape, dtype=self.dtype)
        K[self.rest, self.rest] = 1.0
        for idx, (A, G) in zip(self.indices, self.factors, strict=True):
            K[xp.ix_(idx, idx)] = xp.kron(G, A)
        return K

    def trace(self) -> Any:
        """``tr K = Σ_ℓ tr G_ℓ · tr A_ℓ + (#identity entries)``, a 0-d array."""
        out = xp.asarray(float(self._rest_count), dtype=self.dtype)
        for A, G in self.factors:
            out = out + xp.trace(G) * xp.trace(A)
        return out

    def logdet(self) -> Any:
        """``log det K = Σ_ℓ dim A · log det G + dim G · log det A``, 0-d (−inf if singular)."""
        out = xp.asarray(0.0, dtype=self.dtype)
        for A, G in self.factors:
            out = out + A.shape[0] * _logdet(G) + G.shape[0] * _logdet(A)
        return out

    # -- the damped inverse ------------------------------------------------------------------------

    def solve(self, v: Any) -> Any:
        """The damped inverse applied to v (p,) or (p, k); identity on the other parameters.

        ``"factored"``: ``(G + γ_G I)⁻¹ V (A + γ_A I)⁻¹`` (eq. 2, 3; Cholesky, ``LinAlgError`` if
        not positive definite). ``"exact"``: ``(G ⊗ A + λI)⁻¹ vec V`` (``kfac_direction_exact``).
        """
        if self.damping_mode == "exact":
            if self._eigen is None:
                self._eigen = [kfac_math.kfac_eigen(A, G) for A, G in self.factors]
            eigen = self._eigen

            def apply(j: int, V: Any) -> Any:
                A, G = self.factors[j]
                return kfac_math.kfac_direction_exact(V, A, G, self.damping, eigen=eigen[j])

            return self._blocks(v, apply)
        chol = []
        for A, G in self.factors:
            K_A, K_G = kfac_math.damped_factors(A, G, self.damping, self.pi_correction)
            chol.append((cho_factor(K_A, "A + γ_A I"), cho_factor(K_G, "G + γ_G I")))

        def apply(j: int, V: Any) -> Any:
            A, G = self.factors[j]
            return kfac_math.kfac_direction(V, A, G, self.damping, factors=chol[j])

        return self._blocks(v, apply)


def _logdet(M: Any) -> Any:
    sign, value = xp.linalg.slogdet(M)
    return xp.where(sign > 0, value, -xp.inf)
