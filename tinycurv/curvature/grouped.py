"""The GroupedNewton summary ``(g_bar, H_bar, D)`` of the loss along a direction, matrix-free.

P. Wolinski, "Adapting Newton's method to neural networks through a summary of higher-order
derivatives". The parameters are split into S groups; group s moves along ``u_s`` (``u``
restricted to the group) by ``η_s``: θ' = θ − Σ_s η_s u_s. Along η the loss is summarised by::

    g_bar_s  = ⟨u_s, g⟩                              (S,)
    H_bar_st = ⟨u_s, H u_t⟩                          (S, S)
    D_s      = φ_s'''(0),  φ_s(t) = L(θ + t u_s)     (S,)

so that L(θ − Σ η_s u_s) ≈ L − g_barᵀη + ½ ηᵀ H_bar η − (1/6) Σ_s D_s η_s³. ``g_bar`` and
``H_bar`` come from one batched forward-over-reverse sweep (k = S directions), ``D`` from
``taylor`` with only the group's parameters lifted to duals. No Hessian is formed. Details and
the comparison with the reference's double-backward: docs/grouped_newton.md §1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tinycurv.backend import asarray, xp
from tinycurv.functional import taylor, value_grad_and_hvp
from tinycurv.tensor import Tensor

__all__ = ["check_groups", "grouped_gradient_and_hessian", "grouped_summary", "grouped_third_order"]

Closure = Callable[[], Tensor]
Groups = list[list[int]]


def check_groups(groups: Sequence[Sequence[int]] | None, n_params: int) -> Groups:
    """Validate a partition of the parameter indices ``0 … n_params − 1``; return it as lists.

    Parameters
    ----------
    groups : list of lists of int, or None
        Each inner list holds the indices (into ``params``) of one group. ``None`` gives the
        canonical partition: one group per parameter tensor, ``[[0], [1], …]``.
    n_params : int
        The number of parameter tensors.

    Returns
    -------
    list of lists of int
        The groups, in the given order (group s is entry s).

    Raises
    ------
    ValueError
        If a group is empty, an index is not an integer, is out of range or appears twice, or
        an index is missing (the groups must partition the indices exactly).
    """
    if groups is None:
        return [[i] for i in range(n_params)]
    if isinstance(groups, str | bytes) or not isinstance(groups, Sequence):
        raise ValueError(f"groups must be a list of lists of parameter indices, got {groups!r}")
    out: Groups = []
    seen: dict[int, int] = {}
    for s, group in enumerate(groups):
        if isinstance(group, str | bytes) or not isinstance(group, Sequence):
            raise ValueError(f"groups[{s}] must be a list of parameter indices, got {group!r}")
        if len(group) == 0:
            raise ValueError(f"groups[{s}] is empty: every group needs at least one parameter")
        members = []
        for i in group:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise ValueError(f"groups[{s}] holds {i!r}, which is not an integer index")
            i = int(i)
            if not 0 <= i < n_params:
                raise ValueError(
                    f"groups[{s}] holds index {i}, out of range for {n_params} parameters"
                )
            if i in seen:
                raise ValueError(f"parameter {i} is in groups[{seen[i]}] and groups[{s}]")
            seen[i] = s
            members.append(i)
        out.append(members)
    missing = sorted(set(range(n_params)) - set(seen))
    if missing:
        raise ValueError(
            f"parameters {missing} are in no group: groups must partition 0…{n_params - 1}"
        )
    return out


def _check_direction(params: Sequence[Tensor], direction: Sequence[Any]) -> None:
    if len(direction) != len(params):
        raise ValueError(f"direction has {len(direction)} arrays for {len(params)} parameters")
    for i, (p, u) in enumerate(zip(params, direction, strict=True)):
        if tuple(getattr(u, "shape", ())) != tuple(p.shape):
            raise ValueError(
                f"direction[{i}] has shape {tuple(getattr(u, 'shape', ()))}, "
                f"expected {tuple(p.shape)}"
            )


def _vdot(a: Any, b: Any) -> Any:
    """⟨a, b⟩ over all entries, as a 0-d backend array (no host transfer)."""
    return xp.sum(a * b)


def grouped_gradient_and_hessian(
    closure: Closure,
    params: Sequence[Tensor],
    direction: Sequence[Any],
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple[Any, Any]:
    """``g_bar = Pᵀ diag(u) g`` and ``H_bar = Pᵀ diag(u) H diag(u) P`` from one sweep on duals.

    Parameters
    ----------
    closure : callable
        ``closure()`` returns the scalar loss as a Tensor computed from ``params``.
    params : list of Tensor
        The parameters (typically ``model.parameters()``).
    direction : list of arrays
        ``u``, one array shaped like each parameter.
    groups : list of lists of int, optional
        A partition of the parameter indices (None: one group per parameter tensor).

    Returns
    -------
    g_bar : backend array, shape (S,)
    H_bar : backend array, shape (S, S), symmetric
    """
    groups = check_groups(groups, len(params))
    _check_direction(params, direction)
    S = len(groups)
    # the batched tangent: slice s of parameter i's tangent is u_i if i is in group s, else 0
    owner = _group_of(groups, len(params))
    tangents = []
    for i, (p, u) in enumerate(zip(params, direction, strict=True)):
        v = xp.zeros((S,) + tuple(p.shape), dtype=p.data.dtype)
        v[owner[i]] = xp.asarray(u)  # a host direction is moved to the backend
        tangents.append(v)
    _, grads, hvps = value_grad_and_hvp(closure, params, tangents, batched=True)

    g_cols, h_cols = [], []
    for group in groups:
        # App. C/D notation: g_bar_s = ⟨u_s, g⟩, H_bar[:, s] = (⟨u_s, H u_t⟩)_t
        g_cols.append(sum(_vdot(direction[i], grads[i]) for i in group))
        h_cols.append(
            sum(xp.reshape(hvps[i], (S, -1)) @ xp.reshape(direction[i], (-1,)) for i in group)
        )
    g_bar = xp.stack(g_cols)
    M = xp.stack(h_cols, axis=1)  # M[t, s] = ⟨u_s, H u_t⟩
    H_bar = 0.5 * (M + M.T)  # exact H_bar is symmetric; symmetrise the rounding
    return g_bar, H_bar


def grouped_third_order(
    closure: Closure,
    params: Sequence[Tensor],
    direction: Sequence[Any],
    groups: Sequence[Sequence[int]] | None = None,
) -> Any:
    """``D_s = d³/dt³ L(θ + t·u_s)`` at t = 0 for every group s (nested duals, forward only).

    Only the parameters of group s are lifted to duals for ``D_s``; the others stay plain arrays
    (their entries of ``u_s`` are zero), so the layers before the group run at primal cost.

    Returns
    -------
    D : backend array, shape (S,)
    """
    groups = check_groups(groups, len(params))
    _check_direction(params, direction)
    values = []
    for group in groups:
        sub_params = [params[i] for i in group]
        sub_dir = [direction[i] for i in group]
        values.append(taylor(closure, sub_params, sub_dir, order=3)[3])  # φ_s'''(0)
    return asarray(values, dtype=params[0].data.dtype)


def grouped_summary(
    closure: Closure,
    params: Sequence[Tensor],
    direction: Sequence[Any],
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple[Any, Any, Any]:
    """The GroupedNewton summary ``(g_bar, H_bar, D)`` of the loss along ``direction``.

    With ``u`` the direction, ``P`` the partition matrix and ``u_s`` the part of ``u`` in
    group s::

        g_bar = Pᵀ diag(u) g                       g_bar_s  = ⟨u_s, g⟩
        H_bar = Pᵀ diag(u) H diag(u) P             H_bar_st = ⟨u_s, H u_t⟩
        D_s   = d³/dt³ L(θ + t·u_s) at t = 0

    Matrix-free: ``g_bar`` and ``H_bar`` from one forward+backward sweep on duals carrying the
    S group directions as one batched tangent; ``D`` from S forward sweeps on nested duals,
    each lifting only one group's parameters (see the module docstring).

    Parameters
    ----------
    closure : callable
        ``closure()`` returns the scalar loss as a Tensor computed from ``params``.
    params : list of Tensor
        The parameters (typically ``model.parameters()``).
    direction : list of arrays
        ``u``, one array shaped like each parameter.
    groups : list of lists of int, optional
        A partition of the parameter indices into S groups (Appendix G's coarser partitions,
        e.g. ``[[0, 2, 4], [1, 3, 5]]`` for "all weights" and "all biases"). None: the
        canonical partition, one group per entry of ``params`` (every weight tensor and every
        bias vector its own group).

    Returns
    -------
    g_bar : backend array, shape (S,)
    H_bar : backend array, shape (S, S), symmetric
    D : backend array, shape (S,)

    Raises
    ------
    ValueError
        If ``groups`` does not partition the indices of ``params``, or ``direction`` does not
        match ``params`` in number and shapes.
    """
    groups = check_groups(groups, len(params))
    g_bar, H_bar = grouped_gradient_and_hessian(closure, params, direction, groups)
    D = grouped_third_order(closure, params, direction, groups)
    return g_bar, H_bar, D


def _group_of(groups: Groups, n_params: int) -> list[int]:
    """``s`` for every parameter index: the group it belongs to."""
    owner = [0] * n_params
    for s, group in enumerate(groups):
        for i in group:
            owner[i] = s
    return owner
