"""CROWN and alpha-CROWN through the MNIST CNN: certified counts and milliseconds per image.

Takes the registered `cnn` (conv16-conv32-fc128 with max-pools) from `--checkpoint`, or
trains it for one epoch on MNIST (../shared/data/mnist when present, else the embedded
default) on the CPU, then bounds the first `--n` test images at each L-inf eps with CROWN
(`margin_bounds`) and alpha-CROWN (`alpha_margin_bounds`, 20 + 20 steps), in batches of
`--batch`, one thread, and prints per eps the images correctly classified, the certified
counts and the wall milliseconds per image.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/cnn_bounds.py --n 20 --eps 0.01,0.03,0.1
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_data, machine, trained

from advlab.exact import margin_bounds, relu_network
from advlab.exact.bounds import box
from advlab.exact.optimized import alpha_margin_bounds
from advlab.training import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--eps", default="0.01,0.03,0.1")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="alpha-CROWN steps (hidden layers and margins each)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint of the registered cnn (default: train 1 epoch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = bench_data()
    model = load_checkpoint(args.checkpoint, expected_model="cnn").model if args.checkpoint else trained("cnn", splits, epochs=1)
    net = relu_network(model.double().eval(), (1, 28, 28))
    x = splits.test.images[: args.n].double().flatten(1)
    y = splits.test.labels[: args.n]
    right = net.logits(x).argmax(1) == y
    x, y = x[right], y[right]
    print(f"{machine()}; cnn ({'checkpoint' if args.checkpoint else '1 epoch'}), {args.n} test images, "
          f"{int(right.sum())} correct, one thread")
    print("| eps | CROWN certified | CROWN ms/image | alpha-CROWN certified | alpha-CROWN ms/image |")
    print("| --- | --- | --- | --- | --- |")
    for eps in (float(e) for e in args.eps.split(",")):
        counts, seconds = {"crown": 0, "alpha": 0}, {"crown": 0.0, "alpha": 0.0}
        for xb, yb in zip(x.split(args.batch), y.split(args.batch)):
            xl, xu = box(xb, eps, (0.0, 1.0))
            start = time.perf_counter()
            crown = margin_bounds(net, xl, xu, yb)
            seconds["crown"] += time.perf_counter() - start
            start = time.perf_counter()
            alpha = alpha_margin_bounds(net, xl, xu, yb, steps=args.steps, hidden_steps=args.steps).lower
            seconds["alpha"] += time.perf_counter() - start
            counts["crown"] += int((crown > 0).all(1).sum())
            counts["alpha"] += int((alpha > 0).all(1).sum())
        per = {k: 1000 * v / max(len(x), 1) for k, v in seconds.items()}
        print(f"| {eps:g} | {counts['crown']} | {per['crown']:.0f} | {counts['alpha']} | {per['alpha']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
