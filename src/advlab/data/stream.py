"""Data as a stream of (x, y) batches, so that no more than one batch is ever in memory.

- `IdxBatches(directory, split, batch_size)`: MNIST-layout IDX files (gzip or raw) read
  sequentially, one batch at a time (a 60,000-image training set never sits in memory); a
  `RowBatches`, as `.npz` images are (`advlab.data.lazy`), with class subsets.
- `TensorBatches(x, y, batch_size)`: slices of in-memory tensors.
- `as_batches(source, batch_size)`: either of those, or any iterable of (x, y) pairs, e.g. a
  `torch.utils.data.DataLoader` (it must not shuffle: examples are numbered in stream order).

Each yields float32 images (B, C, H, W) in [0, 1] and int64 labels (B,).

`select(source, owns)` walks a stream for one process of several (`advlab.data.shard`): it
yields every batch's size, and the batch itself only where `owns(k)`; the others are skipped
as cheaply as the source allows: a raw IDX file seeks past them, a gzip one (or a deflated
.npz member) decompresses their bytes (neither can seek) but never converts them, a map-style
DataLoader never fetches them, tensors are not sliced. Any other iterable is read whole and its
batches dropped.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler

from advlab.data.dataset import Dataset, check_classes
from advlab.data.sources import FILES, _find
from advlab.errors import DataError, InputError
from advlab.validation import check_count

Batch = tuple[torch.Tensor, torch.Tensor]
Owns = Callable[[int], bool]
"""owns(k): whether this process works on batch k of the stream."""


def _open(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # type: ignore[return-value]


def _header(handle: BinaryIO, path: Path, ndim: int) -> tuple[int, ...]:
    head = handle.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim or head[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataError(f"{path}: not a uint8 IDX file with {ndim} dimension(s) (header {head[:4].hex()})")
    return struct.unpack(f">{ndim}I", head[4:])


class RowBatches:
    """Batches of examples stored as fixed-size rows of bytes, read in order from one stream
    (`_rows()`, positioned at the first row), with every example's label known up front (one
    small integer each). With `classes`, only the examples of those classes are kept and
    class classes[i] becomes label i (as `Dataset.select_classes`); `limit` keeps the first N.
    A batch not owned is skipped (seek), an owned one read and only its kept rows decoded."""

    shape: tuple[int, ...]  # one example's (C, H, W)
    where: str  # for messages

    def _index(self, labels: np.ndarray, row_bytes: int, batch_size: int, limit: int | None, classes: Sequence[int] | None) -> None:
        self.batch_size = check_count("batch_size", batch_size)
        self.row_bytes = row_bytes
        self._keep: np.ndarray | None = None
        if classes:
            wanted = np.asarray(check_classes(classes))
            self._keep = np.flatnonzero(np.isin(labels, wanted))
            labels = np.argmax(labels[self._keep, None] == wanted[None, :], axis=1)
        self._labels = labels
        self.available = len(labels)  # before the limit
        self.n = len(labels) if limit is None else min(len(labels), check_count("limit", limit))

    def _rows(self) -> contextlib.AbstractContextManager[BinaryIO]:
        raise NotImplementedError

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        """(count, row_bytes) uint8 -> float32 images (count, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return (batch for _, batch in self.select(lambda _: True) if batch is not None)

    def select(self, owns: Owns) -> Iterator[tuple[int, Batch | None]]:
        """(size, batch) per batch; batch is None (its bytes skipped, never converted) unless owns(k)."""
        with self._rows() as rows:
            at = 0  # the row the stream stands at
            for k, start in enumerate(range(0, self.n, self.batch_size)):
                end = min(start + self.batch_size, self.n)
                picked = np.arange(start, end) if self._keep is None else self._keep[start:end]
                first, last = int(picked[0]), int(picked[-1]) + 1
                self._skip(rows, (first - at) * self.row_bytes)
                at = last
                if not owns(k):
                    self._skip(rows, (last - first) * self.row_bytes)
                    yield end - start, None
                    continue
                raw = rows.read((last - first) * self.row_bytes)
                if len(raw) != (last - first) * self.row_bytes:
                    raise self._short()
                block = np.frombuffer(raw, dtype=np.uint8).reshape(last - first, self.row_bytes)
                yield end - start, (self._decode(block[picked - first]), torch.from_numpy(self._labels[start:end].astype(np.int64)))

    def _skip(self, handle: BinaryIO, size: int) -> None:
        """Move `size` bytes on (a gzip or zip member decompresses them; nothing is converted)."""
        end = handle.tell() + size
        if size and handle.seek(size, os.SEEK_CUR) != end:
            raise self._short()

    def _short(self) -> DataError:
        return DataError(f"{self.where}: the data ends before the {len(self._labels)} examples its header declares")


class IdxBatches(RowBatches):
    """Batches read sequentially from `directory`'s `split` ("train" or "test") IDX files (gzip
    or raw); the labels file (one byte per example) is read first."""

    def __init__(self, directory: str | os.PathLike[str], split: str, batch_size: int, *, limit: int | None = None,
                 classes: Sequence[int] | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(f"{self.directory}: data directory does not exist")
        self.images_path = _find(self.directory, FILES[f"{split}_images"])
        labels_path = _find(self.directory, FILES[f"{split}_labels"])
        self.where = str(self.directory)
        with _open(self.images_path) as images, _open(labels_path) as labels:
            n, rows, cols = _header(images, self.images_path, 3)
            (n_labels,) = _header(labels, labels_path, 1)
            raw_labels = np.frombuffer(labels.read(n_labels), dtype=np.uint8)
        if n != n_labels:
            raise DataError(f"{self.directory}: {n} {split} images but {n_labels} labels")
        if len(raw_labels) != n or (not isinstance(images, gzip.GzipFile) and self.images_path.stat().st_size < 16 + n * rows * cols):
            raise DataError(f"{self.directory}: IDX data ends before the {n} examples its header declares")
        self.shape = (1, rows, cols)
        self._index(raw_labels, rows * cols, batch_size, limit, classes)

    @contextlib.contextmanager
    def _rows(self) -> Iterator[BinaryIO]:
        with _open(self.images_path) as images:
            _header(images, self.images_path, 3)
            yield images

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        return decode_idx(rows, self.shape)


def decode_idx(rows: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """IDX rows (count, pixels) uint8 -> float32 images (count, *shape) in [0, 1]."""
    return torch.from_numpy(rows.reshape(-1, *shape).astype(np.float32) / np.float32(255))


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

    def select(self, owns: Owns) -> Iterator[tuple[int, Batch | None]]:
        for k, start in enumerate(range(0, self.n, self.batch_size)):
            end = min(start + self.batch_size, self.n)
            yield end - start, (self.images[start:end], self.labels[start:end]) if owns(k) else None


def as_batches(source: Any, batch_size: int = 1000) -> Iterable[Batch]:
    """A Dataset or (x, y) tensors -> TensorBatches; anything else is taken as an iterable of (x, y)."""
    if isinstance(source, Dataset):
        return TensorBatches(source.images, source.labels, batch_size)
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(t, torch.Tensor | np.ndarray) for t in source):
        x, y = (torch.as_tensor(t) for t in source)
        return TensorBatches(x, y, batch_size)
    if not isinstance(source, Iterable):
        raise InputError(f"need (x, y) tensors or an iterable of (x, y) batches, got {type(source).__name__}")
    return _in_order(source)


def _in_order(source: Iterable[Batch]) -> Iterable[Batch]:
    if isinstance(source, DataLoader) and isinstance(source.sampler, RandomSampler):
        raise InputError("a streamed run numbers examples in stream order: give a DataLoader that does not shuffle")
    return source


def select(source: Iterable[Batch], owns: Owns) -> Iterator[tuple[int, Batch | None]]:
    """(size, batch) for every batch of `source` in order, batch None where not owns(k) (see the
    module docstring for what each kind of source skips)."""
    own_select = getattr(_in_order(source), "select", None)
    if callable(own_select):
        return own_select(owns)  # type: ignore[no-any-return]
    if isinstance(source, DataLoader) and not isinstance(source.dataset, IterableDataset) and source.batch_sampler is not None:
        return _select_from_loader(source, owns)
    return ((len(y), (x, y) if owns(k) else None) for k, (x, y) in enumerate(source))


class _OwnedBatches:
    """The index lists of a batch sampler that `owns` keeps (a batch sampler itself)."""

    def __init__(self, batch_sampler: Iterable[list[int]], owns: Owns) -> None:
        self.batch_sampler, self.owns = batch_sampler, owns

    def __iter__(self) -> Iterator[list[int]]:
        return (indices for k, indices in enumerate(self.batch_sampler) if self.owns(k))


def _select_from_loader(loader: DataLoader, owns: Owns) -> Iterator[tuple[int, Batch | None]]:
    """A map-style DataLoader: batch sizes from its batch sampler's index lists, and a second
    loader (same dataset, collate function and workers) that fetches only the owned batches."""
    mine = DataLoader(loader.dataset, batch_sampler=_OwnedBatches(loader.batch_sampler, owns),  # type: ignore[arg-type]
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      multiprocessing_context=loader.multiprocessing_context if loader.num_workers else None,
                      prefetch_factor=loader.prefetch_factor if loader.num_workers else None)
    fetched = iter(mine)
    for k, indices in enumerate(loader.batch_sampler):  # type: ignore[arg-type]
        if not owns(k):
            yield len(indices), None
            continue
        x, y = next(fetched)
        if len(y) != len(indices):
            raise InputError(f"batch {k} of the DataLoader holds {len(y)} examples, its sampler {len(indices)}: "
                             "a streamed run needs a collate function that keeps every example")
        yield len(indices), (x, y)


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
