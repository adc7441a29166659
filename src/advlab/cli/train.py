"""`advlab train`: train a registered model, save the checkpoint with its errors on both splits."""

from __future__ import annotations

import argparse

from advlab.cli.common import command_line, splits_of
from advlab.data.shard import join_process_group
from advlab.report.markdown import percent
from advlab.training import default_config, record_errors, train_registered


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "weight_decay", "optimizer") if getattr(args, k) is not None}
    config = default_config(args.model, **overrides, seed=args.seed)
    objective = args.objective
    classes = args.classes
    splits = splits_of(args, classes)
    shard = join_process_group(args.device)  # under torchrun: DistributedDataParallel over the processes
    trained = train_registered(
        args.model, splits.train, config, objective=objective, checkpoint=args.out, resume=args.resume,
        run={"data": {"train": splits.train.fingerprint(), "classes": list(classes) if classes else None}},
        extra={"data_source": {"source": splits.source, "data": args.data, "data_dir": args.data_dir,
                               "class_to_idx": None if splits.class_to_idx is None else dict(splits.class_to_idx)}},
        device=args.device, progress=not args.no_progress,
    )
    if not shard.is_root:  # rank 0 wrote the checkpoint and reports
        return 0
    history = trained.history
    metrics = record_errors(args.out, trained, splits.train, splits.test, command=command_line())
    how = "standard" if objective is None else f"adversarial {objective.to_dict()}"
    resumed = f", resumed after epoch {history.resumed_from}" if history.resumed_from else ""
    print(f"{args.model} ({how}{resumed}): train error {percent(metrics['train_error'], 2)}, test error "
          f"{percent(metrics['test_error'], 2)} ({trained.seconds:.1f} s) -> {args.out}")
    return 0
