"""Shared set-up for the benchmarks: data (real MNIST when present), seeded models, timing."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from advlab.data import Splits, load_mnist
from advlab.models import build_model
from advlab.training import TrainConfig, train_model

# ../shared/data/mnist beside the repository, or $ADVLAB_SHARED_DATA/mnist (the tests' convention)
SHARED_MNIST = Path(os.environ.get("ADVLAB_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")) / "mnist"


def bench_data() -> Splits:
    """Real MNIST from ../shared/data/mnist when present, else the embedded default."""
    return load_mnist(SHARED_MNIST if SHARED_MNIST.is_dir() else None)


def trained(name: str, splits: Splits, *, epochs: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name)
    train_model(model, splits.train, TrainConfig(epochs=epochs, seed=seed), progress=False)
    return model.eval()


def mlp(splits: Splits, *, seed: int = 0) -> nn.Module:
    """A 784-256-256-10 ReLU MLP trained for two epochs (a model whose passes cost something)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    train_model(model, splits.train, TrainConfig(epochs=2, seed=seed), progress=False)
    return model.eval()


def synchronize() -> None:
    """Wait for queued GPU work, so a timer read after it counts that work (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved_medians(candidates: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 3,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each candidate, the candidates run in turn in every round
    (`clock=time.process_time`: CPU seconds of this process, steadier on a shared machine)."""
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = clock()
            run()
            synchronize()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def timing_args(doc: str | None, *, repeats: int) -> argparse.Namespace:
    """--repeats and --threads for a timing benchmark; applies --threads to torch."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def machine() -> str:
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
