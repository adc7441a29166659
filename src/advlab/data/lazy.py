"""The user's data as a stream of batches, read batch by batch instead of whole.

- `NpzBatches(path, split, batch_size)`: the images of an `.npz` (`x`, or `x_train` / `x_test`)
  read row by row from their `.npy` member, stored or deflated (a zip member is read in order;
  a batch that is not owned is passed over, decompressed when deflated but never converted).
  The labels (`y`, one integer per example) are read whole. An array saved in Fortran order
  cannot be read by rows: `fortran_order` says so, and `advlab.data.catalog.stream_data` then
  loads the file whole.
- `FolderBatches(root, split, batch_size)`: an image folder (`advlab.data.formats`); every
  image's header is read first (grey or RGB, one size), its pixels only when its batch is owned.

Both take `limit` and `classes` as `advlab.data.stream.IdxBatches` does, and check what
`load_npz` / `load_image_folder` check; a float image outside [0, 1] is found when its batch is
read.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from advlab.data.dataset import check_classes, relabelled_map
from advlab.data.formats import check_npz_headers, decode_images, folder_classes, images_from_array, labels_from_array, list_images, npy_header, survey_images
from advlab.data.stream import Batch, Owns, RowBatches
from advlab.errors import DataError, InputError
from advlab.validation import check_count


def _npz_keys(path: Path, names: set[str], split: str) -> tuple[str, str]:
    """The (images, labels) keys for `split`: x and y (one set) or x_<split> and y_<split>."""
    keys = ("x", "y") if "x.npy" in names else (f"x_{split}", f"y_{split}")
    missing = [k for k in keys if f"{k}.npy" not in names]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; need x and y, or x_train, y_train, x_test, y_test")
    return keys


class NpzBatches(RowBatches):
    """Batches of an .npz's images, read by rows (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], split: str, batch_size: int, *, limit: int | None = None,
                 classes: Sequence[int] | None = None) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        check_npz_headers(self.path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                self.x_key, y_key = _npz_keys(self.path, set(archive.namelist()), split)
                with archive.open(f"{self.x_key}.npy") as handle:
                    shape, self.fortran_order, self.dtype = npy_header(handle)
            with np.load(self.path, allow_pickle=False) as arrays:
                labels = labels_from_array(self.path, y_key, arrays[y_key], shape[0] if shape else 0).numpy()
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{self.path}: not a readable .npz of numeric arrays ({type(exc).__name__}: {exc})") from None
        if len(shape) not in (3, 4) or shape[0] == 0:
            raise DataError(f"{self.path}: {self.x_key} must have shape (N, C, H, W) or (N, H, W) with N >= 1, got {shape}")
        if self.dtype != np.uint8 and self.dtype.kind != "f":
            raise DataError(f"{self.path}: {self.x_key} must be uint8 (0..255) or float in [0, 1], got dtype {self.dtype}")
        self.shape = (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])
        self._index(labels, int(np.prod(shape[1:])) * self.dtype.itemsize, batch_size, limit, classes)

    @contextlib.contextmanager
    def _rows(self) -> Iterator[BinaryIO]:
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.x_key}.npy") as handle:
            npy_header(handle)  # type: ignore[arg-type]
            yield handle  # type: ignore[misc]

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        return images_from_array(self.path, self.x_key, rows.view(self.dtype).reshape(len(rows), *self.shape))


class FolderBatches:
    """Batches of an image folder's images, decoded per batch (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], split: str, batch_size: int, *, limit: int | None = None,
                 classes: Sequence[int] | None = None) -> None:
        self.root = Path(root)
        class_to_idx, train, test = folder_classes(self.root)
        folder = self.root if train is None or test is None else (test if split == "test" else train)
        files = list_images(folder, class_to_idx)
        self.mode, size = survey_images([path for path, _ in files])  # over the whole split, as load_image_folder
        if train is not None and test is not None:  # and, as it, refuse splits of other shapes
            other_mode, other_size = survey_images([path for path, _ in list_images(train if folder == test else test, class_to_idx)])
            if (self.mode, size) != (other_mode, other_size):
                raise DataError(f"{self.root}: the train and test images differ in size or colour ({split}: {self.mode} "
                                f"{size[0]}x{size[1]}, the other split: {other_mode} {other_size[0]}x{other_size[1]})")
        self.class_to_idx: dict[str, int] | None = class_to_idx
        if classes:
            wanted = check_classes(classes)
            missing = [c for c in wanted if c not in class_to_idx.values()]
            if missing:
                raise InputError(f"class {missing[0]} does not occur in the data (its classes: {sorted(class_to_idx.values())})")
            files = [(path, wanted.index(label)) for path, label in files if label in wanted]
            self.class_to_idx = relabelled_map(class_to_idx, wanted, True)
        self.paths = [path for path, _ in files]
        self.labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        self.batch_size = check_count("batch_size", batch_size)
        self.available = len(files)  # before the limit
        self.n = len(files) if limit is None else min(len(files), check_count("limit", limit))

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return (batch for _, batch in self.select(lambda _: True) if batch is not None)

    def select(self, owns: Owns) -> Iterator[tuple[int, Batch | None]]:
        for k, start in enumerate(range(0, self.n, self.batch_size)):
            end = min(start + self.batch_size, self.n)
            yield end - start, (decode_images(self.paths[start:end], self.mode, self.root), self.labels[start:end]) if owns(k) else None
