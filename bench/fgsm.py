"""advlab FGSM vs the floor: a plain PyTorch loop doing exactly the passes the result needs.

The floor per batch: one forward and one backward for the gradient, one forward on the
adversarial batch for the success check. Both run on the same 1,000 test images, interleaved
in one run; the ratio advlab / floor is printed per model (target: at most 1.1).

    .venv/bin/python bench/fgsm.py [--repeats 50] [--threads N]
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from common import bench_data, interleaved_medians, machine, mlp, timing_args, trained

from advlab import FGSM

EPS = 0.25


def plain_fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    x_adv = (x.detach() + EPS * grad.sign()).clamp(0, 1)
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def main() -> None:
    args = timing_args(__doc__, repeats=50)
    splits = bench_data()
    x, y = splits.test.images[:1000], splits.test.labels[:1000]
    print(f"data: {splits.source}; 1,000 test images; eps={EPS}; {machine()}")
    print(f"{'model':<22}{'advlab ms':>11}{'floor ms':>11}{'ratio':>8}  agree  verdict")
    for name, model in (("softmax 784-10", trained("softmax", splits)), ("mlp 784-256-256-10", mlp(splits))):
        for p in model.parameters():
            p.requires_grad_(False)
        attack = FGSM(model, eps=EPS, batch_size=1000)
        agree = torch.equal(attack(x, y).success, plain_fgsm(model, x, y))
        times = interleaved_medians({"advlab": lambda: attack(x, y), "floor": lambda: plain_fgsm(model, x, y)}, repeats=args.repeats)
        ratio = times["advlab"] / times["floor"]
        verdict = "ok (<= 1.1)" if ratio <= 1.1 else "SLOWER than target 1.1"
        print(f"{name:<22}{1e3 * times['advlab']:>11.2f}{1e3 * times['floor']:>11.2f}{ratio:>8.3f}  {str(agree):<5}  {verdict}")


if __name__ == "__main__":
    main()
