"""Matrix-free linear algebra (tinycurv.curvature.matrix_free) against dense references.

GGN products against ``dense.ggn``; CG against ``numpy.linalg.solve`` on the damped GGN; Lanczos
and ``top_eigenvalues`` against ``numpy.linalg.eigvalsh`` of the dense Hessian and GGN of a
small MLP and a small CNN (float64, to 1e-8).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rel_err

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray, backend_name, get_backend
from tinycurv.curvature import dense
from tinycurv.curvature.matrix_free import (
    GGNOperator,
    conjugate_gradient,
    curvature_operator,
    lanczos,
    top_eigenvalues,
)


def mlp_problem(loss="ce", b=8, seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 6, rng=rng), nn.Tanh(), nn.Linear(6, 3, rng=rng))
    x = asarray(rng.standard_normal((b, 4)))
    if loss == "ce":
        return model, nn.CrossEntropyLoss(), x, asarray(rng.integers(0, 3, b), dtype="int64")
    return model, nn.MSELoss(), x, asarray(rng.standard_normal((b, 3)))


def cnn_problem(b=4, seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, rng=rng),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3, rng=rng),
    )
    x = asarray(rng.standard_normal((b, 1, 4, 4)))
    return model, nn.CrossEntropyLoss(), x, asarray(rng.integers(0, 3, b), dtype="int64")


PROBLEMS = {"mlp-ce": lambda: mlp_problem("ce"), "mlp-mse": lambda: mlp_problem("mse"),
            "cnn": cnn_problem}  # fmt: skip


def host(a):
    return tc.asnumpy(dense.flatten(a) if isinstance(a, list) else a)


def random_vectors(params, seed, k=None):
    rng = np.random.default_rng(seed)
    lead = () if k is None else (k,)
    return [asarray(rng.standard_normal(lead + p.shape)) for p in params]


# ----------------------------------------------------------------------------- GGN products


@pytest.mark.parametrize("name", PROBLEMS)
def test_ggn_operator_equals_the_dense_ggn(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    params = model.parameters()
    G = host(dense.ggn(model, loss_fn, x))
    op = GGNOperator(model, loss_fn, x)
    v = random_vectors(params, 1)
    got = op(v)
    assert [g.shape for g in got] == [p.shape for p in params]
    assert rel_err(host(got), G @ host(v)) < 1e-13
    V = random_vectors(params, 2, k=3)
    got = op(V, batched=True)
    assert rel_err(tc.asnumpy(dense.flatten(got, batched=True)), host_batched(V) @ G) < 1e-13
    assert all(p.grad is None for p in params)  # no gradients left behind


def host_batched(V):
    return tc.asnumpy(dense.flatten(V, batched=True))


def test_ggn_operator_gradient_and_output_matrix():
    model, loss_fn, x, y = mlp_problem()
    params = model.parameters()
    op = GGNOperator(model, loss_fn, x)
    loss, g = op.loss_and_grad(y)
    want_loss, want_g = tc.value_and_grad(lambda: loss_fn(model(x), y), params)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-14)
    assert rel_err(host(g), host(want_g)) < 1e-14
    # an explicit output matrix (twice the loss Hessian) scales the product
    with tc.no_grad():
        M = 2 * loss_fn.hessian(model(x))
    v = random_vectors(params, 3)
    twice = GGNOperator(model, loss_fn, x, output_matrix=M)(v)
    assert rel_err(host(twice), 2 * host(op(v))) < 1e-14
    as_function = GGNOperator(model, loss_fn, x, output_matrix=lambda out: 2 * loss_fn.hessian(out))
    assert rel_err(host(as_function(v)), host(twice)) < 1e-15


def test_curvature_operator_choices():
    model, loss_fn, x, y = mlp_problem()
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    H = host(dense.hessian(closure, params))
    v = random_vectors(params, 4)
    assert rel_err(host(curvature_operator(closure, params)(v)), H @ host(v)) < 1e-12
    G = GGNOperator(model, loss_fn, x)
    custom = curvature_operator(None, params, lambda vs: G(vs))
    V = random_vectors(params, 5, k=2)
    assert rel_err(host_batched(custom(V, batched=True)), host_batched(G(V, batched=True))) < 1e-15
    with pytest.raises(ValueError, match="ggn"):
        curvature_operator(closure, params, "ggn")
    with pytest.raises(ValueError, match="curvature"):
        curvature_operator(closure, params, "fisher")


# ----------------------------------------------------------------------------- CG


def damped_system(lam=0.1):
    model, loss_fn, x, y = mlp_problem()
    params = model.parameters()
    G = host(dense.ggn(model, loss_fn, x))
    g = tc.grad(lambda: loss_fn(model(x), y), params)
    op = GGNOperator(model, loss_fn, x)
    matvec = lambda v: [a + lam * b for a, b in zip(op(v), v, strict=True)]
    return matvec, g, G + lam * np.eye(G.shape[0]), params


def test_cg_equals_numpy_solve_on_the_damped_ggn():
    matvec, g, A, params = damped_system()
    want = np.linalg.solve(A, host(g))
    result = conjugate_gradient(matvec, g, tol=1e-12, max_iter=200)
    assert result.converged and result.reason == "tolerance"
    assert rel_err(host(result.x), want) < 1e-10
    assert [a.shape for a in result.x] == [p.shape for p in params]
    # the same on flat arrays, with a dense matvec
    flat = conjugate_gradient(lambda v: asarray(A) @ v, dense.flatten(g), tol=1e-12)
    assert rel_err(tc.asnumpy(flat.x), want) < 1e-10


def test_cg_records_residuals_values_and_iterates():
    matvec, g, A, _ = damped_system()
    b = host(g)
    result = conjugate_gradient(matvec, g, tol=1e-12, keep=True)
    n = result.iterations
    assert len(result.residual_norms) == len(result.values) == n + 1
    assert sorted(result.iterates) == list(range(n + 1))
    for i in (0, 1, n // 2, n):
        xi = host(result.iterates[i])
        assert result.residual_norms[i] == pytest.approx(np.linalg.norm(b - A @ xi), abs=1e-9)
        assert result.values[i] == pytest.approx(0.5 * xi @ A @ xi - b @ xi, abs=1e-12)
    assert all(np.diff(result.values) <= 1e-14)  # CG decreases φ monotonically
    some = conjugate_gradient(matvec, g, tol=1e-12, keep=[2, 5])
    assert sorted(some.iterates) == [2, 5]


def test_cg_check_every_and_warm_start():
    matvec, g, A, _ = damped_system()
    want = np.linalg.solve(A, host(g))
    every = conjugate_gradient(matvec, g, tol=1e-12, check_every=4)
    assert every.converged and every.iterations % 4 == 0 or every.iterations == A.shape[0]
    assert rel_err(host(every.x), want) < 1e-10
    capped = conjugate_gradient(matvec, g, tol=0.0, max_iter=7, check_every=3)
    assert capped.iterations == 7 and capped.reason == "max_iter" and not capped.converged
    x0 = [0.9 * a for a in every.x]  # a good start converges in fewer products
    warm = conjugate_gradient(matvec, g, tol=1e-8, x0=x0)
    cold = conjugate_gradient(matvec, g, tol=1e-8)
    assert warm.iterations < cold.iterations
    assert rel_err(host(warm.x), want) < 1e-7


def test_cg_preconditioner_and_progress_test():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    d = np.logspace(0, 4, 60)
    A = asarray((Q * d) @ Q.T + np.diag(np.logspace(0, 5, 60)))
    b = asarray(rng.standard_normal(60))
    want = np.linalg.solve(tc.asnumpy(A), tc.asnumpy(b))
    jacobi = 1.0 / np.diagonal(tc.asnumpy(A))
    inv_diag = asarray(jacobi)
    plain = conjugate_gradient(lambda v: A @ v, b, tol=1e-10, max_iter=500)
    pre = conjugate_gradient(
        lambda v: A @ v, b, tol=1e-10, max_iter=500, preconditioner=lambda r: inv_diag * r
    )
    assert pre.converged and rel_err(tc.asnumpy(pre.x), want) < 1e-8
    assert pre.iterations < plain.iterations
    martens = conjugate_gradient(lambda v: A @ v, b, tol=0.0, max_iter=500, progress_tol=5e-4)
    assert martens.reason == "progress" and martens.iterations < plain.iterations


def test_cg_breakdowns():
    A = asarray(np.diag([1.0, 2.0, -1.0]))
    result = conjugate_gradient(lambda v: A @ v, asarray(np.ones(3)), tol=1e-12)
    assert result.reason == "nonpositive curvature" and not result.converged
    assert np.all(np.isfinite(tc.asnumpy(result.x)))
    nan = conjugate_gradient(lambda v: A @ v * np.nan, asarray(np.ones(3)), tol=1e-12)
    assert nan.reason == "not finite"
    zero = conjugate_gradient(lambda v: A @ v, asarray(np.zeros(3)))
    assert zero.converged and zero.iterations <= 1
    np.testing.assert_array_equal(tc.asnumpy(zero.x), 0.0)


def test_cg_transfers_once_per_check():
    module = get_backend()
    if backend_name() != "cupy" or not hasattr(module, "SYNCS"):
        pytest.skip("counts transfers on the CuPy stand-in only")
    matvec, g, A, _ = damped_system()
    module.SYNCS.clear()
    result = conjugate_gradient(matvec, g, tol=0.0, max_iter=12, check_every=4)
    assert result.iterations == 12
    assert len(module.SYNCS) == 3, module.SYNCS


# ----------------------------------------------------------------------------- Lanczos


def test_lanczos_is_an_orthogonal_tridiagonalisation():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    A = B + B.T
    result = lanczos(lambda v: asarray(A) @ v, 30, 12, rng=1)
    Q, T = tc.asnumpy(result.basis), tc.asnumpy(result.tridiagonal())
    assert Q.shape == (12, 30) and T.shape == (12, 12)
    np.testing.assert_allclose(Q @ Q.T, np.eye(12), atol=1e-13)
    np.testing.assert_allclose(Q @ A @ Q.T, T, atol=1e-12)
    full = lanczos(lambda v: asarray(A) @ v, 30, 40, rng=1)  # steps capped at p
    np.testing.assert_allclose(
        np.sort(tc.asnumpy(full.ritz()[0])), np.linalg.eigvalsh(A), atol=1e-12
    )


def test_lanczos_restarts_on_an_invariant_subspace():
    rng = np.random.default_rng(1)
    U = np.linalg.qr(rng.standard_normal((20, 3)))[0]
    A = (U * [3.0, -2.0, 1.0]) @ U.T  # rank 3: the Krylov space is exhausted after 4 steps
    result = lanczos(lambda v: asarray(A) @ v, 20, 20, rng=2)
    np.testing.assert_allclose(tc.asnumpy(result.basis) @ tc.asnumpy(result.basis).T,
                               np.eye(20), atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(
        np.sort(tc.asnumpy(result.ritz()[0])), np.linalg.eigvalsh(A), atol=1e-12
    )
    assert 0.0 in tc.asnumpy(result.beta).tolist()


@pytest.mark.parametrize("name", ["mlp-ce", "cnn"])
def test_top_eigenvalues_equal_eigh_of_the_dense_hessian(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    params = model.parameters()
    closure = lambda: loss_fn(model(x), y)
    H = host(dense.hessian(closure, params))
    p = H.shape[0]
    eig = np.linalg.eigvalsh(H)
    values, vectors = top_eigenvalues(closure, params, 3, steps=p, rng=0)
    np.testing.assert_allclose(tc.asnumpy(values), eig[::-1][:3], rtol=0, atol=1e-8)
    low, _ = top_eigenvalues(closure, params, 2, steps=p, rng=0, which="smallest")
    np.testing.assert_allclose(tc.asnumpy(low), eig[:2], rtol=0, atol=1e-8)
    V = tc.asnumpy(dense.flatten(vectors, batched=True))  # (3, p): H v = λ v
    np.testing.assert_allclose(V @ H.T, tc.asnumpy(values)[:, None] * V, atol=1e-8)
    # fewer steps than p: the extreme eigenvalue has converged already
    top, _ = top_eigenvalues(closure, params, 1, steps=min(p, 40), rng=1)
    assert abs(float(top[0]) - eig[-1]) < 1e-8


@pytest.mark.parametrize("name", ["mlp-mse", "cnn"])
def test_top_eigenvalues_of_the_ggn(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    params = model.parameters()
    G = host(dense.ggn(model, loss_fn, x))
    eig = np.linalg.eigvalsh(G)
    values, _ = top_eigenvalues(
        None, params, 2, "ggn", steps=G.shape[0], rng=0, model=model, loss_fn=loss_fn, x=x
    )
    np.testing.assert_allclose(tc.asnumpy(values), eig[::-1][:2], rtol=0, atol=1e-8)
