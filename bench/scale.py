"""Streaming and sharding at scale, on Fashion-MNIST's 60,000 training images.

memory:     peak RSS (/usr/bin/time, max resident set) of the same streamed evaluation
            (`advlab evaluate --stream`) on the first 10,000 and on all 60,000 images, with a
            cheap attack (FGSM and PGD-3) on a softmax model.
throughput: `torchrun --nproc_per_node=N -m advlab evaluate --stream` for N = 1 and N = 2 (one
            thread per process), interleaved, `--repeats` rounds: the wall time of the whole
            command (interpreter and torch start, gloo setup, model and data loading included)
            and of the evaluation itself (the "seconds" robustness.json records: from the model
            load to the end of the evaluation, the report not included), best of the rounds;
            the CPU time of all the command's processes (load-independent: how much work
            sharding adds); and whether the per-example results of
            every 2-process run are bit-identical to those of the 1-process runs. The workload
            (PGD with `--steps` steps, no early exit, on `--model`) is heavy enough that the
            fixed costs (3-8 s per command: torchrun and the workers import torch, gloo set-up,
            rank 0 writes the report) do not dominate: 20-40 s per 1-process evaluation of
            10,000 images on one core with the defaults (MLP, PGD-100). `--cpus 14,15` pins
            every run with `taskset -c 14,15` (a quiet 2-core measurement on a bigger machine). The
            machine's load average is printed before and after.

Both train their model first (`advlab train`, one epoch on the training set).

    python bench/scale.py memory --data-dir ../shared/data/fashion-mnist
    python bench/scale.py throughput --data-dir ../shared/data/fashion-mnist --images 10000 --repeats 2 [--cpus 14,15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PYTHON = sys.executable
TORCHRUN = str(Path(PYTHON).with_name("torchrun"))
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(work: Path, data_dir: str, model: str) -> Path:
    checkpoint = work / f"{model}.safetensors"
    subprocess.run([PYTHON, "-m", "advlab", "train", model, "--data", "fashion-mnist", "--data-dir", data_dir, "--epochs", "1",
                    "--out", str(checkpoint), "--no-progress"], check=True, env=_env())
    return checkpoint


def _evaluate(checkpoint: Path, data_dir: str, out: Path, images: int, attacks: list[str]) -> list[str]:
    return ["-m", "advlab", "evaluate", str(checkpoint), "--stream", "--data", "fashion-mnist", "--data-dir", data_dir,
            "--split", "train", "--limit", str(images), *attacks, "--batch-size", "500", "--no-progress", "--out", str(out)]


def memory(args: argparse.Namespace, work: Path) -> None:
    checkpoint = _train(work, args.data_dir, "softmax")
    attacks = ["--attacks", "fgsm,pgd", "--eps", "0,0.1", "-p", "pgd.steps=3", "-p", "pgd.restarts=1"]
    peaks = {}
    for images in (10_000, 60_000):
        out = work / f"mem-{images}"
        command = ["/usr/bin/time", "-f", "%M", PYTHON, *_evaluate(checkpoint, args.data_dir, out, images, attacks)]
        run = subprocess.run(command, env=_env(), capture_output=True, text=True, check=True)
        peaks[images] = int(run.stderr.strip().splitlines()[-1]) / 1024  # KiB -> MiB
        print(f"{images:>6} images: peak RSS {peaks[images]:.1f} MiB", flush=True)
    print(f"ratio 60,000 / 10,000 = {peaks[60_000] / peaks[10_000]:.3f} (target <= 1.2)")


def _columns(out: Path) -> dict[str, np.ndarray]:
    """Every per-example column of a run, in stream order (not the timings)."""
    parts = sorted((out / "examples").glob("part-*.npz"))
    with np.load(parts[0]) as first:
        keys = [k for k in first.files if not k.endswith(":seconds") and k != "_meta"]
    columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for part in parts:
        with np.load(part) as data:
            for key in keys:
                columns[key].append(data[key])
    return {k: np.concatenate(v) for k, v in columns.items()}


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def throughput(args: argparse.Namespace, work: Path) -> None:
    pin = ["taskset", "-c", args.cpus] if args.cpus else []
    print(f"load average (1/5/15 min) before: {_load()}; {os.cpu_count()} cores, runs pinned to: {args.cpus or 'not pinned'}", flush=True)
    checkpoint = _train(work, args.data_dir, args.model)
    attacks = ["--attacks", "pgd", "--eps", "0.1", "-p", f"pgd.steps={args.steps}", "-p", "pgd.restarts=1", "-p", "pgd.early_exit=false"]
    times: dict[int, list[float]] = {1: [], 2: []}
    inner: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    reference: dict[str, np.ndarray] | None = None
    identical = True
    for repeat in range(args.repeats):
        for procs in (1, 2):
            out = work / f"tp-{procs}-{repeat}"
            command = [*pin, TORCHRUN, "--standalone", f"--nproc_per_node={procs}",
                       *_evaluate(checkpoint, args.data_dir, out, args.images, attacks)]
            start, cpu = time.perf_counter(), _children_cpu()
            subprocess.run(command, env=_env(), check=True, capture_output=True)
            times[procs].append(time.perf_counter() - start)
            cpus[procs].append(_children_cpu() - cpu)
            inner[procs].append(json.loads((out / "robustness.json").read_text())["seconds"])
            columns = _columns(out)
            reference = reference or columns
            same = columns.keys() == reference.keys() and all(np.array_equal(columns[k], reference[k]) for k in columns)
            identical &= same
            print(f"repeat {repeat}: {procs} process(es): command {times[procs][-1]:.1f} s, evaluation {inner[procs][-1]:.1f} s, "
                  f"CPU time of all its processes {cpus[procs][-1]:.1f} s, "
                  f"per-example results identical to the first run: {same}; load average {_load()}", flush=True)
    for label, measured in (("evaluation", inner), ("whole command", times)):
        best = {p: min(t) for p, t in measured.items()}
        print(f"{label}: {args.images} images, PGD-{args.steps} on {args.model}, best of {args.repeats}: 1 process {best[1]:.1f} s "
              f"({args.images / best[1]:.0f} img/s), 2 processes {best[2]:.1f} s ({args.images / best[2]:.0f} img/s); "
              f"speed-up {best[1] / best[2]:.2f}x (target >= 1.8)")
    cpu = {p: min(t) for p, t in cpus.items()}
    print(f"CPU time of the whole command (all processes, user + system), best of {args.repeats}: 1 process {cpu[1]:.1f} s, "
          f"2 processes {cpu[2]:.1f} s: the 2-process run does {cpu[2] / cpu[1]:.2f}x the work (a load-independent check: "
          f"near 1 means sharding adds little work, so on two free cores the speed-up is bounded by the fixed start-up only)")
    print(f"per-example results bit-identical over every run (1 and 2 processes): {identical}")
    print(f"load average (1/5/15 min) after: {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "throughput"])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST folder (../shared/data/fashion-mnist)")
    parser.add_argument("--images", type=int, default=10_000, help="throughput: images evaluated")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: interleaved rounds")
    parser.add_argument("--model", default="mlp", help="throughput: registered model to train and attack (mlp, cnn, ...)")
    parser.add_argument("--steps", type=int, default=100, help="throughput: PGD steps per example")
    parser.add_argument("--cpus", help="throughput: pin every run to these cores (taskset -c LIST, e.g. 14,15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="advlab-scale-") as folder:
        (memory if args.what == "memory" else throughput)(args, Path(folder))


if __name__ == "__main__":
    main()
