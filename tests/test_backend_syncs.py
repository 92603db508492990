"""Device-to-host transfers per optimiser step, counted on the CPU stand-in for CuPy.

A transfer (``float(x)``, ``bool(x)``, ``.item()``, ``asnumpy``) makes the host wait for the GPU.
The optimisers' hot paths may make only those listed here, each with its reason; the stand-in in
``tinycurv/testing/cupy_stand_in`` records every one with the tinycurv line that made it.
These tests run in
the ``.ci/run`` step that runs the suite on the stand-in, and skip elsewhere (NumPy, real CuPy).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tinycurv import nn, optim
from tinycurv.backend import asarray, backend_name, get_backend

LOSS = "optim/base.py"  # the loss returned as a float: the one transfer every step makes


@pytest.fixture
def syncs():
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only (tinycurv/testing/cupy_stand_in)")
    return module.SYNCS


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(20, 16, rng=1), nn.Tanh(), nn.Linear(16, 5, rng=2))


def _per_step(make, syncs, steps: int = 4) -> Counter:
    rng = np.random.default_rng(0)
    x = asarray(rng.standard_normal((32, 20)))
    y = asarray(rng.integers(0, 5, 32), dtype="int64")
    opt = make(_mlp(), nn.CrossEntropyLoss())
    for _ in range(3):  # first-step work (factors, buffers) out of the way
        opt.step(x, y)
    syncs.clear()
    for _ in range(steps):
        opt.step(x, y)
    return Counter(where.rsplit(":", 1)[0] for _, where in syncs)


@pytest.mark.parametrize(
    "name, make",
    [
        ("sgd", lambda m, f: optim.SGD(m, f, lr=0.1, momentum=0.9)),
        ("adam", lambda m, f: optim.Adam(m, f, lr=1e-3)),
        ("zeta_star", lambda m, f: optim.ISAAC(m, f, lr=0.1, lam_a=1.0)),
        ("zeta", lambda m, f: optim.ISAAC(m, f, lr=0.1, lam_a=1.0, lam_g=1.0)),
        ("kfac_every_10", lambda m, f: optim.KFAC(m, f, lr=0.1, factor_every=10, inv_every=10)),
    ],
)
def test_first_order_isaac_and_kfac_steps_transfer_only_the_loss(name, make, syncs):
    assert _per_step(make, syncs) == Counter({LOSS: 4})


def test_kfac_refactorising_every_step_checks_all_factors_at_once(syncs):
    """One extra transfer per refactorisation: the validity flags of all 2·layers factors."""
    counts = _per_step(lambda m, f: optim.KFAC(m, f, lr=0.1, damping=0.1), syncs)
    assert counts == Counter({LOSS: 4, "backend.py": 4})


def test_series_sfn_step_transfers_a_handful_of_numbers(syncs):
    """SeriesSFN (adaptive damping, the default) reads a few scalars per step, batched: the
    series' norms (one read), the finiteness of δ, the damping's reduction ratio and the loss."""
    counts = _per_step(lambda m, f: optim.SeriesSFN(m, f, lr=0.1), syncs)
    assert sum(counts.values()) <= 7 * 4, counts
