"""``MSELoss`` and ``CrossEntropyLoss``: values, derivatives, Hessians, sampling, errors (float64).

Tolerances (finite differences from ``tests/helpers.py``): gradients against central differences
(ε = 1e-6) to relative 1e-7; HVPs and Hessians against central differences of the gradient
(ε = 1e-5) to relative 1e-6; closed forms (values, gradients, Hessians, S Sᵀ = H) to 1e-12.
Sampling tests use N = 20 000 draws and a band of five standard errors, so a correct sampler
fails with probability below 1e-5 per checked number (and the seeds are fixed).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    GRAD_RTOL,
    HVP_RTOL,
    data_of,
    fd_grad,
    fd_hessian,
    fd_hvp,
    grad_function,
    hessian_from_hvps,
    loss_function,
    rel_err,
)

import tinycurv as tc
from tinycurv import nn
from tinycurv.backend import asarray, default_rng
from tinycurv.tensor import Tensor

B, M = 5, 4


def _softmax(f: np.ndarray) -> np.ndarray:
    e = np.exp(f - f.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _setup(kind: str, seed: int = 0):
    """Loss, outputs as a leaf tensor f (B, M), targets, and the closure L(f)."""
    rng = np.random.default_rng(seed)
    f = Tensor(asarray(rng.standard_normal((B, M))), requires_grad=True, name="f")
    if kind == "mse":
        loss_fn, y = nn.MSELoss(), asarray(rng.standard_normal((B, M)))
    else:
        loss_fn, y = nn.CrossEntropyLoss(), asarray(rng.integers(0, M, B))
    return loss_fn, f, y, lambda: loss_fn(f, y)


# -- values and first derivatives ------------------------------------------------------------------


def test_mse_value_is_half_sum_over_outputs_mean_over_batch():
    loss_fn, f, y, closure = _setup("mse")
    r = tc.asnumpy(f.data) - tc.asnumpy(y)
    assert closure().item() == pytest.approx(0.5 * np.sum(r**2) / B, rel=1e-14)
    (g,) = tc.grad(closure, [f])
    np.testing.assert_allclose(tc.asnumpy(g), r / B, rtol=1e-12)


def test_cross_entropy_value_and_gradient():
    loss_fn, f, y, closure = _setup("ce")
    fv, yv = tc.asnumpy(f.data), tc.asnumpy(y)
    lse = np.log(np.sum(np.exp(fv), axis=1))
    assert closure().item() == pytest.approx(np.mean(lse - fv[np.arange(B), yv]), rel=1e-14)
    (g,) = tc.grad(closure, [f])
    np.testing.assert_allclose(tc.asnumpy(g), (_softmax(fv) - np.eye(M)[yv]) / B, rtol=1e-12)


def test_cross_entropy_is_stable_for_large_logits():
    f = Tensor(asarray(np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]])), requires_grad=True)
    y = asarray(np.array([2, 1]))
    loss = nn.CrossEntropyLoss()(f, y)
    assert loss.item() == pytest.approx(1000.0, rel=1e-14)  # (2000 + 0) / 2
    loss.backward()
    assert np.all(np.isfinite(tc.asnumpy(f.grad)))


@pytest.mark.parametrize("kind", ["mse", "ce"])
def test_gradient_and_hvp_match_finite_differences(kind):
    _, f, _, closure = _setup(kind)
    want = fd_grad(loss_function(closure, [f]), data_of([f]))
    assert rel_err(tc.grad(closure, [f]), want) < GRAD_RTOL
    v = [asarray(np.random.default_rng(1).standard_normal(f.shape))]
    want = fd_hvp(grad_function(closure, [f]), data_of([f]), v)
    assert rel_err(tc.hvp(closure, [f], v), want) < HVP_RTOL


# -- Hessians of the per-sample loss ---------------------------------------------------------------


def _per_sample_hessians(loss_fn, f: Tensor, y) -> tuple[np.ndarray, np.ndarray]:
    """∇²_f ℓₙ for each n, by HVPs with the unit vectors (batched) and by finite differences."""
    by_hvp, by_fd = np.zeros((B, M, M)), np.zeros((B, M, M))
    for n in range(B):
        fn = Tensor(f.data[n : n + 1], requires_grad=True)
        closure = lambda fn=fn, n=n: loss_fn(fn, y[n : n + 1])  # batch of one: ℓₙ
        by_hvp[n] = hessian_from_hvps(closure, [fn])
        by_fd[n] = fd_hessian(grad_function(closure, [fn]), data_of([fn]))
    return by_hvp, by_fd


@pytest.mark.parametrize("kind", ["mse", "ce"])
def test_hessian_is_the_per_sample_loss_hessian(kind):
    loss_fn, f, y, _ = _setup(kind)
    H = tc.asnumpy(loss_fn.hessian(f))
    assert H.shape == (B, M, M)
    by_hvp, by_fd = _per_sample_hessians(loss_fn, f, y)
    np.testing.assert_allclose(H, by_hvp, rtol=1e-12, atol=1e-14)
    assert rel_err(H, by_fd) < HVP_RTOL


@pytest.mark.parametrize("kind", ["mse", "ce"])
def test_hessian_sqrt_squares_to_the_analytic_hessian(kind):
    loss_fn, f, _, _ = _setup(kind)
    if kind == "mse":
        want = np.broadcast_to(np.eye(M), (B, M, M))
    else:
        p = _softmax(tc.asnumpy(f.data))
        want = np.stack([np.diag(pn) - np.outer(pn, pn) for pn in p])
    S = tc.asnumpy(loss_fn.hessian_sqrt(f))
    assert S.shape == (B, M, M)
    np.testing.assert_allclose(S @ S.transpose(0, 2, 1), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tc.asnumpy(loss_fn.hessian(f)), want, rtol=1e-12, atol=1e-15)


def test_hessians_accept_tensors_duals_and_arrays():
    loss_fn, f, _, _ = _setup("ce")
    a = tc.asnumpy(loss_fn.hessian_sqrt(f))
    b = tc.asnumpy(loss_fn.hessian_sqrt(f.data))
    c = tc.asnumpy(loss_fn.hessian_sqrt(tc.Dual(f.data, f.data)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


# -- sampled targets -------------------------------------------------------------------------------

N = 20_000


def test_mse_sample_targets_are_gaussian_around_the_outputs():
    f0 = np.array([0.5, -2.0, 3.0])
    f = asarray(np.tile(f0, (N, 1)))
    y = tc.asnumpy(nn.MSELoss().sample_targets(f, rng=0))
    assert y.shape == (N, 3) and y.dtype == np.float64
    se = 1 / np.sqrt(N)  # standard error of a mean of unit-variance draws
    assert np.all(np.abs(y.mean(0) - f0) < 5 * se)
    cov = np.cov(y, rowvar=False)
    # the variance of a sample (co)variance of unit Gaussians is at most 2/N
    assert np.all(np.abs(cov - np.eye(3)) < 5 * np.sqrt(2) * se)


def test_cross_entropy_sample_targets_have_softmax_frequencies():
    logits = np.array([1.0, 0.0, -1.0, 2.0, 0.5])
    p = _softmax(logits[None])[0]
    y = tc.asnumpy(nn.CrossEntropyLoss().sample_targets(asarray(np.tile(logits, (N, 1))), rng=0))
    assert y.shape == (N,) and y.dtype.kind == "i"
    assert y.min() >= 0 and y.max() < len(p)
    freq = np.bincount(y, minlength=len(p)) / N
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / N))


def test_sample_targets_follow_each_row_and_the_seed():
    f = asarray(np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0], [0.0, 50.0, 0.0]]))
    ce = nn.CrossEntropyLoss()
    np.testing.assert_array_equal(tc.asnumpy(ce.sample_targets(f, rng=1)), [0, 2, 1])
    mse = nn.MSELoss()
    a, b = mse.sample_targets(f, rng=3), mse.sample_targets(f, rng=default_rng(3))
    np.testing.assert_array_equal(tc.asnumpy(a), tc.asnumpy(b))
    assert not np.array_equal(tc.asnumpy(a), tc.asnumpy(mse.sample_targets(f, rng=4)))


# -- errors ----------------------------------------------------------------------------------------


def test_bad_targets_raise():
    f = Tensor(asarray(np.zeros((3, 4))))
    ce, mse = nn.CrossEntropyLoss(), nn.MSELoss()
    # the range check runs on host labels (on CuPy, device labels would need a sync per call)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        ce(f, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        ce(f, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="integer labels"):
        ce(f, asarray(np.array([0.0, 1.0, 2.0])))
    with pytest.raises(ValueError, match="integer labels"):
        ce(f, asarray(np.array([0, 1])))
    with pytest.raises(ValueError, match="outputs must be"):
        ce(Tensor(asarray(np.zeros(4))), asarray(np.array([0])))
    with pytest.raises(ValueError, match="MSELoss"):
        mse(f, asarray(np.zeros((3, 5))))
    with pytest.raises(ValueError, match="MSELoss"):
        mse(f, asarray(np.zeros(3)))
