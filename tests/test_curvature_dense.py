"""Dense Hessian, GGN and Fisher (tinycurv.curvature.dense) against independent references.

References: central differences of exact gradients (``helpers.fd_hessian``), the GGN's identity
with the Hessian for a model linear in its parameters, explicit per-sample loops, and a
Monte-Carlo average that must approach the GGN.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import HVP_RTOL, data_of, fd_hessian, grad_function, rel_err

import tinycurv as tc
from tinycurv import nn
from tinycurv.curvature import dense


def _mlp(rng, sizes=(4, 5, 3), act=nn.Tanh):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], rng=rng))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _problem(loss="ce", b=6, seed=0, sizes=(4, 5, 3)):
    rng = np.random.default_rng(seed)
    model = _mlp(rng, sizes)
    x = rng.standard_normal((b, sizes[0]))
    if loss == "ce":
        return model, nn.CrossEntropyLoss(), x, rng.integers(0, sizes[-1], size=b)
    return model, nn.MSELoss(), x, rng.standard_normal((b, sizes[-1]))


def _per_sample_grads(model, loss_fn, x, y):
    """∇ℓₙ for every sample by a loop of batch-of-one gradients (rows, flattened)."""
    params = model.parameters()
    rows = []
    for n in range(len(x)):
        grads = tc.grad(lambda n=n: loss_fn(model(x[n : n + 1]), y[n : n + 1]), params)
        rows.append(tc.asnumpy(dense.flatten(grads)))
    return np.stack(rows)


def test_flatten_unflatten_round_trip():
    model, *_ = _problem()
    params = model.parameters()
    v = dense.flatten([p.data for p in params])
    assert v.shape == (sum(p.size for p in params),)
    back = dense.unflatten(v, params)
    assert all(
        np.array_equal(tc.asnumpy(b), tc.asnumpy(p.data)) for b, p in zip(back, params, strict=True)
    )
    V = np.stack([v, 2 * v, 3 * v])
    batched = dense.unflatten(V, params)
    assert [b.shape for b in batched] == [(3,) + p.shape for p in params]
    np.testing.assert_array_equal(tc.asnumpy(dense.flatten(batched, batched=True)), tc.asnumpy(V))
    with pytest.raises(ValueError, match="unflatten"):
        dense.unflatten(v[:-1], params)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_hessian_equals_finite_differences(loss):
    model, loss_fn, x, y = _problem(loss)
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    H = dense.hessian(closure, params, chunk=7)  # several chunks, the last one short
    want = fd_hessian(grad_function(closure, params), data_of(params))
    assert H.shape == want.shape
    assert rel_err(H, want) < HVP_RTOL


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_equals_hessian_for_linear_model(loss):
    rng = np.random.default_rng(1)
    model = nn.Linear(4, 3, rng=rng)
    x = rng.standard_normal((7, 4))
    y = rng.integers(0, 3, size=7) if loss == "ce" else rng.standard_normal((7, 3))
    loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    G = dense.ggn(model, loss_fn, x, y)
    H = dense.hessian(lambda: loss_fn(model(x), y), model.parameters())
    assert rel_err(G, H) < 1e-12


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_is_symmetric_psd_and_matches_its_definition(loss):
    model, loss_fn, x, y = _problem(loss, b=5, sizes=(3, 6, 4, 3))
    G = dense.ggn(model, loss_fn, x, y)
    G = tc.asnumpy(G)
    np.testing.assert_array_equal(G, G.T)
    eig = np.linalg.eigvalsh(G)
    assert eig.min() > -1e-12 * eig.max()
    # (1/b) Σ Jₙᵀ Hₙ Jₙ with Jₙ from reverse mode, one output at a time
    J = tc.asnumpy(dense.jacobian(model, x))
    b, m, p = J.shape
    for n in range(b):
        for j in range(m):
            row = tc.grad(lambda n=n, j=j: model(x[n : n + 1])[0, j], model.parameters())
            np.testing.assert_allclose(J[n, j], tc.asnumpy(dense.flatten(row)), atol=1e-14)
    Hn = tc.asnumpy(loss_fn.hessian(model(x)))
    want = sum(J[n].T @ Hn[n] @ J[n] for n in range(b)) / b
    assert rel_err(G, want) < 1e-13


def test_ggn_vp_equals_dense_product():
    model, loss_fn, x, y = _problem("ce", b=4, sizes=(3, 5, 4))
    G = dense.ggn(model, loss_fn, x, y)
    rng = np.random.default_rng(3)
    params = model.parameters()
    v = [tc.backend.asarray(rng.standard_normal(p.shape)) for p in params]
    got = dense.ggn_vp(model, loss_fn, x, y, v)
    assert [g.shape for g in got] == [p.shape for p in params]
    assert rel_err(dense.flatten(got), G @ dense.flatten(v)) < 1e-13
    V = [tc.backend.asarray(rng.standard_normal((3,) + p.shape)) for p in params]
    got = dense.ggn_vp(model, loss_fn, x, y, V, batched=True)
    want = dense.flatten(V, batched=True) @ G
    assert rel_err(dense.flatten(got, batched=True), want) < 1e-13
    assert all(p.grad is None for p in params)  # the VJP sweeps leave no gradients behind


def test_empirical_fisher_equals_looped_outer_products():
    model, loss_fn, x, y = _problem("ce", b=5)
    F = dense.fisher(model, loss_fn, x, y, kind="empirical")
    P = _per_sample_grads(model, loss_fn, x, y)
    assert rel_err(F, P.T @ P / len(x)) < 1e-13


def test_mc_fisher_with_fixed_labels_and_its_expectation():
    model, loss_fn, x, y = _problem("ce", b=3)
    # one draw with a seed = the empirical Fisher of the labels that seed draws
    F = dense.fisher(model, loss_fn, x, y, kind="mc", rng=7)
    labels = loss_fn.sample_targets(model(x), tc.backend.default_rng(7))
    assert rel_err(F, dense.fisher(model, loss_fn, x, labels, kind="empirical")) < 1e-13
    # E over the model's labels of the Fisher is the GGN (CE: Hₙ = E[∇ℓ∇ℓᵀ])
    G = dense.ggn(model, loss_fn, x, y)
    F = dense.fisher(model, loss_fn, x, y, kind="mc", mc_samples=1000, rng=0)
    assert rel_err(F, G) < 0.08  # ~0.02 at 1000 draws (0.3 at 10, 0.06 at 100)


def test_fisher_rejects_bad_arguments():
    model, loss_fn, x, y = _problem()
    with pytest.raises(ValueError, match="kind"):
        dense.fisher(model, loss_fn, x, y, kind="true")
    with pytest.raises(ValueError, match="mc_samples"):
        dense.fisher(model, loss_fn, x, y, mc_samples=0)


def test_mc_fisher_with_many_draws_equals_the_loop_over_draws():
    """S > m takes the averaged-outer-product path; it must equal Σ over draws and samples."""
    import tinycurv as tc
    from tinycurv import nn
    from tinycurv.backend import default_rng
    from tinycurv.curvature import dense

    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(5, 4, rng=0), nn.Tanh(), nn.Linear(4, 3, rng=1))
    x, y = rng.normal(size=(7, 5)), rng.integers(0, 3, 7)
    loss_fn, S = nn.CrossEntropyLoss(), 20
    F = dense.fisher(model, loss_fn, x, y, kind="mc", mc_samples=S, rng=3)
    f = model(x).data
    draws_rng = default_rng(3)
    draws = [loss_fn.sample_targets(f, draws_rng) for _ in range(S)]
    params = model.parameters()
    want = np.zeros(F.shape)
    for s in range(S):
        for n in range(7):
            g = tc.grad(lambda n=n, s=s: loss_fn(model(x[n : n + 1]), draws[s][n : n + 1]), params)
            v = np.concatenate([tc.asnumpy(a).ravel() for a in g])
            want += np.outer(v, v) / (S * 7)
    np.testing.assert_allclose(tc.asnumpy(F), want, rtol=1e-12, atol=1e-14)
