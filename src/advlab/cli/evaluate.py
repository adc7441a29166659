"""`advlab evaluate`: robust accuracy on an eps grid or (--suite) a cascade at each eps, through the
one evaluation entry (`advlab.analysis.evaluate_robustness`), and its report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from advlab.cli.common import checkpoint_and_split, class_map, command_line, emit_json, load_model, model_label, stream_split
from advlab.data.shard import Shard, join_process_group, launched
from advlab.training import load_checkpoint


def _title(args: argparse.Namespace, model_name: str, data_name: str) -> str:
    """'Robustness of NAME on DATA', with the checkpoint's file or --model where it differs from NAME."""
    label = model_label(args)
    return (f"Robustness of {model_name}" + (f" ({label})" if label != model_name else "") + f" on {data_name}"
            + (f", suite {args.suite}" if args.suite else ""))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """An eps grid or (--suite) a cascade at each eps, in memory or streamed, through the one
    evaluation entry; the report with the command's wall time and its parts."""
    from advlab.analysis import EvaluationSettings, evaluate_robustness
    from advlab.exact import certify

    started = time.perf_counter()
    shard = join_process_group(args.device) if not args.suite else Shard(0, 1)  # torchrun shards grid examples
    streamed = args.stream or (launched() and not args.suite)  # torchrun streams, with 1 process too
    if args.suite:
        settings = EvaluationSettings(norm=args.norm, bracket=args.bracket, skip_certified=args.skip_certified,
                                      certify=certify if args.bracket or args.skip_certified else None,
                                      time_limit=args.time_limit, batch_size=args.batch_size, seed=args.seed,
                                      carlini_checks=args.carlini_checks, progress=not args.no_progress)
    else:
        source = load_checkpoint(args.source, device=args.device).model if args.source else None
        settings = EvaluationSettings(attacks=args.attacks, attack_params=args.params, source_model=source,
                                      source_name=Path(args.source).name if args.source else "source",
                                      batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    data: Any
    if streamed:
        checkpoint = load_model(args, args.device)
        data, data_name = stream_split(args, checkpoint, args.device, shard)
        data_source = data
    else:
        checkpoint, split = checkpoint_and_split(args, args.device)
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
    if checkpoint.unfinished is not None:
        evaluation.notes.append(f"the checkpoint is from an unfinished run ({checkpoint.unfinished})")
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
