"""The proven robust-accuracy bracket of `advlab.exact.certify` on a PGD-trained ReLU MLP.

Targets: on the PGD-trained 784-100-100-10 MLP at eps .1 the bracket is exact (certified =
attacked) on at least 95% of the test images, within 120 s per image (issue 12); on the
PGD-trained MNIST CNN at eps .1 (Fashion-MNIST CNN at eps .03) on at least 80% (issue 20).
Run single-threaded per worker:

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/certify.py CHECKPOINT [--images 100] [--eps 0.1]
        [--jobs N] [--chunk 10] [--results FILE.jsonl] [--data-dir DIR]

--suite standard also runs advlab's attack-only evaluation (`evaluate_suite`, AutoAttack's
standard chain) on the same images, --autoattack Croce & Hein's AutoAttack (standard; needs
the comparison venv with pyautoattack, see bench/autoattack.py); each prints its robust
accuracy, the gap to the exact one (on the images the bracket settled), and any image it
breaks that certify proved robust (must be none: that would be an unsound proof).
--jobs N certifies chunks of `--chunk` images in N worker processes (one torch thread each).
With --results, every image's outcome is appended to FILE.jsonl as it finishes and a rerun
skips the images already there (resume after a kill); the summary covers the first --images.
CHECKPOINT: an advlab checkpoint (e.g. `advlab train mlp --adversarial pgd --eps 0.1 ...`).
Data: the test images of --data-dir (the four IDX files of MNIST or Fashion-MNIST), else real
MNIST from ../shared/data/mnist when present, else the embedded 5k.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from common import bench_data

from advlab.data import Splits
from advlab.data.sources import load_idx_dir
from advlab.exact import certify
from advlab.training.checkpoints import load_checkpoint

_STATE: dict = {}


def _data(data_dir: str | None) -> Splits:
    return bench_data() if data_dir is None else load_idx_dir(data_dir, Path(data_dir).name)


def _init(checkpoint: str, images: int, data_dir: str | None) -> None:
    torch.set_num_threads(1)
    _STATE["model"] = load_checkpoint(checkpoint).model.eval()
    _STATE["test"] = _data(data_dir).test.take(images)


def _run(indices: list[int], eps: float, time_limit: float, alpha_steps: int, bab: bool) -> list[dict]:
    test, index = _STATE["test"], torch.tensor(indices)
    result = certify(_STATE["model"], test.images[index], test.labels[index], eps=eps, time_limit=time_limit,
                     alpha_steps=alpha_steps, bab=bab, progress=False)
    return [{"index": i, "status": s, "method": m, "seconds": float(t)}
            for i, s, m, t in zip(indices, result.status, result.method, result.seconds.tolist())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=100, help="first test images")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--time-limit", type=float, default=120.0, help="complete-verification seconds per image")
    parser.add_argument("--alpha-steps", type=int, default=20)
    parser.add_argument("--no-bab", action="store_true", help="MILP instead of branch and bound")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--chunk", type=int, default=10, help="images per certify call")
    parser.add_argument("--results", type=Path, default=None, help="JSONL file: appended per image, resumed from")
    parser.add_argument("--suite", default=None, help="also run this attack suite (e.g. standard) and compare")
    parser.add_argument("--autoattack", action="store_true", help="also run AutoAttack standard (pyautoattack) and compare")
    parser.add_argument("--data-dir", default=None, help="folder of the four IDX files (MNIST or Fashion-MNIST)")
    args = parser.parse_args()

    done: dict[int, dict] = {}
    if args.results is not None and args.results.exists():
        for line in args.results.read_text().splitlines():
            record = json.loads(line)
            done[record["index"]] = record
    todo = [i for i in range(args.images) if i not in done]
    chunks = [todo[i : i + args.chunk] for i in range(0, len(todo), args.chunk)]
    print(f"{args.checkpoint}; eps {args.eps:g}; time limit {args.time_limit:g} s/image; jobs {args.jobs} "
          f"(1 torch thread each); {len(done)} image(s) resumed, {len(todo)} to run; "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    out = args.results.open("a") if args.results is not None else None
    work = (args.eps, args.time_limit, args.alpha_steps, not args.no_bab)
    with ProcessPoolExecutor(args.jobs, initargs=(args.checkpoint, args.images, args.data_dir), initializer=_init) as pool:
        futures = [pool.submit(_run, chunk, *work) for chunk in chunks]
        for future in as_completed(futures):
            for record in future.result():
                done[record["index"]] = record
                if out is not None:
                    out.write(json.dumps(record) + "\n")
                    out.flush()
            print(f"  {sum(i < args.images for i in done)}/{args.images} images done, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    if out is not None:
        out.close()
    wall = time.perf_counter() - start
    records = [done[i] for i in range(args.images)]
    counts = Counter(r["status"] for r in records)
    methods = Counter(r["method"] for r in records if r["method"])
    seconds = [r["seconds"] for r in records]
    n = len(records)
    lo = (counts["certified"] + counts["verified"]) / n
    hi = (n - counts["misclassified"] - counts["broken"]) / n
    settled = n - counts["unknown"]
    print(f"images {n}; wall {wall:.0f} s for {len(todo)} run here; per image (certify's share): median "
          f"{statistics.median(seconds):.2f} s, mean {statistics.mean(seconds):.2f} s, max {max(seconds):.2f} s; "
          f"load average at end {os.getloadavg()[0]:.2f}")
    print("status: " + ", ".join(f"{k}={counts[k]}" for k in ("misclassified", "certified", "verified", "broken", "unknown")))
    print("settled by: " + ", ".join(f"{k}={v}" for k, v in sorted(methods.items())))
    print(f"robust accuracy in [{100 * lo:.1f}%, {100 * hi:.1f}%]; exact (settled) on {settled}/{n} "
          f"= {100 * settled / n:.1f}% of the images")
    if args.suite is not None or args.autoattack:
        _attack_only(args, records)


def _attack_only(args: argparse.Namespace, records: list[dict]) -> None:
    """Attack-only robust accuracy on the same images (advlab's suite, AutoAttack), each
    against the bracket."""
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).model.eval()
    test = _data(args.data_dir).test.take(args.images)
    if args.suite is not None:
        from advlab.analysis.evaluation import evaluate_suite

        start = time.perf_counter()
        ev = evaluate_suite(model, test.images, test.labels, eps=args.eps, suite=args.suite, seed=0)
        _compare(f"advlab suite {args.suite}", ev.robust.tolist(), time.perf_counter() - start, records)
    if args.autoattack:
        from autoattack import autoattack  # bench/autoattack.py; needs pyautoattack (the comparison venv)

        start = time.perf_counter()
        robust = autoattack(model, test.images, test.labels, eps=args.eps, norm="linf", seed=0, batch=500,
                            device="cpu", quick=False)
        _compare("AutoAttack standard (pyautoattack 0.2.0)", robust.tolist(), time.perf_counter() - start, records)


def _compare(name: str, robust: list[bool], wall: float, records: list[dict]) -> None:
    """One attack-only evaluation against the bracket: its robust accuracy, its gap to the exact
    one on the settled images, and the images where the two disagree."""
    proven = [r["status"] in ("certified", "verified") for r in records]
    broken = [r["status"] in ("misclassified", "broken") for r in records]
    settled = [p or b for p, b in zip(proven, broken)]
    n, k = len(records), sum(settled)
    attack_settled = sum(r for r, s in zip(robust, settled) if s) / k
    exact_settled = sum(proven) / k
    unsound = [i for i in range(n) if proven[i] and not robust[i]]
    missed = [i for i in range(n) if broken[i] and robust[i]]
    print(f"{name}: {wall:.0f} s; attack-only robust accuracy {100 * sum(robust) / n:.1f}% "
          f"(bracket [{100 * sum(proven) / n:.1f}%, {100 * (n - sum(broken)) / n:.1f}%]); on the {k} settled "
          f"images exact {100 * exact_settled:.2f}% vs attack-only {100 * attack_settled:.2f}%: gap "
          f"{100 * (attack_settled - exact_settled):.2f} points; load average {os.getloadavg()[0]:.2f}")
    print(f"  images it breaks that certify proved robust (must be none): {unsound}; "
          f"images certify breaks that it left robust: {missed}")


if __name__ == "__main__":
    main()
