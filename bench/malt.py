"""MALT against AutoAttack's standard suite: robust accuracy, model passes and CPU time.

Trains the 784-256-256-10 MLP of `bench/common.py` (two epochs; real MNIST when
../shared/data/mnist is present, else the embedded default), then runs the suites `standard`
and `malt` (APGD-T on the 5 MALT-ranked targets) as cascades on the first `--n` test images at
L-inf eps `--eps`, and prints per suite the robust accuracy, the model passes (forward and
backward, counted per example) and the CPU seconds, plus the points only one suite breaks.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/malt.py --threads 1 --n 100 --eps 0.1
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_data, machine, mlp
from torch import nn

from advlab.analysis.evaluation import evaluate_suite


class Counted(nn.Module):
    """The model, counting the examples of every forward pass and of every backward pass through it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_passes = 0
        self.backward_passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.forward_passes += x.shape[0]
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backward_passes += grad.shape[0]

    def reset(self) -> None:
        self.forward_passes = self.backward_passes = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--suites", default="standard,malt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = bench_data()
    model = Counted(mlp(splits)).eval()
    x, y = splits.test.images[: args.n], splits.test.labels[: args.n]
    print(f"{machine()}; MLP 784-256-256-10, {args.n} test images, L-inf eps {args.eps}")
    print("| suite | robust accuracy | forward passes | backward passes | CPU s |")
    print("| --- | --- | --- | --- | --- |")
    robust = {}
    for suite in args.suites.split(","):
        model.reset()
        start = time.process_time()
        result = evaluate_suite(model, x, y, eps=args.eps, suite=suite, batch_size=args.n)
        seconds = time.process_time() - start
        robust[suite] = result.robust
        print(f"| {suite} | {result.robust_accuracy:.2%} | {model.forward_passes} | {model.backward_passes} | {seconds:.1f} |")
    for a in robust:
        for b in robust:
            if a != b:
                print(f"points {a} breaks and {b} does not: {int((~robust[a] & robust[b]).sum())}")

if __name__ == "__main__":
    main()
