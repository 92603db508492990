"""Write the build-it-yourself track: student notebooks (stubs) and solution notebooks.

    python tutorials/solutions/build_track.py            # write both sets, without outputs
    python tutorials/solutions/build_track.py --cells    # print the 01–09 exercise cells

One source for both: a notebook below is a list of cells; an ``("exercise", id, names)`` cell
becomes the solution's source (the functions ``names`` of ``track.py`` or
``exercises_NN.py``) in ``tutorials/solutions/track/`` and, in ``tutorials/track/``, a stub
with the same signature and docstring whose body raises ``NotImplementedError`` — so the check
cell reports "skipped" and the cells that plug the piece into the library are skipped too.
Execute the notebooks afterwards to store their outputs and write their jupytext pairs (the
drift check of ``tutorials/conftest.py`` compares both)::

    python tools/nbdrift.py resave tutorials/track/*.ipynb tutorials/solutions/track/*.ipynb \
        tutorials/solutions/check_solutions.ipynb
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STUDENT, SOLUTION = ROOT / "tutorials" / "track", HERE / "track"
sys.path.insert(0, str(ROOT))

# where the solution of each exercise lives (file in tutorials/solutions, helpers first)
SOURCES = {
    "T1.1": ("track.py", ["Tanh"]),
    "T1.2": ("track.py", ["MatMul"]),
    "T2.1": ("track.py", ["tanh"]),
    "T2.2": ("track.py", ["mul"]),
    "T3.1": ("exercises_02.py", ["hvp"]),
    "T4.1": ("exercises_03.py", ["kfac_factors"]),
    "T5.1": ("exercises_05.py", ["zeta_star"]),
    "T6.1": ("exercises_06.py", ["grouped_newton_step"]),
    "T7.1": ("exercises_07.py", ["_binom_half", "series_coefficients"]),
    "T7.2": ("exercises_07.py", ["series_operator"]),
    "T7.3": ("exercises_07.py", ["wynn_epsilon"]),
}

SETUP = '''\
%matplotlib inline
%config InlineBackend.figure_formats = ["png"]
import math

import matplotlib.pyplot as plt
import numpy as np

import tinycurv as tc
from tinycurv import Dual, Function, course, nn, optim
from tinycurv import dual as D
from tinycurv.data import batches, load_digits

tc.set_backend("numpy")
tc.set_default_dtype("float64")
plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})
X_train, y_train, X_test, y_test = load_digits()  # 8x8 digits: 1437 training images


def train(make_optimizer, steps, seed=0):
    """Train a 64-32-10 tanh MLP on the digits, batch 64; return the losses and the model."""
    model = nn.Sequential(nn.Linear(64, 32, rng=seed), nn.Tanh(), nn.Linear(32, 10, rng=seed + 1))
    opt = make_optimizer(model)
    rng, losses = np.random.default_rng(seed), []
    while len(losses) < steps:
        for x, y in batches(X_train, y_train, 64, rng=rng, drop_last=True):
            losses.append(opt.step(x, y))
            if len(losses) == steps:
                break
    return np.array(losses), model


def accuracy(model):
    """Test accuracy of the model on the 360 held-out digits."""
    with tc.no_grad():
        return float((model(X_test).numpy().argmax(axis=1) == y_test).mean())


def compare_runs(name, reference, losses, model, calls):
    """Print and plot the run with the student's piece against the library's own run."""
    print(f"the library called your {name} {calls} times")
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy(model):.1%}")
    print(f"largest difference from the library's own run: {np.abs(losses - reference).max():.1e}")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.semilogy(reference, lw=3, alpha=0.4, label="the library's own")
    ax.semilogy(losses, "--", label=f"with your {name}")
    ax.set(xlabel="step", ylabel="minibatch loss")
    ax.legend()
    plt.show()
'''


def skipped(exercise: str, what: str) -> str:
    return f'    print("Skipped until {exercise} passes: this cell {what}.")'


NOTEBOOKS: dict[str, list[tuple]] = {}

NOTEBOOKS["01_primitives"] = [
    (
        "md",
        """\
# Track 1 · The engine's primitives: forward and backward

*The build-it-yourself track ([README](README.md)), part 1 of 7. Prerequisites: tutorial 01,
sections 1–3; the chain rule; NumPy broadcasting. Reading 15 min; running under 10 s.*

Every gradient in tinycurv is a chain of **primitives**: small classes with a `forward` (arrays in,
an array out, keeping on `self` what the derivative needs) and a `backward`, the vector-Jacobian
product that maps the cotangent `gy` of the output to one cotangent per input. `Function.apply`
records them on the tape; `Tensor.backward` calls their `backward` in reverse order.

**You will be able to** write a primitive from its derivative, check it, and see it carry a
network's training — and its Hessian-vector products.

You write `Tanh` and `MatMul`. The grader (`course.check`) compares them with the library's
`tinycurv.ops.Tanh` and `tinycurv.ops.MatMul` on random inputs, float32 ones and **dual numbers**
(tutorial 02): write them with `tinycurv.dual` (`D.tanh`) and operators (`*`, `@`, `.T`), never
`np.tanh`, and forward-over-reverse will run through them. Then `course.plug_in` puts them in
place of the library's: every `x.tanh()`, every `@`, every `nn.Linear` and `nn.Tanh` uses yours.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## T1.1 · `Tanh`

$y = \\tanh x$ and $\\dfrac{dy}{dx} = 1 - \\tanh^2 x = 1 - y^2$, so the backward rule is
$\\bar x = \\bar y\\,(1 - y^2)$ elementwise. Keep `y` in `forward`; return **a tuple** from
`backward`, one cotangent per input: `(gx,)`.""",
    ),
    ("exercise", "T1.1"),
    ("check", "T1.1", "Tanh"),
    ("hint", "T1.1"),
    (
        "md",
        """\
## T1.2 · `MatMul`

$y = x w$ with $x$ of shape $(b, n)$ and $w$ of shape $(n, m)$. The cotangents have the shapes of
their inputs: $\\bar x = \\bar y\\, w^\\top$ $(b, n)$ and $\\bar w = x^\\top \\bar y$ $(n, m)$. (The
library's version also broadcasts leading batch axes; two dimensions are enough for an MLP.)""",
    ),
    ("exercise", "T1.2"),
    ("check", "T1.2", "MatMul"),
    ("hint", "T1.2"),
    (
        "md",
        """\
## Plug them in: SGD trains a network with your primitives

Inside `course.plug_in(...)` the library's `ops.Tanh` and `ops.MatMul` *are* your classes. The same
training runs twice, with the library's primitives and with yours, from the same seed.""",
    ),
    (
        "code",
        """\
if course.passed("T1.1") and course.passed("T1.2"):
    make = lambda model: optim.SGD(model, nn.CrossEntropyLoss(), lr=0.5, momentum=0.9)
    reference, _ = train(make, 100)
    with course.plug_in("Tanh", Tanh) as tanh_plug, course.plug_in("MatMul", MatMul) as mm_plug:
        losses, model = train(make, 100)
    compare_runs("Tanh and MatMul", reference, losses, model, tanh_plug.calls + mm_plug.calls)
else:
"""
        + skipped("T1.1 and T1.2", "trains a network with your primitives"),
    ),
    (
        "md",
        """\
Because your `backward` was written with operations that accept dual numbers, the engine's
Hessian-vector product (forward-over-reverse, track 3) runs through it unchanged:""",
    ),
    (
        "code",
        """\
if course.passed("T1.1") and course.passed("T1.2"):
    net = nn.Sequential(nn.Linear(64, 16, rng=0), nn.Tanh(), nn.Linear(16, 10, rng=1))
    closure = lambda: nn.CrossEntropyLoss()(net(X_train[:32]), y_train[:32])
    v = [np.random.default_rng(2).standard_normal(p.shape) for p in net.parameters()]
    expected = tc.hvp(closure, net.parameters(), v)
    with course.plug_in("Tanh", Tanh), course.plug_in("MatMul", MatMul):
        mine = tc.hvp(closure, net.parameters(), v)
    error = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(mine, expected))
    print(f"H·v through your primitives vs the library's: relative difference {error:.1e}")
else:
"""
        + skipped("T1.1 and T1.2", "computes an HVP through your primitives"),
    ),
    (
        "md",
        """\
**What you built.** The two primitives an MLP needs. The rest of `tinycurv/ops.py` is more of the
same: read `Sigmoid`, `LogSoftmax` and `GetItem` next to yours. Next: [track 2](02_dual_numbers.ipynb),
the dual numbers that your `backward` already runs on.""",
    ),
]

NOTEBOOKS["02_dual_numbers"] = [
    (
        "md",
        """\
# Track 2 · Dual numbers: the rules of forward mode

*Part 2 of 7. Prerequisites: tutorial 02, sections 1–3; Taylor series to first order. Reading
15 min; running under 15 s.*

A dual number $p + \\varepsilon t$ with $\\varepsilon^2 = 0$ carries a value and a derivative:
$f(p + \\varepsilon t) = f(p) + \\varepsilon f'(p)\\,t$. `tinycurv.dual` implements one such rule
per operation; the primitives of `tinycurv.ops` compute with them, so on dual data every forward
sweep is a JVP and every backward sweep an HVP. Three details make the rules general:

* a **plain array is a constant** (tangent 0), and two plain operands give a plain result;
* a **batched** tangent has shape `(k,) + primal.shape`: k directions at once (`tc.hvp(…, batched=True)`);
* a primal may itself be a Dual (**nesting**): `Dual(Dual(x, u), u)` carries second derivatives,
  three levels third ones (`tc.taylor`). Recursion handles any depth.

**You will be able to** write a forward-mode rule that works for constants, batches and nesting.
You write `tanh` and `mul`; plugged into `tinycurv.dual`, they carry every JVP, HVP and Taylor
coefficient of the library — and GroupedNewton, which needs batched HVPs and third derivatives,
trains with them.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## T2.1 · `tanh` on duals

$\\tanh(p + \\varepsilon t) = \\tanh p + \\varepsilon\\,(1 - \\tanh^2 p)\\,t$. For a Dual `x`, compute
`y = tanh(x.primal)` with **your own function** (the primal may be a Dual) and return
`Dual(y, (1 - y * y) * x.tangent)`; for a plain array return `np.tanh(x)`.""",
    ),
    ("exercise", "T2.1"),
    ("check", "T2.1", "tanh"),
    ("hint", "T2.1"),
    (
        "md",
        """\
## T2.2 · `mul` on duals

$(a + \\varepsilon\\,da)(b + \\varepsilon\\,db) = ab + \\varepsilon\\,(da\\,b + a\\,db)$. Operators
on Duals call `tinycurv.dual.mul` again, so nesting works by itself once the rule is right.""",
    ),
    ("exercise", "T2.2"),
    ("check", "T2.2", "mul"),
    ("hint", "T2.2"),
    (
        "md",
        """\
## Plug them in

First the derivatives of a network: a batched HVP (4 directions) and the third derivative along a
line, with the library's rules and with yours.""",
    ),
    (
        "code",
        """\
if course.passed("T2.1") and course.passed("T2.2"):
    net = nn.Sequential(nn.Linear(64, 16, rng=0), nn.Tanh(), nn.Linear(16, 10, rng=1))
    params = net.parameters()
    closure = lambda: nn.CrossEntropyLoss()(net(X_train[:32]), y_train[:32])
    rng = np.random.default_rng(3)
    V = [rng.standard_normal((4,) + p.shape) for p in params]
    u = [rng.standard_normal(p.shape) for p in params]
    expected = (tc.hvp(closure, params, V, batched=True), tc.taylor(closure, params, u, order=3))
    with course.plug_in("dual.tanh", tanh) as p1, course.plug_in("dual.mul", mul) as p2:
        mine = (tc.hvp(closure, params, V, batched=True), tc.taylor(closure, params, u, order=3))
    hv_error = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(mine[0], expected[0]))
    print(f"batched H·v: relative difference {hv_error:.1e}  ({p1.calls} tanh, {p2.calls} mul calls)")
    print("Taylor coefficients, library:", np.round(expected[1], 6))
    print("Taylor coefficients, yours:  ", np.round(mine[1], 6))
else:
"""
        + skipped("T2.1 and T2.2", "differentiates a network with your rules"),
    ),
    (
        "md",
        "GroupedNewton (tutorial 06) runs on exactly these: a batched HVP per update and `taylor` "
        "for its order-3 term.",
    ),
    (
        "code",
        """\
if course.passed("T2.1") and course.passed("T2.2"):
    make = lambda model: optim.GroupedNewton(model, nn.CrossEntropyLoss(), lr=0.5, update_every=5)
    reference, _ = train(make, 30)
    with course.plug_in("dual.tanh", tanh) as p1, course.plug_in("dual.mul", mul) as p2:
        losses, model = train(make, 30)
    compare_runs("tanh and mul", reference, losses, model, p1.calls + p2.calls)
else:
"""
        + skipped("T2.1 and T2.2", "trains GroupedNewton with your rules"),
    ),
    (
        "md",
        """\
**What you built.** Two of the rules of `tinycurv/dual.py`; read `div`, `matmul` and `getitem` there
(broadcasting of batched tangents is what `_align` does). Next: [track 3](03_hvp.ipynb) turns
reverse mode on duals into Hessian-vector products.""",
    ),
]

NOTEBOOKS["03_hvp"] = [
    (
        "md",
        """\
# Track 3 · Hessian-vector products: forward-over-reverse

*Part 3 of 7. Prerequisites: tutorial 02, section 3; tracks 1–2. Reading 10 min; running under
20 s.*

Replace every parameter's data by $\\theta + \\varepsilon v$ and run the ordinary backward sweep:
every primitive's `backward` computes on duals, and the gradient comes back as
$\\nabla L(\\theta + \\varepsilon v) = \\nabla L(\\theta) + \\varepsilon\\, H v$ (Pearlmutter 1994). No
Hessian is ever formed; the cost is a small multiple of a gradient.

**You will be able to** compute $Hv$ for any network with one sweep, and know the two details that
make such a transform safe: restore the parameters afterwards (`finally:`), and clear `p.grad`
before the sweep (gradients accumulate).

You write `hvp(closure, params, vectors)`. Plugged in, it is what `SeriesSFN` (tutorial 07) calls
for its power iteration, its series of HVPs and its 2×2 model — and the network trains.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## T3.1 · `hvp`

For each parameter: `p.data = Dual(p.data, v)` and `p.grad = None`; call `closure().backward()`;
each `p.grad` is then `Dual(∇L, H·v)`. Return the tangents, and put `p.data` (and `p.grad`) back
whatever happens. The grader calls your function twice on the same network: the second answer must
equal the first.""",
    ),
    ("exercise", "T3.1"),
    ("check", "T3.1", "hvp"),
    ("hint", "T3.1"),
    (
        "md",
        """\
## Plug it in: saddle-free Newton trains with your HVPs

`SeriesSFN` approximates $(|H| + \\lambda I)^{-1} g$ by a series of HVPs (track 7). The plug adapts
your function to `tc.hvp`'s `batched=True` (one call per direction).""",
    ),
    (
        "code",
        """\
if course.passed("T3.1"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=10, acceleration=2)
    reference, _ = train(make, 15)
    with course.plug_in("hvp", hvp) as plugged:
        losses, model = train(make, 15)
    compare_runs("hvp", reference, losses, model, plugged.calls)
else:
"""
        + skipped("T3.1", "trains SeriesSFN with your hvp"),
    ),
    (
        "md",
        "SeriesSFN may warn that it enlarged its scale $V$: its series checks that the terms "
        "shrink and retries with a larger $V$ when one grows (track 7). The warning comes "
        "from the library, in both runs.",
    ),
    (
        "md",
        """\
**What you built.** `tinycurv.functional.hvp` in a dozen lines; the library's adds batched
directions, checks of the shapes and dtypes, and a parameter that is computed on the tape. Next:
[track 4](04_kfac_factors.ipynb), curvature without any HVP.""",
    ),
]

NOTEBOOKS["04_kfac_factors"] = [
    (
        "md",
        """\
# Track 4 · K-FAC's Kronecker factors

*Part 4 of 7. Prerequisites: tutorials 03 (section 7) and 04 (section 1); the identity
$(G \\otimes A)\\,\\mathrm{vec}(V) = \\mathrm{vec}(G V A^\\top)$. Reading 15 min; running under 10 s.*

K-FAC approximates a layer's block of the Fisher by one Kronecker product, $F_\\ell \\approx G \\otimes A$,
from two small matrices: the layer's inputs $a$ $(b, n)$ with a column of ones for the bias,
$\\tilde a = [a, 1]$, and the back-propagated (sampled) output gradients $\\bar g$ $(r b, m)$:

$$A = \\tilde a^\\top \\tilde a / b, \\qquad G = \\bar g^\\top \\bar g / b \\qquad\\text{(Martens \\& Grosse 2015, eq. 1).}$$

Both are divided by $b$, the rows of $a$: the $r$ sampled gradients of a sample add up.

**You will be able to** build the factors of any Linear layer and explain each convention (the
ones column last, the $1/b$, $r$ samples). Plugged in, `tinycurv.optim.KFAC` averages, damps and
inverts *your* factors at every step.""",
    ),
    ("code", SETUP),
    ("md", "## T4.1 · `kfac_factors`"),
    ("exercise", "T4.1"),
    ("check", "T4.1", "kfac_factors"),
    ("hint", "T4.1"),
    ("md", "## Plug it in: K-FAC trains with your factors"),
    (
        "code",
        """\
if course.passed("T4.1"):
    make = lambda model: optim.KFAC(model, nn.CrossEntropyLoss(), lr=0.3, damping=0.01, seed=0)
    reference, _ = train(make, 60)
    with course.plug_in("kfac_factors", kfac_factors) as plugged:
        losses, model = train(make, 60)
    compare_runs("kfac_factors", reference, losses, model, plugged.calls)
else:
"""
        + skipped("T4.1", "trains K-FAC with your factors"),
    ),
    (
        "md",
        """\
**What you built.** `tinycurv.curvature.kfac.factors_from`. For a `Conv2d` the same function
runs on the unfolded patches (rows = b·L): read `docs/kfac.md` for the scaling. Next:
[track 5](05_zeta_star.ipynb), ISAAC, which keeps only the input side — and never forms it.""",
    ),
]

NOTEBOOKS["05_zeta_star"] = [
    (
        "md",
        """\
# Track 5 · ISAAC's $\\zeta^\\star$: the gradient conditioned by the inputs

*Part 5 of 7. Prerequisites: tutorial 05, sections 1–5; the Woodbury identity. Reading 15 min;
running under 10 s.*

For a layer with inputs $a$ $(b, n)$ and output gradients $g$ $(b, m)$, so that $\\nabla W = g^\\top a$,
ISAAC (Petersen et al., ICLR 2023) conditions the gradient by the input factor $A = a^\\top a / b$ alone:

$$\\zeta^\\star = \\lambda_a\\, g^\\top a\\,(A + \\lambda_a I_n)^{-1}
= g^\\top \\Big(I_b + \\frac{a a^\\top}{b\\,\\lambda_a}\\Big)^{-1} a \\qquad\\text{(eq. 21)},$$

by Woodbury: a $b \\times b$ solve instead of an $n \\times n$ one, cheaper when $b < n$; for
$b > n$ the $n \\times n$ side is the cheaper one, with the same $1/b$. $\\lambda_a = \\infty$ gives
the plain gradient.

**You will be able to** implement eq. 21 both ways and choose the cheaper side. Plugged in, it is
the direction `tinycurv.optim.ISAAC` takes for every layer.""",
    ),
    ("code", SETUP),
    ("md", "## T5.1 · `zeta_star`"),
    ("exercise", "T5.1"),
    ("check", "T5.1", "zeta_star"),
    ("hint", "T5.1"),
    ("md", "## Plug it in: ISAAC trains with your $\\zeta^\\star$"),
    (
        "code",
        """\
if course.passed("T5.1"):
    make = lambda model: optim.ISAAC(model, nn.CrossEntropyLoss(), lr=1.0, lam_a=1.0)
    reference, _ = train(make, 60)
    with course.plug_in("zeta_star", zeta_star) as plugged:
        losses, model = train(make, 60)
    compare_runs("zeta_star", reference, losses, model, plugged.calls)
else:
"""
        + skipped("T5.1", "trains ISAAC with your zeta_star"),
    ),
    (
        "md",
        """\
**What you built.** `tinycurv.curvature.zeta_star`; the library's also orders the three products
by cost and never waits for the GPU (`docs/isaac.md`). Next: [track 6](06_cubic_step.ipynb),
GroupedNewton's cubic step.""",
    ),
]

NOTEBOOKS["06_cubic_step"] = [
    (
        "md",
        """\
# Track 6 · GroupedNewton's cubic-regularised step

*Part 6 of 7. Prerequisites: tutorial 06, sections 1–6; eigendecomposition; a scalar root-finder
(`scipy.optimize.brentq`). Reading 20 min; running under 10 s.*

GroupedNewton summarises the loss along a direction by $\\bar g$ $(S)$, $\\bar H$ $(S \\times S)$ and the
diagonal $D$ of the order-3 term, and takes the global minimiser of the cubic model (App. D)

$$m(\\eta) = -\\bar g^\\top \\eta + \\tfrac12 \\eta^\\top \\bar H \\eta + \\tfrac{\\lambda}{6}\\,\\|\\mathrm{diag}(d)\\,\\eta\\|^3,
\\qquad d = |D|^{1/3}.$$

Its stationary points solve $\\eta = (\\bar H + \\tfrac{\\lambda}{2} r\\,\\mathrm{diag}(d)^2)^{-1}\\bar g$ with
$r = \\|\\mathrm{diag}(d)\\eta\\|$, and the global minimiser is the one at which that matrix is positive
semi-definite. In $y = \\mathrm{diag}(d)\\eta$ with $K = \\mathrm{diag}(d)^{-1}\\bar H\\mathrm{diag}(d)^{-1} = Q\\,\\mathrm{diag}(\\kappa)\\,Q^\\top$
and $b = Q^\\top \\mathrm{diag}(d)^{-1}\\bar g$ this is one scalar equation,
$\\|y(r)\\| = r$ with $y_j = b_j / (\\kappa_j + \\tfrac{\\lambda}{2} r)$, to be solved above
$r_0 = \\max(0, -2\\kappa_\\min/\\lambda)$.

**You will be able to** reduce a cubic-regularised model to a secular equation and solve it.
Plugged in, your step sets GroupedNewton's per-layer learning rates. (The library's version also
handles zeros in $D$, the "hard case" and a failed root-finder.)""",
    ),
    ("code", SETUP),
    ("code", "from scipy.optimize import brentq  # a scalar root-finder, for T6.1"),
    ("md", "## T6.1 · `grouped_newton_step` (for $D$ without zeros and $\\lambda > 0$)"),
    ("exercise", "T6.1"),
    ("check", "T6.1", "grouped_newton_step"),
    ("hint", "T6.1"),
    ("md", "## Plug it in: GroupedNewton trains with your step"),
    (
        "code",
        """\
if course.passed("T6.1"):
    make = lambda model: optim.GroupedNewton(model, nn.CrossEntropyLoss(), lr=0.5, update_every=5)
    reference, _ = train(make, 40)
    with course.plug_in("grouped_newton_step", grouped_newton_step) as plugged:
        losses, model = train(make, 40)
    compare_runs("grouped_newton_step", reference, losses, model, plugged.calls)
else:
"""
        + skipped("T6.1", "trains GroupedNewton with your step"),
    ),
    (
        "md",
        """\
**What you built.** The core of `tinycurv.curvature.grouped_step`. Next: [track 7](07_sfn_series.ipynb),
saddle-free Newton from a series of HVPs.""",
    ),
]

NOTEBOOKS["07_sfn_series"] = [
    (
        "md",
        """\
# Track 7 · Saddle-free Newton: a series of HVPs and Wynn's ε

*Part 7 of 7. Prerequisites: tutorial 07, section 2; the binomial series; tracks 3 and 6 help.
Reading 25 min; running under 25 s.*

Saddle-free Newton steps along $(|H| + \\lambda I)^{-1} g$: negative curvature repels instead of
attracting. Oldewage et al. (TMLR 2024) expand it in powers of $Y = I - H^2/V$,

$$(|H| + \\lambda I)^{-1} = V^{-1/2} \\sum_{n \\ge 0} c_n Y^n, \\qquad
c_0 = \\tfrac{1}{1 + d},\\; c_n = \\frac{c_{n-1} + (-1)^n \\binom{1/2}{n}}{1 - d^2},\\; d = \\lambda/\\sqrt V,$$

convergent for $V \\ge \\lambda_\\max(H)^2/2$, with two HVPs per term. Wynn's vector
$\\varepsilon$-algorithm extrapolates the partial sums $S_n$ to their limit.

**You will be able to** turn a matrix function into a series of HVPs and accelerate it. You write
the coefficients, the series and Wynn's $\\varepsilon$; `SeriesSFN` then trains with them.""",
    ),
    ("code", SETUP),
    (
        "md",
        "## T7.1 · `series_coefficients`\n\nAt $d = 1$ the recurrence reads $0/0$; there "
        "$c_n = (-1)^n\\binom{1/2}{n+1}$.",
    ),
    ("exercise", "T7.1"),
    ("check", "T7.1", "series_coefficients"),
    ("hint", "T7.1"),
    (
        "md",
        """\
## T7.2 · `series_operator`

$v_0 = v$, $v_n = v_{n-1} - H(Hv_{n-1})/V$, $S_n = S_{n-1} + c_n v_n$ and $u = V^{-1/2} S_{N-1}$.
Vectors are lists of arrays (one per parameter); `hvp_fn` maps such a list to another.""",
    ),
    ("exercise", "T7.2"),
    ("check", "T7.2", "series_operator"),
    ("hint", "T7.2"),
    (
        "md",
        """\
## T7.3 · `wynn_epsilon`

$\\varepsilon_{-1}^{(m)} = 0$, $\\varepsilon_0^{(m)} = S_m$ and
$\\varepsilon_{s+1}^{(m)} = \\varepsilon_{s-1}^{(m+1)} + \\big(\\varepsilon_s^{(m+1)} - \\varepsilon_s^{(m)}\\big)^{-1}$
with Samelson's inverse $v^{-1} = v / v^\\top v$ (over the whole vector); after $2k$ columns
$\\varepsilon_{2k}^{(0)}$ is exact for $S_m = S + \\sum_{j=1}^k a_j r_j^m$.""",
    ),
    ("exercise", "T7.3"),
    ("check", "T7.3", "wynn_epsilon"),
    ("hint", "T7.3"),
    (
        "md",
        """\
## Plug them in: SeriesSFN trains with your series

First your plain series (no acceleration). The library's series also stops when a term grows (the
scale $V$ was too small) and enlarges $V$; yours does not, so the run re-estimates $V$ at every
step with a margin of 2.""",
    ),
    (
        "code",
        """\
if course.passed("T7.1") and course.passed("T7.2"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=8, acceleration=0,
                                         scale_every=1, scale_margin=2.0)
    reference, _ = train(make, 12)
    with course.plug_in("series_operator", series_operator) as plugged:
        losses, model = train(make, 12)
    compare_runs("series_operator", reference, losses, model, plugged.calls)
else:
"""
        + skipped("T7.1 and T7.2", "trains SeriesSFN with your series"),
    ),
    (
        "md",
        "Then the accelerated series ($N = 10$, $k = 2$) of the library, with your coefficients"
        " and your Wynn $\\varepsilon$ inside it; the library's own checks still enlarge $V$ "
        "where a term grows (the warnings).",
    ),
    (
        "code",
        """\
if course.passed("T7.1") and course.passed("T7.3"):
    make = lambda model: optim.SeriesSFN(model, nn.CrossEntropyLoss(), order=10, acceleration=2)
    reference, _ = train(make, 12)
    with course.plug_in("series_coefficients", series_coefficients) as p1, \\
            course.plug_in("wynn_epsilon", wynn_epsilon) as p2:
        losses, model = train(make, 12)
    compare_runs("series_coefficients and wynn_epsilon", reference, losses, model,
                 p1.calls + p2.calls)
else:
"""
        + skipped("T7.1 and T7.3", "trains SeriesSFN with your Wynn ε"),
    ),
    (
        "md",
        """\
**What you built.** Equations (1)–(4) of `tinycurv/curvature/sfn.py`. You have now written a
primitive, forward mode, HVPs and the core of four second-order methods, and each one trained a
network inside the real library. [COURSE.md](../../COURSE.md) lists what to read next.""",
    ),
]


# --------------------------------------------------------------------------------------------
# turning the cells into notebooks
# --------------------------------------------------------------------------------------------
def _definitions(filename: str) -> tuple[str, dict[str, ast.AST]]:
    text = (HERE / filename).read_text()
    tree = ast.parse(text)
    return text, {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }


def _source(text: str, node: ast.AST) -> str:
    return ast.get_source_segment(text, node, padded=True)


def _stub(text: str, node: ast.AST, indent: str = "") -> str:
    """The definition's header and docstring; the body raises NotImplementedError."""
    lines = text.splitlines()
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant
    )
    if isinstance(node, ast.ClassDef):
        end = body[0].end_lineno if has_doc else node.lineno
        out = lines[node.lineno - 1 : end]
        for item in body[1 if has_doc else 0 :]:
            if isinstance(item, ast.FunctionDef):
                out += ["", _stub(text, item, indent + "    ")]
        return "\n".join(out)
    end = body[0].end_lineno if has_doc else body[0].lineno - 1
    header = lines[node.lineno - 1 : end]
    return "\n".join(header + [f"{indent}    raise NotImplementedError  # your code here"])


def exercise_code(exercise: str, solution: bool) -> str:
    filename, names = SOURCES[exercise]
    text, definitions = _definitions(filename)
    if solution:
        code = "\n\n\n".join(_source(text, definitions[n]) for n in names)
    else:
        code = _stub(text, definitions[names[-1]])
    return re.sub(r'"""\d\d\.\d · ', f'"""{exercise} · ', code)  # the track's id


def _cell(kind: str, source: str) -> nbformat.NotebookNode:
    make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
    return make(source.rstrip("\n"))


def notebook(cells: list[tuple], solution: bool) -> nbformat.NotebookNode:
    from tinycurv import course

    out = []
    for spec in cells:
        kind = spec[0]
        if kind in ("md", "code"):
            out.append(_cell(kind, spec[1]))
        elif kind == "exercise":
            ex = course.get(spec[1])
            labels = "; ".join(c.label for c in ex.cases(np.random.default_rng(0)))
            out.append(
                _cell(
                    "md",
                    f"Write ``{ex.signature}``.\n\nThe check compares it with the "
                    f"library's on: {labels}.",
                )
            )
            out.append(_cell("code", exercise_code(spec[1], solution)))
        elif kind == "check":
            out.append(_cell("code", f'verdict = course.check("{spec[1]}", {spec[2]})'))
        elif kind == "hint":
            out.append(
                _cell(
                    "md",
                    f"<details><summary><b>Hint</b> ({spec[1]})</summary>\n\n"
                    f"{course.get(spec[1]).hint}\n\n</details>",
                )
            )
    nb = nbformat.v4.new_notebook(cells=out)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


CHECK_SOLUTIONS = [
    (
        "md",
        """\
# The reference solutions pass their own checks

Every exercise of tutorials 01–09 has its solution in `exercises_NN.py` next to this notebook,
and the track's engine pieces are in `track.py` (its method pieces are the notebooks' functions).
This notebook grades them all, as `tinycurv check NN exercises_NN.py` would from a shell; CI
executes it, so a change of the library that breaks a solution, or a grader that rejects a correct
one, fails the build. Instructors can withhold this whole folder (`tutorials/solutions/`).""",
    ),
    (
        "code",
        """\
from pathlib import Path

from tinycurv import course
from tinycurv.course.grader import load_file

folder = next(p for p in (Path.cwd(), Path.cwd() / "tutorials" / "solutions")
              if (p / "exercises_01.py").is_file())
verdicts = []
for path in sorted(folder.glob("exercises_*.py")) + [folder / "track.py"]:
    module = load_file(path)
    prefix = "T" if path.stem == "track" else path.stem.split("_")[1] + "."
    for ex in course.EXERCISES.values():
        if ex.id.startswith(prefix) and hasattr(module, ex.name):
            verdicts.append(course.check(ex.id, module))""",
    ),
    (
        "code",
        """\
graded = {v.exercise for v in verdicts}
missing = [i for i in course.EXERCISES if not i.startswith("T") and i not in graded]
missing += [i for i in ("T1.1", "T1.2", "T2.1", "T2.2") if i not in graded]
print(f"{sum(v.passed for v in verdicts)} of {len(verdicts)} solutions pass")
assert all(v.passed for v in verdicts) and not missing, missing""",
    ),
]


def build() -> list[Path]:
    written = []
    path = HERE / "check_solutions.ipynb"
    nbformat.write(notebook(CHECK_SOLUTIONS, solution=True), path)
    written.append(path)
    for folder, solution in ((STUDENT, False), (SOLUTION, True)):
        folder.mkdir(parents=True, exist_ok=True)
        for name, cells in NOTEBOOKS.items():
            nb = notebook(cells, solution)
            if solution:  # one folder deeper, and say what it is
                title, rest = nb.cells[0].source.split("\n", 1)
                nb.cells[0].source = (
                    f"{title} — solution\n\n*The solution notebook: "
                    "instructors can withhold `tutorials/solutions/`.*\n" + rest
                )
                for cell in nb.cells:
                    if cell.cell_type == "markdown":
                        cell.source = cell.source.replace("(README.md)", "(../../track/README.md)")
                        cell.source = cell.source.replace(
                            "(../../COURSE.md)", "(../../../COURSE.md)"
                        )
            path = folder / f"{name}.ipynb"
            nbformat.write(nb, path)
            written.append(path)
    return written


def exercise_cells(notebooks: str = "0") -> str:
    """The stub, check and hint cells of the 01–09 exercises, ready to paste (markdown)."""
    from tinycurv import course

    parts = []
    for ex in course.EXERCISES.values():
        if not ex.id.startswith(notebooks):
            continue
        filename = f"exercises_{ex.id[:2]}.py"
        text, definitions = _definitions(filename)
        parts.append(
            f"### {ex.id} · {ex.title}\n\nWrite `{ex.signature}`.\n\n```python\n"
            f"{_stub(text, definitions[ex.name])}\n```\n\n```python\nverdict = "
            f'course.check("{ex.id}", {ex.name})\n```\n\n<details><summary><b>Hint'
            f"</b> ({ex.id})</summary>\n\n{ex.hint}\n\n</details>\n"
        )
    return "\n".join(parts)


if __name__ == "__main__":
    if "--cells" in sys.argv:
        print(exercise_cells())
    else:
        for path in build():
            print("wrote", path.relative_to(ROOT))
