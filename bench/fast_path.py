"""The CPU fast path (`advlab.models.fast`) against the plain model: forward and
forward+backward passes with respect to the input, interleaved, CPU time.

The passes attacks make: with the model's weights frozen, one forward pass (Square, the checks)
or a forward pass and the gradient of a scalar with respect to the input (APGD, FAB-T). The
model is advlab's MNIST CNN (`SmallCNN`, random weights: the cost does not depend on them) or a
checkpoint; prints ms per call and the ratio fast / plain for each pass.

    PYTHONPATH=src python bench/fast_path.py [--checkpoint CKPT] [--batch 80] [--channels 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from common import interleaved_medians, machine

from advlab.models import SmallCNN
from advlab.models.fast import cpu_fast_path
from advlab.training import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="an advlab checkpoint (default: a SmallCNN with random weights)")
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--channels", type=int, default=1, help="input channels of the default SmallCNN")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_checkpoint(args.checkpoint).model if args.checkpoint else SmallCNN(channels=args.channels)
    model.eval().requires_grad_(False)
    x = torch.rand(args.batch, *(next(model.parameters()).shape[1:2]), 28, 28) if not args.checkpoint else None
    if x is None:  # a checkpoint: its input shape from its first convolution (28 x 28 images)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        x = torch.rand(args.batch, first.in_channels, 28, 28)

    fast_model = copy.deepcopy(model)  # entered once, for the whole run: the timings hold the passes only

    def forward(net: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                net(x)
        return run

    def gradient(net: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            z = x.clone().requires_grad_(True)
            torch.autograd.grad(net(z).logsumexp(1).sum(), z)
        return run

    candidates = {"forward": forward(model), "forward (fast path)": forward(fast_model),
                  "forward+backward": gradient(model), "forward+backward (fast path)": gradient(fast_model)}
    with cpu_fast_path(fast_model):
        times = interleaved_medians(candidates, repeats=args.repeats, warmup=2, clock=time.process_time)
    print(f"{args.checkpoint or f'SmallCNN({args.channels} channels)'}, batch {args.batch}; {machine()}; "
          f"CPU time, median of {args.repeats}, interleaved")
    for name in ("forward", "forward+backward"):
        plain, quick = times[name], times[f"{name} (fast path)"]
        print(f"  {name}: plain {1e3 * plain:.2f} ms, fast path {1e3 * quick:.2f} ms, ratio {quick / plain:.3f}")


if __name__ == "__main__":
    main()
