"""`advlab exact`: exact minimal adversarial distances of a model on a split."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from advlab.cli.common import checkpoint_and_split, class_map, command_line, emit_json
from advlab.io import write_json_atomic, write_npz_atomic
from advlab.report.markdown import number, table


def cmd_exact(args: argparse.Namespace) -> int:
    """Exact minimal distances: closed forms for linear models, MILP for small ReLU networks."""
    from advlab.exact import minimal_distances

    checkpoint, data = checkpoint_and_split(args, torch.device("cpu"))
    start = time.perf_counter()
    result = minimal_distances(checkpoint.model, data.images, data.labels, norm=args.norm, time_limit=args.time_limit,
                               progress=not args.no_progress)
    summary = {**result.summary(), "seconds": time.perf_counter() - start}
    out = Path(args.out)
    write_npz_atomic(out / "witnesses.npz", witness=result.witness.detach().float().cpu().numpy(), labels=data.labels.numpy())
    write_json_atomic(out / "exact.json", {"command": command_line(), "checkpoint": args.checkpoint,
                                           "model": checkpoint.model_name, "data": data.name, "classes": class_map(data),
                                           "norm": args.norm,
                                           "summary": summary, "per_example": result.per_example()})
    rows = [(k, number(v, 4) if isinstance(v, float) else v) for k, v in summary.items()]
    print(f"exact minimal {args.norm} distances for {checkpoint.model_name} on {data.name}")
    print(table(["", "value"], rows))
    print(f"wrote {out / 'exact.json'} and {out / 'witnesses.npz'}")
    emit_json(args, out / "exact.json")
    return 0
