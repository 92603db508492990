"""The one interface of every optimiser in tinycurv.

::

    opt = Method(model, loss_fn, **hyperparameters)
    loss = opt.step(x, y)          # the batch loss *before* the update, as a float
    state = opt.state_dict()       # hyperparameters, step count and buffers (NumPy arrays)
    opt.load_state_dict(state)     # resume exactly

Subclasses implement ``_update(x, y) -> loss`` (a 0-d backend array or Tensor) and keep their
buffers in ``self.state`` (a dict of backend arrays, lists of arrays, or numbers), which
``state_dict`` copies to the host.

**A step is atomic.** If the loss, the gradient, the update or a new buffer is not finite, or
``_update`` raises, the parameters, ``state_dict()`` and the random generator are left exactly as
they were before the step; then ``on_nonfinite="raise"`` (the default) raises
``NonFiniteError`` and ``on_nonfinite="skip"`` warns (``RuntimeWarning``) and returns the loss
(NaN where the step stopped before the loss was read).
A step runs with the tape enabled, also inside ``tinycurv.no_grad()``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import tinycurv.curvature as curvature
from tinycurv import dual as D
from tinycurv.backend import (
    SavableGenerator,
    asarray,
    asnumpy,
    generator_state,
    is_array,
    restore_generator,
    xp,
)
from tinycurv.functional import value_and_grad
from tinycurv.tensor import Tensor, set_grad_enabled

ON_NONFINITE = ("raise", "skip")
#: Buffers of ``state`` that hold one array per parameter, shaped like it.
PER_PARAMETER = ("momentum_buffer", "m", "v", "u", "delta")


class NonFiniteError(FloatingPointError):
    """A loss, gradient or step contained NaN or inf."""


class SkipStep(Exception):
    """Raised inside ``_update`` to skip this step atomically (a warning, not an error).

    ``loss`` (optional) is the batch loss that ``step`` then returns; ``keep`` (optional) holds
    entries of ``state`` that the skipped step learned and the next one starts from (an enlarged
    scale, say); everything else is restored.
    """

    def __init__(self, reason: str, loss: Any = None, keep: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.loss, self.keep = loss, dict(keep or {})


class Optimizer:
    """Base class: holds the model, the loss, the step count ``t`` and the buffers ``state``.

    Parameters
    ----------
    model : Module
    loss_fn : callable
    on_nonfinite : {"raise", "skip"}
        What a step whose loss, gradient or update is not finite does (module docstring).
    **hyperparameters
        Values of the class's declared ``Hyperparameter`` attributes (checked, then stored in
        ``self.hyperparameters``, which ``state_dict`` saves); an undeclared one is a TypeError.
    """

    def __init__(
        self, model: Any, loss_fn: Any, on_nonfinite: str = "raise", **hyperparameters: Any
    ) -> None:
        check_choice(type(self).__name__, "on_nonfinite", on_nonfinite, ON_NONFINITE)
        self.model = model
        self.loss_fn = loss_fn
        self.params: list[Tensor] = model.parameters()
        self.on_nonfinite = on_nonfinite
        self.hyperparameters: dict[str, Any] = self._checked(hyperparameters)
        self.t = 0
        self.state: dict[str, Any] = {}

    def _checked(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every declared hyperparameter checked (raises naming the first bad)."""
        out = {}
        for name, value in values.items():
            declared = getattr(type(self), name, None)
            if not isinstance(declared, Hyperparameter):
                raise TypeError(
                    f"{type(self).__name__}: {name!r} is not a declared hyperparameter "
                    f"(declare it as a class attribute: {name} = Hyperparameter(...))"
                )
            out[name] = declared.check(self, value)
        return out

    # -- the interface ---------------------------------------------------------------------------

    def step(self, x: Any, y: Any) -> float:
        """One update on the batch ``(x, y)``; returns the batch loss before the update.

        Atomic: see the module docstring. Raises ``NonFiniteError`` (``on_nonfinite="raise"``)
        when the loss, gradient or update is not finite; the training state is then unchanged.
        """
        saved = self._snapshot()
        try:
            with set_grad_enabled(True):  # an optimiser's sweeps need the tape, even in no_grad
                loss = self._update(x, y)
            value, finite = self._read_loss(loss, saved)
        except SkipStep as skip:
            self._restore(saved)
            self.state.update(skip.keep)
            self.warn_skip(str(skip))
            return math.nan if skip.loss is None else _float(skip.loss)
        except NonFiniteError as err:
            self._restore(saved)
            return self._nonfinite(str(err), math.nan)
        except BaseException:
            self._restore(saved)
            raise
        if not finite:
            self._restore(saved)
            what = "loss" if not math.isfinite(value) else "update"
            return self._nonfinite(f"the {what} is not finite (loss {value})", value)
        self.t += 1
        return value

    def _update(self, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and buffers, with arrays copied to the host (NumPy).

        Also the optimiser's class and the parameters' shapes (checked by ``load_state_dict``),
        and, for an optimiser that draws random numbers from ``self.rng``, the generator's state
        under ``"rng"``; a generator whose state cannot be read is left out, with a warning.
        """
        out = {
            "t": self.t,
            "class": type(self).__name__,
            "param_shapes": [list(p.shape) for p in self.params],
            "hyperparameters": dict(self.hyperparameters),
            "state": _to_host(self.state),
        }
        rng = getattr(self, "rng", None)
        if rng is not None:
            rng_state = generator_state(rng)
            if rng_state is None:
                warnings.warn(
                    f"{type(self).__name__}.rng ({type(rng).__name__}) has no readable state; "
                    "it is not saved, so a resumed run will draw different random numbers "
                    "(use tinycurv.backend.SavableGenerator)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                out["rng"] = rng_state
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, atomically: validated first, then written.

        Buffers go back to the current backend in the parameters' dtype (a float32 model keeps
        float32 buffers). Raises ``ValueError`` for another optimiser's or architecture's state;
        then nothing changes.
        """
        name = type(self).__name__
        if not isinstance(state, dict) or "t" not in state or "state" not in state:
            raise ValueError(f"{name}.load_state_dict: not an optimiser state_dict")
        if state.get("class", name) != name:
            raise ValueError(f"{name}.load_state_dict: the state of a {state['class']}")
        mine = [list(p.shape) for p in self.params]
        if [list(s) for s in state.get("param_shapes", mine)] != mine:
            raise ValueError(
                f"{name}.load_state_dict: saved for parameters of shapes "
                f"{state['param_shapes']}, this model has {mine}"
            )
        dtype = self.params[0].dtype if self.params else None
        buffers = _to_backend(state["state"], dtype)
        for key in PER_PARAMETER:
            value = buffers.get(key) if isinstance(buffers, dict) else None
            if isinstance(value, list) and [list(D.shape(v)) for v in value] != mine:
                raise ValueError(
                    f"{name}.load_state_dict: buffer {key!r} does not fit this model's parameters"
                )
        saved = self._checked(state.get("hyperparameters", {}))
        hyperparameters = {**self.hyperparameters, **saved}
        rng = getattr(self, "rng", None)
        if state.get("rng") is not None:
            rng = restore_generator(_fresh_copy(rng), state["rng"])
        self.t = int(state["t"])
        self.hyperparameters = hyperparameters
        self.state = buffers
        if rng is not None:
            self.rng = rng

    # -- helpers for subclasses ------------------------------------------------------------------

    def closure(self, x: Any, y: Any):
        """``closure()`` computing the batch loss of the model on ``(x, y)``."""
        return lambda: self.loss_fn(self.model(x), y)

    def loss_and_grad(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        """The batch loss (0-d array) and its gradient (one array per parameter)."""
        return value_and_grad(self.closure(x, y), self.params)

    def apply_update(self, directions: list[Any], scale: float = 1.0) -> None:
        """θ ← θ − scale · direction for every parameter."""
        for p, d in zip(self.params, directions, strict=True):
            p.data = p.data - scale * d

    def warn_skip(self, reason: str) -> None:
        """Say that this step was skipped, and why."""
        warnings.warn(
            f"{type(self).__name__} step {self.t + 1} skipped: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )

    # -- atomic steps ----------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """What a failed step puts back: references (updates make new arrays, never in place)."""
        rng = getattr(self, "rng", None)
        return {
            "data": [p.data for p in self.params],
            "t": self.t,
            "state": _structure(self.state),
            "hyperparameters": dict(self.hyperparameters),
            "history": _structure(getattr(self, "history", None)),
            "rng": None if rng is None else generator_state(rng),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        for p, data in zip(self.params, saved["data"], strict=True):
            p.data, p.grad = data, None
        self.t, self.state = saved["t"], saved["state"]
        self.hyperparameters = saved["hyperparameters"]
        if saved["history"] is not None:
            self.history = saved["history"]
        if saved["rng"] is not None:
            self.rng = restore_generator(self.rng, saved["rng"])

    def _read_loss(self, loss: Any, saved: dict[str, Any]) -> tuple[float, bool]:
        """The loss as a float and whether the new parameters and buffers are all finite.

        One device-to-host transfer: the loss together with the sums of the arrays that this step
        made (a sum of finite entries is finite, barring overflow past the dtype's range).
        """
        loss = xp.reshape(xp.asarray(D.primal(loss.data if isinstance(loss, Tensor) else loss)), ())
        old = {id(a) for a in saved["data"]} | {id(a) for a in _arrays(saved["state"])}
        new = [p.data for p in self.params] + list(_arrays(self.state))
        sums = [xp.sum(a) for a in new if id(a) not in old and a.dtype.kind == "f"]
        values = xp.stack([loss] + [s.astype(loss.dtype) for s in sums])
        host = values.tolist()  # the one transfer of a step: the loss and the sums' finiteness
        return host[0], all(math.isfinite(v) for v in host)

    def _nonfinite(self, reason: str, value: float) -> float:
        message = f"{type(self).__name__} step {self.t + 1}: {reason}; nothing was changed"
        if self.on_nonfinite == "raise":
            raise NonFiniteError(message)
        warnings.warn(message + " (skipped)", RuntimeWarning, stacklevel=3)
        return value


# -- hyperparameters ------------------------------------------------------------------------------


class Hyperparameter:
    """A declared hyperparameter of an optimiser class, e.g. ``lr = Hyperparameter(number())``.

    ``opt.lr`` reads ``opt.hyperparameters["lr"]`` (what ``state_dict`` saves); ``opt.lr = v``
    and the constructor check ``v`` first with ``kind`` (``number``, ``integer``, ``choice``,
    ``flag``), which raises ``ValueError``/``TypeError`` naming the optimiser and the argument.
    """

    def __init__(self, kind: Any = None) -> None:
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def check(self, opt: Any, value: Any) -> Any:
        return value if self.kind is None else self.kind(type(opt).__name__, self.name, value)

    def __get__(self, opt: Any, owner: type | None = None) -> Any:
        if opt is None:
            return self
        try:
            return opt.hyperparameters[self.name]
        except KeyError:
            raise AttributeError(f"{type(opt).__name__} has no {self.name!r} here") from None

    def __set__(self, opt: Any, value: Any) -> None:
        opt.hyperparameters[self.name] = self.check(opt, value)


def number(**interval: Any) -> Any:
    """A ``Hyperparameter`` kind: a float in an interval (``check_range``'s keywords)."""
    return lambda owner, name, value: check_range(owner, name, value, **interval)


def integer(low: int = 1) -> Any:
    """A ``Hyperparameter`` kind: an int ≥ ``low``."""
    return lambda owner, name, value: check_int(owner, name, value, low)


def choice(*options: Any) -> Any:
    """A ``Hyperparameter`` kind: one of ``options``."""
    return lambda owner, name, value: check_choice(owner, name, value, options)


def beta_pair(owner: str, name: str, value: Any) -> tuple[float, float]:
    """A ``Hyperparameter`` kind: Adam's (β₁, β₂), two numbers in [0, 1)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{owner}: {name} must be two numbers in [0, 1), got {value!r}")
    return tuple(check_range(owner, name, b, 0.0, 1.0, high_open=True) for b in pair)


def flag(owner: str, name: str, value: Any) -> bool:
    """A ``Hyperparameter`` kind: a bool."""
    if not isinstance(value, bool | int) or value not in (0, 1):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_range(
    owner: str,
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """``value`` as a float; ValueError unless it is a number in the interval.

    ``allow_inf`` admits ``math.inf`` (for hyperparameters where ∞ means "off").
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    v = float(value)
    ok = (math.isfinite(v) or (allow_inf and v == math.inf)) and (v > low if low_open else v >= low)
    ok = ok and (v < high if high_open else v <= high)
    if not ok:
        if high == math.inf:
            where = f"> {low:g}" if low_open else f"≥ {low:g}"
            where += " (math.inf allowed)" if allow_inf else " and finite"
        else:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            where = f"lie in {lo}{low:g}, {high:g}{hi}"
        raise ValueError(f"{owner}: {name} must {'be ' * (high == math.inf)}{where}, got {value!r}")
    return v


def check_int(owner: str, name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int; ValueError unless it is an integer ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise ValueError(f"{owner}: {name} must be an integer ≥ {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def check_choice(owner: str, name: str, value: Any, choices: tuple) -> Any:
    """``value``; ValueError naming the choices unless it is one of them."""
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")
    return value


class PureFunctions:
    """The pure functions of a ``tinycurv.curvature`` module, looked up at every call.

    ``math.f`` is ``module.f`` unless only its re-export ``tinycurv.curvature.f`` was replaced:
    so replacing either name (a test breaking a pure function on purpose, an experiment with
    another direction) changes every optimiser that calls it.
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._module, name)
        if fn is _DEFINED.get(name, fn):  # the module's own: the re-export may be replaced
            return getattr(curvature, name, fn)
        return fn


#: ``tinycurv.curvature``'s names as defined, before any replacement (see ``PureFunctions``).
_DEFINED = {name: getattr(curvature, name) for name in dir(curvature) if not name.startswith("_")}


def make_generator(seed: Any, rng: Any) -> Any:
    """The optimiser's generator: ``rng`` itself, or a ``SavableGenerator`` seeded once.

    An int ``rng`` is a seed (as ``seed``), not a generator to rebuild at every draw.
    """
    if rng is None or isinstance(rng, numbers.Integral):
        return SavableGenerator(seed if rng is None else int(rng))
    if not hasattr(rng, "random"):
        raise TypeError(f"rng must be a generator or an int seed, got {type(rng).__name__}")
    return rng


# -- state helpers --------------------------------------------------------------------------------


def _structure(obj: Any) -> Any:
    """A copy of the nesting (dicts, lists, tuples) that shares the arrays and other leaves."""
    if isinstance(obj, dict):
        return {k: _structure(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_structure(v) for v in obj)
    return obj


def _arrays(obj: Any):
    """Every backend array in a nested state."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _arrays(v)
    elif isinstance(obj, xp.ndarray):
        yield obj


def _float(loss: Any) -> float:
    return float(D.primal(loss.data if isinstance(loss, Tensor) else loss))


def _fresh_copy(rng: Any) -> Any:
    """A generator to restore into, so that a failed restore leaves ``rng`` as it was."""
    return SavableGenerator(rng.seed) if isinstance(rng, SavableGenerator) else rng


def _to_host(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_host(v) for v in obj)
    if is_array(obj):
        return asnumpy(obj).copy()
    return obj


def _to_backend(obj: Any, dtype: Any = None) -> Any:
    """Arrays of a nested state on the backend; floating ones in ``dtype`` (if given)."""
    if isinstance(obj, dict):
        return {k: _to_backend(v, dtype) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_backend(v, dtype) for v in obj)
    if is_array(obj) and obj.ndim > 0:
        floating = dtype is not None and obj.dtype.kind == "f"
        return asarray(obj, dtype=dtype if floating else obj.dtype).copy()
    return obj
