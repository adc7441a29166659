"""Minimal L-inf attacks against the exact MILP minimum on small ReLU networks, in one run.

The networks are trained exactly as in bench/milp.py (preset settings, seeded) on the same data
(real MNIST from ../shared/data/mnist when present, else the embedded 5k). For the first test
images of each, `advlab.exact.minimal_linf` gives the exact minimal L-inf distance eps*; each
attack's ratio = L-inf distance found / eps* over the examples the MILP proved optimal (and the
model gets right). Printed per attack: success rate, mean and worst ratio, how many examples
fell below the MILP's proven lower bound (must be 0 unless the MILP is wrong), seconds per
image. Target (issue 3): the strongest attack (minpgd) has mean ratio <= 1.005 and worst <= 1.05.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/minimal_linf.py [--images 100 40]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_data

from advlab.attacks import make_attack
from advlab.exact import minimal_linf
from advlab.models import build_model, get_spec
from advlab.training import TrainConfig, train_model

ATTACKS = (("minpgd", {}), ("minpgd restarts=0", {"restarts": 0}), ("deepfool linf", {"norm": "linf"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp-20-20", "mlp-50-50"])
    parser.add_argument("--images", nargs="+", type=int, default=[100, 40], help="first test images, per model")
    parser.add_argument("--time-limit", type=float, default=120.0, help="MILP seconds per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.images) != len(args.models):
        parser.error("give one --images count per model")
    splits = bench_data()
    print(f"data: {splits.source}; torch threads: {torch.get_num_threads()}; MILP limit {args.time_limit:g} s/image")
    print(f"{'model':<10}{'attack':<20}{'proven':>7}{'success':>9}{'mean ratio':>12}{'worst':>9}{'below lower':>13}{'s/image':>9}")
    for name, count in zip(args.models, args.images):
        torch.manual_seed(args.seed)
        model = build_model(name)
        train_model(model, splits.train, TrainConfig(**{**get_spec(name).training, "seed": args.seed}), progress=False)
        model.eval()
        test = splits.test.take(count)
        exact = minimal_linf(model, test.images, test.labels, time_limit=args.time_limit, progress=True)
        clean = model(test.images).argmax(1) == test.labels
        proven = torch.tensor([s == "optimal" for s in exact.status]) & clean
        for label, params in ATTACKS:
            method = label.split(" ")[0]
            start = time.perf_counter()
            result = make_attack(method, model, **params)(test.images, test.labels)
            seconds = (time.perf_counter() - start) / count
            found = result.linf.double()
            ratio = (found / exact.upper)[proven]
            below = int((found < exact.lower * (1 - 1e-5) - 1e-7)[proven].sum())
            print(f"{name:<10}{label:<20}{int(proven.sum()):>7}{float(result.success.double().mean()):>9.3f}"
                  f"{float(ratio.mean()):>12.5f}{float(ratio.max()):>9.4f}{below:>13}{seconds:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
