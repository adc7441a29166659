"""advlab's command line, the commands that attack a model: attack, evaluate (eps grid or suite)
and exact; with the helpers every command shares (the command line as run, the data splits)."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advlab.attacks import make_attack
from advlab.data import Dataset, Splits, load_data
from advlab.data.catalog import stream_data
from advlab.data.shard import Shard, join_process_group, launched
from advlab.errors import InputError
from advlab.io import json_bytes, npz_bytes, write_files_atomic, write_json_atomic, write_npz_atomic
from advlab.report.markdown import number, percent, table
from advlab.training import Checkpoint, load_checkpoint

def command_line() -> str:
    return "advlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def splits_of(args: argparse.Namespace, classes: Sequence[int] | None = None) -> Splits:
    splits = load_data(args.data, args.data_dir)
    return splits.select_classes(classes) if classes else splits


# ---- attacks ---------------------------------------------------------------------------------
def _load_model(args: argparse.Namespace, device: torch.device) -> Checkpoint:
    """An advlab checkpoint, or --model (package.module:factory with --weights, or a .pt2 program)."""
    from advlab.models.external import load_external_model

    if (args.checkpoint is None) == (args.model is None):
        raise InputError("give either a CHECKPOINT or --model package.module:factory|FILE.pt2, not both or neither")
    if args.weights is not None and args.model is None:
        raise InputError("--weights goes with --model package.module:factory")
    if args.model is not None:
        return Checkpoint(load_external_model(args.model, args.weights).to(device), args.model, {}, {})
    return load_checkpoint(args.checkpoint, device=device)


def _trained_classes(checkpoint: Checkpoint) -> list[int] | None:
    return (checkpoint.metadata.get("data") or {}).get("classes")


def _checkpoint_and_split(args: argparse.Namespace, device: torch.device) -> tuple[Checkpoint, Dataset]:
    """The model and the split it is to be run on (with the classes an advlab checkpoint was
    trained on); refuses a model that cannot take the data."""
    from advlab.models.external import check_accepts

    checkpoint = _load_model(args, device)
    splits = splits_of(args, _trained_classes(checkpoint))
    data = (splits.test if args.split == "test" else splits.train).take(args.limit)
    check_accepts(checkpoint.model, data.images[:1].to(device), data.name)
    return checkpoint, data


def _stream_split(args: argparse.Namespace, checkpoint: Checkpoint, device: torch.device, shard: Shard) -> tuple[Any, str]:
    """(the split as a stream of batches, its name), after checking the model takes the data
    (on the first batch this process owns: it converts no other process's batch)."""
    from advlab.data.stream import select
    from advlab.models.external import check_accepts

    batches, name = stream_data(args.data, args.data_dir, args.split, args.batch_size, limit=args.limit,
                                classes=_trained_classes(checkpoint))
    first = next((batch for _, batch in select(batches, shard.owns) if batch is not None), None)
    if first is not None:
        check_accepts(checkpoint.model, torch.as_tensor(first[0])[:1].to(device), name)
    return batches, name


def _model_label(args: argparse.Namespace) -> str:
    return args.model if args.model is not None else Path(args.checkpoint).name


def cmd_attack(args: argparse.Namespace) -> int:
    shard = join_process_group(args.device)  # under torchrun: shard the examples over the processes
    params, targets, out = args.params, args.targets, args.out
    if args.stream or launched():  # torchrun streams, with 1 process too
        from advlab.attacks.stream import stream_attack

        if isinstance(targets, int):
            raise InputError("--stream takes --targets random or least-likely (drawn per example), not one label")
        checkpoint = _load_model(args, args.device)
        batches, data_name = _stream_split(args, checkpoint, args.device, shard)
        attack = make_attack(args.method, checkpoint.model, batch_size=args.batch_size, seed=args.seed, **params)
        streamed = stream_attack(attack, batches, out / "examples", targets=targets, keep_adversarial=True,
                                 progress=not args.no_progress, shard=shard)
        if not shard.is_root:  # its results went to rank 0
            return 0
        summary, written = streamed.summary(), out / "examples"
        write_json_atomic(out / "summary.json", {"command": command_line(), "checkpoint": args.checkpoint, "model": checkpoint.model_name,
                                                 "data": data_name, "params": streamed.params, "summary": summary})
    else:
        checkpoint, data = _checkpoint_and_split(args, args.device)
        data_name, written = data.name, out / "adversarial.npz"
        attack = make_attack(args.method, checkpoint.model, batch_size=args.batch_size, seed=args.seed, **params)
        if isinstance(targets, int):
            targets = torch.full_like(data.labels, targets)
        result = attack(data.images, data.labels, targets=targets)
        summary = result.summary()
        write_files_atomic({  # both files or neither
            written: npz_bytes(**result.arrays()),
            out / "summary.json": json_bytes({"command": command_line(), "checkpoint": args.checkpoint,
                                              "model": checkpoint.model_name, "data": data.name, "params": result.params,
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
    return 0


# ---- robustness evaluation ---------------------------------------------------------------------
def cmd_evaluate_suite(args: argparse.Namespace) -> int:
    """--suite: the cascade at each eps, with the certified bracket when asked."""
    from advlab.analysis.evaluation import evaluate_suite
    from advlab.report.robustness import suite_table, write_suite_report

    suite = args.suite_entries  # validated by cli_checks.check_evaluate
    eps_values = [e for e in args.eps_values if e > 0]
    checkpoint, data = _checkpoint_and_split(args, args.device)
    title = f"Robustness of {checkpoint.model_name} ({_model_label(args)}) on {data.name}, suite {args.suite}"
    evaluations = [
        evaluate_suite(checkpoint.model, data.images, data.labels, eps=e, norm=args.norm, suite=suite,
                       batch_size=args.batch_size, seed=args.seed, bracket=args.bracket, time_limit=args.time_limit,
                       skip_certified=args.skip_certified,
                       certify=getattr(importlib.import_module("advlab.exact"), "certify", None),
                       state_path=None if args.state is None else Path(f"{args.state}.eps{e:g}.npz"),
                       progress=not args.no_progress)
        for e in eps_values
    ]
    paths = write_suite_report(evaluations, args.out, title=title, command=command_line(),
                               context={"checkpoint": args.checkpoint, "model": checkpoint.model_name, "data": data.name})
    print(title)
    print(suite_table(evaluations))
    for note in dict.fromkeys(n for ev in evaluations for n in ev.notes):
        print(f"note: {note}")
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from advlab.analysis import evaluate_robustness

    if args.suite:
        return cmd_evaluate_suite(args)
    shard = join_process_group(args.device)  # under torchrun: shard the examples over the processes
    source = load_checkpoint(args.source, device=args.device).model if args.source else None
    settings = {"attacks": args.attacks, "eps": args.eps_values, "attack_params": args.params, "source_model": source,
                "source_name": Path(args.source).name if args.source else "source", "batch_size": args.batch_size,
                "seed": args.seed, "progress": not args.no_progress}
    start = time.perf_counter()
    if args.stream or launched():  # torchrun streams, with 1 process too
        from advlab.analysis.streamed import stream_robustness

        checkpoint = _load_model(args, args.device)
        batches, data_name = _stream_split(args, checkpoint, args.device, shard)
        evaluation = stream_robustness(checkpoint.model, batches, args.out / "examples", shard=shard, **settings)
        if evaluation is None:  # not rank 0: its results went to rank 0
            return 0
        evaluation.notes.append(f"streamed over {shard.world} process(es); per-example outcomes in {args.out / 'examples'}")
    else:
        checkpoint, data = _checkpoint_and_split(args, args.device)
        data_name = data.name
        evaluation = evaluate_robustness(checkpoint.model, data.images, data.labels, **settings)
    seconds = time.perf_counter() - start
    from advlab.report.robustness import checks_table, evaluation_table, write_robustness_report  # rank 0 only: pulls in matplotlib

    progress = checkpoint.metadata.get("progress") or {}
    if progress and not progress.get("complete", True):
        evaluation.notes.append(f"the checkpoint is from an unfinished run (epoch {progress['epoch']} of {progress['epochs']})")
    title = f"Robustness of {checkpoint.model_name} ({_model_label(args)}) on {data_name}"
    paths = write_robustness_report(
        evaluation, args.out, title=title, command=command_line(),
        context={"checkpoint": args.checkpoint, "model": checkpoint.model_name,
                 "objective": checkpoint.metadata.get("objective"), "data": data_name,
                 "seconds": seconds, "processes": shard.world},
    )
    print(title)
    print(evaluation_table(evaluation))
    print(checks_table(evaluation))
    for note in evaluation.notes:
        print(f"note: {note}")
    for path in paths:
        print(f"wrote {path}")
    return 0


# ---- exact minimal distances ----------------------------------------------------------------------
def cmd_exact(args: argparse.Namespace) -> int:
    """Exact minimal distances: closed forms for linear models, MILP for small ReLU networks."""
    from advlab.exact import minimal_distances

    checkpoint, data = _checkpoint_and_split(args, torch.device("cpu"))
    start = time.perf_counter()
    result = minimal_distances(checkpoint.model, data.images, data.labels, norm=args.norm, time_limit=args.time_limit,
                               progress=not args.no_progress)
    summary = {**result.summary(), "seconds": time.perf_counter() - start}
    per_example = {"lower": result.lower.tolist(), "upper": result.upper.tolist(), "status": result.status,
                   "target": result.target.tolist(), "seconds": result.seconds.tolist()}
    out = Path(args.out)
    write_npz_atomic(out / "witnesses.npz", witness=result.witness.detach().float().cpu().numpy(), labels=data.labels.numpy())
    write_json_atomic(out / "exact.json", {"command": command_line(), "checkpoint": args.checkpoint,
                                           "model": checkpoint.model_name, "data": data.name, "norm": args.norm,
                                           "summary": summary, "per_example": per_example})
    rows = [(k, number(v, 4) if isinstance(v, float) else v) for k, v in summary.items()]
    print(f"exact minimal {args.norm} distances for {checkpoint.model_name} on {data.name}")
    print(table(["", "value"], rows))
    print(f"wrote {out / 'exact.json'} and {out / 'witnesses.npz'}")
    return 0


