"""Every method of the library on a digits CNN with two conv layers and a pooling layer.

Conv2d(1, 3, 3, padding=1) → Tanh → MaxPool2d(2) → Conv2d(3, 4, 3) → Tanh → Flatten → Linear:
the second convolution's *input* depends on the parameters, the case where batched HVPs once
crashed. Each optimiser trains a few steps and lowers the loss; the dense curvature (``hessian``,
``ggn``), ``grouped_summary`` and ``saddle_free_direction`` match their definitions, and the dense
Hessian matches central finite differences of the gradient (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fd_hessian, grad_function

import tinycurv as tc
from tinycurv import curvature, nn, optim
from tinycurv.backend import asarray
from tinycurv.data import load_digits


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, rng=0),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, rng=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16, 10, rng=2),
    )


@pytest.fixture(scope="module")
def digits():
    X, y, _, _ = load_digits(image=True)
    return X[:64], y[:64]


def _batch(digits, n=32, start=0):
    X, y = digits
    return asarray(X[start : start + n]), asarray(y[start : start + n], dtype="int64")


OPTIMISERS = {
    "sgd": lambda m, f: optim.SGD(m, f, lr=0.1, momentum=0.9),
    "adam": lambda m, f: optim.Adam(m, f, lr=1e-2),
    "zeta_star": lambda m, f: optim.ISAAC(m, f, lr=0.1, lam_a=1.0),
    "zeta": lambda m, f: optim.ISAAC(m, f, lr=0.1, lam_a=1.0, lam_g=1.0),
    "kfac": lambda m, f: optim.KFAC(m, f, lr=0.1, damping=0.1, seed=0),
    "grouped_newton": lambda m, f: optim.GroupedNewton(m, f, lr=0.1, update_every=1),
    "sfn": lambda m, f: optim.SeriesSFN(m, f, order=6),
    "sfn_power": lambda m, f: optim.SeriesSFN(m, f, order=6, scale="power", power_iters=5),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_every_optimiser_trains_the_cnn(name, digits):
    model, loss_fn = _cnn(), nn.CrossEntropyLoss()
    x, y = _batch(digits)
    opt = OPTIMISERS[name](model, loss_fn)
    first = opt.step(x, y)
    for _ in range(7):
        opt.step(x, y)
    after = float(tc.asnumpy(loss_fn(model(x), y).data))
    assert np.isfinite(first) and after < first, (name, first, after)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, rng=3),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(2, 2, 3, rng=4),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(2, 3, rng=5),
    )


@pytest.fixture(scope="module")
def small(digits):
    X, y = digits
    x = asarray(X[:4, :, :, :].reshape(4, 1, 8, 8)[:, :, 1:7, 1:7].copy())  # 6×6 crops
    return x, asarray(y[:4] % 3, dtype="int64")


def test_dense_hessian_matches_finite_differences(small):
    model, loss_fn = _small_cnn(), nn.CrossEntropyLoss()
    x, y = small
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    H = tc.asnumpy(curvature.hessian(closure, params))
    H_fd = fd_hessian(grad_function(closure, params), [tc.asnumpy(p.data) for p in params])
    assert np.abs(H - H.T).max() < 1e-12
    # central differences of the gradient, eps 1e-4: error O(eps²) ≈ 1e-8 relative
    assert np.abs(H - H_fd).max() <= 1e-6 * max(1.0, np.abs(H).max())


def test_ggn_grouped_summary_and_sfn_direction_match_their_definitions(small):
    model, loss_fn = _small_cnn(), nn.CrossEntropyLoss()
    x, y = small
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    H = tc.asnumpy(curvature.hessian(closure, params))
    p = H.shape[0]
    # GGN: symmetric PSD, and equal to the Hessian of the loss linearised in the outputs
    G = tc.asnumpy(curvature.ggn(model, loss_fn, x, y))
    assert G.shape == (p, p) and np.abs(G - G.T).max() < 1e-12
    assert np.linalg.eigvalsh(G).min() > -1e-10
    # grouped summary along u: H_bar_st = <u_s, H u_t>, g_bar_s = <u_s, g>
    g = tc.grad(closure, params)
    g_flat = np.concatenate([tc.asnumpy(a).ravel() for a in g])
    u = [asarray(np.random.default_rng(7).standard_normal(q.shape)) for q in params]
    u_flat = np.concatenate([tc.asnumpy(a).ravel() for a in u])
    g_bar, H_bar, _ = curvature.grouped_summary(closure, params, u)
    sizes = np.cumsum([0] + [q.size for q in params])
    blocks = [slice(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    U = np.zeros((p, len(params)))
    for s, sl in enumerate(blocks):
        U[sl, s] = u_flat[sl]
    np.testing.assert_allclose(tc.asnumpy(H_bar), U.T @ H @ U, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tc.asnumpy(g_bar), U.T @ g_flat, rtol=1e-10, atol=1e-12)
    # the SFN series through the engine's HVPs equals the same series on the dense Hessian
    lam, V = 1.0, 2.0 * float(np.max(np.linalg.eigvalsh(H) ** 2))
    series = curvature.saddle_free_direction(closure, params, g, order=12, scale=V, damping=lam)
    got = np.concatenate([tc.asnumpy(a).ravel() for a in series])
    dense_hvp = lambda v: [asarray(H @ tc.asnumpy(v[0]))]
    want = curvature.sfn.series_operator(dense_hvp, [asarray(g_flat)], 12, V, lam)[0]
    np.testing.assert_allclose(got, tc.asnumpy(want), rtol=1e-10, atol=1e-13)
