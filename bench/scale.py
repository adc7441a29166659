"""Streaming and sharding at scale, on Fashion-MNIST's 60,000 training images.

memory:     peak RSS (/usr/bin/time, max resident set) of the same streamed evaluation
            (`advlab evaluate --stream`) on the first 10,000 and on all 60,000 images.
throughput: wall time of `torchrun --nproc_per_node=N -m advlab evaluate --stream` for N = 1
            and N = 2 (one thread per process), interleaved: of the whole command, and of the
            evaluation itself (model and data loaded, the "seconds" robustness.json records);
            and whether the per-example results of the runs are bit-identical.

Both train one small model first (`advlab train`, one epoch on the training set) and use a
cheap attack (FGSM and a few PGD steps) so that they fit a shared 2-core machine.

    python bench/scale.py memory --data-dir ../shared/data/fashion-mnist
    python bench/scale.py throughput --data-dir ../shared/data/fashion-mnist --images 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
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
    parts = sorted((out / "examples").glob("part-*.npz"))
    return {key: np.concatenate([np.load(p)[key] for p in parts]) for key in np.load(parts[0]).files if not key.endswith(":seconds")}


def throughput(args: argparse.Namespace, work: Path) -> None:
    checkpoint = _train(work, args.data_dir, "mlp")
    attacks = ["--attacks", "pgd", "--eps", "0.1", "-p", "pgd.steps=5", "-p", "pgd.restarts=1", "-p", "pgd.early_exit=false"]
    times: dict[int, list[float]] = {1: [], 2: []}
    inner: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for procs in (1, 2):
            out = work / f"tp-{procs}-{repeat}"
            command = [TORCHRUN, "--standalone", f"--nproc_per_node={procs}", *_evaluate(checkpoint, args.data_dir, out, args.images, attacks)]
            start = time.perf_counter()
            subprocess.run(command, env=_env(), check=True, capture_output=True)
            times[procs].append(time.perf_counter() - start)
            inner[procs].append(json.loads((out / "robustness.json").read_text())["seconds"])
            print(f"repeat {repeat}: {procs} process(es): command {times[procs][-1]:.1f} s, evaluation {inner[procs][-1]:.1f} s", flush=True)
    one, two = _columns(work / "tp-1-0"), _columns(work / "tp-2-0")
    identical = one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)
    for label, measured in (("evaluation", inner), ("whole command", times)):
        best = {p: min(t) for p, t in measured.items()}
        print(f"{label}: {args.images} images, PGD-5 on mlp, best of {args.repeats}: 1 process {best[1]:.1f} s "
              f"({args.images / best[1]:.0f} img/s), 2 processes {best[2]:.1f} s ({args.images / best[2]:.0f} img/s); "
              f"speed-up {best[1] / best[2]:.2f}x (target >= 1.8)")
    print(f"per-example results bit-identical between 1 and 2 processes: {identical}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "throughput"])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST folder (../shared/data/fashion-mnist)")
    parser.add_argument("--images", type=int, default=10_000, help="throughput: images evaluated")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: interleaved rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="advlab-scale-") as folder:
        (memory if args.what == "memory" else throughput)(args, Path(folder))


if __name__ == "__main__":
    main()
