import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data import load_image_folder, load_npz
from advlab.data.lazy import NpzBatches
from advlab.errors import DataError


def test_npz_uint8_three_dims_is_one_set_scaled_to_unit_range(tmp_path):
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 2, 1]))
    splits = load_npz(tmp_path / "d.npz")
    assert splits.test is splits.train
    assert splits.test.images.shape == (3, 1, 4, 5) and splits.test.images.dtype == torch.float32
    assert torch.equal(splits.test.images[:, 0], torch.from_numpy(x.astype(np.float32) / 255))
    assert splits.test.labels.tolist() == [0, 2, 1] and splits.test.labels.dtype == torch.int64


def test_npz_float_four_dims_with_two_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((4, 3, 2, 2)), "y_train": np.arange(4), "x_test": rng.random((2, 3, 2, 2)).astype(np.float32), "y_test": np.array([1, 0], dtype=np.uint8)}
    np.savez_compressed(tmp_path / "d.npz", **arrays)
    splits = load_npz(tmp_path / "d.npz")
    assert len(splits.train) == 4 and len(splits.test) == 2
    assert torch.allclose(splits.train.images, torch.from_numpy(arrays["x_train"]).float())


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 3, 3), np.float32)}, "missing array"),
        ({"x": np.full((2, 3, 3), 2.0), "y": np.zeros(2, int)}, r"floats in \[2, 2\]"),
        ({"x": np.full((2, 3, 3), np.nan), "y": np.zeros(2, int)}, "NaN"),
        ({"x": np.zeros((2, 3, 3), np.int32), "y": np.zeros(2, int)}, "uint8"),
        ({"x": np.zeros((2, 3), np.uint8), "y": np.zeros(2, int)}, "shape"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.zeros(3, int)}, "2 integer labels"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.zeros(2)}, "integer labels"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, -1])}, "negative"),
    ],
)
def test_npz_bad_contents_give_one_line_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_npz(tmp_path / "d.npz")
    assert "\n" not in str(info.value)


def test_npz_never_unpickles_and_rejects_garbage(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    with pytest.raises(DataError, match="x holds Python objects"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


def _image(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_grey_classes_sorted_by_name(tmp_path):
    a, b = np.full((5, 4), 10, np.uint8), np.full((5, 4), 200, np.uint8)
    _image(tmp_path / "zebra" / "1.png", a, "L")
    _image(tmp_path / "ant" / "2.png", b, "L")
    _image(tmp_path / "ant" / "1.png", a, "L")
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    data = load_image_folder(tmp_path).test
    assert data.images.shape == (3, 1, 5, 4)
    assert data.labels.tolist() == [0, 0, 1]  # ant/1, ant/2, zebra/1
    assert torch.allclose(data.images[1], torch.full((1, 5, 4), 200 / 255))


def test_image_folder_mixed_modes_become_rgb_and_train_test_layout(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    for split in ("train", "test"):
        _image(tmp_path / split / "a" / "x.png", rgb, "RGB")
        _image(tmp_path / split / "b" / "y.png", np.full((2, 2), 255, np.uint8), "L")
    splits = load_image_folder(tmp_path)
    assert splits.train.images.shape == (2, 3, 2, 2) and len(splits.test) == 2
    assert splits.train.images[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert splits.train.images[1].eq(1.0).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "absent")
    _image(tmp_path / "a" / "1.png", np.zeros((2, 2), np.uint8), "L")
    with pytest.raises(DataError, match="at least two"):
        load_image_folder(tmp_path)
    _image(tmp_path / "b" / "1.png", np.zeros((3, 2), np.uint8), "L")
    with pytest.raises(DataError, match="image is 2x3"):
        load_image_folder(tmp_path)
    (tmp_path / "b" / "1.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not a readable image"):
        load_image_folder(tmp_path)


def _npz_declaring(path, shapes, *, compress=zipfile.ZIP_STORED):
    """An .npz whose .npy headers declare `shapes` (key -> (shape, dtype)) over 16 bytes of data."""
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        for key, (shape, dtype) in shapes.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
            archive.writestr(f"{key}.npy", header.getvalue() + bytes(16))
    return path


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("load", [load_npz, lambda p: NpzBatches(p, "test", 100)], ids=["whole", "stream"])
def test_npz_declaring_a_huge_array_is_refused_from_its_header(tmp_path, monkeypatch, load, compress):
    """(10^10, 28, 28) uint8 would be 7.13 TiB: refused before numpy reads (or allocates) an array."""
    path = _npz_declaring(tmp_path / "bomb.npz", {"x": ((10**10, 28, 28), np.uint8), "y": ((10**10,), np.int64)}, compress=compress)
    assert path.stat().st_size < 2000
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("an array was read"))
    with pytest.raises(DataError, match=r"bomb.npz: x declares shape \(10000000000, 28, 28\)"):
        load(path)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"x": ((5, 28, 28), np.uint8), "y": ((5,), np.int64)}, r"declares shape \(5, 28, 28\) \(3,920 bytes of uint8\) but its member holds 16"),
        ({"x": ((2, 3, 8192, 8192), np.uint8), "y": ((2,), np.int64)}, "at most 100,000,000 rows of 50,331,648 values"),
        ({"x": ((2, 2), "O"), "y": ((2,), np.int64)}, "holds Python objects"),
    ],
)
def test_npz_headers_are_checked_before_reading(tmp_path, shapes, message):
    with pytest.raises(DataError, match=message):
        load_npz(_npz_declaring(tmp_path / "d.npz", shapes))
