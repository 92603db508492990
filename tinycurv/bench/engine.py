"""Engine overhead: one gradient and one HVP against a gradient written by hand (float32, batch 60).

The network is the 5-layer ReLU MLP 784 → n → n → n → n → 10 of ``tinycurv.bench.common``, with
a softmax cross-entropy loss, written twice:

* **engine**: raw ``Tensor`` operations on leaf tensors, ``h = (h @ W.T + b).relu()`` and
  ``ops.log_softmax``; timed are ``tinycurv.grad`` (one forward and one backward sweep) and
  ``tinycurv.hvp`` (the same sweeps on dual numbers, forward-over-reverse);
* **by hand**: forward, softmax cross-entropy and backward written out with array operations
  (``xp``, i.e. plain NumPy on the NumPy backend) and the same matrix-product shapes. Neither
  computes the gradient with respect to the input batch.

Each time is a median over ``repeats`` calls, all measured in one run. Goals: engine gradient
≤ 1.2× the hand-written one at n = 400 and ≤ 1.1× at n = 1600; HVP ≤ 3× the engine gradient.
Run with ``python -c "from tinycurv.bench.engine import run; print(run())"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tinycurv import ops
from tinycurv.backend import get_default_dtype, set_default_dtype, xp
from tinycurv.bench.common import BATCH, SIZES, batch, median_time, mlp, table
from tinycurv.functional import grad, hvp
from tinycurv.tensor import Tensor

HEADERS = ("n", "hand grad ms", "engine grad ms", "HVP ms", "engine/hand", "HVP/grad")
GOALS = "engine/hand ≤ 1.2× at n = 400 and ≤ 1.1× at n = 1600; HVP/grad ≤ 3×"
DEPTH = 5


@dataclass
class Problem:
    """The benchmark network at width ``n``: leaf tensors, data and the loss closure."""

    n: int
    params: list[Tensor]  # W1, b1, …, W5, b5; W has shape (out, in) as in nn.Linear
    x: Any  # (BATCH, 784)
    targets: Any  # (BATCH, 10): −onehot / BATCH, so that the loss is Σ targets ⊙ log_softmax
    closure: Callable[[], Tensor]


def build(n: int, seed: int = 0, b: int = BATCH) -> Problem:
    """The float32 benchmark problem at width ``n`` (the default dtype is restored afterwards)."""
    previous = get_default_dtype()
    set_default_dtype("float32")
    try:
        weights = [p.data for p in mlp(n, seed=seed, depth=DEPTH).parameters()]
        x, y = batch(b)
    finally:
        set_default_dtype(previous)
    params = [
        Tensor(w, requires_grad=True, name=f"{'W' if i % 2 == 0 else 'b'}{i // 2 + 1}")
        for i, w in enumerate(weights)
    ]
    targets = (xp.eye(10, dtype=x.dtype)[y] * (-1.0 / b)).astype(x.dtype)

    def closure() -> Tensor:
        h = Tensor(x)
        for i in range(DEPTH):
            W, bias = params[2 * i], params[2 * i + 1]
            h = h @ W.T + bias
            if i < DEPTH - 1:
                h = h.relu()
        return (ops.log_softmax(h, axis=1) * targets).sum()  # mean cross-entropy

    return Problem(n, params, x, targets, closure)


def hand_grad(weights: Sequence[Any], x: Any, targets: Any) -> list[Any]:
    """The gradient of the benchmark loss written by hand (same layout as ``Problem.params``).

    Forward ``a_i = h_{i−1} W_iᵀ + b_i``, ``h_i = relu(a_i)``; loss ``Σ targets ⊙ log softmax(a_5)``
    with ``targets = −onehot / B``; backward ``δ_5 = softmax(a_5)·B⁻¹ + targets`` (the rows of
    ``targets`` sum to −1/B), ``∂W_i = δ_iᵀ h_{i−1}``, ``∂b_i = Σ_rows δ_i``,
    ``δ_{i−1} = (δ_i W_i) ⊙ [a_{i−1} > 0]``.
    """
    Ws, bs = weights[0::2], weights[1::2]
    hs, masks = [x], []
    h = x
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        a = h @ W.T + b
        if i < len(Ws) - 1:
            mask = a > 0
            h = a * mask
            masks.append(mask)
            hs.append(h)
    e = xp.exp(a - a.max(axis=1, keepdims=True))
    delta = e * (-targets.sum(axis=1, keepdims=True) / e.sum(axis=1, keepdims=True)) + targets
    grads: list[Any] = [None] * len(weights)
    for i in reversed(range(len(Ws))):
        grads[2 * i] = delta.T @ hs[i]
        grads[2 * i + 1] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ Ws[i]) * masks[i - 1]
    return grads


def relative_difference(got: Sequence[Any], want: Sequence[Any]) -> float:
    """``max_i max|got_i − want_i| / max|want_i|``: the worst relative difference per array."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        scale = float(xp.max(xp.abs(w)))
        worst = max(worst, float(xp.max(xp.abs(g - w))) / (scale if scale > 0 else 1.0))
    return worst


def _repeats(n: int, repeats: int | None) -> tuple[int, int]:
    if repeats is not None:
        return repeats, min(2, repeats)
    return (21, 3) if n <= 400 else (9, 2)


def time_width(n: int, repeats: int | None = None) -> tuple[int, float, float, float]:
    """``(n, hand grad s, engine grad s, HVP s)``, medians measured in one run.

    Raises
    ------
    AssertionError
        If the hand-written and the engine gradient differ by more than 1e-4 (relative).
    """
    prob = build(n)
    weights = [p.data for p in prob.params]
    by_hand = hand_grad(weights, prob.x, prob.targets)
    diff = relative_difference(grad(prob.closure, prob.params), by_hand)
    assert diff < 1e-4, f"engine and hand-written gradients differ at n = {n}: {diff:.2e}"
    rng = xp.random.default_rng(1)
    vectors = [rng.standard_normal(p.shape).astype(p.dtype) for p in prob.params]
    reps, warmup = _repeats(n, repeats)
    t_hand = median_time(lambda: hand_grad(weights, prob.x, prob.targets), reps, warmup)
    t_grad = median_time(lambda: grad(prob.closure, prob.params), reps, warmup)
    t_hvp = median_time(lambda: hvp(prob.closure, prob.params, vectors), reps, warmup)
    return n, t_hand, t_grad, t_hvp


def run(sizes: Sequence[int] = SIZES, markdown: bool = False, repeats: int | None = None) -> str:
    """The table: per width, hand-written and engine gradient times, HVP time and the ratios.

    Parameters
    ----------
    sizes : sequence of int
        Hidden widths n.
    markdown : bool
        A Markdown table instead of aligned text.
    repeats : int, optional
        Timed calls per measurement (default 21 for n ≤ 400, 9 above).

    Returns
    -------
    str
        The table followed by the goals.
    """
    rows = []
    for n in sizes:
        _, hand, eng, hv = time_width(n, repeats)
        rows.append((n, 1e3 * hand, 1e3 * eng, 1e3 * hv, eng / hand, hv / eng))
    return table(HEADERS, rows, markdown) + f"\n\nGoals: {GOALS}."
