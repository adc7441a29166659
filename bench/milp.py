"""Exact minimal L-inf distances by MILP on small ReLU networks trained (seeded) on MNIST.

Targets (issue 3): on 784-20-20-10 every test image proven optimal with median time < 3 s;
on 784-50-50-10 at least 95% proven within 120 s each. Run single-threaded:

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/milp.py [--images 100 40]

Data: real MNIST from ../shared/data/mnist when present, else the embedded 5k.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_data

from advlab.exact import minimal_linf
from advlab.models import build_model, get_spec
from advlab.training import TrainConfig, error_rate, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp-20-20", "mlp-50-50"])
    parser.add_argument("--images", nargs="+", type=int, default=[100, 40], help="first test images, per model")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's training epochs")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.images) != len(args.models):
        parser.error("give one --images count per model")

    splits = bench_data()
    print(f"data: {splits.source}; torch threads: {torch.get_num_threads()}; time limit {args.time_limit:g} s/image")
    rows = []
    for name, count in zip(args.models, args.images):
        spec = get_spec(name)
        overrides = {} if args.epochs is None else {"epochs": args.epochs}
        config = TrainConfig(**{**spec.training, **overrides, "seed": args.seed})
        torch.manual_seed(args.seed)
        model = build_model(name)
        start = time.perf_counter()
        train_model(model, splits.train, config, progress=False)
        trained = time.perf_counter() - start
        test = splits.test.take(count)
        result = minimal_linf(model, test.images, test.labels, time_limit=args.time_limit, progress=True)
        summary = result.summary()
        rows.append(
            (
                name,
                f"{100 * error_rate(model, splits.test):.2f}%",
                f"{trained:.0f}s",
                str(summary["n"]),
                f"{100 * summary['proven']:.0f}%",
                " ".join(f"{k}={v}" for k, v in summary["status_counts"].items()),
                f"{summary['median_seconds']:.2f}",
                f"{summary['max_seconds']:.2f}",
                f"{summary['median_eps']:.4f}",
                f"{summary['mean_gap']:.1e}",
            )
        )
    header = ("model", "test err", "train", "images", "proven", "status")
    header += ("median s", "max s", "median eps*", "mean gap")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
