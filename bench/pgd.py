"""advlab PGD vs the floor, and what early exit saves when measuring robust accuracy.

PGD L-inf, eps=0.3, step 0.01, 40 steps, no random start, on 1,000 test images. The floor is a
plain PyTorch loop doing exactly the passes the result needs: 40 forward+backward passes and one
forward on the adversarial batch for the success check. advlab and the floor run interleaved
in one process; the ratio advlab / floor (the same per gradient step: both take 40) is printed
per model (target: at most 1.05). Then robust accuracy with and without early exit at three
eps, and the time ratio between the two (early exit only runs the still-robust examples).

    .venv/bin/python bench/pgd.py [--repeats 10] [--threads N]
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from common import bench_data, interleaved_medians, machine, mlp, timing_args, trained

from advlab.attacks import PGD

EPS, STEP, STEPS = 0.3, 0.01, 40


def plain_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    low, high = (x - EPS).clamp(0, 1), (x + EPS).clamp(0, 1)
    x_adv = x
    for _ in range(STEPS):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.clamp(x_adv.detach().add(grad.sign(), alpha=STEP), low, high)
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def main() -> None:
    args = timing_args(__doc__, repeats=10)
    splits = bench_data()
    x, y = splits.test.images[:1000], splits.test.labels[:1000]
    print(f"data: {splits.source}; 1,000 test images; PGD L-inf eps={EPS} step={STEP} steps={STEPS}, no random start; "
          f"{machine()}")
    print(f"{'model':<20}{'advlab ms':>10}{'floor ms':>10}{'ratio':>7}  agree  verdict")
    models = (("softmax 784-10", trained("softmax", splits)), ("mlp 784-256-256-10", mlp(splits)))
    for name, model in models:
        for p in model.parameters():
            p.requires_grad_(False)
        attack = PGD(model, eps=EPS, step_size=STEP, steps=STEPS, random_start=False, batch_size=1000)
        agree = torch.equal(attack(x, y).success, plain_pgd(model, x, y))
        times = interleaved_medians({"advlab": lambda: attack(x, y), "floor": lambda: plain_pgd(model, x, y)}, repeats=args.repeats)
        ratio = times["advlab"] / times["floor"]
        verdict = "ok (<= 1.05)" if ratio <= 1.05 else "SLOWER than target 1.05"
        print(f"{name:<20}{1e3 * times['advlab']:>10.1f}{1e3 * times['floor']:>10.1f}{ratio:>7.3f}  {str(agree):<5}  {verdict}")
    print(f"\nrobust accuracy, same PGD (step {STEP}, {STEPS} steps) with and without early exit")
    print(f"{'model':<20}{'eps':>6}{'full':>8}{'early':>8}{'early/full time':>17}")
    for name, model in models:
        for eps in (0.05, 0.1, EPS):
            full = PGD(model, eps=eps, step_size=STEP, steps=STEPS, random_start=False, batch_size=1000)
            early = PGD(model, eps=eps, step_size=STEP, steps=STEPS, random_start=False, early_exit=True, batch_size=1000)
            robust_full = float(full(x, y).adv_correct.double().mean())
            robust_early = float(early(x, y).adv_correct.double().mean())
            times = interleaved_medians({"full": lambda: full(x, y), "early": lambda: early(x, y)}, repeats=args.repeats)
            print(f"{name:<20}{eps:>6.2f}{robust_full:>8.3f}{robust_early:>8.3f}{times['early'] / times['full']:>17.3f}")
            assert robust_early <= robust_full, "early exit reported a higher robust accuracy than the full run"

if __name__ == "__main__":
    main()
