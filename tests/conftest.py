"""Shared fixtures: real MNIST when ../shared/data/mnist exists (skipped otherwise), the
embedded default, and small trained models (trained once per session, deterministically)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from advlab.data import Splits, load_mnist
from advlab.training import TrainConfig, train_registered

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADVLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MNIST = SHARED_DATA / "mnist"


def shared_data(name: str) -> Path:
    """../shared/data/NAME (or $ADVLAB_SHARED_DATA/NAME); the calling test skips when it is absent."""
    folder = SHARED_DATA / name
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{name} not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder; tests that use it skip cleanly when it is absent."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def embedded() -> Splits:
    return load_mnist(None)


@pytest.fixture(scope="session")
def embedded_37(embedded: Splits) -> Splits:
    return embedded.select_classes([3, 7])


def _train(name: str, splits: Splits, epochs: int) -> torch.nn.Module:
    config = TrainConfig(epochs=epochs, lr=0.01, weight_decay=1e-4, seed=0)
    return train_registered(name, splits.train, config, progress=False).model


@pytest.fixture(scope="session")
def logreg_37(embedded_37: Splits) -> torch.nn.Module:
    """Binary logistic regression on embedded 3s vs 7s (label 0 = 3, 1 = 7)."""
    return _train("logreg", embedded_37, epochs=10)


@pytest.fixture(scope="session")
def softmax_model(embedded: Splits) -> torch.nn.Module:
    """Softmax regression 784->10 on the embedded training split."""
    return _train("softmax", embedded, epochs=5)


@pytest.fixture(scope="session")
def small_mnist_dir(tmp_path_factory: pytest.TempPathFactory, embedded: Splits) -> Path:
    """A tiny MNIST folder in IDX format (300 train / 50 test embedded images), for fast CLI runs."""
    from advlab.data import write_idx

    folder = tmp_path_factory.mktemp("small-mnist")
    for split, data, n in (("train", embedded.train, 300), ("t10k", embedded.test, 50)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", (data.images[:n, 0] * 255).round().to(torch.uint8).numpy())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", data.labels[:n].to(torch.uint8).numpy())
    return folder
