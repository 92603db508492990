"""Checkpoints: a model, its optimiser and the optimiser's random generator in one ``.npz`` file.

A declared host-side helper (it imports NumPy): everything is copied to the host before saving.
Layout: ``model/<name>`` (one array per parameter), ``optimizer/<path>`` (one array per optimiser
buffer, e.g. ``optimizer/state/m/0``) and ``__meta__``, a 0-d string array holding JSON: the
optimiser's class and the *structure* of its ``state_dict()`` (nested dicts, lists and tuples,
arrays replaced by references to the keys above, other leaves such as ``betas=(0.9, 0.999)``
stored with their Python types). So ``save(path, model, opt); load(path, model2, opt2)``
continues training bit for bit on the same trajectory (``opt.rng`` travels in the state dict).

``save`` writes a uniquely named temporary file next to ``path`` and moves it into place, so
concurrent saves and failed saves never leave a partial file. ``load`` checks the whole file
(integrity, format, names and shapes, optimiser class) before writing anything: a failed load
leaves model and optimiser as they were. A damaged file raises ``CheckpointError``.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tinycurv.backend import asnumpy, is_array

__all__ = ["FORMAT", "CheckpointError", "load", "save"]

FORMAT = "tinycurv-checkpoint-1"
META = "__meta__"


class CheckpointError(ValueError):
    """The file is not a tinycurv checkpoint, or it is damaged (truncated, garbage, bad meta)."""


def save(path: str | os.PathLike, model: Any, optimizer: Any = None) -> Path:
    """Write ``model`` (and ``optimizer``, if given) to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to write, used exactly as given (no suffix is appended). It is written to a
        uniquely named temporary file in the same directory, then moved into place atomically
        (``os.replace``); on any failure the temporary file is removed and an existing file at
        ``path`` is left intact. The file gets the permissions of a plain ``open`` (0o666 less
        the umask).
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
    fd, tmp = _create_temporary(path)
    try:
        with open(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, uniquely named file next to ``path``, opened for writing: ``(fd, name)``.

    Like ``tempfile.mkstemp``, but created with mode 0o666 so that the umask applies, as for a
    plain ``open`` (``mkstemp`` gives 0o600, and reading the umask is not thread-safe).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"save: no free temporary name next to {path}")


def load(path: str | os.PathLike, model: Any, optimizer: Any = None) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer``, if given) in place from a file written by ``save``.

    The whole file is checked before anything is written; a failed load changes neither the
    model nor the optimiser. Both keep their dtypes (a float32 model stays float32).

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
    FileNotFoundError
        If there is no file at ``path``.
    CheckpointError
        If the file is not a tinycurv checkpoint or is damaged (a ``ValueError``).
    ValueError
        If the optimiser's class differs, or a saved shape differs from the model's.
    KeyError
        If an optimiser is given but the checkpoint holds none (or the model's names differ).
    """
    arrays = _read_arrays(path)
    meta = _read_meta(arrays, path)
    optimizer_state = _decoded_optimizer_state(meta, arrays, path)
    prefix = "model/"
    saved = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    try:
        values = model._checked_state(saved)  # validates, writes nothing
    except (KeyError, ValueError) as err:
        raise type(err)(f"load: {path}: {err.args[0] if err.args else err}") from None
    if optimizer is not None:
        if optimizer_state is None:
            raise KeyError(f"load: {path} holds no optimizer state")
        saved_class, mine = meta["optimizer_class"], type(optimizer).__name__
        if saved_class != mine:
            raise ValueError(f"load: {path} holds the state of a {saved_class}, not of a {mine}")
        optimizer.load_state_dict(optimizer_state)  # checks first; changes nothing on failure
    model._assign(values)  # cannot fail
    return meta


def _read_arrays(path: Any) -> dict[str, np.ndarray]:
    """Every array of the file at ``path`` (read in full, so that zip CRCs are checked)."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise
    except MemoryError:
        raise
    except Exception as err:  # BadZipFile, EOFError, OSError, zlib.error, ValueError (pickle)…
        raise _damaged(path, _describe(err)) from err


def _describe(err: BaseException) -> str:
    if isinstance(err, zipfile.BadZipFile | EOFError):
        return f"truncated or corrupt zip: {err}"
    if isinstance(err, ValueError) and "allow_pickle" in str(err):
        return "not an .npz archive of plain arrays"
    if isinstance(err, AttributeError | TypeError):  # np.load gave a bare array (.npy)
        return "not an .npz archive"
    return f"{type(err).__name__}: {err}"


def _damaged(path: Any, why: str) -> CheckpointError:
    return CheckpointError(f"load: {path} is not a tinycurv checkpoint or is damaged ({why})")


def _read_meta(arrays: dict[str, np.ndarray], path: Any) -> dict[str, Any]:
    if META not in arrays:
        raise _damaged(path, f"no {META!r} entry")
    raw = arrays.pop(META)
    if raw.shape != () or raw.dtype.kind not in "US":
        raise _damaged(path, f"{META!r} is not a string")
    try:
        meta = json.loads(str(raw))
    except ValueError as err:
        raise _damaged(path, f"{META!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise _damaged(path, f"{META!r} is not a JSON object")
    if meta.get("format") != FORMAT:
        raise _damaged(path, f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if "optimizer" in meta and not isinstance(meta.get("optimizer_class"), str):
        raise _damaged(path, "optimizer state without an optimizer class")
    return meta


def _decoded_optimizer_state(meta: dict[str, Any], arrays: dict, path: Any) -> Any:
    """The optimiser's ``state_dict()`` rebuilt from the file, or None if it holds none."""
    if "optimizer" not in meta:
        return None
    try:
        state = _decode(meta["optimizer"], arrays)
        legacy_rng = _decode(meta["rng"], arrays) if "rng" in meta else None
    except _Malformed as err:
        raise _damaged(path, f"bad optimizer state in {META!r}: {err}") from None
    if not isinstance(state, dict):
        raise _damaged(path, "the optimizer state is not a dict")
    if legacy_rng is not None and state.get("rng") is None:
        # files written before the generator moved into state_dict() keep it beside it
        state["rng"] = legacy_rng
    return state


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
    """Invert ``_encode``: rebuild dicts, tuples and lists, and fetch arrays from ``arrays``.

    Raises ``_Malformed`` where ``data`` is not what ``_encode`` writes, or refers to an array
    that ``arrays`` lacks.
    """
    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if "__array__" in data:
        key = data["__array__"]
        if not isinstance(key, str) or key not in arrays:
            raise _Malformed(f"it refers to a missing array {key!r}")
        return arrays[key][()] if data.get("scalar") else arrays[key]
    if "__tuple__" in data and isinstance(data["__tuple__"], list):
        return tuple(_decode(v, arrays) for v in data["__tuple__"])
    pairs = data.get("__dict__")
    if not isinstance(pairs, list) or any(not isinstance(kv, list) or len(kv) != 2 for kv in pairs):
        raise _Malformed(f"unknown entry {json.dumps(data)[:80]}")
    out = {}
    for k, v in pairs:
        key, value = _decode(k, arrays), _decode(v, arrays)
        try:
            out[key] = value
        except TypeError:  # an unhashable key: not written by _encode
            raise _Malformed(f"unusable key {json.dumps(k)[:80]}") from None
    return out


class _Malformed(Exception):
    """Raised by ``_decode`` for data that ``_encode`` does not write."""
