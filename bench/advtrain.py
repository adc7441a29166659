"""Time per epoch of FGSM adversarial training (Goodfellow et al. 2014, Sec. 6) vs standard training.

Both are timed in the same run, interleaved round by round (standard epoch, adversarial epoch,
...), so that load from other processes hits both alike; the ratio of the medians is reported.
Target: adversarial / standard <= 2.2.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/advtrain.py [--model maxout] [--rounds 5] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from advlab.data import load_mnist
from advlab.models import build_model, get_spec
from advlab.training import AdversarialObjective, TrainConfig, train_model

TARGET = 2.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="maxout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: the embedded 4,000 training images)")
    parser.add_argument("--eps", type=float, default=0.25)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--craft-mode", choices=["eval", "train"], default="eval")
    args = parser.parse_args()

    data = load_mnist(args.data_dir).train
    settings = {**get_spec(args.model).training, "epochs": 1}
    objectives = {
        "standard": None,
        "fgsm": AdversarialObjective("fgsm", eps=args.eps, alpha=args.alpha, craft_mode=args.craft_mode),
    }
    torch.manual_seed(0)
    models = {name: build_model(args.model) for name in objectives}
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        for name, objective in objectives.items():
            config = TrainConfig(**{**settings, "seed": round_})
            start = time.perf_counter()
            train_model(models[name], data, config, objective=objective, progress=False)
            if round_:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["fgsm"] / medians["standard"]
    print(f"model {args.model}, {len(data)} images per epoch, batch {settings.get('batch_size')}, "
          f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds, craft mode {args.craft_mode}")
    for name, t in times.items():
        print(f"  {name:>8}: median {medians[name]:.3f} s/epoch  (rounds: {', '.join(f'{v:.3f}' for v in t)})")
    print(f"ratio fgsm / standard = {ratio:.2f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
