"""The engine against PyTorch: gradient and HVP of the same MLP, on the same device (optional).

A declared host-side helper (``tinycurv.bench.*``). The problem is ``tinycurv.bench.engine``'s:
the 5-layer ReLU MLP 784 → n → n → n → n → 10, float32, batch 60, mean cross-entropy, with the
same weights and data copied into PyTorch tensors. PyTorch runs where the backend runs: on the
CPU for NumPy, on CUDA for CuPy. Timed, each a median over ``repeats`` calls in one run:

* ``torch grad``: ``torch.autograd.grad`` of the loss (one forward and one backward sweep);
* ``torch HVP``: ``torch.func.jvp(torch.func.grad(f), …)``, forward-over-reverse like
  ``tinycurv.hvp``;
* ``grad/torch`` and ``HVP/torch``: tinycurv's time over PyTorch's.

Goal (issue 10, on the GPU at n = 1600 and 6400): tinycurv's gradient within 1.5× of PyTorch's.
Without PyTorch the table is replaced by a line saying so. Before timing, PyTorch's gradient is
checked against the engine's (relative 1e-4, float32).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from tinycurv.backend import asnumpy, backend_name, xp
from tinycurv.bench.common import SIZES, median_time, table
from tinycurv.bench.engine import DEPTH, build
from tinycurv.functional import grad, hvp

HEADERS = ("n", "torch grad ms", "torch HVP ms", "grad/torch", "HVP/torch")
GOALS = "grad/torch ≤ 1.5× on the GPU at n = 1600 and 6400"


def available() -> str | None:
    """The device PyTorch would use for the current backend, or None (no PyTorch, no CUDA)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if backend_name() == "cupy":
        return "cuda" if torch.cuda.is_available() else None
    return "cpu"


def _torch_problem(prob: Any, device: str) -> tuple[Any, Any, Any]:
    """``(loss(params), params, x)`` in PyTorch with the engine problem's weights and data."""
    import torch

    def tensor(a: Any) -> Any:
        return torch.from_numpy(asnumpy(a).copy()).to(device)

    params = tuple(tensor(p.data) for p in prob.params)
    x, targets = tensor(prob.x), tensor(prob.targets)

    def loss(params: tuple[Any, ...]) -> Any:
        h = x
        for i in range(DEPTH):
            h = torch.nn.functional.linear(h, params[2 * i], params[2 * i + 1])
            if i < DEPTH - 1:
                h = torch.relu(h)
        return (torch.log_softmax(h, dim=1) * targets).sum()  # as engine.build's closure

    return loss, params, x


def time_width(n: int, device: str, repeats: int = 9) -> tuple[float, float, float, float]:
    """``(engine grad s, engine HVP s, torch grad s, torch HVP s)`` at width ``n``, one run.

    Raises
    ------
    AssertionError
        If PyTorch's gradient differs from the engine's by more than 1e-4 (relative).
    """
    import torch
    from torch.func import grad as torch_grad
    from torch.func import jvp

    prob = build(n)
    loss, params, _ = _torch_problem(prob, device)
    leaves = tuple(p.clone().requires_grad_(True) for p in params)
    ours = [asnumpy(g) for g in grad(prob.closure, prob.params)]
    theirs = [g.detach().cpu().numpy() for g in torch.autograd.grad(loss(leaves), leaves)]
    pairs = zip(ours, theirs, strict=True)
    worst = max(float(abs(a - b).max() / max(abs(b).max(), 1e-30)) for a, b in pairs)
    assert worst < 1e-4, f"PyTorch and engine gradients differ at n = {n}: {worst:.2e}"

    vectors = [xp.full_like(p.data, 1e-2) for p in prob.params]
    tangents = tuple(torch.full_like(p, 1e-2) for p in params)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def torch_step() -> None:
        torch.autograd.grad(loss(leaves), leaves)
        sync()

    def torch_hvp() -> None:
        jvp(torch_grad(loss), (params,), (tangents,))
        sync()

    warmup = min(2, repeats)
    return (
        median_time(lambda: grad(prob.closure, prob.params), repeats, warmup),
        median_time(lambda: hvp(prob.closure, prob.params, vectors), repeats, warmup),
        median_time(torch_step, repeats, warmup),
        median_time(torch_hvp, repeats, warmup),
    )


def run(sizes: Sequence[int] = SIZES, markdown: bool = False, repeats: int = 9) -> str:
    """The table, or a line saying why there is none (no PyTorch, or no CUDA build for CuPy)."""
    device = available()
    if device is None:
        kind = "CUDA" if backend_name() == "cupy" else "CPU"
        return f"PyTorch with a {kind} device is not installed here: no comparison."
    import torch

    rows = []
    for n in sizes:
        g, h, tg, th = time_width(n, device, repeats)
        rows.append((n, 1e3 * tg, 1e3 * th, g / tg, h / th))
    threads = f", torch.get_num_threads() = {torch.get_num_threads()}" if device == "cpu" else ""
    note = f"PyTorch {torch.__version__} on {device}{threads}."
    return table(HEADERS, rows, markdown) + f"\n\n{note} Goals: {GOALS}."
