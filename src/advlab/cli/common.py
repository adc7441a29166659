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
from advlab.io import json_bytes, npz_bytes, write_bytes_atomic, write_files_atomic, write_json_atomic, write_npz_atomic
from advlab.report.markdown import number, percent, table
from advlab.training import Checkpoint, load_checkpoint

def command_line() -> str:
    return "advlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def emit_json(args: argparse.Namespace, document: Path) -> None:
    """--json: a copy of the result document just written, to FILE or (with `-`) to stdout."""
    if args.json is None:
        return
    data = document.read_bytes()
    if args.json == "-":
        args.json_stream.write(data.decode("utf-8"))
        args.json_stream.flush()
    else:
        write_bytes_atomic(args.json, data)


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
        untrained = args.weights == "none"  # on purpose
        model = load_external_model(args.model, None if untrained else args.weights, require_weights=not untrained)
        return Checkpoint(model.to(device), args.model, {}, {})
    return load_checkpoint(args.checkpoint, device=device)


def _trained_classes(checkpoint: Checkpoint) -> list[int] | None:
    return (checkpoint.metadata.get("data") or {}).get("classes")


def _checkpoint_and_split(args: argparse.Namespace, device: torch.device) -> tuple[Checkpoint, Dataset]:
    """The model and the split it is to be run on (with the classes an advlab checkpoint was
    trained on); refuses a model that cannot take the data."""
    from advlab.models.external import check_accepts, check_labels_fit

    checkpoint = _load_model(args, device)
    splits = splits_of(args, _trained_classes(checkpoint))
    data = (splits.test if args.split == "test" else splits.train).take(args.limit)
    classes = check_accepts(checkpoint.model, data.images[:1].to(device), data.name, min(getattr(args, "batch_size", None) or len(data), len(data)))
    check_labels_fit(data.labels, classes, _data_where(args))
    return checkpoint, data


def class_map(data: Any) -> dict[str, int] | None:
    """The class-to-label map of a Dataset or a stream of batches (image folders), else None."""
    mapping = getattr(data, "class_to_idx", None)
    return None if mapping is None else dict(mapping)


def _stream_split(args: argparse.Namespace, checkpoint: Checkpoint, device: torch.device, shard: Shard) -> tuple[Any, str]:
    """(the split as a stream of batches, its name), after checking the model takes the data
    (on the first batch this process owns: it converts no other process's batch)."""
    from advlab.data.stream import select
    from advlab.models.external import check_accepts, check_labels_fit

    batches, name = stream_data(args.data, args.data_dir, args.split, args.batch_size, limit=args.limit,
                                classes=_trained_classes(checkpoint))
    first = next((batch for _, batch in select(batches, shard.owns) if batch is not None), None)
    if first is not None:
        classes = check_accepts(checkpoint.model, torch.as_tensor(first[0])[:1].to(device), name, args.batch_size)
        check_labels_fit(torch.as_tensor(first[1]), classes, _data_where(args))
    return batches, name


def _data_where(args: argparse.Namespace) -> str:
    """The file or folder the data was read from, for error messages."""
    return args.data_dir if args.data_dir is not None and not args.data.startswith(("npz:", "folder:")) else args.data


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
                                                 "data": data_name, "classes": class_map(batches), "params": streamed.params,
                                                 "summary": summary})
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


# ---- robustness evaluation ---------------------------------------------------------------------
def _title(args: argparse.Namespace, model_name: str, data_name: str) -> str:
    """'Robustness of NAME on DATA', with the checkpoint's file or --model where it differs from NAME."""
    label = _model_label(args)
    return (f"Robustness of {model_name}" + (f" ({label})" if label != model_name else "") + f" on {data_name}"
            + (f", suite {args.suite}" if args.suite else ""))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """An eps grid or (--suite) a cascade at each eps, in memory or streamed, through the one
    evaluation entry; the report with the command's wall time and its parts."""
    from advlab.analysis import EvaluationSettings, evaluate_robustness

    started = time.perf_counter()
    shard = join_process_group(args.device) if not args.suite else Shard(0, 1)  # torchrun shards grid examples
    streamed = args.stream or (launched() and not args.suite)  # torchrun streams, with 1 process too
    if args.suite:
        settings = EvaluationSettings(norm=args.norm, bracket=args.bracket, skip_certified=args.skip_certified,
                                      certify=getattr(importlib.import_module("advlab.exact"), "certify", None) if args.bracket or args.skip_certified else None,
                                      time_limit=args.time_limit, batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    else:
        source = load_checkpoint(args.source, device=args.device).model if args.source else None
        settings = EvaluationSettings(attacks=args.attacks, attack_params=args.params, source_model=source,
                                      source_name=Path(args.source).name if args.source else "source",
                                      batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    data: Any
    if streamed:
        checkpoint = _load_model(args, args.device)
        data, data_name = _stream_split(args, checkpoint, args.device, shard)
        data_source = data
    else:
        checkpoint, split = _checkpoint_and_split(args, args.device)
        data, data_name, data_source = (split.images, split.labels), split.name, split
    loaded = time.perf_counter()
    eps = [e for e in args.eps_values if e > 0] if args.suite else args.eps_values
    evaluation = evaluate_robustness(checkpoint.model, data, eps=eps, suite=args.suite_entries if args.suite else None,
                                     settings=settings, out=args.out / "examples" if streamed else None,
                                     state_path=args.state if args.suite else None)
    if evaluation is None:  # not rank 0: its results went to rank 0
        return 0
    evaluated = time.perf_counter()
    from advlab.report.robustness import print_summary, write_robustness_report  # rank 0 only: pulls in matplotlib

    if streamed:
        evaluation.notes.append(f"streamed over {shard.world} process(es); per-batch outcomes in {args.out / 'examples'}")
    progress = checkpoint.metadata.get("progress") or {}
    if progress and not progress.get("complete", True):
        evaluation.notes.append(f"the checkpoint is from an unfinished run (epoch {progress['epoch']} of {progress['epochs']})")
    title = _title(args, checkpoint.model_name, data_name)
    paths = write_robustness_report(
        evaluation, args.out, title=title, command=command_line(), started=started,
        seconds={"load model and data": loaded - started, "evaluate": evaluated - loaded},
        context={"checkpoint": args.checkpoint, "model": checkpoint.model_name,
                 "objective": checkpoint.metadata.get("objective"), "data": data_name, "classes": class_map(data_source),
                 "processes": shard.world},
    )
    print_summary(evaluation, paths, title)
    print(f"time: {time.perf_counter() - started:.1f} s in all (load {loaded - started:.1f}, evaluate {evaluated - loaded:.1f}, "
          f"report {time.perf_counter() - evaluated:.1f})")
    emit_json(args, args.out / ("suite.json" if args.suite else "robustness.json"))
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
                                           "model": checkpoint.model_name, "data": data.name, "classes": class_map(data),
                                           "norm": args.norm,
                                           "summary": summary, "per_example": per_example})
    rows = [(k, number(v, 4) if isinstance(v, float) else v) for k, v in summary.items()]
    print(f"exact minimal {args.norm} distances for {checkpoint.model_name} on {data.name}")
    print(table(["", "value"], rows))
    print(f"wrote {out / 'exact.json'} and {out / 'witnesses.npz'}")
    emit_json(args, out / "exact.json")
    return 0


