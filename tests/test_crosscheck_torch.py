"""Cross-check against PyTorch (CPU, float64): same weights and inputs give the same outputs,
losses, gradients and Hessian-vector products, and SGD/Adam follow ``torch.optim``'s trajectory.

PyTorch's side is functional: ``torch.func.grad`` for gradients and
``torch.func.jvp(torch.func.grad(f), …)`` (forward-over-reverse, as tinycurv) for HVPs. Our
``MSELoss`` is (1/b)Σₙ½‖fₙ − yₙ‖², written out for torch (its ``MSELoss`` has no ½ and averages
over outputs too). Differences are compared as max |ours − torch| / max(1, max |torch|) and must
stay below 1e-10; the largest seen (torch 2.13.0 CPU) is printed with ``pytest -s``.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.optim import SGD, Adam

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.crosscheck,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch-internal jit warnings
]

TOL = 1e-10


# -- the same network in PyTorch -------------------------------------------------------------------


def _torch_layer(layer):
    tnn = torch.nn
    if isinstance(layer, nn.Linear):
        return tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, nn.Conv2d):
        args = (layer.in_channels, layer.out_channels, layer.kernel_size)
        return tnn.Conv2d(*args, layer.stride, layer.padding, bias=layer.bias is not None)
    if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        kind = tnn.MaxPool2d if isinstance(layer, nn.MaxPool2d) else tnn.AvgPool2d
        return kind(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.ELU):
        return tnn.ELU(layer.alpha)
    simple = {nn.Flatten: tnn.Flatten, nn.ReLU: tnn.ReLU, nn.Tanh: tnn.Tanh}
    return {**simple, nn.Sigmoid: tnn.Sigmoid}[type(layer)]()


def torch_mirror(model: nn.Sequential):
    """A ``torch.nn.Sequential`` with the same layers and (copied) weights, in float64."""
    mirror = torch.nn.Sequential(*(_torch_layer(layer) for layer in model.layers)).double()
    state = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    mirror.load_state_dict(state, strict=True)
    return mirror


def torch_loss(kind: str):
    if kind == "mse":
        return lambda f, y: 0.5 * ((f - y) ** 2).sum() / f.shape[0]
    return torch.nn.functional.cross_entropy


# -- networks and data -----------------------------------------------------------------------------


def mlp(rng) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 16, rng=rng),
        nn.Tanh(),
        nn.Linear(16, 16, rng=rng),
        nn.ReLU(),
        nn.Linear(16, 12, rng=rng),
        nn.Sigmoid(),
        nn.Linear(12, 10, rng=rng),
        nn.ELU(0.7),
        nn.Linear(10, 4, rng=rng),
    )


def cnn(rng) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), stride=1, padding=1, rng=rng),  # (4, 9, 9)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (4, 4, 4)
        nn.Conv2d(4, 5, 3, stride=2, padding=1, bias=False, rng=rng),  # (5, 2, 2)
        nn.Tanh(),
        nn.AvgPool2d(2, stride=1, padding=1),  # (5, 3, 3)
        nn.Flatten(),
        nn.Linear(45, 4, rng=rng),
    )


def cnn_padded_maxpool(rng) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, rng=rng),  # (3, 9, 8)
        nn.ELU(),
        nn.MaxPool2d(3, stride=2, padding=1),  # (3, 5, 4)
        nn.Conv2d(3, 2, (2, 3), rng=rng),  # (2, 4, 2)
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(16, 4, rng=rng),
    )


NETWORKS = {  # name: (constructor, input shape)
    "mlp": (mlp, (8, 6)),
    "cnn": (cnn, (4, 2, 9, 8)),
    "cnn2": (cnn_padded_maxpool, (4, 2, 9, 8)),
}


def _problem(net: str, kind: str, seed: int = 0):
    make, shape = NETWORKS[net]
    rng = np.random.default_rng(seed)
    model = make(rng)
    x = rng.standard_normal(shape)
    y = rng.standard_normal((shape[0], 4)) if kind == "mse" else rng.integers(0, 4, shape[0])
    v = [rng.standard_normal(p.shape) for p in model.parameters()]
    return model, x, y, v


def _diff(ours, theirs) -> float:
    ours, theirs = tc.asnumpy(ours), theirs.detach().numpy()
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours - theirs)) / max(1.0, np.max(np.abs(theirs))))


LARGEST: dict[str, float] = {}


def _report(name: str, diffs: dict[str, float]) -> None:
    LARGEST[name] = max(diffs.values())
    print(f"\n{name}: " + ", ".join(f"{k} {d:.1e}" for k, d in diffs.items()))
    print(f"largest relative difference so far: {max(LARGEST.values()):.2e}")
    assert max(diffs.values()) < TOL, diffs


# -- outputs, gradients, HVPs ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mse", "ce"])
@pytest.mark.parametrize("net", list(NETWORKS))
def test_outputs_gradients_and_hvps_match_torch(net, kind):
    model, x, y, v = _problem(net, kind)
    params = model.parameters()
    loss_fn = nn.MSELoss() if kind == "mse" else nn.CrossEntropyLoss()
    closure = lambda: loss_fn(model(asarray(x)), asarray(y))
    loss, grads = tc.value_and_grad(closure, params)
    hvps = tc.hvp(closure, params, [asarray(a) for a in v])

    mirror, names = torch_mirror(model), [n for n, _ in model.named_parameters()]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    theta = {n: p.detach() for n, p in mirror.named_parameters()}
    f = lambda th: torch_loss(kind)(torch.func.functional_call(mirror, th, (tx,)), ty)
    t_grads = torch.func.grad(f)(theta)
    tv = {n: torch.from_numpy(a) for n, a in zip(names, v, strict=True)}
    _, t_hvps = torch.func.jvp(torch.func.grad(f), (theta,), (tv,))

    with tc.no_grad():
        out = model(asarray(x)).data
    diffs = {"output": _diff(out, mirror(tx)), "loss": _diff(loss, f(theta))}
    diffs["grad"] = max(_diff(g, t_grads[n]) for n, g in zip(names, grads, strict=True))
    diffs["hvp"] = max(_diff(h, t_hvps[n]) for n, h in zip(names, hvps, strict=True))
    _report(f"{net}-{kind}", diffs)


# -- optimiser trajectories ------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": (
        lambda m, f: SGD(m, f, lr=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1),
    ),
    "sgd-momentum-wd": (
        lambda m, f: SGD(m, f, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    ),
    "sgd-nesterov": (
        lambda m, f: SGD(m, f, lr=0.1, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True),
    ),
    "adam-wd": (
        lambda m, f: Adam(m, f, lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
        lambda p: torch.optim.Adam(
            p, lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, foreach=False
        ),
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trajectory_matches_torch_optim(name):
    ours_opt, theirs_opt = OPTIMIZERS[name]
    model, x, y, _ = _problem("cnn", "ce")
    mirror = torch_mirror(model)
    opt, t_opt = ours_opt(model, nn.CrossEntropyLoss()), theirs_opt(mirror.parameters())
    rng = np.random.default_rng(7)
    losses = []
    for _ in range(5):
        idx = rng.choice(len(x), size=3, replace=False)
        ours = opt.step(asarray(x[idx]), asarray(y[idx]))
        t_opt.zero_grad()
        tx, ty = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        loss = torch.nn.functional.cross_entropy(mirror(tx), ty)
        loss.backward()
        t_opt.step()
        losses.append(abs(ours - loss.item()) / max(1.0, abs(loss.item())))
    t_params = dict(mirror.named_parameters())
    diffs = {"loss": max(losses)}
    diffs["params"] = max(_diff(p.data, t_params[n]) for n, p in model.named_parameters())
    _report(f"optim-{name}", diffs)
