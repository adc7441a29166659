"""`advlab reproduce`: a paper's experiment end to end (`advlab.experiments.registry`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from advlab.cli.common import command_line


def cmd_reproduce(args: argparse.Namespace) -> int:
    from advlab.experiments.registry import Request
    from advlab.report.reproduce import reproduce

    request = Request(data_dir=args.data_dir, out=Path(args.out), seed=args.seed, quick=args.quick, images=args.images,
                      eps=args.eps, progress=not args.no_progress, device=str(args.device), jobs=args.jobs, epochs=args.epochs,
                      train_images=args.train_images, models=args.models, seeds=args.seeds)
    print(f"{args.experiment}: writing to {args.out} (a rerun resumes) ...", flush=True)
    paths, lines = reproduce(args.experiment, request, command=command_line())
    for line in lines:
        print(line)
    for path in paths:
        print(f"wrote {path}")
    return 0
