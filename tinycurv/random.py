"""A random generator whose state survives a checkpoint on every backend, and its replay.

``SavableGenerator(seed)`` draws from ``tinycurv.backend.default_rng(seed)`` (the current
backend's generator). On NumPy its saved state is the bit generator's state dict. CuPy keeps its
generator's state on the GPU and cannot export it, so there every draw is logged instead
(method, arguments, and how many times in a row) and ``set_state`` re-seeds and replays the log.
Either way a resumed run draws exactly the numbers an uninterrupted run would have drawn; on
CuPy the replay's time grows with the number of draws since the seed.

``generator_state`` and ``restore_generator`` save and restore a ``SavableGenerator`` or a plain
NumPy generator alike (the optimisers' checkpoints use them). ``tinycurv.backend`` re-exports
all three names.

A declared host-side module: it uses NumPy on the host for the seed (``SeedSequence``), for the
log's plain values and for NumPy generators.
"""

from __future__ import annotations

from typing import Any

import numpy

from tinycurv.backend import BackendError, backend_name, get_backend


def default_rng(seed: Any = None) -> Any:
    """A random generator of the current backend, seeded like ``numpy.random.default_rng``."""
    return get_backend().random.default_rng(seed)


class SavableGenerator:
    """The backend's random generator, with a state that can be saved and restored.

    Draws go to ``self.generator`` (``rng.random(shape)``, ``rng.standard_normal(shape)``, …).
    On CuPy, draws must take plain arguments (shapes, numbers, dtypes) so that they can be logged.

    Parameters
    ----------
    seed : int, optional
        As for ``numpy.random.default_rng``; None takes fresh entropy from the OS (saved as the
        entropy drawn, so that replay still works).
    """

    def __init__(self, seed: Any = None) -> None:
        self.seed = numpy.random.SeedSequence(seed).entropy  # what replays start from
        self.generator = default_rng(self.seed)
        self._readable = isinstance(getattr(self.generator.bit_generator, "state", None), dict)
        self._log: list[list[Any]] = []  # [[method, args, kwargs, times], ...] (CuPy only)

    def __getattr__(self, name: str) -> Any:
        draw = getattr(self.__dict__["generator"], name)
        if self.__dict__["_readable"] or not callable(draw) or name.startswith("_"):
            return draw

        def logged(*args: Any, **kwargs: Any) -> Any:
            entry = [name, _plain(args, name), _plain(kwargs, name)]
            if self._log and self._log[-1][:3] == entry:
                self._log[-1][3] += 1
            else:
                self._log.append([*entry, 1])
            return draw(*args, **kwargs)

        return logged

    def get_state(self) -> dict[str, Any]:
        """A state of dicts, lists, strings and numbers (JSON-ready), for ``set_state``."""
        if self._readable:
            return {"kind": "state", "state": self.generator.bit_generator.state}
        return {"kind": "replay", "seed": self.seed, "draws": [list(e) for e in self._log]}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, as returned by ``get_state`` on the same backend."""
        kind = state.get("kind")
        if kind == "state" and self._readable:
            self.generator.bit_generator.state = state["state"]
        elif kind == "replay":
            self.seed = state["seed"]
            self.generator = default_rng(self.seed)
            self._readable = isinstance(getattr(self.generator.bit_generator, "state", None), dict)
            self._log = []
            for name, args, kwargs, times in state["draws"]:
                for _ in range(int(times)):
                    getattr(self, name)(*args, **kwargs)  # the same draws, results dropped
        elif kind == "state":
            raise BackendError(
                f"this generator state was saved on NumPy; the {backend_name()} generator cannot "
                "take it (save and load on the same backend)"
            )
        else:
            raise ValueError(f"not a SavableGenerator state: kind {kind!r}")


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON-ready data (tuples become lists, dtypes their names), for the draw log."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, name) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numpy.integer | numpy.floating):
        return value.item()
    if isinstance(value, type) or isinstance(value, numpy.dtype):
        return numpy.dtype(value).name
    raise TypeError(
        f"SavableGenerator.{name}: argument of type {type(value).__name__} cannot be logged for "
        "replay on this backend; pass shapes, numbers and dtypes only"
    )


def generator_state(rng: Any) -> dict[str, Any] | None:
    """The savable state of ``rng`` (a ``SavableGenerator`` or NumPy generator), else None."""
    if isinstance(rng, SavableGenerator):
        return rng.get_state()
    state = getattr(getattr(rng, "bit_generator", None), "state", None)
    return {"kind": "state", "state": state} if isinstance(state, dict) else None


def restore_generator(rng: Any, state: dict[str, Any]) -> Any:
    """``rng`` continued from ``state`` (from ``generator_state``), restored in place.

    A NumPy state of another bit generator (say MT19937 into a PCG64 generator) gives a new NumPy
    generator of the saved kind instead; the caller keeps the returned generator.
    """
    if "bit_generator" in state:  # a bare NumPy bit-generator state
        state = {"kind": "state", "state": state}
    if isinstance(rng, SavableGenerator):
        rng.set_state(state)
        return rng
    if state.get("kind") != "state":
        raise ValueError(f"cannot restore a {state.get('kind')!r} state into {type(rng).__name__}")
    kind = state["state"]["bit_generator"]
    if type(getattr(rng, "bit_generator", None)).__name__ != kind:
        if rng is not None and not isinstance(rng, numpy.random.Generator):
            raise ValueError(f"the saved {kind} state does not fit {type(rng).__name__}")
        rng = numpy.random.Generator(getattr(numpy.random, kind)())
    rng.bit_generator.state = state["state"]
    return rng
