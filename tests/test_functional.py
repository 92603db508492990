"""The functional API — ``grad``, ``value_and_grad``, ``jvp``, ``hvp``, ``taylor`` — against
derivatives written out by hand (float64).

* Dense Hessians assembled from HVPs equal the analytic Hessians of a quadratic form, the
  Rosenbrock function, log-sum-exp and a one-hidden-layer tanh network (to relative 1e-12).
* HVPs are symmetric bilinear forms: u·Hv = v·Hu (relative 1e-12), linear in v, and batched
  HVPs equal separate ones.
* Taylor coefficients φ⁽ʲ⁾(0) of φ(t) = L(θ + t·u) are exact (relative 1e-12) on polynomials
  and on exp/log/tanh compositions whose derivatives are written by hand, for orders 1 to 4.
* Errors: mismatched shapes, non-scalar closures, wrong orders; parameters are restored.

Finite differences appear only as a cross-check on a general network (tolerances in
``helpers.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    HVP_RTOL,
    data_of,
    fd_hessian,
    flatten,
    grad_function,
    hessian_from_hvps,
    random_like,
    rel_err,
)

import tinycurv as tc
from tinycurv import ops
from tinycurv.backend import asarray
from tinycurv.tensor import Tensor

EXACT = 1e-12
K = 3


def leaf(a: np.ndarray, name: str | None = None) -> Tensor:
    return Tensor(asarray(a), requires_grad=True, name=name)


def const(a: np.ndarray) -> Tensor:
    return Tensor(asarray(a))


def assert_close(got, want, rtol: float = EXACT) -> None:
    assert rel_err(got, want) < rtol, rel_err(got, want)


# ----------------------------------------------------------------------------- analytic problems


def quadratic(n: int = 5, seed: int = 0):
    """½ xᵀAx + bᵀx with a non-symmetric A: ∇ = ½(A + Aᵀ)x + b, H = ½(A + Aᵀ)."""
    rng = np.random.default_rng(seed)
    A, b, x0 = rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal(n)
    x = leaf(x0, "x")
    closure = lambda: 0.5 * (x @ (const(A) @ x)) + (const(b) * x).sum()
    S = 0.5 * (A + A.T)
    return closure, [x], S @ x0 + b, S


def rosenbrock(n: int = 5, seed: int = 0):
    """Σᵢ 100 (xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)², with its gradient and tridiagonal Hessian by hand."""
    x0 = np.random.default_rng(seed).uniform(-1.5, 1.5, n)
    x = leaf(x0, "x")
    closure = lambda: (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()
    g, H = np.zeros(n), np.zeros((n, n))
    for i in range(n - 1):
        r = x0[i + 1] - x0[i] ** 2
        g[i] += -400.0 * x0[i] * r - 2.0 * (1.0 - x0[i])
        g[i + 1] += 200.0 * r
        H[i, i] += 1200.0 * x0[i] ** 2 - 400.0 * x0[i + 1] + 2.0
        H[i + 1, i + 1] += 200.0
        H[i, i + 1] = H[i + 1, i] = -400.0 * x0[i]
    return closure, [x], g, H


def log_sum_exp(seed: int = 0):
    """Σ_rows log Σ exp(x_row) for x (3, 4): ∇ = softmax, H = blockdiag(diag(p) − ppᵀ)."""
    x0 = 2.0 * np.random.default_rng(seed).standard_normal((3, 4))
    x = leaf(x0, "x")
    closure = lambda: ops.logsumexp(x, axis=1).sum()
    p = np.exp(x0 - x0.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    H = np.zeros((12, 12))
    for r in range(3):
        H[4 * r : 4 * r + 4, 4 * r : 4 * r + 4] = np.diag(p[r]) - np.outer(p[r], p[r])
    return closure, [x], p, H


def tanh_network(h: int = 3, d: int = 2, n: int = 4, seed: int = 0):
    """f(W1, w2) = ½ Σ_s (w2ᵀ tanh(W1 x_s) − y_s)² with its gradient and Hessian by hand.

    With a = W1 x, z = tanh a, s1 = 1 − z², s2 = −2 z (1 − z²), r = w2·z − y (per sample):

    * ∂f/∂w2 = Σ r z;                ∂f/∂W1[j,k] = Σ r w2_j s1_j x_k
    * ∂²f/∂w2_i ∂w2_j = Σ z_i z_j
    * ∂²f/∂w2_i ∂W1[j,k] = Σ (z_i w2_j s1_j x_k + r δ_ij s1_j x_k)
    * ∂²f/∂W1[i,l] ∂W1[j,k] = Σ (w2_i s1_i x_l · w2_j s1_j x_k + r δ_ij w2_j s2_j x_k x_l)
    """
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((n, d)), rng.standard_normal(n)
    W1, w2 = rng.standard_normal((h, d)), rng.standard_normal(h)
    Wt, wt = leaf(W1, "W1"), leaf(w2, "w2")
    closure = lambda: 0.5 * (((const(X) @ Wt.T).tanh() @ wt - const(Y)) ** 2).sum()

    Z = np.tanh(X @ W1.T)  # (n, h)
    S1, S2 = 1.0 - Z**2, -2.0 * Z * (1.0 - Z**2)
    r = Z @ w2 - Y  # (n,)
    gW1 = np.einsum("s,j,sj,sk->jk", r, w2, S1, X)
    gw2 = Z.T @ r
    eye = np.eye(h)
    Hww = Z.T @ Z
    HwW = np.einsum("si,j,sj,sk->ijk", Z, w2, S1, X) + np.einsum("s,ij,sj,sk->ijk", r, eye, S1, X)
    J = np.einsum("i,si,sl->sil", w2, S1, X)  # ∂(w2·z)/∂W1[i,l] per sample
    HWW = np.einsum("sil,sjk->iljk", J, J) + np.einsum(
        "s,ij,j,sj,sk,sl->iljk", r, eye, w2, S2, X, X
    )
    m = h * d
    H = np.zeros((m + h, m + h))
    H[:m, :m] = HWW.reshape(m, m)
    H[m:, :m] = HwW.reshape(h, m)
    H[:m, m:] = HwW.reshape(h, m).T
    H[m:, m:] = Hww
    return closure, [Wt, wt], flatten([gW1, gw2]), H


PROBLEMS = {
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "log-sum-exp": log_sum_exp,
    "tanh-network": tanh_network,
}


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gradient_matches_hand_derivation(name):
    closure, params, g, _ = PROBLEMS[name]()
    value, grads = tc.value_and_grad(closure, params)
    with tc.no_grad():
        assert float(value) == pytest.approx(closure().item(), rel=EXACT)
    assert_close(flatten(grads), flatten([g]))
    assert_close(flatten(tc.grad(closure, params)), flatten([g]))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_dense_hessian_from_hvps_matches_hand_derivation(name):
    closure, params, _, H = PROBLEMS[name]()
    assert_close(hessian_from_hvps(closure, params), H)
    # column by column, unbatched, too
    n = H.shape[0]
    for j in (0, n - 1):
        e = np.zeros(n)
        e[j] = 1.0
        vs, start = [], 0
        for p in params:
            vs.append(asarray(e[start : start + p.size].reshape(p.shape)))
            start += p.size
        assert_close(flatten(tc.hvp(closure, params, vs)), H[:, j])


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_jvp_is_gradient_dot_tangent(name):
    closure, params, g, _ = PROBLEMS[name]()
    v = random_like(params, np.random.default_rng(1))
    value, jv = tc.jvp(closure, params, v)
    assert jv.shape == () and value.shape == ()
    want = float(flatten([g]) @ flatten(v))
    assert float(jv) == pytest.approx(want, rel=1e-12, abs=1e-12 * np.abs(g).sum())


# ----------------------------------------------------------------------------- HVP identities


def mlp_problem(seed: int = 0):
    """A 2-layer tanh/sigmoid MLP with biases and a softmax cross-entropy loss."""
    rng = np.random.default_rng(seed)
    x = const(rng.standard_normal((6, 4)))
    onehot = const(np.eye(3)[rng.integers(0, 3, 6)])
    params = [
        leaf(rng.standard_normal((5, 4)), "W1"),
        leaf(rng.standard_normal(5), "b1"),
        leaf(rng.standard_normal((3, 5)), "W2"),
        leaf(rng.standard_normal(3), "b2"),
    ]
    W1, b1, W2, b2 = params

    def closure() -> Tensor:
        h = (x @ W1.T + b1).tanh()
        z = (h @ W2.T + b2).sigmoid() * 4.0
        return -(ops.log_softmax(z, axis=1) * onehot).sum() / 6.0

    return closure, params


def test_hvp_is_symmetric():
    closure, params = mlp_problem()
    rng = np.random.default_rng(1)
    for _ in range(3):
        u, v = random_like(params, rng), random_like(params, rng)
        uHv = float(flatten(u) @ flatten(tc.hvp(closure, params, v)))
        vHu = float(flatten(v) @ flatten(tc.hvp(closure, params, u)))
        assert uHv == pytest.approx(vHu, rel=1e-12, abs=1e-14)


def test_hvp_is_linear_in_the_vector():
    closure, params = mlp_problem()
    rng = np.random.default_rng(2)
    u, v = random_like(params, rng), random_like(params, rng)
    combo = [2.0 * a - 3.0 * b for a, b in zip(u, v, strict=True)]
    want = [
        2.0 * a - 3.0 * b
        for a, b in zip(tc.hvp(closure, params, u), tc.hvp(closure, params, v), strict=True)
    ]
    assert_close(tc.hvp(closure, params, combo), want, 1e-12)


def test_hvp_of_network_matches_finite_differences_and_dense_hessian():
    closure, params = mlp_problem()
    H = hessian_from_hvps(closure, params)
    np.testing.assert_allclose(H, H.T, atol=1e-13)
    assert_close(H, fd_hessian(grad_function(closure, params), data_of(params)), HVP_RTOL)


def test_batched_hvp_equals_separate_hvps():
    closure, params = mlp_problem()
    vs = random_like(params, np.random.default_rng(3), k=K)
    hb = tc.hvp(closure, params, vs, batched=True)
    assert [h.shape for h in hb] == [(K,) + p.shape for p in params]
    for j in range(K):
        assert_close([h[j] for h in hb], tc.hvp(closure, params, [v[j] for v in vs]))


def test_batched_hvp_with_a_single_direction():
    closure, params = mlp_problem()
    v = random_like(params, np.random.default_rng(4))
    hb = tc.hvp(closure, params, [a[None] for a in v], batched=True)
    assert_close([h[0] for h in hb], tc.hvp(closure, params, v))


@pytest.mark.parametrize("batched", [False, True])
def test_value_grad_and_hvp_equals_separate_calls(batched):
    closure, params = mlp_problem()
    vs = random_like(params, np.random.default_rng(6), k=K if batched else None)
    value, grads, hvps = tc.functional.value_grad_and_hvp(closure, params, vs, batched=batched)
    want_value, want_grads = tc.value_and_grad(closure, params)
    assert value.shape == () and float(value) == pytest.approx(float(want_value), rel=EXACT)
    assert_close(grads, want_grads)
    assert_close(hvps, tc.hvp(closure, params, vs, batched=batched))
    assert [h.shape for h in hvps] == [tuple(v.shape) for v in vs]


def test_value_grad_and_hvp_on_the_hand_derived_network():
    closure, params, g, H = tanh_network()
    rng = np.random.default_rng(7)
    vs = random_like(params, rng)
    _, grads, hvps = tc.functional.value_grad_and_hvp(closure, params, vs)
    assert_close(flatten(grads), g)
    assert_close(flatten(hvps), H @ flatten(vs))


def test_unused_parameter_gets_zero_gradient_and_hvp():
    rng = np.random.default_rng(0)
    x, unused = leaf(rng.standard_normal(3)), leaf(rng.standard_normal((2, 2)))
    closure = lambda: (x * x).sum()
    g = tc.grad(closure, [x, unused])
    np.testing.assert_array_equal(tc.asnumpy(g[1]), np.zeros((2, 2)))
    hv = tc.hvp(closure, [x, unused], random_like([x, unused], rng))
    np.testing.assert_array_equal(tc.asnumpy(hv[1]), np.zeros((2, 2)))
    hb = tc.hvp(closure, [x, unused], random_like([x, unused], rng, k=K), batched=True)
    assert hb[1].shape == (K, 2, 2) and not np.any(hb[1])
    value, jv = tc.jvp(lambda: (unused * 0.0).sum() + 1.0, [x], random_like([x], rng))
    assert float(value) == 1.0 and float(jv) == 0.0
    _, grads, hvps = tc.functional.value_grad_and_hvp(
        closure, [x, unused], random_like([x, unused], rng)
    )
    assert not np.any(grads[1]) and not np.any(hvps[1]) and hvps[1].shape == (2, 2)


def test_linear_loss_has_zero_hessian():
    x = leaf(np.arange(4.0))
    c = const(np.array([1.0, -2.0, 3.0, 0.5]))
    hv = tc.hvp(lambda: (c * x).sum(), [x], [asarray(np.ones(4))])
    np.testing.assert_array_equal(tc.asnumpy(hv[0]), np.zeros(4))


def test_parameters_are_restored_after_every_call():
    closure, params = mlp_problem()
    before = [p.data for p in params]
    params[0].grad = asarray(np.full(params[0].shape, 7.0))
    params[1].requires_grad = False
    v = random_like(params, np.random.default_rng(0))
    tc.grad(closure, params)
    tc.jvp(closure, params, v)
    tc.hvp(closure, params, v)
    tc.taylor(closure, params, v, order=2)

    def failing() -> Tensor:
        closure()
        raise RuntimeError("boom")

    for call in (
        lambda: tc.grad(failing, params),
        lambda: tc.hvp(failing, params, v),
        lambda: tc.jvp(failing, params, v),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            call()
    assert all(p.data is d for p, d in zip(params, before, strict=True))
    np.testing.assert_array_equal(tc.asnumpy(params[0].grad), np.full(params[0].shape, 7.0))
    assert params[1].requires_grad is False and params[2].grad is None


# ----------------------------------------------------------------------------- Taylor terms


def _falling(n: int, j: int) -> float:
    return math.perm(n, j) if j <= n else 0.0


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_taylor_of_a_quartic_polynomial(order):
    """L(x) = Σ c_i x_i⁴ + Σ x_i³ − 2 Σ x_i: φ⁽ʲ⁾(0) = Σ c n!/(n−j)! x^(n−j) u^j termwise."""
    rng = np.random.default_rng(order)
    c, x0, u = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)
    x = leaf(x0)
    closure = lambda: (const(c) * x**4).sum() + (x * x * x).sum() - 2.0 * x.sum()
    got = tc.taylor(closure, [x], [asarray(u)], order=order)
    assert len(got) == order + 1 and all(isinstance(t, float) for t in got)
    for j in range(order + 1):
        want = (
            np.sum(c * _falling(4, j) * x0 ** (4 - j) * u**j)
            + np.sum(_falling(3, j) * x0 ** max(3 - j, 0) * u**j)
            - 2.0 * np.sum(_falling(1, j) * x0 ** max(1 - j, 0) * u**j)
        )
        assert got[j] == pytest.approx(want, rel=EXACT, abs=EXACT)


def test_taylor_of_a_cubic_network_has_zero_fourth_derivative():
    """L(W, b) = Σ (W x + b)³, z = W x + b, dz = U x + β: φ = Σ (z + t dz)³ exactly."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3))
    W0, b0 = rng.standard_normal((2, 3)), rng.standard_normal(2)
    U, beta = rng.standard_normal((2, 3)), rng.standard_normal(2)
    W, b = leaf(W0), leaf(b0)
    closure = lambda: ((const(X) @ W.T + b) ** 3).sum()
    z, dz = X @ W0.T + b0, X @ U.T + beta
    want = [np.sum(z**3), 3 * np.sum(z**2 * dz), 6 * np.sum(z * dz**2), 6 * np.sum(dz**3), 0.0]
    got = tc.taylor(closure, [W, b], [asarray(U), asarray(beta)], order=4)
    np.testing.assert_allclose(got, want, rtol=EXACT, atol=1e-11)


def _tanh_derivatives(s: np.ndarray) -> list[np.ndarray]:
    """tanh and its first four derivatives, by hand: with T = tanh, S = 1 − T²,
    T' = S, T'' = −2TS, T''' = −2S(1 − 3T²), T'''' = 8TS(2 − 3T²)."""
    T = np.tanh(s)
    S = 1 - T**2
    return [T, S, -2 * T * S, -2 * S * (1 - 3 * T**2), 8 * T * S * (2 - 3 * T**2)]


def _compose_exp(d: list[np.ndarray]) -> list[np.ndarray]:
    """Derivatives of exp(g(t)) from those of g (Faà di Bruno, written out to order 4)."""
    e = np.exp(d[0])
    return [
        e,
        d[1] * e,
        (d[2] + d[1] ** 2) * e,
        (d[3] + 3 * d[1] * d[2] + d[1] ** 3) * e,
        (d[4] + 4 * d[1] * d[3] + 3 * d[2] ** 2 + 6 * d[1] ** 2 * d[2] + d[1] ** 4) * e,
    ]


def _along(derivs: list[np.ndarray], w: np.ndarray) -> list[np.ndarray]:
    """Chain rule for g(s + t w): the j-th derivative gains a factor w^j."""
    return [dj * w**j for j, dj in enumerate(derivs)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softplus_derivatives(s: np.ndarray) -> list[np.ndarray]:
    """log(1 + eˢ) and its derivatives: σ, σ(1−σ), σ(1−σ)(1−2σ), σ(1−σ)(1−6σ+6σ²)."""
    q = _sigmoid(s)
    return [
        np.log1p(np.exp(s)),
        q,
        q * (1 - q),
        q * (1 - q) * (1 - 2 * q),
        q * (1 - q) * (1 - 6 * q + 6 * q**2),
    ]


TAYLOR_COMPOSITIONS = {
    # name: (L written with tensors, derivatives of φ at 0 by hand), x ∈ R⁴, s = x, w = u
    "exp(x)": (lambda x: x.exp().sum(), lambda s, w: _along([np.exp(s)] * 5, w)),
    "log(x)": (
        lambda x: x.log().sum(),
        lambda s, w: _along([np.log(s), 1 / s, -1 / s**2, 2 / s**3, -6 / s**4], w),
    ),
    "tanh(x)": (lambda x: x.tanh().sum(), lambda s, w: _along(_tanh_derivatives(s), w)),
    "exp(tanh(x))": (
        lambda x: x.tanh().exp().sum(),
        lambda s, w: _compose_exp(_along(_tanh_derivatives(s), w)),
    ),
    "log(1 + exp(x))": (
        lambda x: (x.exp() + 1.0).log().sum(),
        lambda s, w: _along(_softplus_derivatives(s), w),
    ),
    "exp(2 log x)": (  # = x², through exp and log
        lambda x: (2.0 * x.log()).exp().sum(),
        lambda s, w: [s**2, 2 * s * w, 2 * w**2, 0 * s, 0 * s],
    ),
}


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(TAYLOR_COMPOSITIONS))
def test_taylor_of_compositions(name, order):
    f, derivatives = TAYLOR_COMPOSITIONS[name]
    rng = np.random.default_rng(0)
    x0, u = rng.uniform(0.5, 2.0, 4), rng.standard_normal(4)
    x = leaf(x0)
    got = tc.taylor(lambda: f(x), [x], [asarray(u)], order=order)
    want = [float(np.sum(d)) for d in derivatives(x0, u)[: order + 1]]
    np.testing.assert_allclose(got, want, rtol=EXACT, atol=1e-12)


def test_taylor_agrees_with_jvp_and_hvp():
    closure, params = mlp_problem()
    u = random_like(params, np.random.default_rng(5))
    t = tc.taylor(closure, params, u, order=3)
    value, jv = tc.jvp(closure, params, u)
    uHu = float(flatten(u) @ flatten(tc.hvp(closure, params, u)))
    assert t[0] == pytest.approx(float(value), rel=EXACT)
    assert t[1] == pytest.approx(float(jv), rel=EXACT)
    assert t[2] == pytest.approx(uHu, rel=1e-11)
    # φ''' against a central difference of φ'' (by HVPs): ε = 1e-4, relative 1e-6
    eps, moved, saved = 1e-4, [], [p.data for p in params]
    for step in (eps, -eps):
        for p, d, v in zip(params, saved, u, strict=True):
            p.data = d + step * v
        moved.append(tc.taylor(closure, params, u, order=2)[2])
    for p, d in zip(params, saved, strict=True):
        p.data = d
    assert t[3] == pytest.approx((moved[0] - moved[1]) / (2 * eps), rel=1e-6)


def test_taylor_of_order_zero_is_the_value():
    closure, params, _, _ = rosenbrock()
    with tc.no_grad():
        value = closure().item()
    assert tc.taylor(closure, params, random_like(params, np.random.default_rng(0)), 0) == [
        pytest.approx(value, rel=EXACT)
    ]


# ----------------------------------------------------------------------------- errors


def test_mismatched_shapes_raise_value_error():
    closure, params = mlp_problem()
    good = random_like(params, np.random.default_rng(0))
    wrong_shape = good[:1] + [asarray(np.ones(7))] + good[2:]
    too_few = good[:-1]
    for bad in (wrong_shape, too_few):
        with pytest.raises(ValueError, match="jvp"):
            tc.jvp(closure, params, bad)
        with pytest.raises(ValueError, match="hvp"):
            tc.hvp(closure, params, bad)
        with pytest.raises(ValueError, match="taylor"):
            tc.taylor(closure, params, bad)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        tc.hvp(closure, params, wrong_shape)
    # batched: the leading axis must be present and the same k for every parameter
    with pytest.raises(ValueError, match="hvp"):
        tc.hvp(closure, params, good, batched=True)
    ks = random_like(params, np.random.default_rng(1), k=K)
    ks[2] = ks[2][:2]
    with pytest.raises(ValueError, match="hvp"):
        tc.hvp(closure, params, ks, batched=True)
    with pytest.raises(ValueError, match="hvp"):  # batched vectors without batched=True
        tc.hvp(closure, params, random_like(params, np.random.default_rng(1), k=K))


def test_backward_rejects_a_cotangent_of_the_wrong_shape():
    x = leaf(np.ones(3))
    y = x + 0.0
    with pytest.raises(ValueError, match="shape"):
        y.backward(asarray(np.ones((2, 3))))


def test_non_scalar_closure_raises():
    x = leaf(np.ones(3))
    vector_valued = lambda: x * 2.0
    for call in (
        lambda: tc.grad(vector_valued, [x]),
        lambda: tc.value_and_grad(vector_valued, [x]),
        lambda: tc.jvp(vector_valued, [x], [asarray(np.ones(3))]),
        lambda: tc.hvp(vector_valued, [x], [asarray(np.ones(3))]),
        lambda: tc.taylor(vector_valued, [x], [asarray(np.ones(3))]),
    ):
        with pytest.raises(ValueError, match="scalar"):
            call()
    with pytest.raises(TypeError, match="Tensor"):
        tc.grad(lambda: 3.0, [x])


def test_taylor_rejects_a_negative_order():
    closure, params, _, _ = quadratic()
    with pytest.raises(ValueError, match="order"):
        tc.taylor(closure, params, random_like(params, np.random.default_rng(0)), order=-1)


def test_grad_and_hvp_inside_no_grad_are_not_zero():
    closure, params, g, H = rosenbrock()
    v = [asarray(np.ones(params[0].shape))]
    with tc.no_grad():
        grads = tc.grad(closure, params)
        hv = tc.hvp(closure, params, v)
    assert_close(flatten(grads), g)
    assert_close(flatten(hv), H @ np.ones(H.shape[0]))


def test_hvps_are_writeable_and_independent():
    a, b, c = leaf(np.ones(3)), leaf(np.ones(3)), leaf(np.ones((2, 3)))
    ones = [asarray(np.ones(3)), asarray(np.ones(3)), asarray(np.ones((2, 3)))]
    closure = lambda: ((a + b) ** 2).sum() + c.sum() ** 2
    _, grads, hvps = tc.functional.value_grad_and_hvp(closure, [a, b, c], ones)
    for arrays in (grads, hvps):
        assert all(getattr(h.flags, "writeable", True) for h in arrays)  # CuPy: no such flag
        assert not np.shares_memory(arrays[0], arrays[1])
    hvps[0] += 1.0
    hvps[2] += 1.0
    # H = [[2I, 2I], [2I, 2I]] on (a, b)
    np.testing.assert_array_equal(tc.asnumpy(hvps[1]), np.full(3, 4.0))
    np.testing.assert_array_equal(tc.asnumpy(hvps[2]), np.full((2, 3), 13.0))  # 2·(Σ ones) + 1


# ----------------------------------------------------------------------------- parameters


def test_a_non_leaf_parameter_is_differentiated_as_an_input():
    """Like ``torch.autograd.grad``: b = 2a is differentiated as it stands, the tape above it
    (Mul) untouched, and nothing is written into the leaf's ``.grad``.

    L = Σ b³ + Σ a·b with a fixed: ∂L/∂b = 3b² + a, ∂²L/∂b² v = 6 b ⊙ v, and along v
    φ(t) = L(b + t v) has φ'' = 6 Σ b v², φ''' = 6 Σ v³.
    """
    an = np.array([0.5, -1.0, 2.0])
    a = leaf(an)
    b = a * 2.0
    bn, vn = 2.0 * an, np.array([1.0, 0.5, -2.0])
    v = asarray(vn)
    closure = lambda: (b**3).sum() + (a * b).sum()
    value = float(np.sum(bn**3) + np.sum(an * bn))
    assert_close(tc.grad(closure, [b])[0], 3 * bn**2 + an)
    val, (g,) = tc.value_and_grad(closure, [b])
    assert float(val) == pytest.approx(value, rel=EXACT)
    assert_close(g, 3 * bn**2 + an)
    assert_close(tc.hvp(closure, [b], [v])[0], 6 * bn * vn)
    vs = asarray(np.stack([vn, -vn, np.ones(3)]))
    assert_close(tc.hvp(closure, [b], [vs], batched=True)[0], 6 * bn * tc.asnumpy(vs))
    _, jv = tc.jvp(closure, [b], [v])
    assert float(jv) == pytest.approx(float(np.sum((3 * bn**2 + an) * vn)), rel=EXACT)
    phi = tc.taylor(closure, [b], [v], order=3)
    assert phi[2] == pytest.approx(6 * np.sum(bn * vn**2), rel=EXACT)
    assert phi[3] == pytest.approx(6 * np.sum(vn**3), rel=EXACT)
    # the leaf was not written to, and b is still on the tape
    assert a.grad is None and b.grad is None
    assert type(b.creator).__name__ == "Mul" and b.parents[0] is a
    b.sum().backward()
    np.testing.assert_array_equal(tc.asnumpy(a.grad), np.full(3, 2.0))


def test_a_parameter_computed_from_another_raises():
    """With both a and b = f(a) as parameters, the path a → b would be cut: a clear error."""
    a = leaf(np.array([0.5, -1.0, 2.0]))
    c = (a * 2.0).tanh()  # two steps above: Mul, then Tanh
    closure = lambda: (c**2).sum() + a.sum()
    v = [asarray(np.ones(3)), asarray(np.ones(3))]
    for what, call in (
        ("grad", lambda: tc.grad(closure, [a, c])),
        ("value_and_grad", lambda: tc.value_and_grad(closure, [a, c])),
        ("jvp", lambda: tc.jvp(closure, [a, c], v)),
        ("hvp", lambda: tc.hvp(closure, [a, c], v)),
        ("taylor", lambda: tc.taylor(closure, [a, c], v)),
    ):
        with pytest.raises(ValueError, match=rf"{what}: params\[1\] was computed from params\[0\]"):
            call()
    with pytest.raises(ValueError, match="Tanh"):  # the order of the list does not matter
        tc.grad(closure, [c, a])
    assert a.grad is None


def test_integer_parameters_raise_instead_of_truncating_directions():
    p = Tensor(asarray(np.arange(3)), requires_grad=True)
    closure = lambda: (p * 1.5).sum()
    half = [asarray(np.full(3, 0.5))]
    for what, call in (
        ("grad", lambda: tc.grad(closure, [p])),
        ("value_and_grad", lambda: tc.value_and_grad(closure, [p])),
        ("jvp", lambda: tc.jvp(closure, [p], half)),
        ("hvp", lambda: tc.hvp(closure, [p], half)),
        ("hvp", lambda: tc.hvp(closure, [p], [asarray(np.full((2, 3), 0.5))], batched=True)),
        ("taylor", lambda: tc.taylor(closure, [p], half)),
    ):
        with pytest.raises(TypeError, match=rf"{what}: parameter 0 has integer dtype int64"):
            call()
    assert p.grad is None and p.data.dtype == np.int64


def test_float32_parameters_keep_their_dtype_along_float64_directions():
    p = Tensor(asarray(np.array([0.5, -1.0, 2.0]), dtype=np.float32), requires_grad=True)
    closure = lambda: (p**3).sum()
    v = asarray(np.array([1.0, 0.5, -2.0]))  # float64
    (hv,) = tc.hvp(closure, [p], [v])
    assert hv.dtype == np.float32
    np.testing.assert_allclose(tc.asnumpy(hv), 6 * np.array([0.5, -1.0, 2.0]) * tc.asnumpy(v))
    _, jv = tc.jvp(closure, [p], [v])
    assert jv.dtype == np.float32


def test_transforms_write_no_gradient_into_other_leaves():
    """Only ``params`` are differentiated: a leaf outside them keeps its ``.grad`` (no dual is
    left in it by an HVP), and the parameters' own ``.grad`` are restored."""
    a, b = leaf(np.array([1.0, 2.0])), leaf(np.array([3.0, -1.0]))
    before_a, before_b = asarray(np.full(2, 7.0)), asarray(np.full(2, 9.0))
    a.grad, b.grad = before_a, before_b
    closure = lambda: ((a * b).sum()) ** 2  # (a·b)²: ∇_a = 2(a·b) b, H_aa = 2 b bᵀ
    ones = [asarray(np.ones(2))]
    assert_close(tc.grad(closure, [a])[0], 2 * 1.0 * np.array([3.0, -1.0]))
    assert_close(tc.hvp(closure, [a], ones)[0], 2 * np.array([3.0, -1.0]) * 2.0)
    tc.hvp(closure, [a], [asarray(np.ones((3, 2)))], batched=True)
    tc.value_and_grad(closure, [a])
    assert a.grad is before_a and b.grad is before_b
    b.grad = None
    (a * b).sum().backward(inputs=[b])
    assert a.grad is before_a
    np.testing.assert_array_equal(tc.asnumpy(b.grad), [1.0, 2.0])


def test_a_parameter_given_twice_raises():
    """[a, a] with directions v₁, v₂ would silently keep only v₂ (a has one value)."""
    a = leaf(np.array([0.5, -1.0]))
    closure = lambda: (a**3).sum()
    v = [asarray(np.ones(2)), asarray(np.full(2, 2.0))]
    for call in (
        lambda: tc.grad(closure, [a, a]),
        lambda: tc.jvp(closure, [a, a], v),
        lambda: tc.hvp(closure, [a, a], v),
        lambda: tc.taylor(closure, [a, a], v),
    ):
        with pytest.raises(ValueError, match=r"params\[1\] is params\[0\]"):
            call()
