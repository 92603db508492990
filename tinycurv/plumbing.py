"""The engine's plumbing: what the five teaching files call but a first reading can skip.

``tinycurv.dual``, ``tinycurv.tensor`` and ``tinycurv.functional`` show the rules of forward
and reverse mode; the code here makes them fast, safe on both backends, and strict about
their arguments:

* ``matmul_fused``, ``add_fresh``: ``dual.matmul``'s product rule in fewer, larger BLAS calls
  and fewer temporaries;
* ``k_first_works``, ``k_index``, ``k_last``, ``k_first``: batched tangents under advanced
  indexing (NumPy moves non-adjacent advanced axes in front of the k axis);
* ``add_at``: the scatter-add of ``index_add`` (``ufunc.at`` or ``cupyx.scatter_add``);
* ``check_matmul``, ``matmul_vectors``: ``ops.matmul``'s checks and 1-D operands;
* ``on_backend``, ``tensor_data``: host data onto the backend, numbers to arrays;
* ``seed_cotangent``, ``own``: where ``backward`` starts; a leaf's ``.grad`` is its own
  writeable memory;
* ``check_params``, ``check_vectors``, ``check_scalar``: the functional API's argument checks
  (non-floating or repeated parameters, wrong shapes, a non-scalar closure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tinycurv import dual as D
from tinycurv.backend import (
    asarray,
    backend_name,
    get_default_dtype,
    is_array,
    is_host_array,
    xp,
)

if TYPE_CHECKING:
    from tinycurv.tensor import Tensor


def matmul_fused(x: Any, dx: Any, y: Any, dy: Any) -> D.Dual | None:
    """``matmul``'s result in fewer, larger BLAS calls for plain 2-D x, y (None: no fast path).

    [dx x]·[y; dy] = dx·y + x·dy where copying costs less than the result (outer-product shapes,
    as the weight gradient gᵀa of a small batch); else [x; dx]·y = [xy; dx·y] (docs/engine.md).
    """
    if (
        dx is None
        or any(isinstance(v, D.Dual) for v in (x, dx, y))
        or not D.ndim(x) == D.ndim(y) == 2
    ):
        return None
    (m, n), q = D.shape(x), D.shape(y)[1]
    if not isinstance(dy, D.Dual) and D.ndim(dx) == D.ndim(dy) == 2 and 2 * n * (m + q) < m * q:
        return D.Dual(x @ y, xp.concatenate([dx, x], axis=1) @ xp.concatenate([y, dy], axis=0))
    if D.ndim(dx) not in (2, 3) or x.dtype != dx.dtype:
        return None
    both = xp.concatenate([x, D.reshape(dx, (-1, n))], axis=0) @ y  # k directions: k·m more rows
    p, t = both[:m], D.reshape(both[m:], D.shape(dx)[:-1] + (q,))
    if dy is not None:
        t += D.matmul(x, dy)  # t is a fresh product: add in place
    return D.Dual(p, t)


def add_fresh(t: Any, t2: Any) -> Any:
    """``t + t2`` for two fresh products, in place in ``t`` when shapes and dtypes agree (saves a
    temporary of the result's size)."""
    if D.is_dual(t) or D.is_dual(t2) or D.shape(t) != D.shape(t2) or t.dtype != t2.dtype:
        return D.add(t, t2)
    t += t2
    return t


def k_first_works(idx: tuple) -> bool:
    """Whether ``(slice(None),) + idx`` indexes a batched tangent as ``idx`` its value: unless
    ``idx`` holds non-adjacent advanced indices, which NumPy moves in front of the k axis."""
    picks = [i for i, j in enumerate(idx) if not (j is None or j is Ellipsis or type(j) is slice)]
    if all(isinstance(idx[i], int) and not isinstance(idx[i], bool) for i in picks):
        return True  # basic indexing only
    return picks[-1] - picks[0] == len(picks) - 1


def k_index(idx: tuple) -> tuple:
    """``idx`` for a tangent whose k axis was moved last (``...`` must not swallow that axis)."""
    return idx + (slice(None),) if any(j is Ellipsis for j in idx) else idx


# a batched tangent's k axis moved last, and back to the front
k_last = lambda t: D.transpose(t, tuple(range(1, D.ndim(t))) + (0,))
k_first = lambda t: D.transpose(t, (D.ndim(t) - 1,) + tuple(range(D.ndim(t) - 1)))


def add_at(z: Any, idx: tuple, y: Any) -> None:
    """``z[idx] += y`` in place, repeated positions adding up."""
    if all(isinstance(i, slice | int) or i is Ellipsis or i is None for i in idx):
        z[idx] += y  # basic indexing: no repeated positions
    elif hasattr(xp, "add") and hasattr(xp.add, "at"):
        xp.add.at(z, idx, y)
    else:  # CuPy without ufunc.at
        import cupyx

        cupyx.scatter_add(z, idx, y)


def check_matmul(x_shape: tuple, w_shape: tuple) -> None:
    """A ValueError unless ``x @ w`` is defined for operands of rank ≥ 1."""
    if not x_shape or not w_shape:
        raise ValueError("matmul: scalar operands are not allowed, use `*`")
    if x_shape[-1] != w_shape[-2 if len(w_shape) > 1 else 0]:
        raise ValueError(f"matmul: shapes {x_shape} and {w_shape} do not align")


def matmul_vectors(x: Tensor, w: Tensor, matmul: Any, reshape: Any) -> Tensor:
    """``x @ w`` with a 1-D operand taken as a row (left) or column (right) vector, as NumPy."""
    check_matmul(x.shape, w.shape)
    xr = reshape(x, (1, x.shape[0])) if x.ndim == 1 else x
    wr = reshape(w, (w.shape[0], 1)) if w.ndim == 1 else w
    out = matmul(xr, wr)
    keep = out.shape[:-2] + (() if x.ndim == 1 else out.shape[-2:-1])
    return reshape(out, keep + (() if w.ndim == 1 else out.shape[-1:]))


def on_backend(i: Any) -> Any:
    """An index array (host or backend) as a backend array; slices, ints, None pass through."""
    return xp.asarray(i) if is_array(i) else i


def tensor_data(data: Any, requires_grad: bool) -> Any:
    """What a ``Tensor`` stores for ``data``: Python numbers and lists become arrays of the
    default dtype (numbers only when they need a gradient), NumPy scalars keep their dtype, and
    a NumPy array given on the CuPy backend moves to the GPU (dtype kept)."""
    if not (D.is_dual(data) or is_array(data) or isinstance(data, float | int)):
        return asarray(data, dtype=getattr(data, "dtype", None))
    if isinstance(data, int | float) and requires_grad:
        return asarray(float(data), dtype=get_default_dtype())
    if backend_name() == "cupy" and is_host_array(data):  # one call and a comparison on NumPy
        return xp.asarray(data)
    return data


def seed_cotangent(y: Tensor, grad: Any) -> Any:
    """The cotangent ``y.backward(grad)`` starts from: ``grad`` checked against ``y.shape``, or
    ones when ``grad`` is None and ``y`` has one element (a ValueError otherwise)."""
    if grad is None:
        if y.size != 1:
            raise ValueError(f"backward() needs `grad` for a non-scalar tensor of shape {y.shape}")
        return xp.ones(y.shape, dtype=y.dtype)
    if D.shape(grad) != y.shape:
        raise ValueError(f"backward(): grad has shape {D.shape(grad)}, the tensor {y.shape}")
    return grad


def own(g: Any, owners: set[int]) -> Any:
    """``g``, or a copy of it if it is read-only or shares memory with another leaf's gradient.

    Backward rules may pass one cotangent to several inputs or return broadcast views; a leaf's
    ``.grad`` must be its own writeable array (as in PyTorch).
    """
    if D.is_dual(g) or not hasattr(g, "flags"):
        return g
    root = g
    while getattr(root, "base", None) is not None:
        root = root.base
    # CuPy has no `writeable` flag and its broadcast views are writeable: a zero stride marks them
    writeable = getattr(g.flags, "writeable", None)
    if writeable is None:
        writeable = 0 not in g.strides
    if not writeable or id(root) in owners:
        g = g.copy()
        root = g
    owners.add(id(root))
    return g


def check_vectors(
    params: Sequence[Tensor], vectors: Sequence[Any], what: str, batched: bool
) -> int:
    """Validate that ``vectors`` match ``params`` in number and shape; return k (or 0)."""
    if len(params) != len(vectors):
        raise ValueError(f"{what}: got {len(vectors)} arrays for {len(params)} parameters")
    check_params(params, what)
    k = 0
    for i, (p, v) in enumerate(zip(params, vectors, strict=True)):
        vs = tuple(getattr(v, "shape", ()))
        expected = p.shape
        if batched:
            k = k or (vs[0] if vs else -1)
            expected = (k,) + p.shape
        if vs != expected:
            raise ValueError(
                f"{what}: array {i} has shape {vs}, expected {expected} "
                f"(parameter {i}{' ' + repr(p.name) if p.name else ''} has shape {p.shape})"
            )
    return k


def check_params(params: Sequence[Tensor], what: str) -> None:
    """Refuse parameters whose derivatives would silently come out wrong: TypeError for a
    non-floating one, ValueError for one given twice or computed from another of ``params``."""
    ids: dict[int, int] = {}
    for i, p in enumerate(params):
        if id(p) in ids:
            raise ValueError(f"{what}: params[{i}] is params[{ids[id(p)]}] (one tensor twice)")
        ids[id(p)] = i
    for i, p in enumerate(params):
        dtype = p.dtype
        if dtype.kind != "f":
            kind = "integer " if dtype.kind in "iu" else ""
            raise TypeError(
                f"{what}: parameter {i} has {kind}dtype {dtype}; derivatives need floating "
                "parameters (cast it, e.g. with .astype('float64'))"
            )
        stack, seen = list(p.parents), set()
        while stack:  # the tape above a non-leaf parameter
            q = stack.pop()
            if id(q) in ids:
                raise ValueError(
                    f"{what}: params[{i}] was computed from params[{ids[id(q)]}] (its creator "
                    f"is {type(p.creator).__name__}); differentiate with respect to the leaves "
                    "only, or pass one of the two"
                )
            if id(q) not in seen:
                seen.add(id(q))
                stack.extend(q.parents)


def check_scalar(out: Any, what: str) -> Tensor:
    """``out`` if it is a one-element Tensor, else a TypeError or ValueError naming ``what``."""
    from tinycurv.tensor import Tensor  # (tensor imports this module)

    if not isinstance(out, Tensor):
        raise TypeError(f"{what}: closure() must return a Tensor, got {type(out).__name__}")
    if out.size != 1:
        raise ValueError(f"{what}: closure() must return a scalar, got shape {out.shape}")
    return out
