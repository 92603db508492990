"""Data sets and mini-batches, as host NumPy arrays.

A declared host-side module: it uses NumPy directly and returns NumPy arrays (move them to the
backend with ``tinycurv.backend.asarray``). Every loader returns ``(X_train, y_train, X_test,
y_test)``::

    X, y, Xt, yt = load_digits()                      # embedded: scikit-learn's 8x8 digits
    X, y, Xt, yt = load_mnist("/data/mnist")          # the four IDX files, gzip or raw
    X, y, Xt, yt = teacher_student(d_in=10, noise=0.1)
    for xb, yb in batches(X, y, batch_size=128, rng=0):
        ...

``load_mnist`` reads its directory from the argument or else the environment variable
``TINYCURV_DATA``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "MNIST_FILES",
    "batches",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "teacher_student",
]

DATASETS = ("digits", "mnist", "teacher-student")

#: The four standard MNIST IDX files; each may also be present gzipped, with a ``.gz`` suffix.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- digits


def load_digits(test_size: float = 0.2, seed: int = 0, image: bool = False) -> Split:
    """Load scikit-learn's 8x8 handwritten digits, split into stratified train and test sets.

    The data ship with scikit-learn (no download): 1797 images, 10 classes.

    Parameters
    ----------
    test_size : float
        Fraction of the samples in the test set, in (0, 1).
    seed : int
        Seed of the shuffled, stratified split.
    image : bool
        If True, images have shape (N, 1, 8, 8) (NCHW, for CNNs); else (N, 64).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        X float64 in [0, 1] of shape (N, 64) or (N, 1, 8, 8); y int64 labels 0..9 of shape (N,).

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError(
            "load_digits needs scikit-learn: `pip install scikit-learn` "
            '(or `pip install -e ".[dev]"`)'
        ) from err
    bunch = sk_load_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    if image:
        X = X.reshape(-1, 1, 8, 8)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return X_train, y_train, X_test, y_test


# --------------------------------------------------------------------------- MNIST


def load_mnist(directory: str | os.PathLike | None = None, flatten: bool = True) -> Split:
    """Load MNIST from the four standard IDX files in a directory (each gzip or raw).

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each possibly with a ``.gz``
        suffix). Defaults to the environment variable ``TINYCURV_DATA``.
    flatten : bool
        If True, images have shape (N, rows*cols), i.e. (N, 784); else (N, 1, rows, cols).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        X float64 in [0, 1] of shape (N, 784) or (N, 1, 28, 28); y int64 of shape (N,).

    Raises
    ------
    FileNotFoundError
        If no directory is given nor set in ``TINYCURV_DATA``, or a file is missing.
    ValueError
        If a file is broken: bad magic number, bad dimensions, truncated, or image and label
        counts that disagree.
    """
    folder = _data_directory(directory)
    paths = {key: _find_idx(folder, name) for key, name in MNIST_FILES.items()}
    X_train, y_train = _read_pair(paths["train_images"], paths["train_labels"])
    X_test, y_test = _read_pair(paths["test_images"], paths["test_labels"])
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"MNIST image sizes differ: {X_train.shape[1:]} in {paths['train_images']} "
            f"but {X_test.shape[1:]} in {paths['test_images']}"
        )
    if flatten:
        X_train = X_train.reshape(len(X_train), -1)
        X_test = X_test.reshape(len(X_test), -1)
    else:
        X_train = X_train[:, None]
        X_test = X_test[:, None]
    return X_train, y_train, X_test, y_test


def _data_directory(directory: str | os.PathLike | None) -> Path:
    """The data folder: ``directory``, else ``$TINYCURV_DATA``; it must exist."""
    if directory is None:
        directory = os.environ.get("TINYCURV_DATA") or None
    if directory is None:
        raise FileNotFoundError(
            "no MNIST directory: set the environment variable TINYCURV_DATA to the folder "
            "holding the IDX files, or pass the directory to load_mnist(directory=...)"
        )
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST directory {str(folder)!r} does not exist (from the argument or TINYCURV_DATA)"
        )
    return folder


def _find_idx(folder: Path, name: str) -> Path:
    """The path of IDX file ``name`` in ``folder``, raw or with a ``.gz`` suffix."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {name!r} (or {name + '.gz'!r}) not found in directory {str(folder)!r}; "
        "put the four IDX files there, or set TINYCURV_DATA to the folder that holds them"
    )


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to float64 in [0, 1], shape (N, rows, cols), and int64 labels (N,)."""
    images = _read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{len(images)} images in {images_path} but {len(labels)} labels in {labels_path}"
        )
    return images / np.float64(255.0), labels.astype(np.int64)


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed if its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"broken gzip file {path}: {err}") from err


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Decode an IDX file of unsigned bytes whose magic number must be ``magic``.

    The header is the big-endian int32 magic (0x0000 08 nd: unsigned bytes, nd dimensions),
    then nd big-endian int32 sizes; the data follow, C order.
    """
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"truncated IDX file {path}: {len(raw)} bytes, shorter than its header")
    found, *shape = (int(v) for v in np.frombuffer(raw, dtype=">u4", count=1 + ndim))
    if found != magic:
        raise ValueError(f"bad magic number {found} in IDX file {path} (expected {magic})")
    if ndim > 1 and min(shape[1:]) < 1:
        raise ValueError(f"bad dimensions {tuple(shape)} in IDX file {path}")
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(
            f"truncated or oversized IDX file {path}: dimensions {tuple(shape)} need "
            f"{expected} data bytes, found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# --------------------------------------------------------------------------- teacher-student


def teacher_student(
    n_train: int = 1000,
    n_test: int = 200,
    d_in: int = 10,
    d_hidden: int = 20,
    d_out: int = 1,
    noise: float = 0.0,
    seed: int = 0,
) -> Split:
    """A synthetic regression task: a random one-hidden-layer tanh teacher labels Gaussian inputs.

    ``y = tanh(x W1ᵀ + b1) W2ᵀ + b2 + noise * ε`` with ``x, ε ~ N(0, I)``, ``W1 ~ N(0, 1/d_in)``,
    ``W2 ~ N(0, 1/d_hidden)``, ``b1, b2 ~ N(0, 0.1²)``. The seed fixes the teacher, the train
    set and the test set by independent streams, so the teacher and the test set do not depend
    on ``n_train``. The noise is added to train and test targets alike.

    Parameters
    ----------
    n_train, n_test : int
        Numbers of training (≥ 1) and test (≥ 0) samples.
    d_in, d_hidden, d_out : int
        The teacher's input, hidden and output widths.
    noise : float
        Standard deviation (≥ 0) of the Gaussian noise added to the targets.
    seed : int
        Seed of the teacher and the data.

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        float64; X of shape (N, d_in), y of shape (N, d_out).
    """
    _check_count("n_train", n_train, minimum=1)
    _check_count("n_test", n_test, minimum=0)
    for name, value in (("d_in", d_in), ("d_hidden", d_hidden), ("d_out", d_out)):
        _check_count(name, value, minimum=1)
    if not noise >= 0.0:
        raise ValueError(f"noise must be ≥ 0, got {noise!r}")
    teacher_rng, train_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    W1 = teacher_rng.normal(0.0, 1.0 / np.sqrt(d_in), size=(d_hidden, d_in))
    b1 = teacher_rng.normal(0.0, 0.1, size=d_hidden)
    W2 = teacher_rng.normal(0.0, 1.0 / np.sqrt(d_hidden), size=(d_out, d_hidden))
    b2 = teacher_rng.normal(0.0, 0.1, size=d_out)

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.standard_normal((n, d_in))
        y = np.tanh(X @ W1.T + b1) @ W2.T + b2
        return X, y + noise * rng.standard_normal(y.shape)

    X_train, y_train = sample(train_rng, n_train)
    X_test, y_test = sample(test_rng, n_test)
    return X_train, y_train, X_test, y_test


def _check_count(name: str, value: Any, minimum: int) -> None:
    """Raise unless ``value`` is an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


# --------------------------------------------------------------------------- mini-batches


def batches(
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | int | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate once over ``(X, y)`` in mini-batches (one epoch).

    The arguments are checked when ``batches`` is called, before the first batch.

    Parameters
    ----------
    X : array, shape (N, ...)
        Inputs; batches index the first axis.
    y : array, shape (N, ...)
        Targets, aligned with ``X``.
    batch_size : int
        Samples per batch (≥ 1); the last batch may be smaller unless ``drop_last``.
    rng : numpy.random.Generator or int, optional
        Generator (or seed) of the shuffle; None gives a fresh ``default_rng()``. Unused when
        ``shuffle`` is False.
    shuffle : bool
        If True, visit the samples in a random order; else in order.
    drop_last : bool
        If True, drop a last batch smaller than ``batch_size``.

    Yields
    ------
    X_batch, y_batch : array
        Shapes (B, ...) with B ≤ ``batch_size``.
    """
    _check_count("batch_size", batch_size, minimum=1)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    order = np.random.default_rng(rng).permutation(len(X)) if shuffle else None
    return _batch_iterator(X, y, batch_size, order, drop_last)


def _batch_iterator(
    X: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the batches of ``batches``: slices in order, or fancy indices of ``order``."""
    n = len(X)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield X[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield X[idx], y[idx]


# --------------------------------------------------------------------------- by name


def load_dataset(name: str, directory: str | os.PathLike | None = None, **kwargs: Any) -> Split:
    """Load a data set by name: ``"digits"``, ``"mnist"`` or ``"teacher-student"``.

    Parameters
    ----------
    name : str
        One of ``DATASETS`` (case-insensitive; ``_`` may stand for ``-``).
    directory : str or os.PathLike, optional
        The MNIST folder (default ``$TINYCURV_DATA``); ignored by the other data sets.
    **kwargs
        Passed on to the loader (e.g. ``image=True`` for digits, ``flatten=False`` for MNIST).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        As returned by the loader.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key == "digits":
        return load_digits(**kwargs)
    if key == "mnist":
        return load_mnist(directory, **kwargs)
    if key == "teacher-student":
        return teacher_student(**kwargs)
    raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
