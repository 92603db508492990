"""Solutions to the exercises of tutorials/09_compare_optimisers.ipynb (09.1–09.4)."""

import numpy as np


def running_mean(values, window):
    """09.1 · The mean of the last `window` values at each position (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def steps_to_threshold(losses, threshold, window=10):
    """09.2 · The first step (from 1) whose running mean is below the threshold, or None."""
    below = np.flatnonzero(running_mean(losses, window) < threshold)
    return int(below[0]) + 1 if below.size else None


def sgd_momentum_step(theta, grad, buf, lr, momentum, weight_decay=0.0, nesterov=False):
    """09.3 · PyTorch's SGD: d = g + wd·θ, buf = d or μ·buf + d, θ − lr·(buf or d + μ·buf)."""
    d = grad + weight_decay * theta
    buf = d.copy() if buf is None else momentum * buf + d
    direction = d + momentum * buf if nesterov else buf
    return theta - lr * direction, buf


def adam_step(theta, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8):
    """09.4 · PyTorch's Adam: moments, bias corrections, ε outside the square root."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
