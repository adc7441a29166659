"""AutoAttack (pyautoattack==0.2.0, Croce & Hein's code) vs advlab `--suite standard`, side by side.

Same model, same test images (the first --n), same eps and seed, same threads; one run each (the
order alternates with --first). Prints robust accuracy, wall time and the per-example comparison
(points advlab calls robust that AutoAttack breaks, and the reverse), then APGD's per-step cost
against a plain-PyTorch floor (the same 2-pass momentum step in a bare loop), interleaved.

Needs the comparison environment (`make .venv-compare/.installed`, or any venv with advlab's pins
plus pyautoattack==0.2.0):

    .venv-compare/bin/python bench/autoattack.py CHECKPOINT --data mnist --n 200 --eps 0.3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import interleaved_medians, machine

from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import APGD
from advlab.data.sources import load_idx_dir
from advlab.training import load_checkpoint


def autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int, batch: int) -> torch.Tensor:
    """Per example: robust under AutoAttack's standard version (on the device x is on)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard", seed=seed, device=x.device)
    adversary.verbose = False
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def plain_apgd_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """The floor: APGD's arithmetic per step (sign step, projection, momentum, one forward+backward)
    with no bookkeeping, step-size checks or early exit."""
    low, high = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    x_adv, x_old = x.clone(), x.clone()
    grad = torch.zeros_like(x)
    for i in range(steps + 1):
        if i:
            z = torch.clamp(x_adv + 2 * eps * grad.sign(), low, high)
            x_adv, x_old = torch.clamp(x_adv + 0.75 * (z - x_adv) + 0.25 * (x_adv - x_old), low, high), x_adv
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach()
    return x_adv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="mnist", help="mnist or fashion-mnist")
    parser.add_argument("--data-dir", help="folder with the IDX files (default: ../shared/data/<data>)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, required=True)
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--first", default="autoattack", choices=["autoattack", "advlab"])
    parser.add_argument("--step-repeats", type=int, default=5, help="rounds of the APGD step-cost comparison (0: skip)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both libraries run there)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data" / args.data)
    test = load_idx_dir(data_dir, args.data).test
    x, y = test.images[: args.n].to(args.device), test.labels[: args.n].to(args.device)
    model = load_checkpoint(args.checkpoint, device=args.device).model.eval().requires_grad_(False)
    print(f"{args.checkpoint} on {args.data} test[:{args.n}], {args.norm} eps={args.eps}, seed {args.seed}, {args.device}; {machine()}")

    runs: dict[str, tuple[torch.Tensor, float]] = {}

    def run_autoattack() -> None:
        start = time.perf_counter()
        robust = autoattack(model, x, y, args.eps, args.norm, args.seed, args.batch_size).cpu()  # .cpu() waits for the GPU
        runs["autoattack"] = (robust, time.perf_counter() - start)

    def run_advlab() -> None:
        start = time.perf_counter()
        ev = evaluate_suite(model, x, y, eps=args.eps, norm=args.norm, suite="standard", batch_size=args.batch_size, seed=args.seed)
        runs["advlab"] = (ev.robust.cpu(), time.perf_counter() - start)
        runs["advlab-notes"] = ev.notes  # type: ignore[assignment]

    order = (run_autoattack, run_advlab) if args.first == "autoattack" else (run_advlab, run_autoattack)
    for run in order:
        run()
    (aa, aa_s), (mine, mine_s) = runs["autoattack"], runs["advlab"]
    figures = {
        "checkpoint": args.checkpoint, "data": args.data, "n": args.n, "eps": args.eps, "norm": args.norm, "seed": args.seed,
        "threads": args.threads, "device": args.device, "autoattack_robust_accuracy": float(aa.double().mean()),
        "advlab_robust_accuracy": float(mine.double().mean()), "autoattack_seconds": aa_s, "advlab_seconds": mine_s,
        "time_ratio_advlab_over_autoattack": mine_s / aa_s,
        "advlab_robust_autoattack_breaks": int((mine & ~aa).sum()), "autoattack_robust_advlab_breaks": int((aa & ~mine).sum()),
        "advlab_notes": runs["advlab-notes"],
    }
    print(f"robust accuracy: AutoAttack {100 * figures['autoattack_robust_accuracy']:.2f}%  "
          f"advlab {100 * figures['advlab_robust_accuracy']:.2f}%")
    print(f"wall time: AutoAttack {aa_s:.1f} s  advlab {mine_s:.1f} s  ratio advlab/AutoAttack {mine_s / aa_s:.3f}")
    print(f"points advlab calls robust that AutoAttack breaks: {figures['advlab_robust_autoattack_breaks']}; "
          f"the reverse: {figures['autoattack_robust_advlab_breaks']}")
    for note in figures["advlab_notes"]:
        print(f"advlab note: {note}")
    if args.step_repeats:
        steps, tiny = 20, 1e-6  # a budget no point escapes at, so every step runs on the whole batch
        batch_x, batch_y = x[: min(len(x), 200)], y[: min(len(y), 200)]
        attack = APGD(model, eps=tiny, steps=steps, batch_size=1000)
        times = interleaved_medians({"advlab": lambda: attack(batch_x, batch_y),
                                     "floor": lambda: plain_apgd_steps(model, batch_x, batch_y, tiny, steps)},
                                    repeats=args.step_repeats, warmup=1)
        figures["apgd_step_ratio"] = times["advlab"] / times["floor"]
        figures["apgd_ms_per_step"] = 1e3 * times["advlab"] / steps
        print(f"APGD {steps} steps on {len(batch_x)} images: advlab {1e3 * times['advlab']:.1f} ms, floor "
              f"{1e3 * times['floor']:.1f} ms, ratio {figures['apgd_step_ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)))


if __name__ == "__main__":
    main()
