"""Matrix-free linear algebra on any curvature: GGN products, conjugate gradients, Lanczos.

A *matvec* maps vectors to curvature-vector products ``C v``. Vectors are lists of backend
arrays shaped like the parameters (the convention of ``tinycurv.hvp``); ``conjugate_gradient``
and ``lanczos`` also take a single flat array (p,) with a matvec on such arrays.

* ``GGNOperator``: ``G v = (1/b)·Σₙ Jₙᵀ Mₙ Jₙ v`` (Schraudolph 2002) with Mₙ the loss Hessian
  (the GGN) or any (b, m, m) output matrix (a sampled or empirical Fisher). One taped forward
  pass when built; each product is a dual forward sweep (``Jₙ v``) and one backward sweep.
* ``conjugate_gradient``: solves ``A x = b`` for symmetric positive definite A, i.e. minimises
  ``φ(x) = ½ xᵀAx − bᵀx`` (Hestenes & Stiefel 1952), optionally preconditioned, with the
  residual norms, the values φ(xᵢ) and chosen iterates xᵢ kept for inspection.
* ``lanczos``: m steps with full reorthogonalisation give ``Qᵀ A Q = T`` tridiagonal (m, m),
  whose eigenvalues (Ritz values) approximate A's extreme eigenvalues (Lanczos 1950; Golub &
  Van Loan §10.1); ``top_eigenvalues`` applies it to the Hessian or the GGN.

Derivations and the host transfers of each function: ``docs/diagnostics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tinycurv import dual as D
from tinycurv.backend import asnumpy, default_rng, get_default_dtype, xp
from tinycurv.curvature.dense import _tangents, flatten, unflatten
from tinycurv.functional import hvp
from tinycurv.tensor import Tensor, no_grad, set_grad_enabled

__all__ = [
    "CGResult",
    "GGNOperator",
    "LanczosResult",
    "conjugate_gradient",
    "curvature_operator",
    "lanczos",
    "top_eigenvalues",
]

Vector = list[Any]
CURVATURES = ("hessian", "ggn")


# ----------------------------------------------------------------------------- operators


class GGNOperator:
    """``G v = (1/b)·Σₙ Jₙᵀ Mₙ Jₙ v`` on one batch, built once and applied many times.

    Building it runs one forward pass on the tape (the outputs f, shape (b, m)). A product
    runs the model once on duals ``Dual(θ, v)`` (giving ``Jₙ v``), multiplies by ``Mₙ / b`` and
    back-propagates the result from the taped outputs (``Σₙ Jₙᵀ uₙ``): a dual forward and a
    backward sweep, no host transfer. ``loss_and_grad(y)`` reuses the same tape.

    Parameters
    ----------
    model : Module
        Outputs of shape (b, m).
    loss_fn : MSELoss or CrossEntropyLoss
        Gives ``hessian(f)`` = Mₙ (b, m, m) when ``output_matrix`` is None.
    x : array
        The inputs (b, …).
    output_matrix : array (b, m, m) or callable, optional
        Mₙ in place of the loss Hessian, or a function of the outputs f returning it (e.g. a
        sampled Fisher, ``estimators.fisher_output_matrix``).
    params : list of Tensor, optional
        The parameters (default ``model.parameters()``); G is their block.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        x: Any,
        output_matrix: Any = None,
        params: Sequence[Tensor] | None = None,
    ) -> None:
        self.model, self.loss_fn, self.x = model, loss_fn, x
        self.params = list(model.parameters() if params is None else params)
        with set_grad_enabled(True):
            self.outputs = model(x)  # the tape that every product back-propagates through
        self.f = D.primal(self.outputs.data)
        if self.f.ndim != 2:
            raise ValueError(f"GGNOperator: outputs must be (batch, m), got {self.f.shape}")
        if output_matrix is None:
            output_matrix = loss_fn.hessian(self.f)
        elif callable(output_matrix):
            output_matrix = output_matrix(self.f)
        self.M = output_matrix / self.f.shape[0]  # Mₙ / b, (b, m, m)

    def __call__(self, vectors: Sequence[Any], batched: bool = False) -> Vector:
        """``G v`` for v shaped like the parameters (with a leading axis of k if ``batched``)."""
        with _tangents(self.params, list(vectors)), no_grad():
            out = self.model(self.x).data  # Dual(f, J v)
        lead = (vectors[0].shape[0],) if batched else ()
        Jv = D.tangent_of(out, xp.zeros(lead + self.f.shape, dtype=self.f.dtype))
        U = (self.M @ Jv[..., None])[..., 0]  # uₙ = Mₙ Jₙ v / b
        results = [self._vjp(u) for u in (U if batched else [U])]
        if not batched:
            return results[0]
        return [xp.stack([r[i] for r in results]) for i in range(len(self.params))]

    def loss_and_grad(self, y: Any) -> tuple[Any, Vector]:
        """The batch loss (0-d) on the taped outputs and its gradient (one backward sweep)."""
        with set_grad_enabled(True):
            loss = self.loss_fn(self.outputs, y)
        return xp.reshape(D.primal(loss.data), ()), self._backward(loss, None)

    def _vjp(self, u: Any) -> Vector:
        return self._backward(self.outputs, u)

    def _backward(self, root: Tensor, cotangent: Any) -> Vector:
        saved = [p.grad for p in self.params]
        try:
            for p in self.params:
                p.grad = None
            root.backward(grad=cotangent, inputs=self.params)
            return [xp.zeros_like(p.data) if p.grad is None else p.grad for p in self.params]
        finally:
            for p, g in zip(self.params, saved, strict=True):
                p.grad = g


def curvature_operator(
    closure: Callable[[], Tensor] | None,
    params: Sequence[Tensor],
    curvature: Any = "hessian",
    model: Any = None,
    loss_fn: Any = None,
    x: Any = None,
) -> Callable[..., Vector]:
    """``matvec(vectors, batched=False)`` for ``curvature``: ``"hessian"``, ``"ggn"`` or a callable.

    ``"hessian"``: forward-over-reverse HVPs of ``closure()`` (``tinycurv.hvp``). ``"ggn"``: a
    ``GGNOperator(model, loss_fn, x)`` on ``params`` (``model``, ``loss_fn`` and ``x`` needed).
    A callable ``matvec(vectors) -> vectors`` is used as it is, one vector at a time.
    """
    if callable(curvature):

        def matvec(vs: Sequence[Any], batched: bool = False) -> Vector:
            if not batched:
                return list(curvature(list(vs)))
            products = [curvature([v[j] for v in vs]) for j in range(vs[0].shape[0])]
            return [xp.stack([c[i] for c in products]) for i in range(len(vs))]

        return matvec
    if curvature == "hessian":
        if closure is None:
            raise ValueError("curvature='hessian' needs the closure")
        return lambda vs, batched=False: hvp(closure, params, vs, batched=batched)
    if curvature == "ggn":
        if model is None or loss_fn is None or x is None:
            raise ValueError("curvature='ggn' needs model=, loss_fn= and x=")
        return GGNOperator(model, loss_fn, x, params=params)
    raise ValueError(f"curvature must be one of {CURVATURES} or a callable, got {curvature!r}")


# ----------------------------------------------------------------------------- vector helpers


def _dot(u: Sequence[Any], v: Sequence[Any]) -> Any:
    """``uᵀv`` of two lists of arrays, as a 0-d backend array (no host transfer)."""
    return sum(xp.vdot(a, b) for a, b in zip(u, v, strict=True))


def _axpy(alpha: Any, u: Sequence[Any], v: Sequence[Any]) -> Vector:
    """``α u + v`` elementwise over two lists (α a number or a 0-d array)."""
    return [alpha * a + b for a, b in zip(u, v, strict=True)]


def _read(values: Sequence[Any]) -> list[float]:
    """Several 0-d backend arrays as Python floats: ONE device-to-host transfer."""
    return [float(v) for v in asnumpy(xp.stack([xp.asarray(v) for v in values]))]


def _generator(rng: Any) -> Any:
    return rng if hasattr(rng, "random") else default_rng(rng)


# ----------------------------------------------------------------------------- CG


@dataclass
class CGResult:
    """What ``conjugate_gradient`` returns.

    Attributes
    ----------
    x : list of arrays or array
        The last iterate, shaped like ``b``.
    iterations : int
        Matrix-vector products made (not counting ``A x0``).
    converged : bool
        Stopped by ``tol`` or ``progress_tol`` (not by ``max_iter`` or a breakdown).
    reason : str
        ``"tolerance"``, ``"progress"``, ``"max_iter"``, ``"nonpositive curvature"`` or
        ``"not finite"``.
    residual_norms : list of float
        ``‖b − A xᵢ‖`` (the recursively updated residual) for i = 0 … iterations.
    values : list of float
        ``φ(xᵢ) = ½ xᵢᵀAxᵢ − bᵀxᵢ = −½ xᵢᵀ(b + rᵢ)`` for i = 0 … iterations.
    iterates : dict
        ``{i: xᵢ}`` for the iterations kept (``keep``).
    """

    x: Any
    iterations: int
    converged: bool
    reason: str
    residual_norms: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    iterates: dict[int, Any] = field(default_factory=dict)


def conjugate_gradient(
    matvec: Callable[[Any], Any],
    b: Any,
    tol: float = 1e-10,
    max_iter: int | None = None,
    x0: Any = None,
    *,
    preconditioner: Callable[[Any], Any] | None = None,
    check_every: int = 1,
    progress_tol: float | None = None,
    keep: bool | Collection[int] = False,
) -> CGResult:
    """Solve ``A x = b`` (A symmetric positive definite) by (preconditioned) conjugate gradients.

    Each iteration: ``α = rᵀz / pᵀAp``, ``x ← x + α p``, ``r ← r − α A p``, ``z = P r``,
    ``β = rᵀz_new / rᵀz_old``, ``p ← z + β p`` (P = ``preconditioner``, ≈ A⁻¹; identity if None).

    Parameters
    ----------
    matvec : callable
        ``matvec(v) = A v``; v and the result are lists of arrays shaped like ``b`` (or arrays,
        if ``b`` is one array).
    b : list of arrays, or array
        The right-hand side.
    tol : float
        Stop when ``‖rᵢ‖ ≤ tol·‖b‖`` (relative residual; 0: never by this test).
    max_iter : int, optional
        At most this many products (default: the dimension p).
    x0 : like ``b``, optional
        The start (default 0; a warm start costs one more product, ``A x0``).
    preconditioner : callable, optional
        ``z = P r`` with P symmetric positive definite.
    check_every : int
        The stopping tests read ‖rᵢ‖², φ(xᵢ) and pᵀAp of the iterations since the last check in
        ONE host transfer every ``check_every`` iterations (and at ``max_iter``); the only host
        transfers made. Larger values sync less but may run up to ``check_every − 1``
        iterations past the test.
    progress_tol : float, optional
        Martens' (2010, §4.4) relative-progress test: stop at i when ``i > k``, ``φᵢ < 0`` and
        ``(φᵢ − φᵢ₋ₖ)/φᵢ < k·progress_tol`` with ``k = max(10, ⌊i/10⌋)`` (Martens: 5e-4).
    keep : bool or collection of int
        Keep the iterates xᵢ of these iterations (True: all) in ``result.iterates``.

    Returns
    -------
    CGResult
        A direction of non-positive curvature (``pᵀAp ≤ 0``) freezes x at the iterate before it
        (``reason="nonpositive curvature"``); NaN/inf stops with ``"not finite"``.
    """
    single = not isinstance(b, list | tuple)  # one flat array: wrap it as a list of one
    lists = (lambda f: lambda v: [f(v[0])]) if single else (lambda f: lambda v: list(f(v)))
    A = lists(matvec)
    P = None if preconditioner is None else lists(preconditioner)
    b = [b] if single else list(b)
    unwrap = (lambda v: v[0]) if single else (lambda v: v)
    dim = sum(a.size for a in b)
    max_iter = dim if max_iter is None else int(max_iter)
    if max_iter < 0 or int(check_every) < 1:
        raise ValueError("conjugate_gradient: max_iter must be ≥ 0 and check_every ≥ 1")
    keep_all = keep is True
    kept = set() if keep is False or keep_all else {int(i) for i in keep}

    if x0 is None:
        x, r = [xp.zeros_like(a) for a in b], list(b)
    else:
        x = [xp.asarray(a, dtype=bi.dtype) for a, bi in zip([x0] if single else x0, b, strict=True)]
        r = [bi - ai for bi, ai in zip(b, A(x), strict=True)]
    z = r if P is None else P(r)
    p, rz = z, _dot(r, z)
    b_norm2 = _dot(b, b)
    dead = xp.zeros((), dtype=bool)  # a non-positive pᵀAp was met: x stays where it is

    # φ(x₀) = −½ x₀ᵀ(b + r₀), then φ(xᵢ₊₁) = φ(xᵢ) − ½ αᵢ rᵢᵀzᵢ (pᵢᵀrᵢ = rᵢᵀzᵢ = αᵢ pᵢᵀApᵢ)
    phi = xp.zeros((), dtype=b_norm2.dtype) if x0 is None else -0.5 * (_dot(x, b) + _dot(x, r))

    def record(r: Vector, pAp: Any) -> list[Any]:
        return [rz if P is None else _dot(r, r), phi, pAp]

    result = CGResult(unwrap(x), 0, False, "max_iter")
    iterates = {0: unwrap(x)} if keep_all or 0 in kept else {}
    pending = [b_norm2, *record(r, xp.ones((), dtype=b_norm2.dtype))]  # iteration 0
    check, i, b_norm = int(check_every), 0, None
    while True:
        if i < max_iter:  # iteration i + 1
            Ap = A(p)
            pAp = _dot(p, Ap)
            dead = dead | ~(pAp > 0)
            alpha = xp.where(dead, 0.0, rz / xp.where(dead, 1.0, pAp))
            x, r = _axpy(alpha, p, x), _axpy(-alpha, Ap, r)
            phi = phi - 0.5 * alpha * rz
            z = r if P is None else P(r)
            rz_new = _dot(r, z)
            beta = xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0)
            p, rz, i = _axpy(beta, p, z), rz_new, i + 1
            pending += record(r, pAp)
            if keep_all or i in kept:
                iterates[i] = unwrap(x)
            if i % check and i < max_iter:
                continue
        host, pending = _read(pending), []  # the check: one transfer
        if b_norm is None:
            b_norm, host = math.sqrt(max(host[0], 0.0)), host[1:]
        first = i - len(host) // 3 + 1
        for j, r2, phi_j, pAp_j in zip(
            range(first, i + 1), host[0::3], host[1::3], host[2::3], strict=True
        ):
            result.residual_norms.append(math.sqrt(r2) if r2 >= 0 else math.nan)
            result.values.append(phi_j)
            reason = _stop(j, r2, phi_j, pAp_j, result.values, tol * b_norm, progress_tol)
            if reason and result.reason == "max_iter":
                result.reason = reason
        result.iterations = i
        if result.reason != "max_iter" or i >= max_iter:
            break
    result.x, result.iterates = unwrap(x), iterates
    result.converged = result.reason in ("tolerance", "progress")
    return result


def _stop(
    i: int, r2: float, phi: float, pAp: float, values: list[float], bound: float, progress: Any
) -> str:
    """Why CG stops at iteration i ("" if it goes on); host floats only."""
    if not (math.isfinite(r2) and math.isfinite(phi) and math.isfinite(pAp)):
        return "not finite"
    if math.sqrt(max(r2, 0.0)) <= bound:
        return "tolerance"
    if pAp <= 0:
        return "nonpositive curvature"
    if progress is not None:
        k = max(10, i // 10)
        if i > k and phi < 0 and (phi - values[i - k]) / phi < k * progress:
            return "progress"
    return ""


# ----------------------------------------------------------------------------- Lanczos


class LanczosResult(NamedTuple):
    """``Qᵀ A Q = T`` with T tridiagonal: ``alpha`` (m,) its diagonal, ``beta`` (m−1,) its
    off-diagonal, ``basis`` Q as rows (m, p), orthonormal. Backend arrays."""

    alpha: Any
    beta: Any
    basis: Any

    def tridiagonal(self) -> Any:
        """T (m, m)."""
        T = xp.diag(self.alpha)
        if self.beta.shape[0]:
            T = T + xp.diag(self.beta, 1) + xp.diag(self.beta, -1)
        return T

    def ritz(self) -> tuple[Any, Any]:
        """Ritz values θ (m,), ascending, and the eigenvectors S (m, m) of T (columns)."""
        return xp.linalg.eigh(self.tridiagonal())


def lanczos(
    matvec: Callable[[Any], Any],
    dim: int | Sequence[Any],
    steps: int,
    rng: Any = None,
    v0: Any = None,
) -> LanczosResult:
    """m = min(steps, p) Lanczos steps on symmetric A, with full reorthogonalisation.

    ``βⱼ qⱼ₊₁ = A qⱼ − αⱼ qⱼ − βⱼ₋₁ qⱼ₋₁`` with ``αⱼ = qⱼᵀ A qⱼ``; the new vector is then
    orthogonalised against every earlier qᵢ (one classical Gram–Schmidt pass, and a second one
    when the first cancelled more than half of its norm: "twice is enough"), so Q stays
    orthonormal to rounding. If βⱼ vanishes (an invariant subspace: A of low rank, or
    m = p), the next qⱼ₊₁ is a random vector orthogonal to Q and βⱼ = 0 (T is then block
    diagonal, still Qᵀ A Q).

    Parameters
    ----------
    matvec : callable
        ``A v``: on arrays (p,) if ``dim`` is an int; on lists of arrays shaped like ``dim``
        if ``dim`` is a list of arrays or Tensors (the parameters, say).
    dim : int or list
        p, or arrays whose shapes (and dtype) define the vectors.
    steps : int
        m ≥ 1, products with A.
    rng : generator or seed, optional
        For the random start q₁ (standard normal, normalised) and any restart.
    v0 : array (p,), optional
        The start instead of a random one (flat).

    Host transfers: one per step (βⱼ, its norm before the pass and ‖A qⱼ‖ together), and one
    more for a second pass.
    """
    if isinstance(dim, int):
        p, dtype, like = dim, xp.dtype(get_default_dtype()), None
        flat_mv = matvec
    else:
        like = list(dim)
        p, dtype = sum(int(a.size) for a in like), D.primal(_data(like[0])).dtype
        flat_mv = lambda q: flatten(matvec(unflatten(q, like)))  # noqa: E731
    m = min(int(steps), p)
    if m < 1:
        raise ValueError(f"lanczos: steps must be ≥ 1, got {steps!r}")
    rng = _generator(rng)
    eps = float(xp.finfo(dtype).eps)
    Q = xp.empty((m, p), dtype=dtype)  # row j is written before it is read
    v = rng.standard_normal((p,)).astype(dtype) if v0 is None else xp.asarray(v0, dtype=dtype)
    Q[0] = v / xp.sqrt(xp.vdot(v, v))
    alphas, betas, norm_A = [], [], 0.0
    for j in range(m):
        w = flat_mv(Q[j])
        alphas.append(xp.vdot(Q[j], w))
        if j == m - 1:
            break
        Aq = xp.sqrt(xp.vdot(w, w))
        w = w - alphas[j] * Q[j] - (betas[j - 1] * Q[j - 1] if j else 0.0)  # three-term step
        before = xp.sqrt(xp.vdot(w, w))
        V = Q[: j + 1]
        w = w - V.T @ (V @ w)  # full reorthogonalisation: one classical Gram–Schmidt pass
        beta, norm_before, norm_Aq = _read([xp.sqrt(xp.vdot(w, w)), before, Aq])
        if beta < math.sqrt(0.5) * norm_before:  # much cancelled: a second pass (DGKS)
            w = w - V.T @ (V @ w)
            beta = _read([xp.sqrt(xp.vdot(w, w))])[0]
        norm_A = max(norm_A, norm_Aq)
        if beta <= 10 * eps * max(norm_A, 1e-300) * math.sqrt(p):  # breakdown: restart
            w = rng.standard_normal((p,)).astype(dtype)
            for _ in range(2):
                w = w - V.T @ (V @ w)
            Q[j + 1] = w / xp.sqrt(xp.vdot(w, w))
            betas.append(0.0)
        else:
            Q[j + 1] = w / beta
            betas.append(beta)
    alpha = xp.stack([xp.asarray(a) for a in alphas]).astype(dtype)
    beta = xp.asarray(betas, dtype=dtype) if betas else xp.zeros((0,), dtype=dtype)
    return LanczosResult(alpha, beta, Q)


def _data(a: Any) -> Any:
    return a.data if isinstance(a, Tensor) else a


def top_eigenvalues(
    closure: Callable[[], Tensor] | None,
    params: Sequence[Tensor],
    k: int = 1,
    curvature: Any = "hessian",
    *,
    steps: int | None = None,
    rng: Any = None,
    which: str = "largest",
    model: Any = None,
    loss_fn: Any = None,
    x: Any = None,
) -> tuple[Any, Vector]:
    """The k largest (or smallest) eigenvalues of the Hessian or GGN, and their eigenvectors.

    Ritz pairs of ``lanczos`` with ``steps`` products (default ``min(p, max(4k, 50))``); the
    extreme ones converge first, to rounding once ``steps`` is large enough (all of them at
    ``steps = p``).

    Parameters
    ----------
    closure, params, curvature, model, loss_fn, x :
        As for ``curvature_operator`` (``"ggn"`` needs model, loss_fn and x).
    k : int
        How many.
    which : {"largest", "smallest"}
        Algebraically largest (descending) or smallest (ascending).

    Returns
    -------
    eigenvalues : array (k,)
    eigenvectors : list of arrays
        Shaped ``(k,) + p.shape`` per parameter: ``eigenvectors[i][j]`` belongs to value j.
    """
    if which not in ("largest", "smallest"):
        raise ValueError(f"top_eigenvalues: which must be 'largest' or 'smallest', got {which!r}")
    op = curvature_operator(closure, params, curvature, model, loss_fn, x)
    p = sum(int(q.size) for q in params)
    if not 1 <= int(k) <= p:
        raise ValueError(f"top_eigenvalues: k must lie in [1, {p}], got {k!r}")
    steps = min(p, max(4 * int(k), 50)) if steps is None else int(steps)
    result = lanczos(lambda vs: op(vs), params, max(steps, int(k)), rng)
    theta, S = result.ritz()
    m = theta.shape[0]
    order = xp.arange(m - 1, m - 1 - k, -1) if which == "largest" else xp.arange(k)
    vectors = S[:, order].T @ result.basis  # Ritz vectors as rows (k, p)
    return theta[order], unflatten(vectors, params)
