"""``Module`` and ``Sequential``: parameters in a stable order, state dicts, calling convention.

A layer (or a tensor) used twice in a model is one parameter: ``parameters()``,
``named_parameters()``, ``modules()``, ``num_parameters()`` and ``state_dict()`` list each
tensor (each module) once, under the name where it is first seen (PyTorch's rule), so an
optimiser steps a tied weight once, with the gradient summed over all of its uses.

``load_state_dict`` is atomic: every name, shape and value is checked before any parameter is
written, and the model keeps its dtype and its own copies of the arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tinycurv.backend import asarray, asnumpy, quiet_float_errors, xp
from tinycurv.tensor import Tensor

_NUMERIC_KINDS = frozenset("biuf")  # bool, signed and unsigned integers, real floats


class Module:
    """Base class of layers and models.

    Tensors with ``requires_grad`` and sub-modules assigned as attributes are registered in
    assignment order, so ``parameters()`` lists layers in order, weight before bias.
    Assigning anything else to the attribute (``None``, say) unregisters it.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        children = self.__dict__.setdefault("_children", {})
        if isinstance(value, Tensor | Module):
            children[name] = value
        else:
            children.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.get("_children", {}).pop(name, None)
        object.__delattr__(self, name)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Any) -> Tensor:
        return self.forward(x if isinstance(x, Tensor) else Tensor(x))

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        """``(name, tensor)`` pairs, e.g. ``("0.weight", …)``, in a stable order.

        A tensor reachable under several names (weight tying) is listed once, under the first.
        """
        out: list[tuple[str, Tensor]] = []
        self._collect(prefix, out, seen_modules=set(), seen_tensors=set())
        return out

    def _collect(self, prefix: str, out: list, seen_modules: set, seen_tensors: set) -> None:
        seen_modules.add(id(self))
        for name, child in self.__dict__.get("_children", {}).items():
            if isinstance(child, Module):
                if id(child) not in seen_modules:
                    child._collect(f"{prefix}{name}.", out, seen_modules, seen_tensors)
            elif child.requires_grad and id(child) not in seen_tensors:
                seen_tensors.add(id(child))
                out.append((prefix + name, child))

    def parameters(self) -> list[Tensor]:
        """The trainable tensors, each once, layers in order, weight before bias."""
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and all sub-modules, each once, depth first, in order."""
        return iter(self._modules(set()))

    def _modules(self, seen: set) -> list[Module]:
        seen.add(id(self))
        out: list[Module] = [self]
        for child in self.__dict__.get("_children", {}).values():
            if isinstance(child, Module) and id(child) not in seen:
                out += child._modules(seen)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Parameter values as NumPy arrays (host copies), one entry per unique tensor."""
        return {name: asnumpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set parameter values from ``state_dict()`` output, atomically.

        Every value is checked first (``_checked_state``), then all are written: a failed load
        changes nothing. The model keeps its dtypes and copies the arrays (later edits of
        ``state`` or of the model do not reach the other).

        Raises
        ------
        KeyError
            If names are missing or unexpected (the message lists them).
        ValueError
            If a value has another shape, is not an array of real numbers, or is not finite.
        """
        self._assign(self._checked_state(state))

    def _checked_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The values of ``state`` checked and copied to the backend in each parameter's dtype.

        Writes nothing; ``_assign`` of the result cannot fail. Raises as ``load_state_dict``.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state).__name__}")
        params = dict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        out = {}
        for name, p in params.items():
            value = _as_array(state[name], name)
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"load_state_dict: {name} has shape {tuple(value.shape)}, "
                    f"expected {tuple(p.shape)}"
                )
            with quiet_float_errors():  # overflow in a cast to float32 is reported below
                out[name] = xp.array(value, dtype=p.dtype, copy=True)
        if out:  # one device-to-host transfer for all the checks
            finite = asnumpy(xp.stack([xp.all(xp.isfinite(a)) for a in out.values()])).tolist()
            bad = [name for name, ok in zip(out, finite, strict=True) if not ok]
            if bad:
                raise ValueError(
                    f"load_state_dict: {bad} hold NaN or inf (or values too large for the "
                    "model's dtype)"
                )
        return out

    def _assign(self, values: dict[str, Any]) -> None:
        """Write the output of ``_checked_state`` into the parameters (cannot fail)."""
        for name, p in self.named_parameters():
            p.data = values[name]

    def num_parameters(self) -> int:
        """Total number of scalar parameters, each tensor counted once."""
        return sum(p.size for p in self.parameters())


def _as_array(value: Any, name: str) -> Any:
    """``value`` (an array, a Tensor, a number or nested list) as an array of real numbers."""
    if isinstance(value, Tensor):
        value = value.data
    if not (hasattr(value, "dtype") and hasattr(value, "shape")):
        try:
            value = asarray(value)
        except (TypeError, ValueError) as err:
            msg = f"load_state_dict: {name} is not an array of real numbers ({err})"
            raise ValueError(msg) from None
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"load_state_dict: {name} has dtype {value.dtype}, expected an array of real numbers"
        )
    return value


class Sequential(Module):
    """Layers applied in order; sub-modules are named ``"0"``, ``"1"``, …"""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
