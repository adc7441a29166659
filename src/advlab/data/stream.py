"""Data as a stream of (x, y) batches, so that no more than one batch is ever in memory.

- `IdxBatches(directory, split, batch_size)`: MNIST-layout IDX files (gzip or raw) read
  sequentially, one batch at a time (a 60,000-image training set never sits in memory).
- `TensorBatches(x, y, batch_size)`: slices of in-memory tensors.
- `as_batches(source, batch_size)`: either of those, or any iterable of (x, y) pairs, e.g. a
  `torch.utils.data.DataLoader` (it must not shuffle: examples are numbered in stream order).

Each yields float32 images (B, C, H, W) in [0, 1] and int64 labels (B,).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from advlab.data.dataset import Dataset
from advlab.data.sources import FILES, _find
from advlab.errors import DataError, InputError
from advlab.validation import check_count

Batch = tuple[torch.Tensor, torch.Tensor]


def _open(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # type: ignore[return-value]


def _header(handle: BinaryIO, path: Path, ndim: int) -> tuple[int, ...]:
    head = handle.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim or head[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataError(f"{path}: not a uint8 IDX file with {ndim} dimension(s) (header {head[:4].hex()})")
    return struct.unpack(f">{ndim}I", head[4:])


class IdxBatches:
    """Batches read sequentially from `directory`'s `split` ("train" or "test") IDX files."""

    def __init__(self, directory: str | os.PathLike[str], split: str, batch_size: int, *, limit: int | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(f"{self.directory}: data directory does not exist")
        self.images_path = _find(self.directory, FILES[f"{split}_images"])
        self.labels_path = _find(self.directory, FILES[f"{split}_labels"])
        self.batch_size = check_count("batch_size", batch_size)
        with _open(self.images_path) as images, _open(self.labels_path) as labels:
            n, rows, cols = _header(images, self.images_path, 3)
            (n_labels,) = _header(labels, self.labels_path, 1)
        if n != n_labels:
            raise DataError(f"{self.directory}: {n} {split} images but {n_labels} labels")
        self.n = n if limit is None else min(n, check_count("limit", limit))
        self.shape = (1, rows, cols)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        pixels = int(np.prod(self.shape))
        with _open(self.images_path) as images, _open(self.labels_path) as labels:
            _header(images, self.images_path, 3), _header(labels, self.labels_path, 1)
            for start in range(0, self.n, self.batch_size):
                count = min(self.batch_size, self.n - start)
                raw_x, raw_y = images.read(count * pixels), labels.read(count)
                if len(raw_x) != count * pixels or len(raw_y) != count:
                    raise DataError(f"{self.directory}: IDX data ends before the {self.n} examples its header declares")
                x = np.frombuffer(raw_x, dtype=np.uint8).reshape(count, *self.shape).astype(np.float32) / np.float32(255)
                yield torch.from_numpy(x), torch.from_numpy(np.frombuffer(raw_y, dtype=np.uint8).astype(np.int64))


class TensorBatches:
    """Consecutive slices of in-memory images and labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        if images.shape[0] != labels.shape[0]:
            raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels
        self.batch_size = check_count("batch_size", batch_size)
        self.n = int(labels.shape[0])

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.n, self.batch_size):
            yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]


def as_batches(source: Any, batch_size: int = 1000) -> Iterable[Batch]:
    """A Dataset or (x, y) tensors -> TensorBatches; anything else is taken as an iterable of (x, y)."""
    if isinstance(source, Dataset):
        return TensorBatches(source.images, source.labels, batch_size)
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(t, torch.Tensor | np.ndarray) for t in source):
        x, y = (torch.as_tensor(t) for t in source)
        return TensorBatches(x, y, batch_size)
    if not isinstance(source, Iterable):
        raise InputError(f"need (x, y) tensors or an iterable of (x, y) batches, got {type(source).__name__}")
    return source


def stream_length(source: Iterable[Batch]) -> int | None:
    """The number of examples a stream will yield, when it can tell (for progress bars)."""
    n = getattr(source, "n", None)
    if n is not None:
        return int(n)
    dataset = getattr(source, "dataset", None)  # a DataLoader
    try:
        return len(dataset) if dataset is not None else None  # type: ignore[arg-type]
    except TypeError:
        return None
