"""The suites `standard`, `fast` (adaptive APGD, `advlab.attacks.adaptive`) and `malt` on five models.

Models (MNIST from ../shared/data/mnist when present, else the embedded default; each trained on
the first `--train` training images, seeded):

- `mlp`: 784-256-256-10 ReLU MLP, 2 epochs;
- `cnn`: the registered small CNN, 1 epoch;
- `mlp-pgd`: the MLP trained 2 epochs with PGD (eps 0.1, 10 steps, alpha 0.5);
- `quantised`: the MLP behind a hard input quantisation (round to 1/4 steps): its input gradient is
  zero almost everywhere (deliberately masked gradients);
- `saturated`: the MLP's logits times 1e4 through a softmax: near one-hot outputs (probabilities),
  whose gradients vanish in float32.

Each suite runs as a cascade on the first `--n` test images at L-inf eps `--eps`, one thread,
for each seed; printed per model, suite and seed: robust accuracy, forward and backward passes
(counted per example, `bench/malt.py`'s `Counted`), CPU seconds, and the points only one of the
two suites compared breaks.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/suites.py --n 100 --eps 0.1 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import bench_data, machine, mlp
from malt import Counted
from torch import nn

from advlab.analysis.evaluation import evaluate_suite
from advlab.data import Dataset, Splits
from advlab.models import build_model
from advlab.training import AdversarialObjective, TrainConfig, train_model


class Quantised(nn.Module):
    """The model on the input rounded to multiples of 1/`levels`: zero input gradient almost everywhere."""

    def __init__(self, inner: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * self.levels) / self.levels)


class Saturated(nn.Module):
    """softmax(scale * logits): outputs near one-hot vectors."""

    def __init__(self, inner: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scale * self.inner(x), dim=1)


def models(splits: Splits, train: int, names: list[str]) -> dict[str, nn.Module]:
    """The models `names`, each trained only when asked for (the masked ones wrap the plain MLP)."""
    data = Dataset(splits.train.images[:train], splits.train.labels[:train], "train")
    built: dict[str, nn.Module] = {}
    if {"mlp", "quantised", "saturated"} & set(names):
        built["mlp"] = mlp(Splits(data, splits.test, splits.source))
        built["quantised"], built["saturated"] = Quantised(built["mlp"]).eval(), Saturated(built["mlp"]).eval()
    if "cnn" in names:
        torch.manual_seed(0)
        cnn = build_model("cnn")
        train_model(cnn, data, TrainConfig(epochs=1, seed=0), progress=False)
        built["cnn"] = cnn.eval()
    if "mlp-pgd" in names:
        torch.manual_seed(0)
        robust = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        train_model(robust, data, TrainConfig(epochs=2, seed=0), progress=False,
                    objective=AdversarialObjective(method="pgd", eps=0.1, steps=10))
        built["mlp-pgd"] = robust.eval()
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--train", type=int, default=10000, help="training images per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--suites", default="standard,fast,malt")
    parser.add_argument("--models", default="mlp,cnn,mlp-pgd,quantised,saturated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the saturated model's probability outputs warn on every call
    splits = bench_data()
    built = models(splits, args.train, args.models.split(","))
    x, y = splits.test.images[: args.n], splits.test.labels[: args.n]
    print(f"{machine()}; {args.n} test images, L-inf eps {args.eps}, seeds {args.seeds}")
    print("| model | suite | seed | robust accuracy | forward passes | backward passes | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    suites = args.suites.split(",")
    for name in args.models.split(","):
        model = Counted(built[name]).eval()
        for seed in (int(s) for s in args.seeds.split(",")):
            robust = {}
            for suite in suites:
                model.reset()
                start = time.process_time()
                result = evaluate_suite(model, x, y, eps=args.eps, suite=suite, batch_size=args.n, seed=seed)
                seconds = time.process_time() - start
                robust[suite] = result.robust
                print(f"| {name} | {suite} | {seed} | {result.robust_accuracy:.2%} | {model.forward_passes:,} | "
                      f"{model.backward_passes:,} | {seconds:.1f} |", flush=True)
            only = [f"{a} not {b}: {int((~robust[a] & robust[b]).sum())}" for a in suites for b in suites if a != b]
            print(f"<!-- {name} seed {seed}: points broken by " + "; ".join(only) + " -->", flush=True)


if __name__ == "__main__":
    main()
