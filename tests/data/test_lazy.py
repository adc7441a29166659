"""The user's data and class subsets read batch by batch equal the same data loaded whole, and a
batch that is not owned is never converted."""

import numpy as np
import pytest
import torch
from PIL import Image

import advlab.data.lazy as lazy
from advlab.data import load_image_folder, load_mnist, load_npz
from advlab.data.catalog import stream_data
from advlab.data.lazy import FolderBatches, NpzBatches
from advlab.data.stream import IdxBatches, TensorBatches, select
from advlab.errors import DataError
from tests.data.test_sources import write_fake_mnist


def _cat(stream):
    x, y = zip(*stream, strict=True)
    return torch.cat(x), torch.cat(y)


def _same(stream, data):
    x, y = _cat(stream)
    assert torch.equal(x, data.images) and torch.equal(y, data.labels)


def _count(monkeypatch, name):
    calls = []
    original = getattr(lazy, name)
    monkeypatch.setattr(lazy, name, lambda *args: calls.append(len(args[2] if name == "images_from_array" else args[0])) or original(*args))
    return calls


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_by_rows_equals_the_loaded_file(tmp_path, monkeypatch, save):
    rng = np.random.default_rng(0)
    save(tmp_path / "u.npz", x=rng.integers(0, 256, (11, 5, 4), dtype=np.uint8), y=rng.integers(0, 4, 11))
    save(tmp_path / "f.npz", x_train=rng.random((7, 3, 2, 2)), y_train=np.arange(7), x_test=rng.random((3, 3, 2, 2)).astype(">f4"),
         y_test=np.array([1, 0, 1], np.uint8))
    loaded = load_npz(tmp_path / "u.npz").test
    _same(NpzBatches(tmp_path / "u.npz", "test", 3), loaded)
    _same(NpzBatches(tmp_path / "u.npz", "train", 4, limit=6), loaded.take(6))
    two = load_npz(tmp_path / "f.npz")
    _same(NpzBatches(tmp_path / "f.npz", "train", 2), two.train)
    _same(NpzBatches(tmp_path / "f.npz", "test", 2), two.test)
    _same(NpzBatches(tmp_path / "u.npz", "test", 3, classes=[3, 1]), loaded.select_classes([3, 1]))
    calls = _count(monkeypatch, "images_from_array")
    picked = list(select(NpzBatches(tmp_path / "u.npz", "test", 3), lambda k: k in (1, 3)))
    assert [n for n, _ in picked] == [3, 3, 3, 2] and calls == [3, 2]
    assert torch.equal(picked[3][1][0], loaded.images[9:])


def test_npz_errors_and_fortran_order(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.concatenate([np.zeros((3, 2, 2)), np.full((1, 2, 2), 2.0)]), y=np.zeros(4, int))
    stream = NpzBatches(tmp_path / "bad.npz", "test", 3)
    with pytest.raises(DataError, match=r"floats in \[2, 2\]"):  # found when the batch holding it is read
        list(stream)
    np.savez(tmp_path / "m.npz", x=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DataError, match="missing array"):
        NpzBatches(tmp_path / "m.npz", "test", 3)
    with pytest.raises(DataError, match="no such file"):
        NpzBatches(tmp_path / "absent.npz", "test", 3)
    x = np.asfortranarray(np.random.default_rng(1).integers(0, 256, (5, 3, 2), dtype=np.uint8))
    np.savez(tmp_path / "F.npz", x=x, y=np.arange(5))
    assert NpzBatches(tmp_path / "F.npz", "test", 2).fortran_order
    batches, _ = stream_data(f"npz:{tmp_path / 'F.npz'}", None, "test", 2)
    assert isinstance(batches, TensorBatches)  # read whole
    _same(batches, load_npz(tmp_path / "F.npz").test)


@pytest.mark.parametrize("gzip", [True, False])
def test_idx_class_subset_by_rows(tmp_path, gzip):
    write_fake_mnist(tmp_path, 40, 2, gzip=gzip)
    data = load_mnist(tmp_path).train
    _same(IdxBatches(tmp_path, "train", 3, classes=[7, 2, 5]), data.select_classes([7, 2, 5]))
    _same(IdxBatches(tmp_path, "train", 4, classes=[1, 0], limit=5), data.select_classes([1, 0]).take(5))
    kept = list(select(IdxBatches(tmp_path, "train", 2, classes=[7, 2, 5]), lambda k: k % 2 == 0))
    expected = list(TensorBatches(*(lambda d: (d.images, d.labels))(data.select_classes([7, 2, 5])), 2))
    for (n, batch), (x, y) in zip(kept, expected, strict=True):
        assert n == len(y)
        assert batch is None or (torch.equal(batch[0], x) and torch.equal(batch[1], y))


def _image(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_by_batches(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    for k in range(9):
        label = "abc"[k % 3]
        for split in ("train", "test"):
            if k == 4:
                _image(tmp_path / split / label / f"{k}.png", rng.integers(0, 256, (3, 2, 3), dtype=np.uint8), "RGB")
            else:
                _image(tmp_path / split / label / f"{k}.png", rng.integers(0, 256, (3, 2), dtype=np.uint8), "L")
    splits = load_image_folder(tmp_path)
    _same(FolderBatches(tmp_path, "train", 4), splits.train)  # one RGB image: all RGB, as loaded whole
    _same(FolderBatches(tmp_path, "test", 2), splits.test)
    _same(FolderBatches(tmp_path, "test", 2, classes=[2, 0], limit=5), splits.test.select_classes([2, 0]).take(5))
    calls = _count(monkeypatch, "decode_images")
    picked = list(select(FolderBatches(tmp_path, "test", 4), lambda k: k == 2))
    assert [n for n, _ in picked] == [4, 4, 1] and calls == [1]
    batches, _ = stream_data(f"folder:{tmp_path}", None, "test", 4)
    assert isinstance(batches, FolderBatches)
    _image(tmp_path / "test" / "b" / "4.png", rng.integers(0, 256, (3, 2), dtype=np.uint8), "L")  # test now all grey
    with pytest.raises(DataError, match="differ in size or colour"):
        FolderBatches(tmp_path, "train", 4)
