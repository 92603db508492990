"""Losses, with what curvature methods need: sampled targets and the loss Hessian's square root.

Both losses average over the batch of b samples of per-sample losses ℓₙ:

* ``MSELoss``: ℓₙ = ½‖f(xₙ) − yₙ‖² (summed over outputs; note the ½ and the sum — PyTorch's
  ``MSELoss`` averages over outputs and has no ½);
* ``CrossEntropyLoss``: ℓₙ = −log softmax(f(xₙ))[yₙ].

``hessian`` and ``hessian_sqrt`` refer to the *per-sample* loss ℓₙ as a function of the outputs
fₙ (so the batch loss's Hessian block for sample n is that divided by b).
"""

from __future__ import annotations

from typing import Any

from tinycurv import dual as D
from tinycurv import ops
from tinycurv.backend import asarray, backend_name, default_rng, is_host_array, xp
from tinycurv.tensor import Tensor


def _values(outputs: Any) -> Any:
    """The plain array of a model's outputs (Tensor, dual or array)."""
    return D.primal(outputs.data if isinstance(outputs, Tensor) else outputs)


def _check_batch(owner: str, outputs: Any) -> None:
    """ValueError for outputs without a batch axis or with an empty batch (the mean is 0/0)."""
    if outputs.ndim == 0:
        raise ValueError(f"{owner}: outputs must have a batch axis, got a scalar")
    if outputs.shape[0] == 0:
        raise ValueError(f"{owner}: empty batch (0 samples), outputs of shape {outputs.shape}")


def _generator(rng: Any) -> Any:
    return rng if hasattr(rng, "random") else default_rng(rng)


class MSELoss:
    """(1/b)·Σₙ ½‖f(xₙ) − yₙ‖²; the model's predictive distribution is N(f(x), I)."""

    def __call__(self, outputs: Tensor, targets: Any) -> Tensor:
        _check_batch("MSELoss", outputs)
        y = targets if isinstance(targets, Tensor) else Tensor(asarray(targets))
        if y.shape != outputs.shape:
            raise ValueError(f"MSELoss: targets have shape {y.shape}, outputs {outputs.shape}")
        if not y.requires_grad and y.dtype != outputs.dtype:
            y = Tensor(D.primal(y.data).astype(outputs.dtype))
        r = outputs - y
        return (r * r).sum() * (0.5 / outputs.shape[0])

    def sample_targets(self, outputs: Any, rng: Any = None) -> Any:
        """y ~ N(f(x), I), one draw per sample; shape (b, m)."""
        f = _values(outputs)
        return f + _generator(rng).standard_normal(f.shape).astype(f.dtype)

    def hessian(self, outputs: Any) -> Any:
        """∇²_f ℓₙ = I for every sample; shape (b, m, m)."""
        f = _values(outputs)
        b, m = f.shape
        return xp.broadcast_to(xp.eye(m, dtype=f.dtype), (b, m, m)).copy()

    def hessian_sqrt(self, outputs: Any) -> Any:
        """S with S Sᵀ = ∇²_f ℓₙ: the identity; shape (b, m, m)."""
        return self.hessian(outputs)

    def __repr__(self) -> str:
        return "MSELoss()"


class CrossEntropyLoss:
    """(1/b)·Σₙ −log softmax(f(xₙ))[yₙ] for integer labels yₙ in [0, m).

    Labels out of range raise ``ValueError`` when they are host (NumPy) arrays or the backend
    is NumPy. Labels already on the GPU are not read back (that would wait for the GPU at every
    call): an out-of-range label there makes the loss NaN instead, which ``Optimizer.step``
    reports as ``NonFiniteError``.
    """

    def __call__(self, outputs: Tensor, targets: Any) -> Tensor:
        y = D.primal(targets.data if isinstance(targets, Tensor) else asarray(targets))
        if outputs.ndim != 2:
            raise ValueError(
                f"CrossEntropyLoss: outputs must be (batch, classes), got {outputs.shape}"
            )
        _check_batch("CrossEntropyLoss", outputs)
        b = outputs.shape[0]
        if y.shape != (b,) or y.dtype.kind not in "iu":
            raise ValueError(
                f"CrossEntropyLoss: targets must be integer labels of shape ({b},), "
                f"got {y.dtype} of shape {y.shape}"
            )
        m = outputs.shape[1]
        # range check on the host only: int(y.min()) of GPU labels is a device sync per call
        host = targets if is_host_array(targets) else y if backend_name() == "numpy" else None
        if host is not None and (int(host.min()) < 0 or int(host.max()) >= m):
            raise ValueError(
                f"CrossEntropyLoss: labels must lie in [0, {m}), "
                f"got [{int(host.min())}, {int(host.max())}]"
            )
        picked = ops.log_softmax(outputs, axis=1)[xp.arange(b), y]
        loss = -picked.sum() * (1.0 / b)
        if host is None:  # GPU labels: NaN loss if any is out of range (CuPy wraps them)
            bad = ((y < 0) | (y >= m)).any()
            loss = loss + xp.where(bad, xp.nan, 0.0).astype(outputs.dtype)
        return loss

    @staticmethod
    def probabilities(outputs: Any) -> Any:
        """softmax(f), shape (b, m)."""
        f = _values(outputs)
        e = xp.exp(f - f.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def sample_targets(self, outputs: Any, rng: Any = None) -> Any:
        """Labels y ~ Categorical(softmax(f)), one per sample; shape (b,), integer."""
        p = self.probabilities(outputs)
        u = _generator(rng).random((p.shape[0], 1)).astype(p.dtype)
        labels = (xp.cumsum(p, axis=1) < u).sum(axis=1)
        return xp.minimum(labels, p.shape[1] - 1).astype(xp.int64)

    def hessian(self, outputs: Any) -> Any:
        """∇²_f ℓₙ = diag(p) − p pᵀ; shape (b, m, m)."""
        p = self.probabilities(outputs)
        return p[:, :, None] * xp.eye(p.shape[1], dtype=p.dtype) - p[:, :, None] * p[:, None, :]

    def hessian_sqrt(self, outputs: Any) -> Any:
        """S = diag(√p) − p √pᵀ, with S Sᵀ = diag(p) − p pᵀ (as Σ p = 1); shape (b, m, m)."""
        p = self.probabilities(outputs)
        q = xp.sqrt(p)
        return q[:, :, None] * xp.eye(p.shape[1], dtype=p.dtype) - p[:, :, None] * q[:, None, :]

    def __repr__(self) -> str:
        return "CrossEntropyLoss()"
