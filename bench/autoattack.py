"""AutoAttack (pyautoattack==0.2.0, Croce & Hein's code) vs advlab's suites, side by side.

Same model, same test images (the first --n), same eps, same threads and device. AutoAttack's
standard version runs with each of --seeds inside advlab's CPU fast path (`advlab.models.fast`:
channels-last kernels, column input gradients, which advlab's attacks enter by themselves), so
that the headline ratio measures the attacks' own work, not the kernels;
--autoattack-as-shipped adds AutoAttack off the fast path (first seed) as a second column.
advlab runs each --suite (standard, fast, malt) with each seed. The two libraries alternate
(--rounds rounds, the first one chosen by --first; medians of the times).

Both attack the same wrapper of the model (`bench/malt.py`'s `Counted`), which counts the
examples of every forward pass and of every backward pass through it. Printed per run: robust
accuracy, passes, CPU and wall seconds; then the per-example agreement (points only one library
breaks, AutoAttack's own seed-to-seed noise) and the ratios of advlab's passes and CPU time over
AutoAttack's (`bench/autoattack_pair.py`'s `report`). Then APGD's per-step cost against a
plain-PyTorch floor (`plain_apgd_steps`), interleaved, and against the same floor run on advlab's
CPU fast path (the bookkeeping cost alone); --step-repeats 0 skips it.

--wrap quantised|saturated: both libraries attack the checkpoint's model behind `bench/suites.py`'s
input rounding (zero input gradients: deliberately masked) or softmax(1e4 * logits) (near one-hot
outputs), the two masked models of the suites bench.

--certify: advlab first proves points robust with interval and CROWN bounds (`advlab.exact.certify`
with alpha_steps=0, no MILP) and attacks only the rest (`evaluate_suite(..., skip_certified=True)`).
--quick: both sides at a tenth of the budget (advlab's `quick` suite; AutoAttack
`version="custom"` with the same iterations, targets and queries), for CI-sized runs only.

Needs the comparison environment (`make .venv-compare/.installed`, or any venv with advlab's pins
plus pyautoattack==0.2.0), e.g. from the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv-compare/bin/python bench/autoattack.py CHECKPOINT --data mnist \
        --n 100 --eps 0.3 --threads 1 --suite fast,standard --seeds 0,1,2 --step-repeats 0
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from autoattack_pair import report
from common import interleaved_medians, machine, synchronize
from malt import Counted
from suites import Quantised, Saturated

from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import APGD
from advlab.data.sources import load_idx_dir
from advlab.models.fast import cpu_fast_path
from advlab.training import load_checkpoint

SUITE_CHOICES = ("standard", "fast", "malt")
WRAPS = {"quantised": Quantised, "saturated": Saturated}  # the masked models of bench/suites.py


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
    parser.add_argument("--suite", type=names(SUITE_CHOICES), default=["standard"],
                        help=f"advlab's suites, comma-separated, from {', '.join(SUITE_CHOICES)} (default standard)")
    parser.add_argument("--seeds", type=seeds, default=[0], help="seeds of both libraries, e.g. 0,1,2 (default 0)")
    parser.add_argument("--advlab-seeds", type=seeds, help="seeds of advlab's suites if not --seeds, e.g. 0,1,2")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both libraries)")
    parser.add_argument("--first", default="autoattack", choices=["autoattack", "advlab"])
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the evaluations (medians of the times)")
    parser.add_argument("--only", choices=["autoattack", "advlab", "steps"],
                        help="run one library alone (pair the --json files with bench/autoattack_pair.py), "
                        "or only the APGD step-cost comparison")
    parser.add_argument("--wrap", choices=sorted(WRAPS), help="attack the model behind an input rounding (quantised) or a saturating softmax")
    parser.add_argument("--certify", action="store_true", help="advlab skips the points CROWN bounds prove robust")
    parser.add_argument("--autoattack-as-shipped", action="store_true",
                        help="also run AutoAttack off advlab's CPU fast path, as shipped (first seed; a second column): "
                        "the headline ratio is always against AutoAttack inside the fast path")
    parser.add_argument("--quick", action="store_true", help="a tenth of the budget on both sides (not for reported figures)")
    parser.add_argument("--step-repeats", type=int, default=5, help="rounds of the APGD step-cost comparison (0: skip)")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD steps in the step-cost comparison")
    parser.add_argument("--json", help="write the figures here (with every run's per-example outcome)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data" / args.data)
    test = load_idx_dir(data_dir, args.data).test
    x, y = test.images[: args.n].to(args.device), test.labels[: args.n].to(args.device)
    model = load_checkpoint(args.checkpoint, device=args.device).model.eval().requires_grad_(False)
    if args.wrap:
        model = WRAPS[args.wrap](model).eval()
    counted = Counted(model).eval()  # both libraries attack this: every pass through the model is counted
    certify = None
    if args.certify:  # interval and CROWN bounds only: alpha-CROWN's optimisation costs more than it saves here
        from advlab.exact import certify as certify_bounds

        certify = functools.partial(certify_bounds, alpha_steps=0)
    advlab_seeds = args.advlab_seeds or args.seeds
    suites = ["quick"] if args.quick else args.suite
    load = os.getloadavg()
    print(f"{args.checkpoint}{' behind ' + args.wrap if args.wrap else ''} on {args.data} test[:{args.n}], {args.norm} eps={args.eps}, "
          f"{'quick' if args.quick else 'full'} budgets; AutoAttack standard seeds {','.join(map(str, args.seeds))} inside advlab's "
          f"CPU fast path{' and seed ' + str(args.seeds[0]) + ' as shipped' if args.autoattack_as_shipped else ''}; advlab "
          f"{', '.join(suites)} seeds {','.join(map(str, advlab_seeds))}; advlab skips points interval/CROWN bounds prove robust: "
          f"{'ON' if args.certify else 'off'}; {machine()}, device {args.device}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
          flush=True)

    # per evaluation, over the rounds: the robust outcome (one per round: seeded, it does not change), passes, wall
    # and CPU seconds (CPU seconds of this process: on a shared machine the wall time swings with the other jobs'
    # load, the CPU time of a one-thread run much less)
    done: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    notes: dict[str, list[str]] = {}

    def timed(key: tuple[str, str, int], evaluate: Callable[[], torch.Tensor]) -> None:
        counted.reset()
        synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        robust = evaluate()
        synchronize()
        run = {"library": key[0], "variant": key[1], "seed": key[2], "robust": "".join("1" if r else "0" for r in robust.tolist()),
               "forward_passes": counted.forward_passes, "backward_passes": counted.backward_passes,
               "wall_seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
        done.setdefault(key, []).append(run)
        print(f"  {key[0]} {key[1]} seed {key[2]}: {100 * run['robust'].count('1') / args.n:.2f}% robust, "
              f"{run['forward_passes'] + run['backward_passes']:,} passes, {run['wall_seconds']:.1f} s wall, "
              f"{run['cpu_seconds']:.1f} s CPU; load average {os.getloadavg()[0]:.2f}", flush=True)

    def run_autoattack(seed: int, fast_path: bool) -> Callable[[], None]:
        def evaluate() -> torch.Tensor:
            with cpu_fast_path(model) if fast_path else contextlib.nullcontext():
                return autoattack(counted, x, y, eps=args.eps, norm=args.norm, seed=seed, batch=args.batch_size,
                                  device=args.device, quick=args.quick).cpu()
        return lambda: timed(("autoattack", "fast-path" if fast_path else "as-shipped", seed), evaluate)

    def run_advlab(suite: str, seed: int) -> Callable[[], None]:
        def evaluate() -> torch.Tensor:
            ev = evaluate_suite(counted, x, y, eps=args.eps, norm=args.norm, suite=suite, batch_size=args.batch_size,
                                seed=seed, skip_certified=args.certify, certify=certify)
            notes[f"{suite} seed {seed}"] = ev.notes + [
                f"seconds per stage: {json.dumps({k: round(v, 2) for k, v in ev.seconds.items()})}",
                f"robust accuracy after each stage: {json.dumps({k: round(v, 4) for k, v in ev.after.items()})}",
                f"broken by: {json.dumps(ev.broken_counts())}"] + (
                [f"certified by bounds before any attack: {int(ev.certified.sum())} of {len(y)}"] if ev.certified is not None else [])
            return ev.robust.cpu()
        return lambda: timed(("advlab", suite, seed), evaluate)

    aa_runs = [run_autoattack(seed, True) for seed in args.seeds]
    aa_runs += [run_autoattack(args.seeds[0], False)] if args.autoattack_as_shipped else []
    advlab_runs = [run_advlab(suite, seed) for suite in suites for seed in advlab_seeds]
    # alternate the libraries: a slow drift of the machine's load falls on both
    order = [run for pair in itertools.zip_longest(aa_runs, advlab_runs) for run in pair if run]
    if args.first == "advlab":
        order = [run for pair in itertools.zip_longest(advlab_runs, aa_runs) for run in pair if run]
    if args.only:
        order = {"autoattack": aa_runs, "advlab": advlab_runs, "steps": []}[args.only]
    for _ in range(args.rounds):
        for run in order:
            run()
    runs = [rounds[0] | {"wall_seconds": statistics.median(r["wall_seconds"] for r in rounds),
                         "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rounds)} for rounds in done.values()]
    figures: dict[str, Any] = {
        "checkpoint": args.checkpoint, "wrap": args.wrap, "data": args.data, "n": args.n, "eps": args.eps, "norm": args.norm,
        "threads": args.threads, "device": args.device, "quick": args.quick, "certify": args.certify, "rounds": args.rounds,
        "machine": machine(), "load_average_start": load, "advlab_notes": notes, "runs": runs,
    }
    if runs:
        lines, derived = report(runs)
        figures |= derived
        print(f"times: median of {args.rounds} round(s); passes: forward and backward, counted per example")
        print("\n".join(lines))
    for name, lines in notes.items():
        for note in lines:
            print(f"advlab {name} note: {note}")
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


def seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (argparse type)."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    return values


def names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of `choices`."""
    def parse(text: str) -> list[str]:
        values = text.split(",")
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; expected {', '.join(choices)}")
        return values
    return parse


if __name__ == "__main__":
    main()
