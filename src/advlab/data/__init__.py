"""Data: strict IDX I/O, MNIST and Fashion-MNIST, the user's .npz files and image folders, class subsets."""

from advlab.data.catalog import check_data_spec, fetch_fashion_mnist, load_data, load_fashion_mnist
from advlab.data.dataset import Dataset, Splits
from advlab.data.formats import load_image_folder, load_npz
from advlab.data.idx import read_idx, write_idx
from advlab.data.sources import fetch_mnist, load_embedded, load_mnist

__all__ = [
    "Dataset",
    "Splits",
    "check_data_spec",
    "fetch_fashion_mnist",
    "fetch_mnist",
    "load_data",
    "load_embedded",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "read_idx",
    "write_idx",
]
