"""Dense curvature matrices of small networks: Hessian, GGN and Fisher, for tests and tutorials.

Every matrix here is (p, p) over *all* parameters, in the order of ``model.parameters()`` (or
``params``), each array flattened row-major — exactly the layout of ``flatten(arrays)``. They
cost p Hessian-vector products or a Jacobian of shape (b, m, p), so they are meant for networks
with at most a few thousand parameters: to verify the matrix-free methods, never to train.

The batch loss is ``L = (1/b)·Σₙ ℓₙ(fₙ)`` with fₙ = f(xₙ; θ) ∈ ℝᵐ (see ``tinycurv.nn.losses``);
``Jₙ = ∂fₙ/∂θ`` (m, p) and ``Hₙ = ∇²_f ℓₙ`` (m, m, ``loss_fn.hessian``). Then

* Hessian ``∇²L``, column by column from forward-over-reverse HVPs (``hessian``);
* GGN ``(1/b)·Σₙ Jₙᵀ Hₙ Jₙ`` (Schraudolph 2002; Martens & Grosse 2015 §5), dense by
  ``ggn`` or matrix-free by ``ggn_vp`` (JVP, loss Hessian, VJP);
* Fisher ``(1/b)·Σₙ ∇ℓₙ ∇ℓₙᵀ`` of per-sample gradients ``∇ℓₙ = Jₙᵀ ∇_f ℓₙ``, with labels
  sampled from the model's predictive distribution (``kind="mc"``, an unbiased estimate of the
  GGN for these losses; Martens & Grosse 2015 §5) or the true labels (``"empirical"``).

Jacobians are computed in forward mode: the parameters' data become batched duals
``Dual(θ, E)`` whose k tangents are k columns of the identity, so one forward sweep gives k
columns of every Jₙ (``jacobian``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tinycurv import dual as D
from tinycurv.backend import default_rng, xp
from tinycurv.functional import hvp
from tinycurv.tensor import Tensor, no_grad

__all__ = ["fisher", "flatten", "ggn", "ggn_vp", "hessian", "jacobian", "unflatten"]

CHUNK = 64  # directions per batched sweep: memory grows like CHUNK × (activations)


# ----------------------------------------------------------------------------- vectors


def flatten(arrays: Sequence[Any], batched: bool = False) -> Any:
    """Concatenate arrays (each flattened row-major) into one vector.

    Parameters
    ----------
    arrays : list of arrays
        Shaped like the parameters; with ``batched=True`` each has a leading axis of k.
    batched : bool
        Keep the leading axis: the result is (k, p) instead of (p,).

    Returns
    -------
    array of shape (p,) or (k, p)
    """
    if batched:
        k = arrays[0].shape[0]
        return xp.concatenate([xp.reshape(a, (k, -1)) for a in arrays], axis=1)
    return xp.concatenate([xp.reshape(a, (-1,)) for a in arrays])


def unflatten(vector: Any, like: Sequence[Any]) -> list[Any]:
    """Split a vector (p,) — or k vectors (k, p) — into arrays shaped like ``like``.

    Parameters
    ----------
    vector : array of shape (p,) or (k, p)
    like : list of Tensors or arrays
        Their shapes (and total size p) define the split.

    Returns
    -------
    list of arrays
        Shaped like ``like``, or ``(k,) + shape`` for a (k, p) input.
    """
    shapes = [tuple(x.shape) for x in like]
    total = sum(math.prod(s) for s in shapes)
    if vector.shape[-1] != total or vector.ndim not in (1, 2):
        raise ValueError(
            f"unflatten: got shape {tuple(vector.shape)}, expected ({total},) or (k, {total})"
        )
    lead = tuple(vector.shape[:-1])
    out, start = [], 0
    for s in shapes:
        size = math.prod(s)
        out.append(xp.reshape(vector[..., start : start + size], lead + s))
        start += size
    return out


def _size(params: Sequence[Tensor]) -> int:
    return sum(p.size for p in params)


def _dtype(params: Sequence[Tensor]) -> Any:
    return D.primal(params[0].data).dtype


def _chunks(p: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, p, chunk):
        yield start, min(p, start + chunk)


@contextlib.contextmanager
def _tangents(params: Sequence[Tensor], vectors: Sequence[Any]) -> Iterator[None]:
    """Temporarily make each parameter's data the (batched) dual ``Dual(θ, v)``."""
    saved = [p.data for p in params]
    try:
        for p, v in zip(params, vectors, strict=True):
            p.data = D.Dual(p.data, v)
        yield
    finally:
        for p, data in zip(params, saved, strict=True):
            p.data = data


# ----------------------------------------------------------------------------- Hessian


def hessian(closure: Callable[[], Tensor], params: Sequence[Tensor], chunk: int = CHUNK) -> Any:
    """The dense Hessian of ``closure()`` with respect to ``params``, shape (p, p).

    Column j is ``H eⱼ``, a forward-over-reverse Hessian-vector product; ``chunk`` columns share
    one sweep (``hvp(..., batched=True)``), so p/chunk sweeps in all. No symmetrisation is
    applied (H is symmetric up to rounding).

    Parameters
    ----------
    closure : callable
        ``closure()`` returns the scalar loss as a Tensor computed from ``params``.
    params : list of Tensor
    chunk : int
        Directions per sweep.
    """
    p, dtype = _size(params), _dtype(params)
    H = xp.zeros((p, p), dtype=dtype)
    for start, stop in _chunks(p, chunk):
        E = xp.eye(stop - start, p, k=start, dtype=dtype)  # rows: e_start … e_stop−1
        HE = hvp(closure, params, unflatten(E, params), batched=True)
        H[:, start:stop] = flatten(HE, batched=True).T
    return H


# ----------------------------------------------------------------------------- Jacobian, GGN


def _outputs_2d(out: Any, what: str) -> None:
    if D.ndim(out) != 2:
        raise ValueError(
            f"{what}: the model's outputs must be (batch, m), got shape {D.shape(out)}"
        )


def jacobian(model: Any, x: Any, chunk: int = CHUNK) -> Any:
    """The Jacobians ``Jₙ = ∂f(xₙ)/∂θ`` of the outputs, stacked: shape (b, m, p).

    Forward mode with batched tangents (``chunk`` columns of the identity per sweep).
    """
    params = model.parameters()
    p, dtype = _size(params), _dtype(params)
    columns = []
    for start, stop in _chunks(p, chunk):
        E = xp.eye(stop - start, p, k=start, dtype=dtype)
        with _tangents(params, unflatten(E, params)), no_grad():
            out = model(x).data
        _outputs_2d(out, "jacobian")
        columns.append(
            xp.moveaxis(D.tangent_of(out, xp.zeros((stop - start,) + D.shape(out))), 0, -1)
        )
    return xp.concatenate(columns, axis=2)


def _output_values(model: Any, x: Any) -> Any:
    with no_grad():
        out = D.primal(model(x).data)
    _outputs_2d(out, "curvature")
    return out


def ggn(model: Any, loss_fn: Any, x: Any, y: Any = None, chunk: int = CHUNK) -> Any:
    """The generalised Gauss–Newton matrix ``(1/b)·Σₙ Jₙᵀ Hₙ Jₙ``, shape (p, p).

    Parameters
    ----------
    model : Module
        Outputs of shape (b, m).
    loss_fn : MSELoss or CrossEntropyLoss
        Supplies ``hessian(outputs)`` = Hₙ (b, m, m) of the per-sample loss.
    x : array
        The inputs (b, …).
    y : array, optional
        The targets; unused (Hₙ of these losses does not depend on them), kept for a uniform
        signature.

    Returns
    -------
    array (p, p)
        Symmetric positive semi-definite (Hₙ is).
    """
    J = jacobian(model, x, chunk)  # (b, m, p)
    b, m, p = J.shape
    H = loss_fn.hessian(_output_values(model, x))  # (b, m, m)
    HJ = H @ J
    M = xp.reshape(J, (b * m, p)).T @ xp.reshape(HJ, (b * m, p)) / b  # (1/b)·Σₙ Jₙᵀ Hₙ Jₙ
    return 0.5 * (M + M.T)


def ggn_vp(
    model: Any, loss_fn: Any, x: Any, y: Any, vectors: Sequence[Any], batched: bool = False
) -> list[Any]:
    """GGN-vector products ``(1/b)·Σₙ Jₙᵀ Hₙ Jₙ v``, matrix-free (``matrix_free.GGNOperator``).

    A JVP (forward sweep on duals) gives ``Jₙ v``; the loss Hessian gives ``uₙ = Hₙ Jₙ v / b``;
    a VJP (a backward sweep from the outputs with cotangent ``u``) gives ``Σₙ Jₙᵀ uₙ``.

    Parameters
    ----------
    model, loss_fn, x, y :
        As for ``ggn`` (``y`` unused).
    vectors : list of arrays
        Shaped like ``model.parameters()``; with ``batched=True`` each has a leading axis of k.

    Returns
    -------
    list of arrays
        Shaped like ``vectors``.
    """
    from tinycurv.curvature.matrix_free import GGNOperator  # lazy: it builds on this module

    return GGNOperator(model, loss_fn, x)(list(vectors), batched=batched)


# ----------------------------------------------------------------------------- Fisher


def output_gradients(loss_fn: Any, f: Any, targets: Any) -> Any:
    """``∇_f ℓₙ(fₙ, yₙ)`` of the per-sample losses, shape (b, m) (b times the batch gradient)."""
    leaf = Tensor(f, requires_grad=True)
    loss_fn(leaf, targets).backward()
    return leaf.grad * f.shape[0]


def fisher(
    model: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    kind: str = "mc",
    mc_samples: int = 1,
    rng: Any = None,
    chunk: int = CHUNK,
) -> Any:
    """The Fisher ``(1/b)·Σₙ ∇ℓₙ ∇ℓₙᵀ`` of per-sample gradients, shape (p, p).

    Parameters
    ----------
    model, loss_fn, x, y :
        As for ``ggn``; ``y`` are the true targets (used by ``kind="empirical"``).
    kind : {"mc", "empirical"}
        ``"mc"``: labels ŷₙ ~ the model's predictive distribution (``loss_fn.sample_targets``),
        ``mc_samples`` draws per sample, averaged: ``(1/b)·Σₙ (1/S)·Σₛ ∇ℓₙ(ŷₙₛ)∇ℓₙ(ŷₙₛ)ᵀ``.
        ``"empirical"``: the true labels, ``(1/b)·Σₙ ∇ℓₙ(yₙ)∇ℓₙ(yₙ)ᵀ``.
    mc_samples : int
        S, draws per sample (``"mc"`` only).
    rng : generator or seed, optional
        For the draws (a backend generator, or a seed for ``default_rng``).

    Notes
    -----
    ``∇ℓₙ = Jₙᵀ ∇_f ℓₙ`` is the gradient of the *per-sample* loss (not of the batch loss).
    """
    if kind not in ("mc", "empirical"):
        raise ValueError(f"fisher: kind must be 'mc' or 'empirical', got {kind!r}")
    if mc_samples < 1:
        raise ValueError(f"fisher: mc_samples must be ≥ 1, got {mc_samples}")
    J = jacobian(model, x, chunk)  # (b, m, p)
    b, m, p = J.shape
    f = _output_values(model, x)
    if kind == "empirical":
        R = output_gradients(loss_fn, f, y)[:, None, :]  # (b, 1, m)
    else:
        rng = rng if hasattr(rng, "random") else default_rng(rng)
        draws = [
            output_gradients(loss_fn, f, loss_fn.sample_targets(f, rng)) for _ in range(mc_samples)
        ]
        R = xp.stack(draws, axis=1) / math.sqrt(mc_samples)  # (b, S, m)
    if R.shape[1] <= m:
        P = xp.reshape(R @ J, (-1, p))  # per-sample gradients ∇ℓₙ = Jₙᵀ rₙ, as rows
        return P.T @ P / b
    # many draws: average the output-space outer products first, Mₙ = Σₛ rₙₛ rₙₛᵀ (b, m, m),
    # then F = (1/b)·Σₙ Jₙᵀ Mₙ Jₙ, whose cost no longer grows with S
    M = xp.swapaxes(R, 1, 2) @ R
    F = xp.reshape(J, (b * m, p)).T @ xp.reshape(M @ J, (b * m, p)) / b
    return 0.5 * (F + F.T)
