"""`advlab explore`: the self-contained interactive page on the linear argument."""

from __future__ import annotations

import argparse

from advlab.cli.common import command_line
from advlab.data import load_mnist
from advlab.training import load_checkpoint


def cmd_explore(args: argparse.Namespace) -> int:
    from advlab.experiments.explore import explorer_data, fig2_explorer_data
    from advlab.report.explore import build_payload, write_page

    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    splits = load_mnist(args.data_dir)
    if checkpoint is not None:
        data = explorer_data(checkpoint.model, splits, checkpoint.classes or [], progress=not args.no_progress)
    else:
        data = fig2_explorer_data(splits, seed=args.seed, progress=not args.no_progress)
    path = write_page(build_payload(data), args.out, command=command_line())
    print(f"wrote {path}")
    print(f"open it in a browser (it needs no network): {path.resolve().as_uri()}")
    return 0
