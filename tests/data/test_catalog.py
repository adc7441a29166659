import numpy as np
import pytest

from advlab.data import load_data, write_idx
from advlab.errors import InputError
from tests.conftest import shared_data


def test_names_and_paths(tmp_path, embedded):
    assert len(load_data("mnist").test) == len(embedded.test)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 3), np.uint8), y=np.array([0, 1]))
    assert len(load_data(f"npz:{tmp_path / 'd.npz'}").test) == 2


def test_fashion_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 3)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    splits = load_data("fashion-mnist", tmp_path)
    assert (len(splits.train), len(splits.test)) == (6, 3)
    assert splits.test.name == "fashion-mnist-test" and "Fashion-MNIST" in splits.source


@pytest.mark.parametrize(
    ("spec", "data_dir", "message"),
    [
        ("cifar", None, "--data takes"),
        ("fashion-mnist", None, "needs --data-dir"),
        ("npz:", None, "give a path"),
        ("folder:x", "somewhere", "--data-dir is for"),
    ],
)
def test_bad_specs_refused_before_reading(spec, data_dir, message):
    with pytest.raises(InputError, match=message):
        load_data(spec, data_dir)


@pytest.mark.fashion
def test_shared_fashion_mnist_is_complete():
    splits = load_data("fashion-mnist", shared_data("fashion-mnist"))
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.labels.bincount().tolist() == [6000] * 10
    assert splits.test.images.shape == (10000, 1, 28, 28)
