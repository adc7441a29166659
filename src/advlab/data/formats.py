"""The user's own data: an `.npz` of arrays, or a folder of images with one subfolder per class.

- `load_npz(path)`: arrays `x` (N, C, H, W) or (N, H, W), uint8 in 0..255 or float in [0, 1],
  and `y` (N,) integer labels >= 0; one set, used for both splits. Or `x_train`, `y_train`,
  `x_test`, `y_test` for two. Read with `allow_pickle=False`: an object array is refused.
- `load_image_folder(path)`: `path/<class>/<image>`, or `path/train/<class>/...` and
  `path/test/<class>/...` (the same class folders in both). The class-to-label map
  (`Dataset.class_to_idx`, as torchvision's `ImageFolder.class_to_idx`): when every class folder
  is named by a number (`0`, `3`, `10`), the number is the label, so a missing or renamed folder
  never shifts the others; otherwise the folders sorted by name become labels 0..K-1. Images are
  decoded by Pillow (8-bit); grey when every image is grey, RGB otherwise; all must share one size.

Every problem raises `DataError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from advlab.data.dataset import Dataset, Splits
from advlab.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
GREY_MODES = frozenset({"1", "L", "LA"})
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "F"})  # 16/32-bit or float pixels: refused


def images_from_array(path: Path, key: str, x: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) uint8 0..255 or float in [0, 1] -> float32 (N, C, H, W) in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise DataError(f"{path}: {key} must have shape (N, C, H, W) or (N, H, W) with N >= 1, got {x.shape}")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0))
    if x.dtype.kind != "f":
        raise DataError(f"{path}: {key} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {key} contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{path}: {key} holds floats in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1]")
    return torch.from_numpy(x)


def labels_from_array(path: Path, key: str, y: np.ndarray, n: int) -> torch.Tensor:
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise DataError(f"{path}: {key} must be {n} integer labels of shape ({n},), got {y.dtype} {y.shape}")
    if y.size and int(y.min()) < 0:
        raise DataError(f"{path}: {key} holds a negative label ({int(y.min())})")
    return torch.from_numpy(y.astype(np.int64))


# What a user's .npz may declare, checked from its .npy headers before any array is read.
NPZ_MAX_EXAMPLES = 100_000_000  # rows of an image or label array
NPZ_MAX_VALUES_PER_EXAMPLE = 3 * 4096 * 4096  # one image: up to 4096x4096 RGB
NPZ_MAX_ARRAY_BYTES = 1 << 36  # 64 GiB, whatever the shape


def npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an .npy header; the array itself is not read."""
    version = np.lib.format.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format {version}; save it with numpy's default format")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(handle)  # type: ignore[no-any-return]


def check_npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """key -> (shape, dtype) of every array in the .npz `path`, read from the headers alone; refuses
    object arrays, shapes beyond the NPZ_MAX_* limits, and a header declaring more bytes than its
    zip member holds (a 1 KB file cannot declare a terabyte array)."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                with archive.open(info) as handle:
                    shape, _, dtype = npy_header(handle)  # type: ignore[arg-type]
                    offset = handle.tell()
                if dtype.hasobject:
                    raise DataError(f"{path}: {key} holds Python objects (a pickle); advlab never unpickles: save numeric arrays")
                values = [int(d) for d in shape]
                if values and (values[0] > NPZ_MAX_EXAMPLES or int(np.prod(values[1:], dtype=object)) > NPZ_MAX_VALUES_PER_EXAMPLE):
                    raise DataError(f"{path}: {key} declares shape {tuple(values)}: at most {NPZ_MAX_EXAMPLES:,} rows of "
                                    f"{NPZ_MAX_VALUES_PER_EXAMPLE:,} values each")
                declared = int(np.prod(values, dtype=object)) * dtype.itemsize
                if declared > NPZ_MAX_ARRAY_BYTES or offset + declared != info.file_size:
                    raise DataError(f"{path}: {key} declares shape {tuple(values)} ({declared:,} bytes of {dtype}) but its "
                                    f"member holds {info.file_size - offset:,}; a damaged or crafted file")
                arrays[key] = (tuple(values), dtype)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz of numeric arrays ({type(exc).__name__}: {exc})") from None
    return arrays


def load_npz(path: str | os.PathLike[str]) -> Splits:
    """Images and labels from an .npz (see the module docstring); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    check_npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz of numeric arrays ({type(exc).__name__}: {exc})") from None
    pairs = [("x", "y")] if "x" in arrays else [("x_train", "y_train"), ("x_test", "y_test")]
    missing = [key for pair in pairs for key in pair if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; need x and y, or x_train, y_train, x_test, y_test")
    sets = []
    for x_key, y_key in pairs:
        images = images_from_array(path, x_key, arrays[x_key])
        labels = labels_from_array(path, y_key, arrays[y_key], images.shape[0])
        sets.append(Dataset(images, labels, f"{path.stem}" + ("" if x_key == "x" else x_key[1:])))
    return _splits(sets, str(path))


def _splits(sets: list[Dataset], where: str) -> Splits:
    if len(sets) == 1:
        return Splits(sets[0], sets[0], f"{where} ({len(sets[0])} images, one set: used as both splits)")
    train, test = sets
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{where}: train images are {tuple(train.images.shape[1:])} but test images {tuple(test.images.shape[1:])}")
    return Splits(train, test, f"{where} ({len(train)} train / {len(test)} test images)")


def _class_folders(root: Path) -> list[str]:
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise DataError(f"{root}: need one subfolder per class (at least two), found {len(folders)}")
    return folders


def class_map(names: list[str], where: Path) -> dict[str, int]:
    """Class folder name -> label: the number itself when every name is a number (0, 3, 10: a
    missing folder shifts no label), else the position among the names sorted (ImageFolder's rule)."""
    if all(name.isdecimal() for name in names):
        labels = {name: int(name) for name in names}
        if len(set(labels.values())) != len(labels):
            raise DataError(f"{where}: class folders {sorted(names)} name the same number twice")
        return dict(sorted(labels.items(), key=lambda item: item[1]))
    return {name: label for label, name in enumerate(sorted(names))}


def list_images(root: Path, class_to_idx: dict[str, int]) -> list[tuple[Path, int]]:
    """(image file, label) for `root/<class>/*`, labels from `class_to_idx`, files sorted by name."""
    files: list[tuple[Path, int]] = []
    for name, label in class_to_idx.items():
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{folder}: missing class folder (the classes are {', '.join(class_to_idx)})")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not found:
            raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, label) for p in found]
    return files


def survey_images(paths: list[Path]) -> tuple[str, tuple[int, int]]:
    """(the mode every image is decoded to, "L" when all are grey, else "RGB"; their one size),
    from the headers alone (Pillow reads no pixels here); refuses unreadable files, wide pixels
    and mixed sizes."""
    from PIL import Image, UnidentifiedImageError

    modes, size = set(), None
    for path in paths:
        try:
            with Image.open(path) as image:
                mode, this = image.mode, image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        if mode in WIDE_MODES:
            raise DataError(f"{path}: {mode} pixels (16-bit or float) are not supported; save 8-bit images")
        if size is not None and this != size:
            raise DataError(f"{path}: image is {this[0]}x{this[1]} but {paths[0]} is {size[0]}x{size[1]}")
        modes.add(mode)
        size = this
    return "L" if modes <= GREY_MODES else "RGB", size  # type: ignore[return-value]


def decode_images(paths: list[Path], mode: str, where: Path) -> torch.Tensor:
    """The images at `paths` as float32 (N, C, H, W) in [0, 1], decoded to `mode` ("L" or "RGB")."""
    from PIL import Image

    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(mode), dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        arrays.append(array if mode == "L" else array.transpose(2, 0, 1))
    return images_from_array(where, "images", np.stack(arrays))


def _read_folder(root: Path, class_to_idx: dict[str, int]) -> Dataset:
    files = list_images(root, class_to_idx)
    paths = [path for path, _ in files]
    images = decode_images(paths, survey_images(paths)[0], root)
    return Dataset(images, torch.tensor([label for _, label in files], dtype=torch.int64), root.name, class_to_idx)


def folder_classes(root: Path) -> tuple[dict[str, int], Path | None, Path | None]:
    """(class name -> label, train folder, test folder) of an image folder; the folders are None
    for a folder with one set (`root/<class>/*`). Train and test must hold the same class folders."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_folders(root / "train")
        test_classes = _class_folders(root / "test")
        if test_classes != classes:
            only = sorted(set(classes) ^ set(test_classes))
            raise DataError(f"{root}: train classes {classes} differ from test classes {test_classes} (only in one: {only})")
        return class_map(classes, root), root / "train", root / "test"
    return class_map(_class_folders(root), root), None, None


def load_image_folder(path: str | os.PathLike[str]) -> Splits:
    """Images from `path/<class>/*` (one set) or `path/{train,test}/<class>/*` (two); each split
    carries the class-to-label map as `class_to_idx`."""
    root = Path(path)
    class_to_idx, train, test = folder_classes(root)
    if train is not None and test is not None:
        return _splits([_read_folder(train, class_to_idx), _read_folder(test, class_to_idx)], str(root))
    return _splits([_read_folder(root, class_to_idx)], str(root))
