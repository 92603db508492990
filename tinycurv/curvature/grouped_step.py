"""The cubic-regularised GroupedNewton step: the η that minimises the cubic model.

P. Wolinski, "Adapting Newton's method to neural networks through a summary of higher-order
derivatives", Appendix D. From the summary ``g_bar`` (S,), ``H_bar`` (S, S), ``D`` (S,)::

    m(η) = −g_barᵀη + ½ ηᵀ H_bar η + (lam_int / 6) · ‖diag(d) η‖³,   d = |D|^(1/3)
    η = (H_bar + (lam_int / 2) · r · diag(d)²)⁻¹ g_bar,   r = ‖diag(d) η‖   (fixed point)

the global minimiser when that matrix is also ⪰ 0: one scalar equation in r, solved by
``scipy.optimize.brentq`` in the eigenbasis of diag(d)⁻¹ H_bar diag(d)⁻¹ (zeros of D by a Schur
complement, the hard case as in Moré & Sorensen 1983). A failed solve (an unbounded model, a
failed root-finder) returns η = 0 with a ``GroupedStepWarning``, as the reference does.
Host-side by design: S ≈ 10, so NumPy/SciPy on the host; backend arrays are copied with
``asnumpy``. Derivation: docs/grouped_newton.md §2.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.linalg
from scipy import optimize

from tinycurv.backend import asnumpy

__all__ = ["GroupedStepWarning", "cubic_model", "grouped_newton_step"]

# Tests inject a root-finder failure by monkeypatching either this name or scipy.optimize.brentq.
brentq = optimize.brentq
_SCIPY_BRENTQ = optimize.brentq

_RTOL = 4 * np.finfo(np.float64).eps  # the smallest relative tolerance brentq accepts
_XTOL = 1e-300  # absolute tolerance: roots may sit a relative 1e-17 above the singular point
_MAXITER = 500
_FIXED_POINT_RTOL = 1e-8  # |‖y‖ − r| ≤ this · r, or the root is rejected
_SYMMETRY_RTOL = 1e-6  # H_bar is symmetrised after this check (float32 summaries pass it)


class GroupedStepWarning(UserWarning, RuntimeWarning):
    """The cubic step fell back to ``η = 0`` (unbounded model or failed root-finding)."""


def _root_finder() -> Any:
    """``brentq``, honouring a monkeypatch of this module's name or of ``scipy.optimize``."""
    return brentq if brentq is not _SCIPY_BRENTQ else optimize.brentq


def _as_float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a host float64 array; ValueError for complex or non-numeric data."""
    arr = asnumpy(x)
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _validate(
    g_bar: Any, H_bar: Any, D: Any, lam_int: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Host float64 copies of the inputs, with shapes, finiteness and symmetry checked."""
    g_bar = _as_float_array(g_bar, "g_bar")
    H_bar = _as_float_array(H_bar, "H_bar")
    D = _as_float_array(D, "D")
    lam = _as_float_array(lam_int, "lam_int")
    if g_bar.ndim != 1 or g_bar.shape[0] == 0:
        raise ValueError(f"g_bar must have shape (S,) with S >= 1, got {g_bar.shape}")
    S = g_bar.shape[0]
    if H_bar.shape != (S, S):
        raise ValueError(f"H_bar must have shape ({S}, {S}) to match g_bar, got {H_bar.shape}")
    if D.shape != (S,):
        raise ValueError(f"D must have shape ({S},) to match g_bar, got {D.shape}")
    if lam.ndim != 0:
        raise ValueError(f"lam_int must be a scalar, got shape {lam.shape}")
    for name, arr in (("g_bar", g_bar), ("H_bar", H_bar), ("D", D), ("lam_int", lam)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf")
    lam_int = float(lam)
    if lam_int < 0:
        raise ValueError(f"lam_int must be >= 0, got {lam_int}")
    scale = float(np.max(np.abs(H_bar)))
    if float(np.max(np.abs(H_bar - H_bar.T))) > _SYMMETRY_RTOL * scale:
        raise ValueError("H_bar must be symmetric")
    return g_bar, 0.5 * (H_bar + H_bar.T), D, lam_int


def cubic_model(eta: Any, g_bar: Any, H_bar: Any, D: Any, lam_int: float) -> float:
    """The cubic model ``m(η) = −g_barᵀη + ½ηᵀH_barη + (lam_int/6)‖diag(d)η‖³`` (Appendix D).

    Parameters
    ----------
    eta, g_bar : array_like, shape (S,)
        The step and the gradient summary.
    H_bar : array_like, shape (S, S)
        The Hessian summary.
    D : array_like, shape (S,)
        The diagonal of the order-3 summary; ``d = |D|^(1/3)``.
    lam_int : float
        The internal damping ``lam_int >= 0``.

    Returns
    -------
    float
        The model's value, the predicted change of the loss for the step ``η``.
    """
    eta = _as_float_array(eta, "eta")
    g_bar, H_bar, D = (
        _as_float_array(a, n) for a, n in ((g_bar, "g_bar"), (H_bar, "H_bar"), (D, "D"))
    )
    d = np.cbrt(np.abs(D))
    r = float(np.linalg.norm(d * eta))
    # App. D: the anisotropic cubic model m(η)
    return float(-g_bar @ eta + 0.5 * eta @ H_bar @ eta + lam_int / 6.0 * r**3)


class _Fallback(Exception):
    """Internal: no step can be returned; carries the case name and the reason."""

    def __init__(self, case: str, reason: str) -> None:
        super().__init__(reason)
        self.case = case
        self.reason = reason


def _newton(H_bar: np.ndarray, g_bar: np.ndarray) -> np.ndarray:
    """``H_bar⁻¹ g_bar`` by Cholesky; LinAlgError with a clear message if H_bar is not PD."""
    try:
        factor = scipy.linalg.cho_factor(H_bar)
    except np.linalg.LinAlgError as err:
        raise np.linalg.LinAlgError(
            "grouped_newton_step with lam_int = 0 is the Newton step H_bar⁻¹ g_bar, which needs "
            "H_bar positive definite, and H_bar is not (the model has no minimiser); "
            "use lam_int > 0"
        ) from err
    return scipy.linalg.cho_solve(factor, g_bar)


def _secular_solve(kappa: np.ndarray, b: np.ndarray, c: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Solve ``y_j = b_j / (κ_j + c r)``, ``r = ‖y‖``, for the minimiser (eigenbasis of K).

    Returns ``y`` and the info dict (``r``, ``r0``, ``case``, ``bracket``); raises
    ``_Fallback`` if the root-finder fails.
    """
    shift = min(float(kappa[0]), 0.0)
    # App. D: lower end of the bracket, 0 if H_bar ≻ 0, else where H_bar + c r diag(d)² is singular
    r0 = -shift / c if shift < 0 else 0.0
    mu = kappa - shift  # ≥ 0; mu[0] == 0 exactly when H_bar is not PD, so κ_j + c r = mu_j + c δ

    def y_of(delta: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b == 0.0, 0.0, b / (mu + c * delta))  # App. D: y = (K + c r I)⁻¹ b

    def h(delta: float) -> float:
        return float(np.linalg.norm(y_of(delta))) - (r0 + delta)  # App. D: ‖y(r)‖ − r = 0

    case = "positive_definite" if kappa[0] > 0 else "indefinite"
    h0 = h(0.0)  # +inf when b has a component on the null space of K + c r0 I
    if h0 <= 0.0:
        # r = r0: b = 0 with H_bar ≻ 0 (η = 0), or the hard case: complete y with the
        # eigenvector of κ_1 (mu[0] == 0 and b[0] == 0 here) so that ‖y‖ = r0.
        y = y_of(0.0)
        tau_sq = r0**2 - float(y @ y)
        if tau_sq > 0.0:
            y[0] = math.sqrt(tau_sq)
            case = "hard"
        return y, {"r": r0, "r0": r0, "case": case, "bracket": None}

    norm_b = float(np.linalg.norm(b))
    delta_hi = math.sqrt(norm_b / c)  # ‖y(δ)‖ ≤ ‖b‖ / (c δ) = δ there, so h(delta_hi) ≤ −r0 ≤ 0
    for _ in range(64):
        if h(delta_hi) <= 0.0:
            break
        delta_hi *= 2.0
    else:
        raise _Fallback("failed", "no upper end of the bracket for r was found")
    if math.isfinite(h0):
        delta_lo = 0.0
    else:
        # ‖y(δ)‖ ≥ ‖b_null‖ / (c δ) > r0 + delta_hi ≥ r0 + δ for δ below this: h(delta_lo) > 0
        b_null = float(np.linalg.norm(b[mu == 0.0]))
        delta_lo = 0.5 * b_null / (c * (r0 + delta_hi))
        if not (delta_lo > 0.0 and h(delta_lo) > 0.0):
            raise _Fallback("failed", "the root for r is too close to the singular point")

    try:
        delta = float(
            _root_finder()(h, delta_lo, delta_hi, xtol=_XTOL, rtol=_RTOL, maxiter=_MAXITER)
        )
    except (RuntimeError, ValueError) as err:
        raise _Fallback("failed", f"brentq did not find r ({err})") from err
    y = y_of(delta)
    r = r0 + delta
    if not (
        delta_lo <= delta <= delta_hi
        and np.all(np.isfinite(y))
        and abs(float(np.linalg.norm(y)) - r) <= _FIXED_POINT_RTOL * r
    ):
        raise _Fallback("failed", f"brentq returned r = {r!r}, which is not a fixed point")
    return y, {"r": r, "r0": r0, "case": case, "bracket": (r0 + delta_lo, r0 + delta_hi)}


def _solve(
    g_bar: np.ndarray, H_bar: np.ndarray, d: np.ndarray, lam_int: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """The minimiser and its info dict; raises ``_Fallback`` when there is none to return."""
    S = g_bar.shape[0]
    Z = d == 0.0  # directions with no cubic term: diag(d) singular there
    R = ~Z
    if lam_int == 0.0:
        eta = _newton(H_bar, g_bar)  # App. D with lam_int = 0: the Newton step H_bar⁻¹ g_bar
        r = float(np.linalg.norm(d * eta))
        return eta, {"r": r, "r0": 0.0, "case": "newton", "bracket": None}

    c = 0.5 * lam_int
    factor_ZZ = H_ZR = g_Z = None
    if np.any(Z):
        try:
            factor_ZZ = scipy.linalg.cho_factor(H_bar[np.ix_(Z, Z)])
        except np.linalg.LinAlgError:
            raise _Fallback(
                "unbounded",
                "the cubic model is unbounded below: H_bar is not positive definite on the "
                f"directions where D = 0 (groups {np.flatnonzero(Z).tolist()}), which carry no "
                "cubic term, so H_bar + (lam_int/2) r diag(d)² is never positive definite (if only "
                "semi-definite there, the minimiser is not unique)",
            ) from None
    if not np.any(R):
        eta = scipy.linalg.cho_solve(factor_ZZ, g_bar)  # D = 0: no cubic term, Newton step
        return eta, {"r": 0.0, "r0": 0.0, "case": "newton", "bracket": None}

    # Minimise out the d = 0 block: η_Z = H_ZZ⁻¹ (g_Z − H_ZR η_R) (Schur complement)
    H_RR, g_R, d_R = H_bar[np.ix_(R, R)], g_bar[R], d[R]
    if factor_ZZ is not None:
        H_ZR, g_Z = H_bar[np.ix_(Z, R)], g_bar[Z]
        schur = H_RR - H_ZR.T @ scipy.linalg.cho_solve(factor_ZZ, H_ZR)
        g_hat = g_R - H_ZR.T @ scipy.linalg.cho_solve(factor_ZZ, g_Z)
    else:
        schur, g_hat = H_RR, g_R

    K = schur / np.outer(d_R, d_R)  # App. D: K = diag(d)⁻¹ H_bar diag(d)⁻¹ (on the d ≠ 0 block)
    kappa, Q = np.linalg.eigh(0.5 * (K + K.T))
    b = Q.T @ (g_hat / d_R)  # App. D: diag(d)⁻¹ g_bar in the eigenbasis of K
    y, info = _secular_solve(kappa, b, c)

    eta = np.zeros(S)
    eta[R] = (Q @ y) / d_R  # App. D: η = diag(d)⁻¹ y
    if factor_ZZ is not None:
        eta[Z] = scipy.linalg.cho_solve(factor_ZZ, g_Z - H_ZR @ eta[R])
    if not np.all(np.isfinite(eta)):
        raise _Fallback("failed", "the step is not finite")
    return eta, info


def grouped_newton_step(
    g_bar: Any, H_bar: Any, D: Any, lam_int: float, *, return_info: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """The cubic-regularised GroupedNewton step ``η`` (Appendix D of Wolinski's paper).

    Host-side helper: S is about 10, so this scalar root-finding runs in NumPy/SciPy on the
    host; backend (CuPy) inputs are copied with ``tinycurv.backend.asnumpy``.

    Returns the global minimiser of
    ``m(η) = −g_barᵀη + ½ηᵀH_barη + (lam_int/6)·‖diag(d)η‖³`` with ``d = |D|^(1/3)``, i.e. the
    solution of ``η = (H_bar + (lam_int/2)·r·diag(d)²)⁻¹ g_bar``, ``r = ‖diag(d)η‖``, at which
    ``H_bar + (lam_int/2)·r·diag(d)² ⪰ 0``. The scalar equation in ``r`` is solved by
    ``scipy.optimize.brentq`` on ``[r0, r_hi]``, ``r0 = 0`` if ``H_bar ≻ 0`` and otherwise the
    point where the matrix becomes singular.

    Parameters
    ----------
    g_bar : array_like, shape (S,)
        Gradient summary (NumPy or backend array, or a list).
    H_bar : array_like, shape (S, S)
        Hessian summary, symmetric (up to a relative 1e-6; it is symmetrised).
    D : array_like, shape (S,)
        Diagonal of the order-3 summary; only ``|D|`` matters. Zeros are allowed.
    lam_int : float
        Internal damping ``lam_int >= 0``; 0 gives the Newton step ``H_bar⁻¹ g_bar``.
    return_info : bool, optional
        Also return a dict with ``r`` (the root, ``‖diag(d)η‖``), ``case`` (``"newton"``,
        ``"positive_definite"``, ``"indefinite"``, ``"hard"``, or for the fallback
        ``"unbounded"`` / ``"failed"``), ``converged`` (False for the fallback), ``r0`` (the
        lower end of the search: 0 if ``H_bar ≻ 0``, else the singular point), ``bracket``
        (the ``(r_lo, r_hi)`` handed to brentq — ``r_lo`` is ``r0``, or just above it when
        the function has a pole there — or None when no root-finding was needed) and
        ``message`` (the warning's text, or "").

    Returns
    -------
    eta : numpy.ndarray, shape (S,), float64
        The step (per-group learning rates). The fallback is ``η = 0``, with a warning.
    info : dict
        Only when ``return_info`` is True.

    Raises
    ------
    ValueError
        For wrong shapes, NaN or inf entries, a non-symmetric ``H_bar``, or ``lam_int < 0``.
    numpy.linalg.LinAlgError
        When ``lam_int == 0`` and ``H_bar`` is not positive definite (a subclass of ValueError).

    Warns
    -----
    GroupedStepWarning
        (a UserWarning and RuntimeWarning) when the fallback ``η = 0`` is returned: the model is
        unbounded below (``H_bar`` not positive definite where ``D = 0``, so no finite minimiser
        exists), or the root-finder failed.
    """
    g_bar, H_bar, D, lam_int = _validate(g_bar, H_bar, D, lam_int)
    d = np.cbrt(np.abs(D))  # App. D: d = |D|^(1/3), the sign of D is dropped
    try:
        eta, info = _solve(g_bar, H_bar, d, lam_int)
        info.update(converged=True, message="")
    except _Fallback as fallback:
        message = f"grouped_newton_step: {fallback.reason}; returning the fallback eta = 0"
        warnings.warn(message, GroupedStepWarning, stacklevel=2)
        eta = np.zeros_like(g_bar)
        info = {
            "r": 0.0,
            "r0": None,
            "case": fallback.case,
            "converged": False,
            "bracket": None,
            "message": message,
        }
    return (eta, info) if return_info else eta
