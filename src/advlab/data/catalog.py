"""Data sets by name: `load_data("mnist" | "fashion-mnist" | "npz:PATH" | "folder:PATH", data_dir)`.

- `mnist`: the embedded default, or the four IDX files in `data_dir`.
- `fashion-mnist` (Xiao, Rasul & Vollgraf 2017; 10 classes of clothing, 60,000 / 10,000
  28x28 grey images in MNIST's IDX layout): the four IDX files in `data_dir` (no embedded copy;
  `fetch_fashion_mnist` downloads them).
- `npz:PATH` and `folder:PATH`: the user's own data (`advlab.data.formats`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from advlab.data.dataset import Splits
from advlab.data.formats import load_image_folder, load_npz
from advlab.data.lazy import FolderBatches, NpzBatches
from advlab.data.sources import fetch_mnist, load_idx_dir, load_mnist
from advlab.data.stream import Batch, IdxBatches, TensorBatches
from advlab.errors import DataError, InputError

NAMES = ("mnist", "fashion-mnist")
FASHION_MD5 = {  # the official files (torchvision's checksums)
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class DataFormat:
    """A user-data format named by a `--data PREFIX:PATH` prefix: how to load the whole file, and
    how to read one split batch by batch (`stream_data`)."""

    prefix: str
    load: Callable[[str], Splits]
    batches: Callable[..., Iterable[Batch]]
    description: str


FORMATS: tuple[DataFormat, ...] = (
    DataFormat("npz:", load_npz, NpzBatches, "arrays x, y (or x_train, y_train, x_test, y_test); never unpickled"),
    DataFormat("folder:", load_image_folder, FolderBatches, "one subfolder of images per class (or train/ and test/)"),
)
PREFIXES = tuple(f.prefix for f in FORMATS)


def data_format(spec: str) -> DataFormat | None:
    """The format a `--data` spec names by its prefix, None for a named data set."""
    return next((f for f in FORMATS if spec.startswith(f.prefix)), None)


def check_data_spec(spec: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Refuse an unknown name, an empty path, or --data-dir where it has no meaning (before any work)."""
    if spec in NAMES:
        if spec == "fashion-mnist" and data_dir is None:
            raise InputError("--data fashion-mnist needs --data-dir DIR with its four IDX files (advlab data fetch fashion-mnist DIR)")
        return spec
    form = data_format(spec)
    if form is None:
        raise InputError(f"--data takes {', '.join(NAMES)}, {', '.join(p + 'PATH' for p in PREFIXES)}, got {spec!r}")
    if not spec[len(form.prefix) :]:
        raise InputError(f"--data {spec}: give a path after {form.prefix!r}")
    if data_dir is not None:
        raise InputError(f"--data-dir is for mnist and fashion-mnist; --data {spec} names its own path")
    return spec


def load_data(spec: str = "mnist", data_dir: str | os.PathLike[str] | None = None) -> Splits:
    """The train and test splits named by `spec` (see the module docstring)."""
    spec = check_data_spec(spec, data_dir)
    form = data_format(spec)
    if form is not None:
        return form.load(spec[len(form.prefix) :])
    if spec == "fashion-mnist" and data_dir is not None:  # check_data_spec refused it without
        return load_fashion_mnist(data_dir)
    return load_mnist(data_dir)


def load_fashion_mnist(data_dir: str | os.PathLike[str]) -> Splits:
    """Fashion-MNIST's four IDX files (gzip or raw) from `data_dir`."""
    splits = load_idx_dir(data_dir, "fashion-mnist")
    return Splits(splits.train, splits.test, f"Fashion-MNIST, {splits.source}")


def fetch_fashion_mnist(dest: str | os.PathLike[str], *, mirrors: tuple[str, ...] = FASHION_MIRRORS) -> list[Path]:
    """Download the official Fashion-MNIST files, verify their md5 and rename them into `dest`."""
    try:
        return fetch_mnist(dest, mirrors=mirrors, checksums=FASHION_MD5)
    except DataError as exc:
        raise DataError(f"Fashion-MNIST: {exc}") from None


def stream_data(
    spec: str,
    data_dir: str | os.PathLike[str] | None,
    split: str,
    batch_size: int,
    *,
    limit: int | None = None,
    classes: Sequence[int] | None = None,
) -> tuple[Iterable[Batch], str]:
    """(the split as a stream of batches, its name). MNIST and Fashion-MNIST folders, .npz files
    and image folders are read batch by batch (`IdxBatches`, `NpzBatches`, `FolderBatches`),
    class subsets included; the embedded MNIST and an .npz image array saved in Fortran order
    are loaded whole and then sliced."""
    spec = check_data_spec(spec, data_dir)
    name = f"{spec}-{split}" + (":" + "v".join(str(c) for c in classes) if classes else "")

    def named(batches: IdxBatches | NpzBatches | FolderBatches) -> tuple[Iterable[Batch], str]:
        """With the limit in the name when it cuts the split, as `Dataset.take` writes it."""
        return batches, name + (f"[:{limit}]" if limit is not None and limit < batches.available else "")

    if data_dir is not None:
        return named(IdxBatches(data_dir, split, batch_size, limit=limit, classes=classes))
    form = data_format(spec)
    if form is not None:
        batches = form.batches(spec[len(form.prefix) :], split, batch_size, limit=limit, classes=classes)
        if not getattr(batches, "fortran_order", False):  # an .npz image array in Fortran order is loaded whole
            return named(batches)
    splits = load_data(spec, data_dir)
    splits = splits.select_classes(classes) if classes else splits
    data = (splits.test if split == "test" else splits.train).take(limit)
    return TensorBatches(data.images, data.labels, batch_size), data.name
