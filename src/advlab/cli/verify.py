"""`advlab verify`: VNN-COMP-style verification of ONNX networks against VNN-LIB properties.

    advlab verify MODEL SPEC --timeout T [--out RESULT] [--input-shape C,H,W] [--seed S]
    advlab verify --instances instances.csv --out results.csv [--workers N]

Parses, checks everything before the work, calls `advlab.exact.properties.verify_property` /
`advlab.exact.instances.run_instances`, prints the verdict (or one line per instance's
progress), exit 0.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from advlab.cli import checks
from advlab.errors import InputError


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--input-shape {text!r}: expected sizes separated by commas, e.g. 1,28,28") from None
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"--input-shape {text!r}: sizes must be >= 1")
    return shape


def _output_file(path: str, option: str = "--out") -> Path:
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {target}: is a directory; expected a file")
    checks.output_dir(target.parent if str(target.parent) else ".", option)
    return target


def check_verify(args: argparse.Namespace) -> None:
    from advlab.formats.vnnlib import read_vnnlib

    if args.instances is not None:
        from advlab.exact.instances import read_instances

        if args.model is not None or args.spec is not None:
            raise InputError("give either MODEL SPEC or --instances CSV, not both")
        if args.out is None:
            raise InputError("--instances needs --out results.csv")
        args.instance_rows = read_instances(args.instances)
        args.out = _output_file(args.out)
        return
    if args.model is None or args.spec is None:
        raise InputError("give MODEL SPEC (an .onnx network and a .vnnlib property) or --instances CSV")
    if args.timeout is None:
        raise InputError("--timeout is required with MODEL SPEC")
    if args.workers != 1:
        raise InputError("--workers applies to --instances")
    from advlab.models.external import load_external_model

    args.start = time.perf_counter()  # the timeout covers loading too
    args.property = read_vnnlib(args.spec)
    args.loaded_model = load_external_model(args.model)
    args.input_shape = _shape(args.input_shape) if args.input_shape else None
    if args.out is not None:
        args.out = _output_file(args.out)


def cmd_verify(args: argparse.Namespace) -> int:
    from advlab.exact.instances import result_file, run_instances
    from advlab.exact.properties import verify_property
    from advlab.io import write_text_atomic
    from advlab.progress import progress_bar

    if args.instances is not None:
        bar = progress_bar(len(args.instance_rows), "verify", enabled=not args.no_progress, unit="instance")

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        with bar:
            rows = run_instances(args.instance_rows, args.out, workers=args.workers, seed=args.seed, progress=progress)
        counts = {}
        for row in rows.values():
            counts[row["result"]] = counts.get(row["result"], 0) + 1
        print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" -> {args.out}")
        return 0
    left = args.timeout - (time.perf_counter() - args.start)
    verdict = verify_property(args.loaded_model, args.property, input_shape=args.input_shape, timeout=max(left, 1e-6), seed=args.seed)
    if left <= 0:
        verdict.status = "timeout"
    if args.out is not None:
        write_text_atomic(args.out, result_file(verdict))
    print(verdict.status)
    return 0


def add_verify_parser(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="VNN-COMP verification: an ONNX network against a VNN-LIB property "
                            "(sat/unsat/unknown/timeout), or a benchmark's instances.csv")
    verify.add_argument("model", nargs="?", help="network: FILE.onnx (or FILE.pt2, package.module:factory)")
    verify.add_argument("spec", nargs="?", help="property: FILE.vnnlib")
    verify.add_argument("--timeout", type=checks.positive_float, help="seconds for the whole call (loading, bounds, "
                        "attacks, branch and bound)")
    verify.add_argument("--out", help="MODEL SPEC: write the result file (verdict, counterexample) here; "
                        "--instances: the results CSV (resumed when it exists)")
    verify.add_argument("--instances", help="VNN-COMP instances.csv (onnx,vnnlib,timeout per row, relative to its folder)")
    verify.add_argument("--workers", type=checks.positive_int, default=1, help="--instances: processes (same verdicts for any number)")
    verify.add_argument("--input-shape", help="per-example input shape for a model that does not declare one, e.g. 1,28,28")
    verify.add_argument("--seed", type=checks.seed, default=0)
    verify.add_argument("--no-progress", action="store_true")
    verify.set_defaults(func=cmd_verify, check=check_verify)
