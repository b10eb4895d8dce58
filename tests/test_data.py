"""deepstyle.data: IDX and CIFAR-10 files written here in every layout and read back, damaged
files, finding the files, the validation split and the preprocessing statistics."""

import gzip
import os
import pickle

import numpy as np
import pytest

from deepstyle import data
from deepstyle.data import cifar
from deepstyle.data.idx import write_idx


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype, shape", [(np.uint8, (5, 4, 3)), (np.int32, (7,)),
                                          (np.float32, (2, 3)), (np.float64, (1, 2, 2, 2))])
def test_idx_round_trip(tmp_path, rng, suffix, dtype, shape):
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / ("a.idx" + suffix)
    write_idx(str(path), array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    path = tmp_path / "labels"
    write_idx(str(path), np.array([1, 2, 3], np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


def damaged_idx(tmp_path, body, gz=False):
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("body, message", [
    (b"\x00\x00\x08", "truncated: expected 4 bytes of magic number, got 3"),
    (b"\x12\x34\x08\x01\x00\x00\x00\x01\x00", "bad magic number 0x12340801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "bad magic number 0x00000701"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "truncated: expected 12 bytes of dimensions"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated: expected 5 bytes of data for "
                                                  "shape (5,), got 2"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "wrong length: the header announces shape (1,)"),
    (b"\x00\x00\x08\x01\xff\xff\xff\xff", "truncated: expected 4294967295 bytes of data"),
])
def test_damaged_idx_files_name_file_and_fault(tmp_path, gz, body, message):
    path = damaged_idx(tmp_path, body, gz)
    with pytest.raises(data.DataError, match=str(path).replace("\\", "\\\\") + ": "
                       + message.replace("(", r"\(").replace(")", r"\)")):
        data.read_idx(path)


def test_corrupt_gzip_and_missing_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd")[:-12] + b"\xff" * 12)
    with pytest.raises(data.DataError, match=f"{path}: "):
        data.read_idx(path)
    with pytest.raises(data.DataError, match="no such file"):
        data.read_idx(tmp_path / "missing")


def test_idx_pair_must_agree(tmp_path, rng):
    write_idx(str(tmp_path / "i"), rng.integers(0, 256, (4, 3, 3)).astype(np.uint8))
    write_idx(str(tmp_path / "l"), np.arange(3, dtype=np.uint8))
    with pytest.raises(data.DataError, match="3 labels for the 4 images"):
        data.read_idx_pair(tmp_path / "i", tmp_path / "l")


def write_fashion(folder, rng, n_train=30, n_test=10, gz=True, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(str(folder / f"{part}-images-idx3-ubyte{suffix}"), images)
        write_idx(str(folder / f"{part}-labels-idx1-ubyte{suffix}"), labels)
        arrays[part] = images, labels
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_fashion_mnist_from_a_folder(tmp_path, rng, gz):
    arrays = write_fashion(tmp_path / "f", rng, gz=gz)
    d = data.load_dataset("fashion-mnist", tmp_path / "f")
    assert d.train_images.shape == (30, 1, 28, 28) and d.test_images.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(d.train_images[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(d.test_labels, arrays["t10k"][1])
    assert d.classes[9] == "Ankle boot"


def test_default_folders_and_the_message_when_nothing_is_found(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTYLE_DATA", raising=False)
    with pytest.raises(data.DataError) as info:
        data.load_dataset("mnist")
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "cache" / "deepstyle" / "mnist") in message and "--data" in message
    write_fashion(tmp_path / "cache" / "deepstyle" / "mnist", rng)
    assert data.load_dataset("mnist").classes[3] == "3"
    monkeypatch.setenv("DEEPSTYLE_DATA", str(tmp_path / "mine"))
    write_fashion(tmp_path / "mine" / "mnist", rng, n_train=12)
    assert len(data.load_dataset("mnist").train_images) == 12  # $DEEPSTYLE_DATA comes first
    with pytest.raises(data.DataError, match="cifar10: no data found; it needs the files "
                                              "data_batch_1"):
        data.load_dataset("cifar10")
    with pytest.raises(data.DataError, match="--data: .* is not a folder"):
        data.load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="dataset: expected one of"):
        data.load_dataset("imagenet")


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(cifar, "IMAGES_PER_BATCH", 6)


def cifar_arrays(rng, n=6):
    return rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("layout", ["pickle", "binary"])
def test_cifar_batch_round_trip(tmp_path, rng, small_batches, layout):
    images, labels = cifar_arrays(rng)
    path = str(tmp_path / "batch")
    write = cifar.write_pickle_batch if layout == "pickle" else cifar.write_binary_batch
    read = data.read_pickle_batch if layout == "pickle" else data.read_binary_batch
    write(path, images, labels)
    x, y = read(path)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize("layout, sub", [("pickle", "cifar-10-batches-py"),
                                         ("binary", "cifar-10-batches-bin"), ("binary", "")])
def test_load_cifar10_both_layouts(tmp_path, rng, small_batches, layout, sub):
    folder = tmp_path / sub
    folder.mkdir(exist_ok=True)
    parts = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, labels = cifar_arrays(rng)
        parts.append((images, labels))
        if layout == "pickle":
            cifar.write_pickle_batch(str(folder / name), images, labels)
        else:
            cifar.write_binary_batch(str(folder / (name + ".bin")), images, labels)
    d = data.load_dataset("cifar10", tmp_path)
    assert d.train_images.shape == (30, 3, 32, 32) and d.classes[0] == "airplane"
    np.testing.assert_array_equal(d.train_images[6:12], parts[1][0])
    np.testing.assert_array_equal(d.test_labels, parts[5][1])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_batch_refuses_anything_but_arrays(tmp_path, small_batches):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(data.DataError, match="refused to load: the pickle asks for "
                                              "'(posix|os|nt).system'"):
        data.read_pickle_batch(path)


def test_damaged_cifar_files(tmp_path, rng, small_batches):
    images, labels = cifar_arrays(rng)
    path = str(tmp_path / "b")
    cifar.write_pickle_batch(path, images, labels)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(data.DataError, match=f"{path}: corrupt or truncated CIFAR-10 batch"):
        data.read_pickle_batch(path)
    cifar.write_pickle_batch(path, images[:4], labels[:4])
    with pytest.raises(data.DataError, match=r"expected uint8 data of shape \(6, 3072\), got "
                                              r"uint8 \(4, 3072\)"):
        data.read_pickle_batch(path)
    cifar.write_binary_batch(path, images, labels)
    open(path, "ab").write(b"x")
    with pytest.raises(data.DataError, match=f"{path}: wrong length: expected 18438 bytes "
                                              r"\(6 records of 3073\), got 18439"):
        data.read_binary_batch(path)
    cifar.write_binary_batch(path, images, np.full(6, 12))
    with pytest.raises(data.DataError, match=r"labels must lie in 0..9, got 12..12"):
        data.read_binary_batch(path)


def test_validation_split_is_disjoint_and_seeded(rng):
    images = np.arange(50)[:, None, None, None].astype(np.uint8)
    labels = np.arange(50)
    a = data.split_validation(images, labels, 10, 3)
    b = data.split_validation(images, labels, 10, 3)
    assert len(a[0]) == 40 and len(a[2]) == 10
    assert set(a[1]) | set(a[3]) == set(range(50)) and not set(a[1]) & set(a[3])
    np.testing.assert_array_equal(a[3], b[3])
    with pytest.raises(data.DataError, match=r"--validation: expected a count in \[0, 49\]"):
        data.split_validation(images, labels, 50, 0)


def test_preprocessing_statistics_come_from_training_data_only(rng):
    train = rng.integers(0, 256, (200, 1, 6, 6)).astype(np.uint8)
    other = rng.integers(0, 256, (20, 1, 6, 6)).astype(np.uint8)
    pre = data.Preprocessing(pad_to=8, contrast=True, zca=True, standardize=True)
    fitted = pre.fit(train)
    mean = pre.mean_image.copy()
    np.testing.assert_array_equal(pre(train), fitted)
    pre(other)  # applying changes no statistic
    np.testing.assert_array_equal(pre.mean_image, mean)
    x = np.zeros((200, 1, 8, 8), np.float64)
    x[:, :, 1:7, 1:7] = train
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5, atol=1e-4)
    assert abs(fitted.std() - 1.0) < 1e-3  # standardize: unit spread on the training data
    restored = data.Preprocessing.from_state(pre.state())
    np.testing.assert_array_equal(restored(other), pre(other))


def test_zca_whitens_with_floored_eigenvalues(rng):
    """After ZCA the covariance's eigenvalues above the floor become equal (their mean), and
    those below 10^2 are scaled by the floor instead of blown up."""
    x = (rng.standard_normal((4000, 1, 2, 2)) * [[[[30, 20], [15, 0.5]]]] + 128)
    pre = data.Preprocessing(zca=True)
    z = pre.fit(np.clip(x, 0, 255).astype(np.uint8)).reshape(4000, -1).astype(np.float64)
    cov = np.cov(np.clip(x, 0, 255).astype(np.uint8).reshape(4000, -1).T, bias=True)
    d = np.linalg.eigvalsh(cov)
    en = np.sqrt(d.mean())
    out = np.linalg.eigvalsh(z.T @ z / len(z))
    expected = np.sort(d * (en / np.maximum(np.sqrt(d), 10.0)) ** 2)
    np.testing.assert_allclose(out, expected, rtol=2e-3)
