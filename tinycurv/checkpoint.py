"""Checkpoints: a model, its optimiser and the optimiser's random generator in one ``.npz`` file.

A declared host-side helper (it imports NumPy): everything is copied to the host before saving.

Layout of the file::

    model/<name>              one array per parameter, e.g. ``model/0.weight``
    optimizer/<path>          one array per optimiser buffer, e.g. ``optimizer/state/m/0``
    __meta__                  a 0-d string array holding JSON

The JSON blob records the optimiser's class and the *structure* of its ``state_dict()``: nested
dicts, lists and tuples, with arrays replaced by references to the keys above, and every other
leaf (step count, hyperparameters such as ``betas=(0.9, 0.999)``, ``None``, bools) stored with
its Python type. Loading rebuilds the same nested object, so that ::

    save(path, model, opt); ...; load(path, fresh_model, fresh_opt)

continues training on exactly (bit for bit) the trajectory that ``model`` and ``opt`` were on.
The optimiser's random generator (``opt.rng``, if it has one) travels in its ``state_dict()``
(see ``tinycurv.optim.base.Optimizer.state_dict``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tinycurv.backend import asnumpy, is_array, restore_generator

FORMAT = "tinycurv-checkpoint-1"
META = "__meta__"


def save(path: str | os.PathLike, model: Any, optimizer: Any = None) -> Path:
    """Write ``model`` (and ``optimizer``, if given) to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to write, used exactly as given (no suffix is appended). It is written to a
        temporary file first and then moved into place.
    model : Module
        Its ``state_dict()`` is saved under ``model/<name>``.
    optimizer : Optimizer, optional
        Its ``state_dict()`` (with the state of ``optimizer.rng``, if it has one) is saved.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    arrays = {f"model/{name}": asnumpy(a) for name, a in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT}
    if optimizer is not None:
        meta["optimizer_class"] = type(optimizer).__name__
        meta["optimizer"] = _encode(optimizer.state_dict(), "optimizer", arrays)
    arrays[META] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike, model: Any, optimizer: Any = None) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer``, if given) in place from a file written by ``save``.

    Parameters
    ----------
    path : str or path-like
    model : Module
        Must have the same parameter names and shapes as the saved one.
    optimizer : Optimizer, optional
        Must be of the same class as the saved one.

    Returns
    -------
    dict
        The decoded metadata (format, optimiser class, …), for inspection.

    Raises
    ------
    ValueError
        If the file is not a tinycurv checkpoint, or the optimiser's class differs.
    KeyError
        If an optimiser is given but the checkpoint holds none (or the model's names differ).
    """
    with np.load(Path(path), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = _read_meta(arrays, path)
    prefix = "model/"
    model.load_state_dict({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
    if optimizer is not None:
        _load_optimizer(meta, arrays, optimizer, path)
    return meta


def _read_meta(arrays: dict[str, np.ndarray], path: Any) -> dict[str, Any]:
    if META not in arrays:
        raise ValueError(f"load: {path} is not a tinycurv checkpoint (no {META!r} entry)")
    meta = json.loads(str(arrays.pop(META)))
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _load_optimizer(meta: dict[str, Any], arrays: dict, optimizer: Any, path: Any) -> None:
    if "optimizer" not in meta:
        raise KeyError(f"load: {path} holds no optimizer state")
    saved, mine = meta["optimizer_class"], type(optimizer).__name__
    if saved != mine:
        raise ValueError(f"load: {path} holds the state of a {saved}, not of a {mine}")
    optimizer.load_state_dict(_decode(meta["optimizer"], arrays))
    if "rng" in meta:  # files written before the generator moved into state_dict()
        optimizer.rng = restore_generator(optimizer.rng, _decode(meta["rng"], arrays))


# -- the JSON encoding of nested state -------------------------------------------------------------
#
# JSON has lists, string-keyed objects, strings, numbers, true/false/null. Everything else is a
# tagged object: {"__array__": key} (the array lives in the .npz under key), {"__tuple__": [...]},
# {"__dict__": [[key, value], ...]} (keys of any encodable type, order kept).


def _encode(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON-ready data; arrays (and NumPy scalars) go into ``arrays`` under ``key``."""
    if is_array(obj) or isinstance(obj, np.generic):
        if key in arrays:
            raise ValueError(f"checkpoint: two entries would both be saved as {key!r}")
        arrays[key] = asnumpy(obj).copy()
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        pairs = [[_encode(k, key, {}), _encode(v, f"{key}/{k}", arrays)] for k, v in obj.items()]
        return {"__dict__": pairs}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"checkpoint: cannot save {type(obj).__name__} at {key!r}")


def _decode(data: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Invert ``_encode``: rebuild dicts, tuples and lists, and fetch arrays from ``arrays``."""
    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if "__array__" in data:
        value = arrays[data["__array__"]]
        return value[()] if data["scalar"] else value
    if "__tuple__" in data:
        return tuple(_decode(v, arrays) for v in data["__tuple__"])
    return {_decode(k, arrays): _decode(v, arrays) for k, v in data["__dict__"]}
