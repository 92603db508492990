"""Finite-difference utilities shared by the test-suite (float64).

Everything here works on *host* arrays (NumPy) and plain functions of a list of arrays, so it
checks the engine without using it. Two adapters turn a tinycurv closure over leaf tensors into
such functions (``loss_function``, ``grad_function``).

Central differences and their accuracy in float64, for a smooth function whose values and
derivatives are of order one:

* ``fd_grad`` and ``fd_jvp`` (ε = 1e-6): truncation error ~ ε²·f‴ ≈ 1e-12, rounding error
  ~ 1e-16·|f| / ε ≈ 1e-10. Compare with a **relative tolerance of 1e-7** (``GRAD_RTOL``).
* ``fd_hvp`` (ε = 1e-5, differences of exact gradients): truncation ~ ε² ≈ 1e-10, rounding
  ~ 1e-16·|∇f| / ε ≈ 1e-11. Compare with a **relative tolerance of 1e-6** (``HVP_RTOL``).

"Relative" means ``rel_err``: the largest absolute difference over all arrays divided by the
largest absolute entry of the reference, so that entries near zero do not blow up the ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import tinycurv as tc
from tinycurv.backend import asarray
from tinycurv.tensor import Tensor

GRAD_EPS, GRAD_RTOL = 1e-6, 1e-7
JVP_EPS, JVP_RTOL = 1e-6, 1e-7
HVP_EPS, HVP_RTOL = 1e-5, 1e-6

Arrays = Sequence[np.ndarray]
ScalarFn = Callable[[list[np.ndarray]], float]
GradFn = Callable[[list[np.ndarray]], list[np.ndarray]]


def _host(arrays: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(tc.asnumpy(a), dtype=np.float64) for a in arrays]


def rel_err(got: Sequence[Any], want: Sequence[Any]) -> float:
    """``max |got − want| / max |want|`` over two lists of arrays (or two arrays).

    Returns 0 when both are exactly zero and ``inf`` when only ``want`` is.
    """
    if not isinstance(got, list | tuple):
        got, want = [got], [want]
    got, want = _host(got), _host(want)
    if len(got) != len(want):
        raise ValueError(f"rel_err: {len(got)} arrays against {len(want)}")
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape:
            raise ValueError(f"rel_err: shape {g.shape} against {w.shape}")
    diff = max(
        (float(np.max(np.abs(g - w), initial=0.0)) for g, w in zip(got, want, strict=True)),
        default=0.0,
    )
    scale = max((float(np.max(np.abs(w), initial=0.0)) for w in want), default=0.0)
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def fd_grad(f: ScalarFn, arrays: Arrays, eps: float = GRAD_EPS) -> list[np.ndarray]:
    """Gradient of the scalar ``f(arrays)`` by central differences, entry by entry.

    ``(f(x + ε eᵢ) − f(x − ε eᵢ)) / 2ε`` for every entry i of every array: 2·(total size)
    evaluations. Agrees with an exact float64 gradient to relative ``GRAD_RTOL`` = 1e-7.

    Parameters
    ----------
    f : callable
        Maps a list of host arrays (shaped like ``arrays``) to a float.
    arrays : list of arrays
        The point; not modified.
    eps : float
        The step.

    Returns
    -------
    list of numpy.ndarray
        Shaped like ``arrays``.
    """
    point = _host(arrays)
    grads = []
    for a in point:
        g = np.zeros(a.size)
        flat = a.reshape(-1)
        for i in range(a.size):
            old = flat[i]
            flat[i] = old + eps
            up = float(f(point))
            flat[i] = old - eps
            down = float(f(point))
            flat[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g.reshape(a.shape))
    return grads


def fd_jvp(f: ScalarFn, arrays: Arrays, tangents: Arrays, eps: float = JVP_EPS) -> float:
    """Directional derivative ``(f(x + εv) − f(x − εv)) / 2ε`` of the scalar ``f`` along ``v``.

    Agrees with an exact float64 JVP to relative 1e-7 (``JVP_RTOL``) for ``‖v‖`` of order one.
    """
    point, v = _host(arrays), _host(tangents)
    up = float(f([a + eps * t for a, t in zip(point, v, strict=True)]))
    down = float(f([a - eps * t for a, t in zip(point, v, strict=True)]))
    return (up - down) / (2 * eps)


def fd_hvp(
    grad_fn: GradFn, arrays: Arrays, vectors: Arrays, eps: float = HVP_EPS
) -> list[np.ndarray]:
    """Hessian-vector product as the central difference of an exact gradient along ``v``.

    ``(∇f(x + εv) − ∇f(x − εv)) / 2ε``. Agrees with an exact float64 HVP to relative
    ``HVP_RTOL`` = 1e-6 for ``‖v‖`` of order one.

    Parameters
    ----------
    grad_fn : callable
        Maps a list of host arrays to the list of gradient arrays (e.g. ``grad_function``).
    arrays, vectors : lists of arrays
        The point and the direction, shaped alike.
    """
    point, v = _host(arrays), _host(vectors)
    up = _host(grad_fn([a + eps * t for a, t in zip(point, v, strict=True)]))
    down = _host(grad_fn([a - eps * t for a, t in zip(point, v, strict=True)]))
    return [(a - b) / (2 * eps) for a, b in zip(up, down, strict=True)]


def fd_hessian(grad_fn: GradFn, arrays: Arrays, eps: float = HVP_EPS) -> np.ndarray:
    """Dense Hessian (flattened parameters, row-major, arrays in order) by ``fd_hvp`` columns."""
    point = _host(arrays)
    sizes = [a.size for a in point]
    columns = []
    for j in range(sum(sizes)):
        e = np.zeros(sum(sizes))
        e[j] = 1.0
        columns.append(_flat(fd_hvp(grad_fn, point, _unflat(e, point), eps)))
    return np.stack(columns, axis=1)


# ----------------------------------------------------------------------------- adapters


def _set(params: Sequence[Tensor], arrays: Arrays) -> list[Any]:
    saved = [p.data for p in params]
    for p, a in zip(params, arrays, strict=True):
        p.data = asarray(np.asarray(a), dtype=tc.asnumpy(p.data).dtype)
    return saved


def loss_function(closure: Callable[[], Tensor], params: Sequence[Tensor]) -> ScalarFn:
    """``f(arrays)``: the value of ``closure()`` with the parameters' data set to ``arrays``.

    The parameters' data are restored after each call; no tape is recorded.
    """

    def f(arrays: list[np.ndarray]) -> float:
        saved = _set(params, arrays)
        try:
            with tc.no_grad():
                return closure().item()
        finally:
            for p, s in zip(params, saved, strict=True):
                p.data = s

    return f


def grad_function(closure: Callable[[], Tensor], params: Sequence[Tensor]) -> GradFn:
    """``g(arrays)``: ``tinycurv.grad(closure, params)`` at the parameters' data ``arrays``."""

    def g(arrays: list[np.ndarray]) -> list[np.ndarray]:
        saved = _set(params, arrays)
        try:
            return _host(tc.grad(closure, params))
        finally:
            for p, s in zip(params, saved, strict=True):
                p.data = s

    return g


def data_of(params: Sequence[Tensor]) -> list[np.ndarray]:
    """The parameters' current data as host float64 arrays."""
    return _host([p.data for p in params])


def random_like(
    params: Sequence[Tensor], rng: np.random.Generator, k: int | None = None
) -> list[Any]:
    """Standard-normal backend arrays shaped like ``params`` (with a leading axis of ``k``)."""
    lead = () if k is None else (k,)
    return [asarray(rng.standard_normal(lead + tuple(p.shape))) for p in params]


def flatten(arrays: Sequence[Any]) -> np.ndarray:
    """Concatenate arrays (host copies, row-major) into one vector."""
    return _flat(_host(arrays))


def hessian_from_hvps(closure: Callable[[], Tensor], params: Sequence[Tensor]) -> np.ndarray:
    """Dense Hessian assembled from ``tinycurv.hvp`` with unit vectors (one batched call).

    Rows and columns follow ``flatten`` of the parameters.
    """
    point = data_of(params)
    n = sum(a.size for a in point)
    eye = np.eye(n)
    vectors, start = [], 0
    for a in point:
        vectors.append(asarray(eye[:, start : start + a.size].reshape((n,) + a.shape)))
        start += a.size
    hv = _host(tc.hvp(closure, params, vectors, batched=True))
    return np.concatenate([h.reshape(n, -1) for h in hv], axis=1).T  # column j = H e_j


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)


def _unflat(vec: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    out, start = [], 0
    for a in like:
        out.append(vec[start : start + a.size].reshape(a.shape))
        start += a.size
    return out
