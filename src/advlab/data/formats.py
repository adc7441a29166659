"""The user's own data: an `.npz` of arrays, or a folder of images with one subfolder per class.

- `load_npz(path)`: arrays `x` (N, C, H, W) or (N, H, W), uint8 in 0..255 or float in [0, 1],
  and `y` (N,) integer labels >= 0; one set, used for both splits. Or `x_train`, `y_train`,
  `x_test`, `y_test` for two. Read with `allow_pickle=False`: an object array is refused.
- `load_image_folder(path)`: `path/<class>/<image>` (classes sorted by folder name become
  labels 0..K-1), or `path/train/<class>/...` and `path/test/<class>/...`. Images are decoded
  by Pillow (8-bit); grey when every image is grey, RGB otherwise; all must share one size.

Every problem raises `DataError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

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


def load_npz(path: str | os.PathLike[str]) -> Splits:
    """Images and labels from an .npz (see the module docstring); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
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


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise DataError(f"{root}: need one subfolder per class (at least two), found {len(folders)}")
    return folders


def _read_folder(root: Path, classes: list[str]) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{folder}: missing class folder (the classes are {', '.join(classes)})")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not found:
            raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, label) for p in found]
    pictures = []
    for path, _ in files:
        try:
            with Image.open(path) as image:
                image.load()
                pictures.append(image.copy())
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
    mode = "L" if all(p.mode in GREY_MODES for p in pictures) else "RGB"
    size = pictures[0].size
    arrays = []
    for (path, _), picture in zip(files, pictures):
        if picture.size != size:
            raise DataError(f"{path}: image is {picture.size[0]}x{picture.size[1]} but {files[0][0]} is {size[0]}x{size[1]}")
        if picture.mode in WIDE_MODES:
            raise DataError(f"{path}: {picture.mode} pixels (16-bit or float) are not supported; save 8-bit images")
        array = np.asarray(picture.convert(mode), dtype=np.uint8)
        arrays.append(array if mode == "L" else array.transpose(2, 0, 1))
    images = images_from_array(root, "images", np.stack(arrays))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return Dataset(images, labels, root.name)


def load_image_folder(path: str | os.PathLike[str]) -> Splits:
    """Images from `path/<class>/*` (one set) or `path/{train,test}/<class>/*` (two)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        test_classes = [p.name for p in _class_folders(root / "test")]
        if test_classes != classes:
            raise DataError(f"{root}: train classes {classes} differ from test classes {test_classes}")
        return _splits([_read_folder(root / "train", classes), _read_folder(root / "test", classes)], str(root))
    classes = [p.name for p in _class_folders(root)]
    return _splits([_read_folder(root, classes)], str(root))
