"""``Module`` and ``Sequential``: parameters in a stable order, state dicts, calling convention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tinycurv.backend import asarray, asnumpy
from tinycurv.tensor import Tensor


class Module:
    """Base class of layers and models.

    Tensors with ``requires_grad`` and sub-modules assigned as attributes are registered in
    assignment order, so ``parameters()`` lists layers in order, weight before bias.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Tensor | Module):
            self.__dict__.setdefault("_children", {})[name] = value
        object.__setattr__(self, name, value)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Any) -> Tensor:
        return self.forward(x if isinstance(x, Tensor) else Tensor(x))

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        """``(name, tensor)`` pairs, e.g. ``("0.weight", …)``, in a stable order."""
        out = []
        for name, child in self.__dict__.get("_children", {}).items():
            if isinstance(child, Module):
                out += child.named_parameters(f"{prefix}{name}.")
            elif child.requires_grad:
                out.append((prefix + name, child))
        return out

    def parameters(self) -> list[Tensor]:
        """The trainable tensors, layers in order, weight before bias."""
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and all sub-modules, depth first, in order."""
        yield self
        for child in self.__dict__.get("_children", {}).values():
            if isinstance(child, Module):
                yield from child.modules()

    def state_dict(self) -> dict[str, Any]:
        """Parameter values as NumPy arrays (host copies)."""
        return {name: asnumpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set parameter values from ``state_dict()`` output (names and shapes must match)."""
        params = dict(self.named_parameters())
        missing, unexpected = set(params) - set(state), set(state) - set(params)
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for name, p in params.items():
            value = asarray(state[name], dtype=p.dtype)
            if tuple(value.shape) != p.shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {tuple(value.shape)}, expected {p.shape}"
                )
            p.data = value

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.parameters())


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
