"""advlab's command line: parse, call the API, print, exit (0 ok, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from advlab import cli_checks as checks
from advlab.attacks import ATTACKS
from advlab.cli_attacks import cmd_attack, cmd_evaluate, cmd_exact, command_line, splits_of
from advlab.cli_params import requires_eps
from advlab.data import fetch_fashion_mnist, fetch_mnist, load_mnist
from advlab.data.shard import PeerFailed, Shard, join_process_group, launched, settle, tell_launcher
from advlab.errors import AdvlabError
from advlab.experiments.registry import EXPERIMENTS
from advlab.models import get_spec, model_names
from advlab.progress import set_progress
from advlab.report.markdown import percent, table
from advlab.training import (
    default_config,
    error_rate,
    load_checkpoint,
    train_registered,
    update_metadata,
)


# ---- data ----------------------------------------------------------------------------------
def cmd_data_info(args: argparse.Namespace) -> int:
    splits = splits_of(args)
    print(splits.source)
    if splits.class_to_idx is not None:
        print("classes (folder -> label): " + ", ".join(f"{name} -> {label}" for name, label in splits.class_to_idx.items()))
    for split in (splits.train, splits.test):
        counts = torch.bincount(split.labels, minlength=10).tolist()  # per label 0..max
        print(f"{split.name}: {len(split)} images of shape {tuple(split.images.shape[1:])}, per class {counts}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    fetch = fetch_fashion_mnist if args.dataset == "fashion-mnist" else fetch_mnist
    paths = fetch(args.dir, **({"mirrors": tuple(args.mirror)} if args.mirror else {}))
    for path in paths:
        print(path)
    return 0


# ---- models and training -----------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    rows = [(name, get_spec(name).description, get_spec(name).training) for name in model_names()]
    print(table(["model", "description", "training defaults"], rows))
    return 0


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
    model, history = trained.model, trained.history
    metrics = {"train_error": error_rate(model, splits.train), "test_error": error_rate(model, splits.test)}
    update_metadata(args.out, {"metrics": metrics, "final_loss": history.loss[-1], "train_seconds": trained.seconds,
                               "resumed_from_epoch": history.resumed_from, "command": command_line()})
    how = "standard" if objective is None else f"adversarial {objective.to_dict()}"
    resumed = f", resumed after epoch {history.resumed_from}" if history.resumed_from else ""
    print(f"{args.model} ({how}{resumed}): train error {percent(metrics['train_error'], 2)}, test error "
          f"{percent(metrics['test_error'], 2)} ({trained.seconds:.1f} s) -> {args.out}")
    return 0


# ---- reproductions -----------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace) -> int:
    from advlab.experiments.registry import Request
    from advlab.report.reproduce import reproduce

    request = Request(data_dir=args.data_dir, out=Path(args.out), seed=args.seed, quick=args.quick, images=args.images,
                      eps=args.eps, progress=not args.no_progress, device=str(args.device), jobs=args.jobs, epochs=args.epochs,
                      train_images=args.train_images)
    print(f"{args.experiment}: writing to {args.out} (a rerun resumes) ...", flush=True)
    paths, lines = reproduce(args.experiment, request, command=command_line())
    for line in lines:
        print(line)
    for path in paths:
        print(f"wrote {path}")
    return 0


# ---- the explorer page ---------------------------------------------------------------------
def cmd_explore(args: argparse.Namespace) -> int:
    from advlab.report.explore import explorer_payload, fig2_explorer_payload, write_page

    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    splits = load_mnist(args.data_dir)
    if checkpoint is not None:
        classes = (checkpoint.metadata.get("data") or {}).get("classes") or []
        payload = explorer_payload(checkpoint.model, splits, classes, progress=not args.no_progress)
    else:
        payload = fig2_explorer_payload(splits, seed=args.seed, progress=not args.no_progress)
    path = write_page(payload, args.out, command=command_line())
    print(f"wrote {path}")
    print(f"open it in a browser (it needs no network): {path.resolve().as_uri()}")
    return 0


# ---- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = checks.Parser(prog="advlab", description="Adversarial examples for PyTorch models.",
                           epilog="Bad input exits with code 2 and one line `advlab: error: ...`, before any work.")
    version = sys.modules["advlab"].__version__  # the package facade, always imported before its modules
    parser.add_argument("--version", action="version", version=f"advlab {version}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser, *, named: bool = True) -> None:
        if not named:  # the paper reproductions and the explorer read MNIST only
            p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files (default: embedded data)")
            return
        p.add_argument("--data", default="mnist", metavar="mnist|fashion-mnist|npz:PATH|folder:PATH",
                       help="data set (default mnist); npz: arrays x (N,C,H,W or N,H,W; uint8 or floats in [0,1]) and y; "
                            "folder: one subfolder of images per class")
        p.add_argument("--data-dir", default=None,
                       help="folder with the four IDX files of mnist or fashion-mnist (default for mnist: embedded data)")

    def checkpoint_split(p: argparse.ArgumentParser) -> None:
        """What `_checkpoint_and_split` reads: the checkpoint, the split and its data."""
        p.add_argument("checkpoint", nargs="?", help="an advlab checkpoint (.safetensors); or use --model")
        p.add_argument("--model", metavar="package.module:factory|FILE.pt2",
                       help="your own model instead of a checkpoint: package.module:factory IMPORTS AND RUNS your module "
                            "(found on PYTHONPATH or in the current folder) and calls factory(); FILE.pt2 is a torch.export "
                            "program, read without running code from it")
        p.add_argument("--weights", metavar="FILE.safetensors|none",
                       help="weights for --model package.module:factory (safetensors only); required unless the factory's "
                            "model sets advlab_pretrained = True; `none` attacks the untrained model on purpose")
        p.add_argument("--split", choices=["test", "train"], default="test")
        p.add_argument("--limit", type=checks.positive_int, help="only the first N examples")
        data_dir(p)

    def outputs(p: argparse.ArgumentParser, document: str) -> None:
        """--force and --json of the commands that write a result folder."""
        p.add_argument("--force", action="store_true", help="write over the files of an existing --out folder")
        p.add_argument("--json", metavar="FILE|-", help=f"also write the result document ({document}) to FILE, or to "
                       "stdout with `-` (the table then goes to stderr)")

    def seed_device(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=checks.seed, default=0)
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (checked against this machine)")

    data = sub.add_parser("data", help="inspect data or download MNIST / Fashion-MNIST").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="describe the data a run would use")
    data_dir(info)
    info.set_defaults(func=cmd_data_info)
    fetch = data.add_parser("fetch", help="download the official MNIST or Fashion-MNIST files, verify md5, rename into place")
    fetch.add_argument("dataset", choices=["mnist", "fashion-mnist"])
    fetch.add_argument("dir", help="folder to download into (created; an existing file is refused)")
    fetch.add_argument("--mirror", action="append", help="base URL to try (repeatable; default: the standard mirrors)")
    fetch.set_defaults(func=cmd_data_fetch, check=checks.check_data_fetch)

    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)

    train = sub.add_parser("train", help="train a registered model and save a checkpoint")
    train.add_argument("model")
    train.add_argument("--out", required=True,
                       help="checkpoint path (.safetensors); a folder (existing, or ending in /) means FOLDER/MODEL.safetensors")
    data_dir(train)
    train.add_argument("--classes", type=checks.class_list, help="keep only these digits, e.g. 3,7 (relabelled 0..k-1)")
    train.add_argument("--epochs", type=checks.positive_int)
    train.add_argument("--lr", type=checks.positive_float)
    train.add_argument("--batch-size", type=checks.positive_int)
    train.add_argument("--weight-decay", type=checks.nonnegative_float)
    train.add_argument("--optimizer", choices=["adam", "sgd"])
    seed_device(train)
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--resume", action="store_true", help="continue the run checkpointed at --out (written every epoch)")
    train.add_argument("--force", action="store_true", help="replace an existing file at --out (otherwise refused)")
    adversarial = train.add_argument_group("adversarial training (Goodfellow et al. 2014, Sec. 6; Madry et al. 2017)")
    adversarial.add_argument("--adversarial", choices=["fgsm", "pgd"], help="train on alpha J(x) + (1 - alpha) J(x_adv)")
    adversarial.add_argument("--eps", type=checks.eps_value, help="L-inf budget of x_adv (default .25)")
    adversarial.add_argument("--alpha", type=checks.finite_float, help="weight of the clean term (default .5 for fgsm, 0 for pgd)")
    adversarial.add_argument("--steps", type=checks.positive_int, help="PGD steps (default 10)")
    adversarial.add_argument("--step-size", type=checks.positive_float, help="PGD step (default 2.5 eps / steps)")
    adversarial.add_argument("--craft-mode", choices=["eval", "train"], default="eval",
                             help="model mode x_adv is computed in (default eval: dropout off)")
    train.set_defaults(func=cmd_train, check=checks.check_train)

    attack = sub.add_parser("attack", help="attack a data split with a checkpoint's model")
    checkpoint_split(attack)
    attack.add_argument("--method", required=True, choices=sorted(ATTACKS))
    needs_eps = ", ".join(m for m in sorted(ATTACKS) if requires_eps(m))
    attack.add_argument("--eps", type=checks.eps_value, help=f"perturbation budget; required by {needs_eps}")
    attack.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="attack parameter (repeatable)")
    attack.add_argument("--targets", help="random, least-likely or a class label (default: untargeted)")
    attack.add_argument("--batch-size", type=checks.positive_int, default=1000)
    seed_device(attack)
    attack.add_argument("--out", required=True, help="folder for adversarial.npz and summary.json (an existing, non-empty "
                        "folder is refused without --force, unless --stream resumes the run kept in it)")
    outputs(attack, "summary.json")
    attack.add_argument("--stream", action="store_true",
                        help="read the data batch by batch, keep per-example results and adversarial points in OUT/examples "
                             "(instead of adversarial.npz) and resume a killed run there; on by itself under torchrun")
    attack.add_argument("--no-progress", action="store_true")
    attack.set_defaults(func=cmd_attack, check=checks.check_attack)

    evaluate = sub.add_parser("evaluate", help="robust accuracy against eps, with gradient-masking checks")
    checkpoint_split(evaluate)
    evaluate.add_argument("--attacks", help="comma-separated fixed-budget attacks (default: fgsm,pgd, those registered)")
    evaluate.add_argument("--eps", default=None,
                          help=f"START:STOP:STEP (STOP included) or a comma list; at most {checks.MAX_GRID} values "
                               f"(default {checks.DEFAULT_GRID}; required with --suite, which runs its whole cascade at each eps > 0)")
    evaluate.add_argument("-p", "--param", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                          help="attack parameter, e.g. pgd.steps=40 (repeatable; eps comes from --eps)")
    evaluate.add_argument("--source", help="checkpoint of an undefended model to transfer attacks from")
    evaluate.add_argument("--batch-size", type=checks.positive_int, default=500)
    evaluate.add_argument("--suite", help="run an attack suite as a cascade: standard (AutoAttack's), quick, or a JSON list")
    evaluate.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model of --suite")
    evaluate.add_argument("--bracket", action="store_true", help="with --suite: prove a lower bound (bounds + MILP, L-inf)")
    evaluate.add_argument("--skip-certified", action="store_true",
                          help="with --suite: attack only the points interval/CROWN bounds leave open (L-inf; saves time)")
    evaluate.add_argument("--time-limit", type=checks.positive_float, default=120.0,
                          help="MILP seconds per point for --bracket")
    evaluate.add_argument("--state", help="with --suite: resume from / save to STATE.eps<EPS>.npz")
    seed_device(evaluate)
    evaluate.add_argument("--out", default="results/evaluate",
                          help="folder for robustness.{json,md,png,pdf,svg} (suite.* with --suite) and examples.npz "
                               "(per-example outcomes); --stream adds OUT/examples (an existing, non-empty folder is "
                               "refused without --force)")
    outputs(evaluate, "robustness.json (suite.json with --suite)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument("--stream", action="store_true",
                          help="read the data batch by batch (memory bounded by --batch-size), keep per-example outcomes in "
                               "OUT/examples and resume a killed run there; on by itself under torchrun; with --suite: "
                               "the cascade's state is kept in OUT/examples and resumed (the examples are held in memory)")
    evaluate.set_defaults(func=cmd_evaluate, check=checks.check_evaluate)

    exact = sub.add_parser("exact", help="exact minimal adversarial distances of a checkpoint on a split")
    checkpoint_split(exact)
    exact.add_argument("--norm", choices=["linf", "l2", "l1"], default="linf")
    exact.add_argument("--time-limit", type=checks.positive_float, default=60.0, help="MILP seconds per image (ReLU networks)")
    exact.add_argument("--no-progress", action="store_true")
    exact.add_argument("--out", required=True, help="folder for exact.json and witnesses.npz (an existing, non-empty folder "
                       "is refused without --force)")
    outputs(exact, "exact.json")
    exact.set_defaults(func=cmd_exact, check=checks.check_exact)

    reproduce = sub.add_parser("reproduce", help="reproduce a paper's experiment end to end")
    reproduce.add_argument("experiment", choices=list(EXPERIMENTS))
    reproduce.add_argument("--out", default=None, help="output folder (default: results/EXPERIMENT); a rerun into it resumes")
    reproduce.add_argument("--eps", type=checks.eps_value, default=0.25, help="FGSM budget (goodfellow-*)")
    reproduce.add_argument("--quick", action="store_true", help="a smoke run (what it does: `advlab.experiments.registry`)")
    reproduce.add_argument("--images", type=checks.positive_int, help="szegedy: images attacked per model (default 300; --quick: 6)")
    reproduce.add_argument("--seed", type=checks.seed, default=0)
    reproduce.add_argument("--device", default="cpu", help="adversarial-generalization: where to train (cpu, cuda, cuda:N, auto)")
    reproduce.add_argument("--jobs", type=checks.positive_int, default=1, help="adversarial-generalization: trainings at once")
    reproduce.add_argument("--epochs", type=checks.positive_int, help="adversarial-generalization: epochs per training "
                           "(default: each model's registered epochs)")
    reproduce.add_argument("--train-images", type=checks.positive_int, help="adversarial-generalization: the first N "
                           "training images of each set (default: all)")
    reproduce.add_argument("--no-progress", action="store_true")
    data_dir(reproduce, named=False)
    reproduce.set_defaults(func=cmd_reproduce, check=checks.check_reproduce)
    explore = sub.add_parser("explore", help="write a self-contained interactive page on the linear argument (HTML)")
    explore.add_argument("--checkpoint", help="a logistic regression checkpoint trained on two classes "
                         "(default: train Fig. 2's model as `reproduce goodfellow-fig2` does)")
    explore.add_argument("--out", default="results/explore", help="folder for explore.html (an existing, non-empty folder is "
                         "refused without --force)")
    explore.add_argument("--force", action="store_true", help="write into an existing --out folder")
    explore.add_argument("--seed", type=checks.seed, default=0)
    explore.add_argument("--no-progress", action="store_true")
    data_dir(explore, named=False)  # the page explains MNIST digits
    explore.set_defaults(func=cmd_explore, check=checks.check_explore)
    checks.add_global_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check everything that can be checked before the work, run; 0 ok, 2 bad input,
    1 a system error while working (one line too), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    Under torchrun every rank joins the group first, and a failure on any rank ends them all
    with one code and one line, printed by rank 0 (`advlab.data.shard`)."""
    stdout = sys.stdout
    shard = join_process_group()
    working = False
    try:
        args = build_parser().parse_args(argv)
        checks.validate(args)
        set_progress(args.progress_mode)
        args.json_stream = stdout  # `--json -` writes the result here; everything else goes to stderr
        with checks.run_settings(args.threads), contextlib.redirect_stdout(sys.stderr if getattr(args, "json", None) == "-" else stdout):
            working = True
            code = args.func(args)
    except AdvlabError as exc:
        return _stop(shard, 2, str(exc), checks=not working)  # always one line
    except OSError as exc:  # the machine, not the input: a full disk, a file removed under us
        return _stop(shard, 1, str(exc))
    except PeerFailed as exc:
        return _stop(shard, exc.failure.code, exc.failure.message)
    except KeyboardInterrupt:
        return _stop(shard, 130, "interrupted", prefix="advlab: ", checks=True)
    except checks.Terminated:  # under torchrun: also when a peer failed and torchrun stops the others
        failure = shard.recorded_failure()
        if failure is not None:
            return _stop(shard, failure.code, failure.message, wait=False)
        return _stop(shard, 143, "terminated", prefix="advlab: ", checks=True, wait=False)
    except Exception as exc:  # under torchrun: tell the other ranks, and show the traceback of a bug
        if shard.world == 1:
            raise
        failure = shard.recorded_failure()
        if failure is not None and failure.rank != shard.rank:  # a collective broken by the failed rank
            return _stop(shard, failure.code, failure.message)
        if isinstance(exc, dist.DistError) or "gloo" in str(exc):
            return _stop(shard, 1, f"lost contact with another process ({str(exc).splitlines()[0]})")
        shard.record_failure(1, f"{type(exc).__name__}: {exc}")
        raise
    shard.stop_together(wait=0)
    return code


def _stop(shard: Shard, code: int, message: str, *, prefix: str = "advlab: error: ", **how: bool) -> int:
    """Print the one line (on rank 0 only, under torchrun) and return the exit code."""
    code, line = settle(shard, code, " ".join(message.split()), **how)
    if shard.is_root:
        print(prefix + line, file=sys.stderr)
    if launched():
        tell_launcher(prefix + line)
    return code

if __name__ == "__main__":
    sys.exit(main())
