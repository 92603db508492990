"""Static guards of the GPU backend, on the CPU: who imports NumPy, and where optimisers sync.

* Array math goes through ``tinycurv.backend.xp``. Only the modules declared in
  ``tinycurv.backend.HOST_SIDE_MODULES`` may import NumPy, and each says in its docstring that
  it is host-side.
* A host transfer (``float/int/bool(array)``, ``.item()``, ``asnumpy``, a CuPy ``.get()``)
  waits for the GPU. Inside an optimiser's ``step``/``_update`` and the helpers they call
  (methods of the same class or its bases, functions of the same module) each is listed in
  ``HOST_TRANSFERS`` with its reason. The scan is syntactic: ``float(x)`` of a Python number
  is listed too (reason "host number"); calls on other objects and into other modules
  (``tinycurv.curvature``, ``functional``) are not followed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinycurv.backend import HOST_SIDE_MODULES

PACKAGE = Path(__file__).resolve().parents[1] / "tinycurv"


def _modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _host_side(name: str) -> bool:
    return any(
        name == entry or (entry.endswith(".*") and name.startswith(entry[:-1]))
        for entry in HOST_SIDE_MODULES
    ) or any(entry.endswith(".*") and name == entry[:-2] for entry in HOST_SIDE_MODULES)


def _numpy_imports(tree: ast.AST) -> list[int]:
    """Line numbers of ``import numpy…`` and ``from numpy… import …`` anywhere in ``tree``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n == "numpy" or n.startswith("numpy.") for n in names):
            lines.append(node.lineno)
    return lines


def test_only_declared_host_side_modules_import_numpy():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for name, path in _modules()
        if not _host_side(name)
        for line in _numpy_imports(ast.parse(path.read_text()))
    ]
    assert not offenders, (
        "these modules import NumPy but are not declared host-side; use `xp` from "
        f"tinycurv.backend, or add them to HOST_SIDE_MODULES with a reason: {offenders}"
    )


def test_the_guard_sees_every_form_of_import():
    code = "import numpy\nimport numpy as np\nfrom numpy import linalg\nimport numpy.random\n"
    code += "def f():\n    from numpy.linalg import inv\n"
    assert _numpy_imports(ast.parse(code)) == [1, 2, 3, 4, 6]
    assert _numpy_imports(ast.parse("import numbers\nfrom . import numpy_like\n")) == []


@pytest.mark.parametrize("entry", HOST_SIDE_MODULES)
def test_host_side_modules_exist_and_say_so(entry):
    """Each entry names a module (or ``pkg.*`` a package) whose docstring says "host-side"."""
    parts = entry.removesuffix(".*").split(".")
    base = PACKAGE.parent.joinpath(*parts)
    path = base / "__init__.py" if entry.endswith(".*") else base.with_suffix(".py")
    assert path.is_file(), f"HOST_SIDE_MODULES names {entry!r}, but {path} does not exist"
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "host-side" in docstring.lower(), f"the docstring of {entry} must say it is host-side"


# --------------------------------------------------------------------------------------------
# host transfers inside the optimisers' steps
# --------------------------------------------------------------------------------------------
# (module, function, call) -> why this host transfer is there. "host number": the argument is
# already a Python number (or a host value), so nothing waits for the GPU.
HOST_TRANSFERS = {
    ("base", "Optimizer._read_loss", "values.tolist()"):
        "the one documented transfer per step: the loss that step() returns, read together with "
        "the sums that say whether the new parameters and buffers are finite (atomic steps)",
    ("base", "_float", "float(D.primal(loss.data if isinstance(loss, Tensor) else loss))"):
        "a skipped step only (SkipStep): the loss it returns",
    ("kfac", "KFAC._update", "bool(xp.isfinite(xp.stack([xp.sum(f) for f in F])).all())"):
        "only after a failed factorisation: NaN/inf (NonFiniteError) or not PD (on_failure)",
    ("sfn", "SaddleFreeOptimizer._saddle_free_update",
     "float(self.state.get('damping', self.damping))"): "host number",
    ("sfn", "SaddleFreeOptimizer._reference_step", "float(self.state.get('alpha', 0.0))"):
        "host number",
    ("sfn", "SaddleFreeOptimizer._subspace_step", "int(self.state.get('rejected', 0))"):
        "host number",
    ("hessian_free", "_host",
     "xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]).tolist()"):
        "one per backtracking candidate (L(θ − p), ‖p‖², gᵀp, L(θ) together) and per line-search "
        "trial; CG's batched checks are in curvature.matrix_free",
    ("sfn", "SeriesSFN._scale", "float(self.state.get('V', self.initial_scale))"): "host number",
    ("sfn", "SeriesSFN._scale", "float(self.state['V_power'])"): "host number",
    ("sfn", "SeriesSFN._scale", "float(xp.finfo(g[0].dtype).tiny)"): "host number (dtype info)",
    ("sfn", "SeriesSFN._scale", "float(scale)"): "host number",
    ("sfn", "_host", "float(v)"): "host number (the entries of one asnumpy transfer)",
    ("sfn", "_host", "asnumpy(flat)"):
        "the documented batched transfers (docs/sfn.md, 'Cost'): ‖g‖² with ‖H²g‖² or the power "
        "estimate (finiteness, scale V); L(θ) with the step model's numbers (gᵀu, gᵀδ, δᵀb or "
        "DᵀHD, DᵀD, Dᵀg); L(θ − δ); three norms when a growing series enlarges V",
    ("grouped_newton", "GroupedNewton._update_rates", "asnumpy(g_bar)"):
        "the S-sized summary, once per update_every steps, for the host-side cubic solve",
    ("grouped_newton", "GroupedNewton._update_rates", "asnumpy(H_bar)"):
        "the S-sized summary, once per update_every steps, for the host-side cubic solve",
    ("grouped_newton", "GroupedNewton._update_rates", "asnumpy(D)"):
        "the S-sized summary, once per update_every steps, for the host-side cubic solve",
    ("grouped_newton", "GroupedNewton._update_rates", "float(e)"): "host number (NumPy, host)",
    ("grouped_newton", "GroupedNewton._update_rates", "g_bar.tolist()"): "host value (NumPy, host)",
    ("grouped_newton", "GroupedNewton._update_rates", "H_bar.tolist()"): "host value (NumPy, host)",
    ("grouped_newton", "GroupedNewton._update_rates", "D.tolist()"): "host value (NumPy, host)",
    ("grouped_newton", "GroupedNewton._curvature_batch", "int(source)"): "host number",
    ("isaac", "ISAAC._update", "bool(self._conditioned)"): "host value (a list)",
    ("isaac", "_has_bias", "bool(bias.requires_grad)"): "host value (a flag)",
    ("kfac", "_eig_inverse", "float(xp.finfo(K.dtype).eps)"): "host number",
    ("kfac", "_eig_inverse", "float(xp.max(xp.abs(d)))"):
        "solver='eigen' at refactorisation only (every inv_every steps): the PD check",
    ("kfac", "_eig_inverse", "bool(xp.all(d > floor))"):
        "solver='eigen' at refactorisation only (every inv_every steps): the PD check",
    ("kfac", "_eig_inverse", "bool(xp.all(xp.isfinite(d)))"):
        "solver='eigen' at refactorisation only (every inv_every steps): the PD check",
    ("kfac", "_eig_inverse", "float(xp.min(d))"): "only in the error message of a failed check",
}  # fmt: skip

ENTRY_POINTS = ("step", "_update")


def _is_transfer(call: ast.Call) -> bool:
    """``float/int/bool(x)`` (x not a literal), ``asnumpy(…)``, ``….item()``, ``….get()``,
    ``….tolist()``."""
    f = call.func
    if isinstance(f, ast.Name):
        literal = bool(call.args) and isinstance(call.args[0], ast.Constant)
        return f.id == "asnumpy" or (
            f.id in ("float", "int", "bool") and bool(call.args) and not literal
        )
    if isinstance(f, ast.Attribute):
        return f.attr == "asnumpy" or (f.attr in ("item", "get", "tolist") and not call.args)
    return False


def _optimiser_transfers() -> dict[tuple[str, str, str], int]:
    """(module, function, call) -> line, for every transfer reachable from a step."""
    functions: dict[tuple[str, str], ast.AST] = {}  # (module, qualified name) -> node
    bases: dict[str, list[str]] = {}  # class -> base class names
    for path in sorted((PACKAGE / "optim").glob("*.py")):
        module = path.stem
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                functions[module, node.name] = node
            elif isinstance(node, ast.ClassDef):
                bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        functions[module, f"{node.name}.{item.name}"] = item

    def method(cls: str, name: str) -> tuple[str, str] | None:
        """Where ``cls.name`` is defined: the class or, depth first, one of its bases."""
        for module, qualname in functions:
            if qualname == f"{cls}.{name}":
                return module, qualname
        for base in bases.get(cls, []):
            found = method(base, name)
            if found:
                return found
        return None

    found: dict[tuple[str, str, str], int] = {}
    seen: set[tuple[str, str, str]] = set()  # (module, qualname, class of self)
    todo = [(m, q, q.split(".")[0]) for m, q in functions if q.split(".")[-1] in ENTRY_POINTS]
    while todo:
        module, qualname, cls = todo.pop()
        if (module, qualname, cls) in seen:
            continue
        seen.add((module, qualname, cls))
        for node in ast.walk(functions[module, qualname]):
            if not isinstance(node, ast.Call):
                continue
            if _is_transfer(node):
                found.setdefault((module, qualname, ast.unparse(node)), node.lineno)
            f = node.func
            if (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and f.value.id == "self"
            ):
                target = method(cls, f.attr)
                if target:
                    todo.append((*target, cls))
            elif isinstance(f, ast.Name) and (module, f.id) in functions:
                todo.append((module, f.id, cls))
    return found


def test_optimiser_steps_transfer_to_the_host_only_where_documented():
    found = _optimiser_transfers()
    undocumented = [
        f"tinycurv/optim/{m}.py:{line} in {q}: {call}"
        for (m, q, call), line in sorted(found.items(), key=lambda kv: kv[1])
        if (m, q, call) not in HOST_TRANSFERS
    ]
    assert not undocumented, (
        "host transfers (device syncs on CuPy) in an optimiser step that HOST_TRANSFERS does not "
        "list: avoid them, or add them with the reason they are needed:\n" + "\n".join(undocumented)
    )


def test_the_transfer_scan_finds_the_documented_ones():
    """The scan itself works: the loss of ``Optimizer.step`` and SFN's batched transfer."""
    found = _optimiser_transfers()
    assert ("base", "Optimizer._read_loss", next(iter(HOST_TRANSFERS))[2]) in found
    assert ("sfn", "_host", "asnumpy(flat)") in found  # reached through SeriesSFN._update
