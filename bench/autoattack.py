"""AutoAttack (pyautoattack==0.2.0, Croce & Hein's code) vs advlab `--suite standard`, side by side.

Same model, same test images (the first --n), same eps and seed, same threads and device; the two
libraries alternate (--rounds rounds, the first one chosen by --first; medians reported). Prints
robust accuracy, wall time and the per-example comparison (points advlab calls robust that
AutoAttack breaks, and the reverse), then APGD's per-step cost against a plain-PyTorch floor
(`plain_apgd_steps`), interleaved, and against the same floor run on advlab's CPU fast path (the
bookkeeping cost alone).

--certify: advlab first proves points robust with interval and CROWN bounds (`advlab.exact.certify`
with alpha_steps=0, no MILP) and attacks only the rest (`evaluate_suite(..., skip_certified=True)`); the output says
whether it was on. --quick: both sides at a tenth of the budget (advlab's `quick` suite; AutoAttack
`version="custom"` with the same iterations, targets and queries), for CI-sized runs only.
--autoattack-fast-path: AutoAttack runs inside advlab's CPU fast path too (`advlab.models.fast`:
channels-last kernels, column input gradients), which advlab's attacks enter by themselves: the
part of the difference that is the fast path rather than the attacks' own code.

Needs the comparison environment (`make .venv-compare/.installed`, or any venv with advlab's pins
plus pyautoattack==0.2.0), e.g. from the repository root:

    PYTHONPATH=src .venv-compare/bin/python bench/autoattack.py CHECKPOINT --data mnist --n 100 --eps 0.3 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import interleaved_medians, machine, synchronize

from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import APGD
from advlab.data.sources import load_idx_dir
from advlab.models.fast import cpu_fast_path
from advlab.training import load_checkpoint


def autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, seed: int, batch: int,
               device: str, quick: bool) -> torch.Tensor:
    """Per example: robust under AutoAttack's standard version (with --quick: its attacks at the
    budgets of advlab's `quick` suite)."""
    from pyautoattack import AutoAttack

    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    if not quick:
        adversary = AutoAttack(model, norm=norm_name, eps=eps, version="standard", seed=seed, device=device)
    else:
        adversary = AutoAttack(model, norm=norm_name, eps=eps, version="custom", seed=seed, device=device,
                               attacks=["apgd-ce", "apgd-t", "fab-t", "square"])
        for apgd, targets in ((adversary.apgd, None), (adversary.apgd_targeted, 3)):
            apgd.n_iter, apgd.n_restarts = 20, 1
            apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = max(int(0.22 * 20), 1), max(int(0.06 * 20), 1), max(int(0.03 * 20), 1)
            if targets:
                apgd.n_target_classes = targets
        adversary.fab.n_iter, adversary.fab.n_target_classes = 20, 3
        adversary.square.n_queries, adversary.square.resc_schedule = 500, True
    adversary.verbose = True  # its own log (logger "auto-attack", debug level): robust accuracy and time after each attack
    log = logging.getLogger("auto-attack")
    if not log.handlers:
        log.addHandler(logging.StreamHandler(sys.stdout))
        log.setLevel(logging.DEBUG)
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch)
    with torch.no_grad():
        return (model(x_adv.to(device)).argmax(1) == y.to(device)).cpu()


def plain_apgd_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """The floor: a bare APGD in plain PyTorch, as the reference code runs it on a batch whose points
    all stay robust: a random start on the surface of the ball (torch.rand), then per step the
    momentum step (sign step of 2 eps, projection, momentum .75, projection) and one
    forward+backward; no best-point tracking, step-size checkpoints, early exit or validation."""
    low, high = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    t = 2 * torch.rand(x.shape, dtype=x.dtype, device=x.device) - 1
    x_adv = torch.clamp(x + eps * t / t.flatten(1).abs().amax(1).view(-1, *[1] * (x.ndim - 1)), low, high)
    x_old = x_adv
    grad = torch.zeros_like(x)
    for i in range(steps + 1):
        if i:
            a = 0.75 if i > 1 else 1.0
            z = torch.clamp(x_adv + 2 * eps * grad.sign(), low, high)
            x_adv, x_old = torch.clamp(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_old), low, high), x_adv
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach()
    return x_adv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an advlab checkpoint (.safetensors): MLP or CNN")
    parser.add_argument("--data", default="mnist", help="mnist or fashion-mnist")
    parser.add_argument("--data-dir", help="folder with the IDX files (default: <repository>/../shared/data/<data>)")
    parser.add_argument("--n", type=int, default=100, help="the first n test images")
    parser.add_argument("--eps", type=float, required=True)
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both libraries)")
    parser.add_argument("--first", default="autoattack", choices=["autoattack", "advlab"])
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the two evaluations (medians reported)")
    parser.add_argument("--only", choices=["autoattack", "advlab", "steps"],
                        help="run one library alone (profiling), or only the APGD step-cost comparison")
    parser.add_argument("--certify", action="store_true", help="advlab skips the points CROWN bounds prove robust")
    parser.add_argument("--autoattack-fast-path", action="store_true",
                        help="run AutoAttack inside advlab's CPU fast path too (advlab.models.fast.cpu_fast_path): "
                        "how much of the difference is the fast path")
    parser.add_argument("--quick", action="store_true", help="a tenth of the budget on both sides (not for reported figures)")
    parser.add_argument("--step-repeats", type=int, default=5, help="rounds of the APGD step-cost comparison (0: skip)")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD steps in the step-cost comparison")
    parser.add_argument("--json", help="write the figures here (with each library's per-example outcome: pair two --only "
                        "runs with bench/autoattack_pair.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data" / args.data)
    test = load_idx_dir(data_dir, args.data).test
    x, y = test.images[: args.n].to(args.device), test.labels[: args.n].to(args.device)
    model = load_checkpoint(args.checkpoint, device=args.device).model.eval().requires_grad_(False)
    certify = None
    if args.certify:  # interval and CROWN bounds only: alpha-CROWN's optimisation costs more than it saves here
        from advlab.exact import certify as certify_bounds

        certify = functools.partial(certify_bounds, alpha_steps=0)
    load = os.getloadavg()
    print(f"{args.checkpoint} on {args.data} test[:{args.n}], {args.norm} eps={args.eps}, seed {args.seed}, "
          f"{'quick' if args.quick else 'standard'} budgets, AutoAttack on advlab's CPU fast path: "
          f"{'ON' if args.autoattack_fast_path else 'off'}, advlab skips points interval/CROWN bounds prove robust: {'ON' if args.certify else 'off'}; "
          f"{machine()}, device {args.device}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    # per run: (robust per point, wall seconds, CPU seconds of this process: on a shared machine the
    # wall time swings with the other jobs' load, the CPU time of a 1-thread run much less)
    runs: dict[str, list[tuple[torch.Tensor, float, float]]] = {"autoattack": [], "advlab": []}
    notes: list[str] = []
    broken_by: list[str] = []

    def run_autoattack() -> None:
        synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        with cpu_fast_path(model) if args.autoattack_fast_path else contextlib.nullcontext():
            robust = autoattack(model, x, y, eps=args.eps, norm=args.norm, seed=args.seed, batch=args.batch_size,
                                device=args.device, quick=args.quick)
        runs["autoattack"].append((robust, time.perf_counter() - start, time.process_time() - cpu))
        print(f"  AutoAttack: {100 * float(robust.double().mean()):.2f}% robust, {runs['autoattack'][-1][1]:.1f} s wall, "
              f"{runs['autoattack'][-1][2]:.1f} s CPU; load average {os.getloadavg()[0]:.2f}", flush=True)

    def run_advlab() -> None:
        synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        ev = evaluate_suite(model, x, y, eps=args.eps, norm=args.norm, suite="quick" if args.quick else "standard",
                            batch_size=args.batch_size, seed=args.seed, skip_certified=args.certify, certify=certify)
        synchronize()
        runs["advlab"].append((ev.robust.cpu(), time.perf_counter() - start, time.process_time() - cpu))
        notes[:] = ev.notes + [f"seconds per stage: {json.dumps({k: round(v, 2) for k, v in ev.seconds.items()})}",
                               f"robust accuracy after each stage: {json.dumps({k: round(v, 4) for k, v in ev.after.items()})}",
                               f"broken by: {json.dumps(ev.broken_counts())}"]
        broken_by[:] = ev.broken_by
        if ev.certified is not None:
            notes.append(f"certified by bounds before any attack: {int(ev.certified.sum())} of {len(y)}")
        print(f"  advlab: {100 * ev.robust_accuracy:.2f}% robust, {runs['advlab'][-1][1]:.1f} s wall, "
              f"{runs['advlab'][-1][2]:.1f} s CPU; load average {os.getloadavg()[0]:.2f}", flush=True)

    order = [run_autoattack, run_advlab] if args.first == "autoattack" else [run_advlab, run_autoattack]
    if args.only:
        order = {"autoattack": [run_autoattack], "advlab": [run_advlab], "steps": []}[args.only]
    for _ in range(args.rounds):
        for run in order:
            run()
    figures: dict[str, Any] = {
        "checkpoint": args.checkpoint, "data": args.data, "n": args.n, "eps": args.eps, "norm": args.norm, "seed": args.seed,
        "threads": args.threads, "device": args.device, "quick": args.quick, "certify": args.certify,
        "autoattack_fast_path": args.autoattack_fast_path, "rounds": args.rounds,
        "load_average_start": load, "advlab_notes": notes, "advlab_broken_by": broken_by,
    }
    for name, done in runs.items():
        if done:
            figures[f"{name}_robust_accuracy"] = float(done[0][0].double().mean())
            figures[f"{name}_seconds"] = statistics.median(t for _, t, _ in done)
            figures[f"{name}_cpu_seconds"] = statistics.median(c for _, _, c in done)
            figures[f"{name}_robust_per_example"] = "".join("1" if r else "0" for r in done[0][0].tolist())
    if not args.only:
        aa, mine = runs["autoattack"][0][0], runs["advlab"][0][0]
        aa_s, mine_s = figures["autoattack_seconds"], figures["advlab_seconds"]
        figures.update(time_ratio_advlab_over_autoattack=mine_s / aa_s,
                       cpu_time_ratio_advlab_over_autoattack=figures["advlab_cpu_seconds"] / figures["autoattack_cpu_seconds"],
                       advlab_robust_autoattack_breaks=int((mine & ~aa).sum()), autoattack_robust_advlab_breaks=int((aa & ~mine).sum()))
        print(f"robust accuracy: AutoAttack {100 * figures['autoattack_robust_accuracy']:.2f}%  "
              f"advlab {100 * figures['advlab_robust_accuracy']:.2f}%")
        print(f"wall time (median of {args.rounds}): AutoAttack {aa_s:.1f} s  advlab {mine_s:.1f} s  ratio advlab/AutoAttack {mine_s / aa_s:.3f}")
        print(f"CPU time (median of {args.rounds}): AutoAttack {figures['autoattack_cpu_seconds']:.1f} s  advlab "
              f"{figures['advlab_cpu_seconds']:.1f} s  ratio advlab/AutoAttack {figures['cpu_time_ratio_advlab_over_autoattack']:.3f}")
        print(f"points advlab calls robust that AutoAttack breaks: {figures['advlab_robust_autoattack_breaks']}; "
              f"the reverse: {figures['autoattack_robust_advlab_breaks']}")
    for note in notes:
        print(f"advlab note: {note}")
    if args.step_repeats:
        steps, tiny = args.apgd_steps, 1e-6  # a budget no point escapes at, so every step runs on the whole batch
        with torch.no_grad():  # the correctly classified points: APGD skips the others, the floor would not
            correct = (model(x).argmax(1) == y).nonzero().flatten()[:200]
        batch_x, batch_y = x[correct], y[correct]
        attack = APGD(model, eps=tiny, steps=steps, batch_size=1000, progress=False)
        def floor_on_fast_path() -> torch.Tensor:
            with cpu_fast_path(model):
                return plain_apgd_steps(model, batch_x, batch_y, tiny, steps)

        candidates = {"advlab": lambda: attack(batch_x, batch_y), "floor": lambda: plain_apgd_steps(model, batch_x, batch_y, tiny, steps),
                      "floor-fast": floor_on_fast_path}
        clock = time.process_time if args.device == "cpu" else time.perf_counter  # CPU seconds: steadier under load
        times = interleaved_medians(candidates, repeats=args.step_repeats, warmup=1, clock=clock)
        figures["apgd_step_ratio"] = times["advlab"] / times["floor"]
        figures["apgd_step_ratio_floor_on_fast_path"] = times["advlab"] / times["floor-fast"]
        figures["apgd_ms_per_step"] = 1e3 * times["advlab"] / steps
        load = os.getloadavg()
        print(f"APGD {steps} steps on {len(batch_x)} images ({'CPU' if args.device == 'cpu' else 'wall'} time, median of "
              f"{args.step_repeats}, interleaved): advlab {1e3 * times['advlab']:.1f} ms, floor {1e3 * times['floor']:.1f} ms "
              f"(ratio {figures['apgd_step_ratio']:.3f}), the floor on advlab's CPU fast path {1e3 * times['floor-fast']:.1f} ms "
              f"(ratio {figures['apgd_step_ratio_floor_on_fast_path']:.3f}); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    figures["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)))


if __name__ == "__main__":
    main()
