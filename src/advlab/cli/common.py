"""What the commands share: the command line as run, --json, and reading the model and the data
a command runs on (an advlab checkpoint or --model, the split, checked against each other)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advlab.data import Dataset, Splits, load_data
from advlab.data.catalog import stream_data
from advlab.data.shard import Shard
from advlab.io import write_bytes_atomic
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


def load_model(args: argparse.Namespace, device: torch.device) -> Checkpoint:
    """An advlab checkpoint, or --model (package.module:factory with --weights, or a .pt2 program);
    which of them was given is checked before (`advlab.cli.checks.model_source`)."""
    from advlab.models.external import load_external_model

    if args.model is not None:
        untrained = args.weights == "none"  # on purpose
        model = load_external_model(args.model, None if untrained else args.weights, require_weights=not untrained)
        return Checkpoint(model.to(device), args.model, {}, {})
    return load_checkpoint(args.checkpoint, device=device)


def checkpoint_and_split(args: argparse.Namespace, device: torch.device) -> tuple[Checkpoint, Dataset]:
    """The model and the split it is to be run on (with the classes an advlab checkpoint was
    trained on); refuses a model that cannot take the data."""
    from advlab.models.external import check_accepts, check_labels_fit

    checkpoint = load_model(args, device)
    splits = splits_of(args, checkpoint.classes)
    data = (splits.test if args.split == "test" else splits.train).take(args.limit)
    classes = check_accepts(checkpoint.model, data.images[:1].to(device), data.name, min(getattr(args, "batch_size", None) or len(data), len(data)))
    check_labels_fit(data.labels, classes, data_where(args))
    return checkpoint, data


def class_map(data: Any) -> dict[str, int] | None:
    """The class-to-label map of a Dataset or a stream of batches (image folders), else None."""
    mapping = getattr(data, "class_to_idx", None)
    return None if mapping is None else dict(mapping)


def stream_split(args: argparse.Namespace, checkpoint: Checkpoint, device: torch.device, shard: Shard) -> tuple[Any, str]:
    """(the split as a stream of batches, its name), after checking the model takes the data
    (on the first batch this process owns: it converts no other process's batch)."""
    from advlab.data.stream import select
    from advlab.models.external import check_accepts, check_labels_fit

    batches, name = stream_data(args.data, args.data_dir, args.split, args.batch_size, limit=args.limit,
                                classes=checkpoint.classes)
    first = next((batch for _, batch in select(batches, shard.owns) if batch is not None), None)
    if first is not None:
        classes = check_accepts(checkpoint.model, torch.as_tensor(first[0])[:1].to(device), name, args.batch_size)
        check_labels_fit(torch.as_tensor(first[1]), classes, data_where(args))
    return batches, name


def data_where(args: argparse.Namespace) -> str:
    """The file or folder the data was read from, for error messages."""
    return args.data_dir if args.data_dir is not None and not args.data.startswith(("npz:", "folder:")) else args.data


def model_label(args: argparse.Namespace) -> str:
    return args.model if args.model is not None else Path(args.checkpoint).name
