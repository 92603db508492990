"""The SFN experiments (tinycurv.bench.sfn_experiments), the one implementation behind
BENCHMARKS_SFN.md and the ``sfn-*`` entries of ``tinycurv reproduce``: the numbers against
independent computations, the training CSV round trip and the figures' legends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinycurv.backend import asarray, asnumpy
from tinycurv.bench import sfn_experiments as E
from tinycurv.curvature.sfn import series_coefficients, wynn_epsilon


def test_toy_paths_newton_lands_on_the_saddle_and_sfn_uses_abs_h():
    paths = E.toy_paths(steps=2)
    theta = np.array(E.TOY_START)
    g = E.TOY_H @ theta
    w, Q = np.linalg.eigh(E.TOY_H)
    np.testing.assert_allclose(paths["Newton"][1], 0.0, atol=1e-12)
    np.testing.assert_allclose(paths["exact SFN"][1], theta - Q @ ((Q.T @ g) / np.abs(w)))
    np.testing.assert_allclose(paths["series N=1"][1], theta - g / math.sqrt(E.TOY_V))
    np.testing.assert_allclose(paths["SGD (lr 0.1)"][2], (np.eye(2) - 0.1 * E.TOY_H) @ (
        (np.eye(2) - 0.1 * E.TOY_H) @ theta))  # fmt: skip
    assert all(p.shape == (3, 2) for p in paths.values())
    assert "| Newton | 0.0000 | 0.0000 | 0.0000 |" in E.toy_surface(steps=2)


def test_accelerator_rows_match_the_series_in_the_eigenbasis():
    """u from the closed form: the partial sums Sₘ = Q diag(Σₙ≤ₘ cₙ yⁿ) Qᵀ g, y = 1 − λ²/V,
    then Wynn's ε over the last 2k + 1 and the factor V^(−1/2)."""
    V, damping = 50.0, 0.3
    rows = E.accelerator_rows(dim=12, V=V, terms=7, seeds=(3,), damping=damping)
    rng = np.random.default_rng(3)
    M = rng.standard_normal((12, 12))
    H = np.triu(M) + np.triu(M, 1).T
    g = rng.standard_normal(12)
    w, Q = np.linalg.eigh(H)
    exact = Q @ ((Q.T @ g) / (np.abs(w) + damping))
    c = series_coefficients(7, damping / math.sqrt(V))
    y = 1 - w**2 / V
    sums = [Q @ (sum(c[n] * y**n for n in range(m + 1)) * (Q.T @ g))
            for m in range(7)]  # fmt: skip
    assert {(r["N"], r["k"]) for r in rows} == {
        (N, k) for N in range(1, 8) for k in (0, 1, 2) if N >= 2 * k + 1
    }
    for r in rows:
        N, k = r["N"], r["k"]
        last = [[asarray(s)] for s in sums[N - 2 * k - 1 : N]]
        u = asnumpy(wynn_epsilon(last, k)[0]) / math.sqrt(V)
        cos = u @ exact / (np.linalg.norm(u) * np.linalg.norm(exact))
        assert r["cosine"] == pytest.approx(cos, abs=1e-9), (N, k)
        assert r["length_ratio"] == pytest.approx(np.linalg.norm(u) / np.linalg.norm(exact))
        assert r["error"] == pytest.approx(np.linalg.norm(u - exact) / np.linalg.norm(exact))
        assert r["hvps"] == 2 * (N - 1)


def _legend_is_outside_every_axes(fig) -> bool:
    fig.draw_without_rendering()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    return not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)


def test_training_csv_round_trip_and_figures_keep_legends_off_the_axes(tmp_path):
    runs = E.train_full_batch("digits", 2, names=["sgd", "adam"])
    assert [len(r["losses"]) for r in runs.values()] == [2, 2]
    png = E.training_plot("digits", runs, tmp_path)
    back = E.runs_from_csv(tmp_path / "sfn_training_digits.csv")
    assert list(back) == ["sgd", "adam"]
    for name, r in runs.items():
        np.testing.assert_allclose(back[name]["losses"], r["losses"], rtol=1e-5)
        assert back[name]["params"] == r["params"] == 610
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert E.DPI >= 120
    figures = [E.training_figure("digits", runs), E.toy_figure(E.toy_paths(1)),
               E.accelerator_figure(E.accelerator_rows(dim=8, V=20.0, terms=5))]  # fmt: skip
    for fig in figures:
        assert _legend_is_outside_every_axes(fig)
        assert all(
            ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax.get_label() != "<colorbar>"
        )


def test_same_steps_gives_exact_sfn_every_step():
    short = E.train_full_batch("digits", 3, names=["exact-sfn subspace"])
    full = E.train_full_batch("digits", 3, names=["exact-sfn subspace"], same_steps=True)
    assert len(short["exact-sfn subspace"]["losses"]) == 1  # a third of the steps
    assert len(full["exact-sfn subspace"]["losses"]) == 3
    np.testing.assert_allclose(full["exact-sfn subspace"]["losses"][0],
                               short["exact-sfn subspace"]["losses"][0])  # fmt: skip
