"""Tests of tinycurv.data: digits, MNIST IDX files, teacher-student, batches, load_dataset."""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinycurv.data import (
    DATASETS,
    MNIST_FILES,
    batches,
    load_dataset,
    load_digits,
    load_mnist,
    teacher_student,
)

# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file, written independently of tinycurv's reader."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, data: bytes, gz: bool) -> Path:
    """Write ``data`` to ``path`` (``path.gz`` compressed if ``gz``) and return the path."""
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mnist(
    folder: Path, n_train: int = 6, n_test: int = 4, rows: int = 28, cols: int = 28, gz=True
) -> dict[str, np.ndarray]:
    """Write a tiny synthetic MNIST into ``folder``; ``gz`` is a bool or a dict per file key."""
    rng = np.random.default_rng(123)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, rows, cols), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, rows, cols), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0] = 255  # the scale's ends are hit exactly
    arrays["train_images"][0, 0, 1] = 0
    for key, array in arrays.items():
        compress = gz[key] if isinstance(gz, dict) else gz
        write_idx(folder / MNIST_FILES[key], idx_bytes(array), compress)
    return arrays


def real_mnist_dir() -> Path | None:
    """The real MNIST folder: $TINYCURV_DATA, then ../shared/data/mnist from the repo root."""
    candidates = [os.environ.get("TINYCURV_DATA")]
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")
    for candidate in candidates:
        if not candidate:
            continue
        folder = Path(candidate)
        names = [folder / n for n in MNIST_FILES.values()]
        if all(p.is_file() or p.with_name(p.name + ".gz").is_file() for p in names):
            return folder
    return None


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_scale():
    X, y, Xt, yt = load_digits()
    assert X.shape[1:] == Xt.shape[1:] == (64,)
    assert len(X) + len(Xt) == 1797 and len(X) == len(y) and len(Xt) == len(yt)
    assert len(Xt) == pytest.approx(0.2 * 1797, abs=1)
    assert X.dtype == Xt.dtype == np.float64 and y.dtype == yt.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0 and Xt.min() >= 0.0 and Xt.max() <= 1.0
    # Scaled by 16: every pixel is a multiple of 1/16.
    np.testing.assert_array_equal(X * 16, np.round(X * 16))
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(yt))


def test_digits_split_is_seeded_and_stratified():
    a, b = load_digits(seed=3), load_digits(seed=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    c = load_digits(seed=4)
    assert not np.array_equal(a[3], c[3])
    X, y, Xt, yt = load_digits(test_size=0.5, seed=1)
    all_counts = np.bincount(np.concatenate([y, yt]), minlength=10)
    np.testing.assert_array_equal(all_counts, np.bincount(np.concatenate([a[1], a[3]])))
    test_counts = np.bincount(yt, minlength=10)
    assert np.all(np.abs(test_counts - 0.5 * all_counts) <= 1)  # stratified


def test_digits_image_layout_matches_flat():
    X, y, Xt, yt = load_digits(seed=2)
    Xi, yi, Xti, yti = load_digits(seed=2, image=True)
    assert Xi.shape == (len(X), 1, 8, 8) and Xti.shape == (len(Xt), 1, 8, 8)
    np.testing.assert_array_equal(Xi.reshape(len(X), 64), X)
    np.testing.assert_array_equal(yi, y)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 1.5])
def test_digits_rejects_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=test_size)


def test_digits_without_sklearn_says_what_to_install(monkeypatch):
    for name in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_digits()


# --------------------------------------------------------------------------- MNIST, synthetic


@pytest.mark.parametrize(
    "gz",
    [
        True,
        False,
        {"train_images": True, "train_labels": False, "test_images": False, "test_labels": True},
    ],
)
def test_mnist_reads_gzip_and_raw_idx(tmp_path, gz):
    arrays = make_mnist(tmp_path, gz=gz)
    X, y, Xt, yt = load_mnist(tmp_path)
    assert X.shape == (6, 784) and Xt.shape == (4, 784)
    assert X.dtype == Xt.dtype == np.float64 and y.dtype == yt.dtype == np.int64
    np.testing.assert_array_equal(X * 255, arrays["train_images"].reshape(6, 784))
    np.testing.assert_array_equal(Xt * 255, arrays["test_images"].reshape(4, 784))
    np.testing.assert_array_equal(y, arrays["train_labels"])
    np.testing.assert_array_equal(yt, arrays["test_labels"])
    assert X.min() == 0.0 and X.max() == 1.0


def test_mnist_unflattened_is_nchw(tmp_path):
    arrays = make_mnist(tmp_path)
    X, _, Xt, _ = load_mnist(str(tmp_path), flatten=False)
    assert X.shape == (6, 1, 28, 28) and Xt.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(X[:, 0] * 255, arrays["train_images"])


def test_mnist_other_image_sizes(tmp_path):
    make_mnist(tmp_path, rows=4, cols=5)
    assert load_mnist(tmp_path)[0].shape == (6, 20)
    assert load_mnist(tmp_path, flatten=False)[0].shape == (6, 1, 4, 5)


def test_mnist_directory_from_environment(tmp_path, monkeypatch):
    make_mnist(tmp_path, n_train=3)
    monkeypatch.setenv("TINYCURV_DATA", str(tmp_path))
    assert load_mnist()[0].shape == (3, 784)
    other = tmp_path / "other"
    other.mkdir()
    make_mnist(other, n_train=2)
    assert load_mnist(other)[0].shape == (2, 784)  # the argument wins over the environment


@pytest.mark.parametrize("value", [None, ""])
def test_mnist_without_directory_says_to_set_tinycurv_data(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TINYCURV_DATA", raising=False)
    else:
        monkeypatch.setenv("TINYCURV_DATA", value)
    with pytest.raises(FileNotFoundError, match="TINYCURV_DATA"):
        load_mnist()


def test_mnist_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(missing)


@pytest.mark.parametrize("key", list(MNIST_FILES))
def test_mnist_missing_file_names_file_and_directory(tmp_path, key):
    make_mnist(tmp_path)
    (tmp_path / (MNIST_FILES[key] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert MNIST_FILES[key] in message and str(tmp_path) in message and "TINYCURV_DATA" in message


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("key", ["train_images", "test_labels"])
def test_mnist_bad_magic_names_the_file(tmp_path, key, gz):
    arrays = make_mnist(tmp_path, gz=gz)
    wrong = 2049 if key.endswith("images") else 2051
    path = write_idx(tmp_path / MNIST_FILES[key], idx_bytes(arrays[key], magic=wrong), gz)
    with pytest.raises(ValueError, match="magic") as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_mnist_truncated_raw_file(tmp_path, cut):
    arrays = make_mnist(tmp_path, gz=False)
    data = idx_bytes(arrays["train_images"])
    path = write_idx(tmp_path / MNIST_FILES["train_images"], data[: len(data) - cut], gz=False)
    with pytest.raises(ValueError, match="truncated") as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_mnist_truncated_header(tmp_path):
    make_mnist(tmp_path, gz=False)
    path = write_idx(tmp_path / MNIST_FILES["test_labels"], struct.pack(">I", 2049), gz=False)
    with pytest.raises(ValueError, match="truncated") as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_mnist_truncated_gzip_stream(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / (MNIST_FILES["test_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError) as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_mnist_not_gzip_despite_suffix(tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    path = tmp_path / (MNIST_FILES["train_labels"] + ".gz")
    path.write_bytes(idx_bytes(arrays["train_labels"]))  # raw bytes under a .gz name
    with pytest.raises(ValueError) as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_mnist_extra_bytes_are_rejected(tmp_path):
    arrays = make_mnist(tmp_path, gz=False)
    data = idx_bytes(arrays["train_labels"]) + b"\x00"
    write_idx(tmp_path / MNIST_FILES["train_labels"], data, gz=False)
    with pytest.raises(ValueError, match=MNIST_FILES["train_labels"]):
        load_mnist(tmp_path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_image_and_label_counts_must_agree(tmp_path, split):
    make_mnist(tmp_path)
    name = MNIST_FILES[f"{split}_labels"]
    write_idx(tmp_path / name, idx_bytes(np.zeros(2, dtype=np.uint8)), gz=True)
    with pytest.raises(ValueError, match="labels") as info:
        load_mnist(tmp_path)
    assert name in str(info.value)


def test_mnist_bad_dimensions(tmp_path):
    make_mnist(tmp_path, gz=False)
    header = struct.pack(">4I", 2051, 6, 0, 28)
    write_idx(tmp_path / MNIST_FILES["train_images"], header, gz=False)
    with pytest.raises(ValueError, match="dimensions"):
        load_mnist(tmp_path)


def test_mnist_train_and_test_image_sizes_must_agree(tmp_path):
    make_mnist(tmp_path)
    images = np.zeros((4, 27, 28), dtype=np.uint8)
    write_idx(tmp_path / MNIST_FILES["test_images"], idx_bytes(images), gz=True)
    with pytest.raises(ValueError, match="sizes"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------- MNIST, real files

REAL_MNIST = real_mnist_dir()


@pytest.fixture(scope="module")
def real_mnist():
    if REAL_MNIST is None:
        pytest.skip("real MNIST files not found (set TINYCURV_DATA)")
    return load_mnist(REAL_MNIST)


def test_real_mnist_matches_known_statistics(real_mnist):
    X, y, Xt, yt = real_mnist
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert y.shape == (60000,) and yt.shape == (10000,)
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    np.testing.assert_array_equal(np.bincount(y, minlength=10), counts)
    assert np.bincount(yt, minlength=10).sum() == 10000
    assert X.mean() * 255 == pytest.approx(33.318, abs=1e-3)
    assert X.min() == 0.0 and X.max() == 1.0


# --------------------------------------------------------------------------- teacher-student


def test_teacher_student_shapes_and_dtypes():
    X, y, Xt, yt = teacher_student()
    assert X.shape == (1000, 10) and y.shape == (1000, 1)
    assert Xt.shape == (200, 10) and yt.shape == (200, 1)
    assert all(a.dtype == np.float64 for a in (X, y, Xt, yt))
    X, y, Xt, yt = teacher_student(n_train=7, n_test=3, d_in=4, d_hidden=5, d_out=3)
    assert X.shape == (7, 4) and y.shape == (7, 3) and Xt.shape == (3, 4) and yt.shape == (3, 3)


def test_teacher_student_is_seeded():
    a, b, c = teacher_student(seed=5), teacher_student(seed=5), teacher_student(seed=6)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(a[1], c[1])


def test_teacher_student_teacher_and_test_set_do_not_depend_on_n_train():
    _, _, Xt_small, yt_small = teacher_student(n_train=10, seed=1)
    _, _, Xt_big, yt_big = teacher_student(n_train=50, seed=1)
    np.testing.assert_array_equal(Xt_small, Xt_big)
    np.testing.assert_array_equal(yt_small, yt_big)


def test_teacher_student_targets_are_a_smooth_nontrivial_function():
    X, y, _, _ = teacher_student(n_train=2000, d_in=3, d_hidden=8, d_out=2, seed=2)
    assert np.all(y.std(axis=0) > 0.1)  # the teacher is not (nearly) constant
    # Noise-free: the same input gives the same target, and nearby inputs nearby targets.
    X2, y2, _, _ = teacher_student(n_train=2000, d_in=3, d_hidden=8, d_out=2, seed=2)
    np.testing.assert_array_equal(y, y2)
    i, j = np.triu_indices(200, k=1)
    dx = np.linalg.norm(X[i] - X[j], axis=1)
    dy = np.linalg.norm(y[i] - y[j], axis=1)
    assert np.max(dy / dx) < 10.0  # a tanh MLP with O(1) weights is Lipschitz
    # Not linear: a least-squares affine fit leaves a clear residual.
    A = np.hstack([X, np.ones((len(X), 1))])
    residual = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    assert residual.std() > 1e-3


def test_teacher_student_noise_is_added_to_the_targets_only():
    clean = teacher_student(n_train=4000, n_test=4000, noise=0.0, seed=3)
    noisy = teacher_student(n_train=4000, n_test=4000, noise=0.5, seed=3)
    np.testing.assert_array_equal(clean[0], noisy[0])
    np.testing.assert_array_equal(clean[2], noisy[2])
    for k in (1, 3):
        assert (noisy[k] - clean[k]).std() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": 0},
        {"n_test": -1},
        {"d_in": 0},
        {"d_hidden": 2.5},
        {"d_out": 0},
        {"noise": -0.1},
        {"noise": float("nan")},
    ],
)
def test_teacher_student_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        teacher_student(**kwargs)


# --------------------------------------------------------------------------- batches


def aligned(n: int) -> tuple[np.ndarray, np.ndarray]:
    """X whose row i is (i, i), and y = 10 i: batches must keep them paired."""
    X = np.repeat(np.arange(n, dtype=np.float64)[:, None], 2, axis=1)
    return X, 10 * np.arange(n)


def test_batches_in_order_without_shuffle():
    X, y = aligned(10)
    out = list(batches(X, y, 4, shuffle=False))
    assert [len(xb) for xb, _ in out] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in out]), X)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in out]), y)


def test_batches_drop_last():
    X, y = aligned(10)
    assert [len(xb) for xb, _ in batches(X, y, 4, shuffle=False, drop_last=True)] == [4, 4]
    assert [len(xb) for xb, _ in batches(X, y, 5, rng=0, drop_last=True)] == [5, 5]
    assert list(batches(X, y, 11, rng=0, drop_last=True)) == []
    assert [len(xb) for xb, _ in batches(X, y, 11, rng=0)] == [10]


def test_batches_shuffle_is_seeded_and_covers_every_sample_once():
    X, y = aligned(50)
    first = [yb for _, yb in batches(X, y, 8, rng=7)]
    again = [yb for _, yb in batches(X, y, 8, rng=np.random.default_rng(7))]
    other = [yb for _, yb in batches(X, y, 8, rng=8)]
    for u, v in zip(first, again, strict=True):
        np.testing.assert_array_equal(u, v)
    order = np.concatenate(first)
    assert not np.array_equal(order, y) and not np.array_equal(order, np.concatenate(other))
    np.testing.assert_array_equal(np.sort(order), y)


def test_batches_generator_advances_between_epochs():
    X, y = aligned(30)
    rng = np.random.default_rng(0)
    epoch1 = np.concatenate([yb for _, yb in batches(X, y, 30, rng=rng)])
    epoch2 = np.concatenate([yb for _, yb in batches(X, y, 30, rng=rng)])
    assert not np.array_equal(epoch1, epoch2)


def test_batches_default_rng_shuffles():
    X, y = aligned(40)
    orders = {tuple(np.concatenate([yb for _, yb in batches(X, y, 40)])) for _ in range(3)}
    assert len(orders) > 1 and all(sorted(o) == list(y) for o in orders)


def test_batches_images_keep_their_shape():
    X = np.zeros((9, 1, 8, 8))
    y = np.arange(9)
    shapes = [xb.shape for xb, _ in batches(X, y, 4, rng=0)]
    assert shapes == [(4, 1, 8, 8), (4, 1, 8, 8), (1, 1, 8, 8)]


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "4"])
def test_batches_rejects_bad_batch_size_at_call(batch_size):
    X, y = aligned(5)
    with pytest.raises(ValueError, match="batch_size"):
        batches(X, y, batch_size)  # raised at the call, before any iteration


def test_batches_rejects_mismatched_lengths_at_call():
    X, y = aligned(5)
    with pytest.raises(ValueError, match="same length"):
        batches(X, y[:4], 2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    batch_size=st.integers(1, 50),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_batches_property(n, batch_size, shuffle, drop_last, seed):
    X, y = aligned(n)
    out = list(batches(X, y, batch_size, rng=seed, shuffle=shuffle, drop_last=drop_last))
    expected = n // batch_size if drop_last else -(-n // batch_size)
    assert len(out) == expected
    assert all(len(xb) == batch_size for xb, _ in out[: n // batch_size])
    seen = np.concatenate([yb for _, yb in out]) if out else np.zeros(0, dtype=int)
    assert len(np.unique(seen)) == len(seen) == (n - n % batch_size if drop_last else n)
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0] * 10, yb)  # pairs stay aligned


# --------------------------------------------------------------------------- by name


def test_load_dataset_dispatches(tmp_path):
    for u, v in zip(load_dataset("digits"), load_digits(), strict=True):
        np.testing.assert_array_equal(u, v)
    for name in ("teacher-student", "Teacher_Student"):
        for u, v in zip(load_dataset(name), teacher_student(), strict=True):
            np.testing.assert_array_equal(u, v)
    make_mnist(tmp_path)
    assert load_dataset("mnist", tmp_path)[0].shape == (6, 784)
    assert load_dataset("mnist", directory=tmp_path, flatten=False)[0].shape == (6, 1, 28, 28)
    assert load_dataset("digits", image=True)[0].shape[1:] == (1, 8, 8)


def test_load_dataset_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    assert "cifar10" in str(info.value)
    assert all(name in str(info.value) for name in DATASETS)
    assert set(DATASETS) == {"digits", "mnist", "teacher-student"}
