"""MNIST data: strict IDX I/O, sources (directory, embedded, download) and class subsets."""

from advlab.data.dataset import Dataset, Splits
from advlab.data.idx import read_idx, write_idx
from advlab.data.sources import fetch_mnist, load_embedded, load_mnist

__all__ = ["Dataset", "Splits", "fetch_mnist", "load_embedded", "load_mnist", "read_idx", "write_idx"]
