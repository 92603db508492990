"""Cholesky solves for the symmetric positive definite systems of curvature methods.

Damped curvature factors (``A + λI``, ``I_b + a aᵀ/(bλ)``, ...) are symmetric positive definite,
so they are never inverted: they are factored once, ``K = L Lᵀ`` with ``L`` lower triangular,
and each solve ``K X = B`` is two triangular solves, ``L Y = B`` then ``Lᵀ X = Y``.

NumPy has no Cholesky *solve*, so on the NumPy backend both steps call LAPACK through SciPy
(``scipy.linalg.cholesky`` and ``cho_solve``, without their finite checks: potrf is also several
times faster than ``numpy.linalg.cholesky`` in float32); on the CuPy backend the factor comes from
``xp.linalg.cholesky`` and the solves from ``cupyx.scipy.linalg.solve_triangular``. Both are
imported lazily, chosen by ``tinycurv.backend.backend_name()``.

On NumPy, for factors of up to ``SINGLE_THREAD_ROWS`` rows, both SciPy calls run with BLAS
limited to one thread (``threadpoolctl``, when installed): SciPy's OpenBLAS is a thread pool
apart from NumPy's, and on a busy machine its worker threads wait for cores that NumPy's
spinning ones hold. Measured on a loaded 2-core machine right after a 400×400 NumPy product:
the solve with a 60×60 factor and 400 right-hand sides took 32–48 ms, single-threaded 0.4 ms;
with a 401×401 factor and 60 columns 29–37 ms against 1.0–1.3 ms; the 401×401 factorisation
64–180 ms against 1.3–1.4 ms (on an idle machine one thread is up to 2× slower here: 0.2 ms
against 0.1 ms). Larger factors keep all threads, which they can use.

A matrix that is not (numerically) positive definite raises ``LinAlgError`` (NumPy's class;
CuPy re-exports the same one) with a message naming the matrix. On CuPy this check reads the
factorisation's status back from the GPU (one device sync per ``cho_factor``, never per solve);
``cho_factor(..., check=False)`` defers it, and ``check_factors`` then checks many factors with
one sync (K-FAC refactorises two matrices per layer).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

from tinycurv.backend import asnumpy, backend_name, xp

SINGLE_THREAD_ROWS = 512  # NumPy: factors up to this size use one BLAS thread (docstring)


def _solve_triangular() -> Callable[..., Any]:
    """CuPy's ``solve_triangular`` (cupyx)."""
    from cupyx.scipy.linalg import solve_triangular

    return solve_triangular


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (made once), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _single_threaded_blas(rows: int) -> contextlib.AbstractContextManager[Any]:
    """Within this block BLAS uses one thread if ``rows`` is small (and threadpoolctl there)."""
    controller = _blas_controller() if rows <= SINGLE_THREAD_ROWS else None
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


def _not_pd(name: str, shape: tuple[int, ...], why: str) -> Exception:
    """The error for a matrix that cannot be Cholesky-factored."""
    return xp.linalg.LinAlgError(
        f"{name} (shape {shape}) is not positive definite, so its Cholesky factorisation "
        f"failed ({why}); increase the damping or check the inputs for NaN/inf"
    )


def cho_factor(K: Any, name: str = "K", check: bool = True) -> Any:
    """Lower Cholesky factor ``L`` of a symmetric positive definite ``K = L Lᵀ``, shape (p, p).

    With ``check=False`` (CuPy: no device sync) a failed factorisation is not detected here: pass
    the factors to ``check_factors`` afterwards. (On NumPy, SciPy raises on a failed pivot anyway.)

    Raises
    ------
    ValueError
        If ``K`` is not a square matrix.
    LinAlgError
        If ``K`` is not positive definite (or holds NaN/inf); the message names ``name``.
    """
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(K.shape)}")
    try:
        if backend_name() == "cupy":
            import cupyx  # CuPy ignores cuSOLVER failures unless asked to raise (a sync)

            with cupyx.errstate(linalg="raise" if check else "ignore"):
                L = xp.linalg.cholesky(K)
        else:
            from scipy.linalg import cholesky

            with _single_threaded_blas(K.shape[0]):  # see the module docstring
                L = cholesky(K, lower=True, check_finite=False)
    except xp.linalg.LinAlgError as err:
        raise _not_pd(name, tuple(K.shape), str(err)) from err
    # NaN input can slip through the factorisation; a valid factor has a positive diagonal.
    # (bool() reads it back: on CuPy a device sync, once per factorisation.)
    if check and not bool(_valid(L)):
        raise _not_pd(name, tuple(K.shape), "non-positive or NaN pivot")
    return L


def _valid(L: Any) -> Any:
    """A backend boolean (no sync): ``L`` has a finite, positive diagonal.

    A failed potrf leaves its non-positive (or NaN) pivot on the diagonal, as LAPACK specifies,
    and a NaN or inf below the diagonal reaches the diagonal of its row (``L_ii`` subtracts the
    squares of row i), so checking the p diagonal entries suffices.
    """
    d = xp.diagonal(L)
    return xp.all((d > 0) & xp.isfinite(d))


def check_factors(factors: Sequence[Any], names: Sequence[str]) -> None:
    """Raise ``LinAlgError`` naming the first invalid factor; one device sync for all of them."""
    if not factors:
        return
    ok = asnumpy(xp.stack([_valid(L) for L in factors]))  # the one transfer
    for flag, L, name in zip(ok, factors, names, strict=True):
        if not flag:
            raise _not_pd(name, tuple(L.shape), "non-positive or NaN pivot")


def cho_apply(L: Any, B: Any) -> Any:
    """``K⁻¹ B`` from the lower Cholesky factor ``L`` of ``K``; B (p,) or (p, k), same shape out."""
    if B.shape[0] != L.shape[0]:
        raise ValueError(
            f"right-hand side has {B.shape[0]} rows but the factor is {L.shape[0]}×{L.shape[1]}"
        )
    if backend_name() != "cupy":  # LAPACK potrs: both triangular solves in one call
        from scipy.linalg import cho_solve as lapack_cho_solve

        with _single_threaded_blas(L.shape[0]):  # see the module docstring
            return lapack_cho_solve((L, True), B, check_finite=False)
    solve_triangular = _solve_triangular()
    Y = solve_triangular(L, B, lower=True)  # L Y = B
    return solve_triangular(L, Y, lower=True, trans="T")  # Lᵀ X = Y


def cho_solve(K: Any, B: Any, name: str = "K") -> Any:
    """Solve ``K X = B`` for symmetric positive definite ``K`` (p, p); B (p,) or (p, k).

    Raises
    ------
    LinAlgError
        If ``K`` is not positive definite; the message names ``name``.
    """
    return cho_apply(cho_factor(K, name), B)
