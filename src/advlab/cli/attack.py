"""`advlab attack`: one attack on a split, in memory (adversarial.npz) or streamed (OUT/examples)."""

from __future__ import annotations

import argparse

import torch

from advlab.attacks import make_attack
from advlab.cli.common import checkpoint_and_split, class_map, command_line, emit_json, load_model, stream_split
from advlab.data.shard import join_process_group, launched
from advlab.errors import InputError
from advlab.io import json_bytes, npz_bytes, write_files_atomic, write_json_atomic
from advlab.report.markdown import number, percent, table


def cmd_attack(args: argparse.Namespace) -> int:
    shard = join_process_group(args.device)  # under torchrun: shard the examples over the processes
    params, targets, out = args.params, args.targets, args.out
    if args.stream or launched():  # torchrun streams, with 1 process too
        from advlab.attacks.stream import stream_attack

        if isinstance(targets, int):
            raise InputError("--stream takes --targets random or least-likely (drawn per example), not one label")
        checkpoint = load_model(args, args.device)
        batches, data_name = stream_split(args, checkpoint, args.device, shard)
        attack = make_attack(args.method, checkpoint.model, batch_size=args.batch_size, seed=args.seed, **params)
        streamed = stream_attack(attack, batches, out / "examples", targets=targets, keep_adversarial=True,
                                 progress=not args.no_progress, shard=shard)
        if not shard.is_root:  # its results went to rank 0
            return 0
        summary, written = streamed.summary(), out / "examples"
        write_json_atomic(out / "summary.json", {"command": command_line(), "checkpoint": args.checkpoint, "model": checkpoint.model_name,
                                                 "data": data_name, "classes": class_map(batches), "params": streamed.params,
                                                 "summary": summary})
    else:
        checkpoint, data = checkpoint_and_split(args, args.device)
        data_name, written = data.name, out / "adversarial.npz"
        attack = make_attack(args.method, checkpoint.model, batch_size=args.batch_size, seed=args.seed, **params)
        if isinstance(targets, int):
            targets = torch.full_like(data.labels, targets)
        result = attack(data.images, data.labels, targets=targets)
        summary = result.summary()
        write_files_atomic({  # both files or neither
            written: npz_bytes(**result.arrays()),
            out / "summary.json": json_bytes({"command": command_line(), "checkpoint": args.checkpoint,
                                              "model": checkpoint.model_name, "data": data.name, "classes": class_map(data),
                                              "params": result.params,
                                              "summary": summary}),
        })
    rows = [
        ("images", summary["n"]),
        ("clean accuracy", percent(summary["clean_accuracy"], 2)),
        ("adversarial accuracy", percent(summary["adversarial_accuracy"], 2)),
        ("attack success rate", percent(summary["success_rate"], 2)),
        ("mean L-inf / L2 / distortion (successes)",
         f"{number(summary['mean_linf'])} / {number(summary['mean_l2'])} / {number(summary['mean_distortion'])}"),
        ("mean confidence on misclassified", percent(summary["mean_confidence_on_errors"])),
        ("time", f"{summary['seconds']:.3f} s ({summary['images_per_second']:.0f} images/s)"),
    ]
    print(f"{args.method} on {checkpoint.model_name} ({data_name}), params {params}")
    print(table(["", "value"], rows))
    print(f"wrote {written} and {out / 'summary.json'}")
    emit_json(args, out / "summary.json")
    return 0
