# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · The GPU backend: NumPy or CuPy behind one name
#
# Every array operation in tinycurv goes through one name, `tinycurv.backend.xp`, which forwards to
# the current array module — NumPy on the CPU, CuPy on an NVIDIA GPU. CuPy copies NumPy's interface,
# so the same lines of code run on either (the lesson of DeZero's `cuda.py`):
#
# ```python
# from tinycurv.backend import xp
# z = xp.tanh(a @ w.T)        # numpy.tanh or cupy.tanh, whichever is current
# ```
#
# This notebook shows how to switch (and what happens when there is no GPU), times one workload on
# both backends where a GPU exists, and explains why tinycurv computes in float64 by default — every
# check needs it — while float32 is an opt-in for training speed. It runs top to bottom without a GPU: the GPU cells detect that and say so.

# %%
# Where tinycurv is not installed yet (Colab, a fresh environment), install it from GitHub;
# its dependencies (NumPy, SciPy, matplotlib, scikit-learn, ...) are all this notebook needs.
import importlib.util

if importlib.util.find_spec("tinycurv") is None:
    # %pip install --quiet "tinycurv @ git+https://github.com/tinycurv/tinycurv"

# %%
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import os
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import Tensor, nn
from tinycurv.backend import BackendError, backend_name
from tinycurv.bench.common import synchronize  # waits for queued GPU work (no-op on NumPy)

plt.rcParams.update({"figure.dpi": 120})
print("backend at import:", backend_name(), "| xp ->", tc.xp, "| default dtype:", tc.get_default_dtype())

# %% [markdown]
# ## 1. Switching: `tinycurv.set_backend`
#
# `set_backend("cupy")` imports CuPy and asks the CUDA driver for a device. Where either is missing it
# raises `BackendError` with a message saying what to install or set — it never falls back silently,
# because a silent fallback would make a "GPU" benchmark measure the CPU. Catching the error is how a
# script (or this notebook) chooses:

# %% tags=["machine"]
try:
    tc.set_backend("cupy")
    GPU = True
    import cupy

    gpu_name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print("CuPy backend active on", gpu_name.decode() if isinstance(gpu_name, bytes) else gpu_name)
except BackendError as err:
    GPU = False
    print("No GPU backend on this machine; everything below runs on NumPy.")
    print("  BackendError:", err)
finally:
    tc.set_backend("numpy")  # start from the CPU; the timing cell switches explicitly

print("current backend:", backend_name())

# %% [markdown]
# Arrays belong to the backend that was current when they were made: switching does not move
# existing tensors. Create models and data *after* switching — or move a model's parameters with
# `model.load_state_dict(model.state_dict())`, which copies host arrays into the current backend.
#
# ## 2. The same cell on both backends
#
# One workload, written once: a gradient and a Hessian-vector product of a
# $784 \to 512 \to 512 \to 10$ tanh MLP on a batch of 256 with cross-entropy loss. It builds its model
# and data on whatever backend is current (`tinycurv.backend.asarray` puts host data there) and
# returns the loss, the gradient and the HVP. The timer calls `synchronize()` before it reads the
# clock — GPU calls return before the work is done, so an unsynchronised timer measures only the
# launch. Each number is the fastest of a few interleaved runs after a warm-up, in *wall-clock*
# time — the only clock that is fair between a CPU and a GPU (notebook 02's CPU-time clock does not
# see GPU work) — so on a busy machine the CPU rows are noisy.

# %% tags=["machine"]
SIZES, BATCH = [784, 512, 512, 10], 256


def workload(seed=0):
    """Build the MLP and a batch on the current backend; return (closure, params, direction)."""
    r = np.random.default_rng(seed)  # host random numbers: the same network on every backend
    net = nn.Sequential(nn.Linear(SIZES[0], SIZES[1], rng=r), nn.Tanh(),
                        nn.Linear(SIZES[1], SIZES[2], rng=r), nn.Tanh(),
                        nn.Linear(SIZES[2], SIZES[3], rng=r))
    dtype = tc.get_default_dtype()
    x = tc.backend.asarray(r.standard_normal((BATCH, SIZES[0])), dtype=dtype)
    y = tc.backend.asarray(r.integers(0, SIZES[-1], size=BATCH))
    ce = nn.CrossEntropyLoss()
    params = net.parameters()
    v = [tc.backend.asarray(r.standard_normal(p.shape), dtype=dtype) for p in params]
    return (lambda: ce(net(x), y)), params, v


def best_times(candidates, rounds=3):
    """{name: fastest time in seconds} of each function over interleaved rounds, GPU synchronised."""
    for fn in candidates.values():  # warm-up (on a GPU this also compiles the kernels)
        fn()
    synchronize()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def run(backend, dtype, rounds=3):
    """Time gradient and HVP on one backend and dtype; return timings and host copies of results."""
    tc.set_backend(backend)
    tc.set_default_dtype(dtype)
    try:
        closure, params, v = workload()
        best = best_times({"grad": lambda: tc.grad(closure, params),
                           "hvp": lambda: tc.hvp(closure, params, v)}, rounds)
        t_grad, t_hvp = best["grad"], best["hvp"]
        value, grads = tc.value_and_grad(closure, params)
        Hv = tc.hvp(closure, params, v)
        host = dict(loss=float(value), grad=[tc.asnumpy(g) for g in grads], hvp=[tc.asnumpy(h) for h in Hv])
    finally:
        tc.set_backend("numpy")
        tc.set_default_dtype("float64")
    return dict(backend=backend, dtype=dtype, t_grad=t_grad, t_hvp=t_hvp, **host)


results = [run("numpy", "float64"), run("numpy", "float32")]
if GPU:
    results += [run("cupy", "float64", rounds=10), run("cupy", "float32", rounds=10)]
else:
    print("(no GPU: the CuPy rows are skipped)")

print(f"{'backend':8s}{'dtype':>9s}{'gradient':>12s}{'HVP':>12s}{'loss':>12s}")
for r_ in results:
    print(f"{r_['backend']:8s}{r_['dtype']:>9s}{r_['t_grad'] * 1e3:10.1f}ms{r_['t_hvp'] * 1e3:10.1f}ms"
          f"{r_['loss']:12.6f}")


# %% [markdown]
# Do the backends agree? Same seed, same network, so the results must match to the precision of the
# dtype (the order of floating-point sums differs between libraries, so not to the last bit).
# `tinycurv.asnumpy` made the host copies above: it calls `.get()` on a CuPy array and passes NumPy
# arrays through, so code that plots or saves results works unchanged on both backends.

# %% tags=["machine"]
def flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))


reference = results[0]  # NumPy, float64
for r_ in results[1:]:
    print(f"{r_['backend']:6s} {r_['dtype']}: relative difference to NumPy float64 -- "
          f"gradient {rel_error(flat(r_['grad']), flat(reference['grad'])):.1e}, "
          f"HVP {rel_error(flat(r_['hvp']), flat(reference['hvp'])):.1e}")

g0 = reference["grad"][0]
print("\nasnumpy on a NumPy array is a pass-through:", tc.asnumpy(g0) is g0)

# %%
labels = [f"{r_['backend']}\n{r_['dtype']}" for r_ in results]
x_pos = np.arange(len(results))
fig, ax = plt.subplots(figsize=(6.5, 3.4))
b1 = ax.bar(x_pos - 0.2, [r_["t_grad"] * 1e3 for r_ in results], 0.4, label="gradient")
b2 = ax.bar(x_pos + 0.2, [r_["t_hvp"] * 1e3 for r_ in results], 0.4, label="HVP")
ax.bar_label(b1, fmt="%.0f", fontsize=8)
ax.bar_label(b2, fmt="%.0f", fontsize=8)
ax.set_xticks(x_pos, labels)
ax.set(ylabel="time per call (ms, fastest run)", title=f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}: gradient and HVP"
       + ("" if GPU else "\n(no GPU on this machine: CPU only)"))
ax.margins(y=0.15)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# On a GPU, expect the CuPy rows to be much faster than NumPy for layers this wide, and float32 to beat
# float64 by a wide margin on consumer GPUs, whose float64 throughput is a small fraction of their
# float32 throughput (data-centre GPUs such as the A100 or H100 narrow that gap). Small networks are the exception: each primitive launches GPU kernels, and
# below a few hundred units per layer the launch overhead dominates and NumPy can win.
#
# ## 3. Choosing the backend from outside: `TINYCURV_BACKEND`
#
# `tinycurv.backend` reads the environment variable `TINYCURV_BACKEND` once, at import, so a script or a
# test run can be sent to the GPU without editing code:
#
# ```bash
# TINYCURV_BACKEND=cupy python train.py
# TINYCURV_BACKEND=cupy pytest
# ```
#
# Asking for CuPy where it cannot run fails loudly at import. We check both cases in fresh Python
# processes:

# %% tags=["machine"]
probe = "import tinycurv; from tinycurv.backend import backend_name; print('backend:', backend_name())"
for choice in ["numpy", "cupy"]:
    env = dict(os.environ, TINYCURV_BACKEND=choice)
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    answer = proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]
    print(f"TINYCURV_BACKEND={choice:5s} -> exit code {proc.returncode}: {answer}")

# %% [markdown]
# ## 4. `asnumpy` and host transfers
#
# A CuPy array lives in GPU memory; NumPy, matplotlib and file writers need host memory. tinycurv
# marks every host transfer: `tc.asnumpy(array)`, `tensor.numpy()` and `tensor.item()`. Each one on a
# GPU waits for the device and copies over PCIe, so inside a training loop keep everything on the
# device and transfer once — a loss for a log line, or the final results for a plot.
#
# ```python
# loss_value = loss.item()                       # one float, one small transfer
# grads_host = [tc.asnumpy(g) for g in grads]    # for plotting or np.save
# ```
#
# ## 5. float32 vs float64: train fast, verify exactly
#
# `tc.set_default_dtype("float32")` makes new parameters and data single precision: half the memory,
# and on GPUs several times the throughput. But every *verification* in tinycurv uses float64. The
# reason is the finite-difference error of notebook 01,
#
# $$
# \text{error}(h) \;\approx\; \underbrace{C_1\,h^2}_{\text{truncation}} \;+\;
# \underbrace{C_2\,\epsilon_\text{mach} / h}_{\text{rounding}},
# \qquad \min_h \text{error} \;\sim\; \epsilon_\text{mach}^{2/3},
# $$
#
# with $\epsilon_\text{mach} = 2.2\times 10^{-16}$ in float64 but $1.2\times 10^{-7}$ in float32. The best
# achievable check is about $10^{-10}$ in float64 and only $10^{-5}$ to $10^{-4}$ in float32 — in float32 a
# wrong second-order term or a missing factor on a small parameter block can hide inside the noise of
# the check itself. We run the same directional-derivative check (finite differences of the loss
# against the exact JVP) in both precisions on a small MLP:

# %% tags=["roundoff"]
for name in ["float16", "float32", "float64"]:
    print(f"{name}: machine epsilon {np.finfo(name).eps:.1e}")


def jvp_check(dtype, steps, n_directions=8):
    """Relative error of central differences of the loss against the exact JVP, per step h.

    The median over a few random directions, so that lucky cancellations do not show as dips.
    """
    tc.set_default_dtype(dtype)
    try:
        r = np.random.default_rng(1)
        net = nn.Sequential(nn.Linear(8, 16, rng=r), nn.Tanh(), nn.Linear(16, 1, rng=r))
        x, y = r.standard_normal((32, 8)), r.standard_normal((32, 1))
        mse = nn.MSELoss()
        params = net.parameters()
        closure = lambda: mse(net(x), y)
        saved = [p.data for p in params]
        errors = np.zeros((n_directions, len(steps)))
        for i in range(n_directions):
            v = [tc.backend.asarray(r.standard_normal(p.shape), dtype=dtype) for p in params]
            exact = float(tc.jvp(closure, params, v)[1])
            for j, h in enumerate(steps):
                values = []
                for sign in (+1, -1):
                    for p, d, t in zip(params, saved, v):
                        p.data = (d + sign * h * t).astype(dtype)
                    values.append(closure().item())
                errors[i, j] = abs((values[0] - values[1]) / (2 * h) - exact) / abs(exact)
            for p, d in zip(params, saved):
                p.data = d
        return np.median(errors, axis=0), closure().dtype
    finally:
        tc.set_default_dtype("float64")


steps = np.logspace(-9, 0, 28)
err64, dt64 = jvp_check("float64", steps)
err32, dt32 = jvp_check("float32", steps)
print(f"loss dtypes: {dt64}, {dt32}")
print(f"best relative error: float64 {err64.min():.1e} (h = {steps[err64.argmin()]:.0e}),"
      f" float32 {err32.min():.1e} (h = {steps[err32.argmin()]:.0e})")

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.loglog(steps, err64, "o-", ms=4, label="float64")
ax.loglog(steps, err32, "s-", ms=4, label="float32")
for name, color in [("float64", "C0"), ("float32", "C1")]:
    ax.axvline(np.finfo(name).eps ** (1 / 3), color=color, lw=1, ls="--",
               label=rf"$h = \epsilon^{{1/3}}$ of {name}")
ax.axhline(1e-6, color="gray", lw=0.8, ls=":")
ax.text(2e-9, 1.5e-6, "a typical test tolerance", fontsize=8, color="gray")
ax.set(xlabel="finite-difference step $h$", ylabel="relative error vs exact JVP\n(median of 8 directions)",
       title="The same finite-difference check in float64 and float32")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# In float64 the check bottoms out between $10^{-11}$ and $10^{-10}$ for $h \approx 10^{-6}$ to $10^{-5}$; in
# float32 it never gets below a few $10^{-5}$ (near $h \approx 10^{-3}$), above a useful test tolerance at
# *every* step size. Hence tinycurv's rule: the default dtype is
# float64, tests and theorem checks run in float64, and float32 is something you opt into for
# training speed — on either backend.

# %% [markdown]
# ## 6. Checking the GPU paths without a GPU
#
# Most machines that run this notebook have no GPU, and a NumPy-only call hidden in a GPU path would
# go unnoticed there: NumPy happily mixes with NumPy. `tinycurv.testing.CUPY_STAND_IN` is a small CPU stand-in for
# CuPy (NumPy underneath) that is as strict as CuPy about the host/device boundary — a NumPy array
# meeting a device array raises, an implicit conversion to NumPy raises — and that records every
# device-to-host transfer. CI runs the whole test suite on it
# (`PYTHONPATH=tinycurv/testing/cupy_stand_in TINYCURV_BACKEND=cupy pytest tests`). It ships with the
# package, so the cell below runs after a plain `pip install` too (Colab included).
#
# It also behaves like CuPy in one way that matters for checkpoints: CuPy keeps a random generator's
# state on the GPU and cannot export it. K-FAC and ISAAC draw their sampled labels from a
# `tinycurv.backend.SavableGenerator`, which on such a backend logs its draws (run-length encoded) and,
# on `load`, re-seeds and replays them. The cell below trains K-FAC with sampled (Monte Carlo) factors
# on the stand-in in a subprocess, checkpoints after 3 steps, resumes in a fresh optimiser, and
# compares with an uninterrupted run — and counts the transfers of the resumed steps.

# %%
import tempfile

from tinycurv.testing import CUPY_STAND_IN  # the stand-in's folder, inside the package

script = """
import numpy as np, cupy, tinycurv as tc
from tinycurv import nn, optim
from tinycurv.backend import asarray, backend_name
r = np.random.default_rng(0)
x, y = asarray(r.standard_normal((32, 20))), asarray(r.integers(0, 5, 32), dtype="int64")

def make():
    net = nn.Sequential(nn.Linear(20, 16, rng=1), nn.Tanh(), nn.Linear(16, 5, rng=2))
    return optim.KFAC(net, nn.CrossEntropyLoss(), lr=0.1, damping=0.1, mode="mc", seed=3)

straight = make()
want = [straight.step(x, y) for _ in range(6)]
first = make()
got = [first.step(x, y) for _ in range(3)]
tc.save("kfac.npz", first.model, first)
resumed = make()
tc.load("kfac.npz", resumed.model, resumed)
cupy.SYNCS.clear()
got += [resumed.step(x, y) for _ in range(3)]
print("backend:", backend_name(), "on", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
print("resumed run identical to the uninterrupted one:", got == want)
print("device-to-host transfers in 3 steps:", sorted(set(cupy.SYNCS)), "x", len(cupy.SYNCS))
"""
with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, TINYCURV_BACKEND="cupy", PYTHONPATH=str(CUPY_STAND_IN))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, env=env, capture_output=True, text=True)
print(proc.stdout or proc.stderr[-2000:])

# %% [markdown]
# Every step makes two transfers: the loss returned as a float (`optim/base.py`) and, because this
# K-FAC refactorises every step, one read of all factors' pivot checks at once (`backend.py`, the
# `asnumpy` in `tinycurv.curvature.linalg.check_factors`). `tests/test_backend_syncs.py` pins these
# counts for every optimiser, so a new `float(...)` in a hot path fails CI.
#
# ## Exercises
#
# 1. **Where does the GPU win?** On a machine with a GPU, time `tc.grad` on $784 \to n \to n \to 10$ for
#    $n \in \{64, 128, \dots, 4096\}$ on both backends and plot the speed-up against $n$. Where is the
#    crossover, and why does it exist?
# 2. **Move a model.** Build a model on NumPy, train it for a few SGD steps, then switch to CuPy (if
#    you have one) and move it with `model.load_state_dict(model.state_dict())`. Check that the loss
#    is unchanged to float64 precision after the move, and that `type(p.data)` changed.
# 3. **Find the best step.** For the float32 curve above, predict the optimal $h$ and the best error
#    from $\epsilon_\text{mach}^{1/3}$ and $\epsilon_\text{mach}^{2/3}$, and compare with the plot. What
#    happens to the float32 curve for a central-difference HVP check (differences of *gradients*)?

# %% [markdown]
# ## Checked exercises
#
# Each exercise below is a stub that raises `NotImplementedError`: write the function, then run its check cell. The grader (`tinycurv.course`) compares your function with the library's on seeded random inputs (shapes, dtypes, edge cases) and names the likely mistake; an unfinished stub is reported as *skipped*. From a shell: `tinycurv check ID my_solution.py`. The reference solutions are kept apart in `tutorials/solutions/` (see `COURSE.md`).

# %%
import numpy as np

from tinycurv import Dual, Function, course
from tinycurv import dual as D


# %% [markdown]
# ### 08.1 · The best finite-difference step of a dtype
#
# Write `fd_step(dtype) -> float, the h that minimises the central-difference error`.

# %%
def fd_step(dtype):
    """08.1 · h = ε^(1/3): rounding ε/h balances the central difference's truncation h²."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("08.1", fd_step)


# %% [markdown]
# <details><summary><b>Hint</b> (08.1)</summary>
#
# The central difference's error is about ε/h (rounding) + h² (truncation); the sum is smallest near h = ε^(1/3). np.finfo(dtype).eps gives ε.
#
# </details>

# %% [markdown]
# ### 08.2 · A stable log-sum-exp, in the input's dtype
#
# Write `logsumexp(z, axis=-1) -> log Σ exp(z) along axis (that axis removed)`.

# %%
def logsumexp(z, axis=-1):
    """08.2 · m + log Σ exp(z − m), m the max along the axis: no overflow, dtype kept."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("08.2", logsumexp)


# %% [markdown]
# <details><summary><b>Hint</b> (08.2)</summary>
#
# logsumexp(z) = m + log Σ exp(z − m) with m = max(z) along the axis (keepdims=True, then squeeze it): nothing overflows, the largest term is exp(0) = 1.
#
# </details>

# %% [markdown]
# ### 08.3 · A stable softmax, in the input's dtype
#
# Write `softmax(z, axis=-1) -> exp(z) / Σ exp(z) along axis, shaped like z`.

# %%
def softmax(z, axis=-1):
    """08.3 · exp(z − max) normalised along the axis, dtype kept."""
    raise NotImplementedError  # your code here


# %%
verdict = course.check("08.3", softmax)

# %% [markdown]
# <details><summary><b>Hint</b> (08.3)</summary>
#
# e = exp(z − max(z, axis, keepdims=True)); return e / e.sum(axis, keepdims=True).
#
# </details>
