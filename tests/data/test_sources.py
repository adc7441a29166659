import hashlib
from importlib import resources

import numpy as np
import pytest
import torch

from advlab.data import load_embedded, load_mnist, write_idx
from advlab.errors import DataError, InputError


def write_fake_mnist(directory, n_train=7, n_test=5, *, gzip=True, seed=0):
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gzip else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n, dtype=np.uint8))


@pytest.mark.parametrize("gzip", [True, False])
def test_directory_source_reads_counts_from_headers(tmp_path, gzip):
    write_fake_mnist(tmp_path, 7, 5, gzip=gzip)
    splits = load_mnist(tmp_path)
    assert len(splits.train) == 7 and len(splits.test) == 5
    assert splits.train.images.shape == (7, 1, 28, 28)
    assert splits.train.images.dtype == torch.float32 and splits.train.labels.dtype == torch.int64
    assert 0 <= float(splits.train.images.min()) and float(splits.train.images.max()) <= 1


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    with pytest.raises(DataError, match="missing train-images"):
        load_mnist(tmp_path)


def test_mismatched_counts_and_bad_labels(tmp_path):
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="5 test images but 4 labels"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(5, 12, dtype=np.uint8))
    with pytest.raises(DataError, match="label 12"):
        load_mnist(tmp_path)


def test_embedded_default_is_deterministic_real_mnist():
    a, b = load_embedded(), load_embedded()
    assert (len(a.train), len(a.test)) == (4000, 1000)
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.train.images, b.train.images)
    counts = torch.bincount(torch.cat([a.train.labels, a.test.labels]), minlength=10)
    assert int(counts.min()) > 400  # all ten digits, roughly balanced
    assert float(a.train.images.max()) == 1.0 and float(a.train.images.min()) == 0.0


EMBEDDED_SHA256 = "993bda34de3be3662c26d4592f38ab389c909d56265c9df4314360f1efbeca0d"


def test_embedded_file_is_the_converted_archive():
    """The packaged archive is byte for byte the one tools/make_embedded_digits.py wrote (its
    sha256 is in the NOTICE beside it): uint8 arrays of the stated shapes, no pickled objects."""
    packaged = resources.files("advlab.data").joinpath("embedded", "digits5k.npz.bin")
    assert hashlib.sha256(packaged.read_bytes()).hexdigest() == EMBEDDED_SHA256
    notice = resources.files("advlab.data").joinpath("embedded", "NOTICE.md").read_text()
    assert EMBEDDED_SHA256 in notice and "CC BY-SA 3.0" in notice
    with packaged.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        shapes = {name: (archive[name].dtype, archive[name].shape) for name in archive.files}
    assert shapes == {
        "train_images": (np.dtype(np.uint8), (4000, 28, 28)),
        "train_labels": (np.dtype(np.uint8), (4000,)),
        "test_images": (np.dtype(np.uint8), (1000, 28, 28)),
        "test_labels": (np.dtype(np.uint8), (1000,)),
    }


def test_embedded_images_are_pixels_over_255():
    splits = load_embedded()
    packaged = resources.files("advlab.data").joinpath("embedded", "digits5k.npz.bin")
    with packaged.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        pixels, labels = archive["test_images"], archive["test_labels"]
    expected = torch.from_numpy(pixels.astype(np.float32) / np.float32(255)).unsqueeze(1)
    assert torch.equal(splits.test.images, expected)
    assert torch.equal(splits.test.labels, torch.from_numpy(labels.astype(np.int64)))
    assert "CC BY-SA 3.0" in splits.source


def test_select_classes_relabels(embedded):
    sub = embedded.test.select_classes([7, 3])
    original = embedded.test.labels[torch.isin(embedded.test.labels, torch.tensor([3, 7]))]
    assert torch.equal(sub.labels, (original == 3).long())  # 7 -> 0, 3 -> 1
    with pytest.raises(InputError):
        embedded.test.select_classes([3, 3])


def test_shared_mnist_prefix(mnist_dir):
    splits = load_mnist(mnist_dir)
    assert (len(splits.train), len(splits.test)) == (6309, 10000)
    expected = [616, 707, 616, 642, 654, 542, 635, 683, 579, 635]
    assert torch.bincount(splits.train.labels, minlength=10).tolist() == expected


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((5, 27, 28), np.uint8), None, r"\(N, 28, 28\)"),
        (np.zeros((5, 14, 56), np.uint8), None, r"\(N, 28, 28\)"),  # 784 pixels, but not 28x28
        (None, np.full(5, -1, np.int8), "label -1 outside 0..9"),
        (None, np.full(5, 10, np.uint8), "label 10 outside 0..9"),
        (None, np.zeros(5, np.float64), "integer label array"),
    ],
)
def test_header_dims_and_labels_are_checked(tmp_path, images, labels, message):
    write_fake_mnist(tmp_path, 7, 5, gzip=False)
    if images is not None:
        write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    if labels is not None:
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    "classes, message",
    [([3, 17], "class 17 does not occur"), ([-1, 2], "non-negative"), ([3, 3], "distinct"), ([3], "two distinct"),
     ([3.5, 7], "integers"), ([True, 7], "integers")],
)
def test_select_classes_needs_distinct_classes_of_the_data(embedded, classes, message):
    with pytest.raises(InputError, match=message):
        embedded.select_classes(classes)


def test_select_classes_accepts_numpy_integers(embedded):
    assert len(embedded.select_classes([np.int64(3), 7]).train) == len(embedded.select_classes([3, 7]).train)
