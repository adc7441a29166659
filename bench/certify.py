"""The proven robust-accuracy bracket of `advlab.exact.certify` on a PGD-trained ReLU MLP.

Target (issue 12): on the PGD-trained 784-100-100-10 MLP at eps .1 the bracket is exact
(certified = attacked) on at least 95% of the test images, within 120 s per image. Run
single-threaded:

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/certify.py CHECKPOINT [--images 100] [--eps 0.1]

CHECKPOINT: an advlab checkpoint (e.g. `advlab train mlp --adversarial pgd --eps 0.1 ...`).
Data: real MNIST from ../shared/data/mnist when present, else the embedded 5k.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_data

from advlab.exact import certify
from advlab.training.checkpoints import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=100, help="first test images")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--time-limit", type=float, default=120.0, help="MILP seconds per image")
    args = parser.parse_args()

    model = load_checkpoint(args.checkpoint).model.eval()
    test = bench_data().test.take(args.images)
    print(f"{args.checkpoint}; {test.name}; torch threads: {torch.get_num_threads()}; eps {args.eps:g}; "
          f"time limit {args.time_limit:g} s/image")
    start = time.perf_counter()
    result = certify(model, test.images, test.labels, eps=args.eps, time_limit=args.time_limit)
    wall = time.perf_counter() - start
    summary = result.summary()
    counts = summary["counts"]
    settled = result.n - counts["unknown"]
    lo, hi = result.bracket()
    print(f"images {result.n}; wall {wall:.0f} s ({wall / result.n:.2f} s/image); "
          f"median {summary['median_seconds']:.2f} s, max {summary['max_seconds']:.2f} s per image")
    print("status: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print("settled by: " + ", ".join(f"{k}={v}" for k, v in summary["settled_by"].items()))
    print(f"robust accuracy in [{100 * lo:.1f}%, {100 * hi:.1f}%]; exact (settled) on {settled}/{result.n} "
          f"= {100 * settled / result.n:.1f}% of the images (target >= 95%)")
    for note in result.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
