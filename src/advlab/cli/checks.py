"""The checks `advlab` runs on a command line before any work, and the settings it runs under.

Three layers, each written once and shared by the subcommands:
- argparse types (`positive_int`, `finite_float`, ...) check every number as it is parsed;
- `validate(args)` runs the common checks (threads, device) and the subcommand's own check (set
  with `set_defaults(check=...)`): output locations, `-p` parameters typed strictly, eps grids,
  class lists, what a method requires;
- the loaders the commands call first check the files themselves (IDX headers and labels in
  `advlab.data`, checkpoint headers against the model registry's schema in
  `advlab.training.checkpoints`) before the work starts.
Every failure is an `AdvlabError`: one line `advlab: error: ...`, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import torch

from advlab.attacks import ATTACKS
from advlab.cli.params import accepted_params, attack_params, grouped_params, requires_eps
from advlab.data.shard import launched
from advlab.errors import InputError, UnknownNameError
from advlab.training import AdversarialObjective

MAX_GRID = 1000  # most eps values an evaluation may ask for
MAX_THREADS = 1024
THREADS_ENV = "ADVLAB_THREADS"


class UsageError(InputError):
    """A command line argparse cannot read (unknown option, missing argument, bad number)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises `UsageError` (one line, exit 2) instead of
    printing the usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---- argparse types: every number is checked as it is read --------------------------------------
def _number(kind: Callable[[str], Any], text: str, what: str, ok: Callable[[Any], bool]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, "an integer >= 1", lambda v: v >= 1)


def name_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, at least one ('a,b' -> ('a', 'b'))."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def nonnegative_int(text: str) -> int:
    return _number(int, text, "an integer >= 0", lambda v: v >= 0)


def seed(text: str) -> int:
    return _number(int, text, "an integer seed in 0..2**63-1", lambda v: 0 <= v < 2**63)


def finite_float(text: str) -> float:
    return _number(float, text, "a finite number", math.isfinite)


def nonnegative_float(text: str) -> float:
    return _number(float, text, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def positive_float(text: str) -> float:
    return _number(float, text, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def threads(text: str) -> int:
    return _number(int, text, f"a thread count in 1..{MAX_THREADS}", lambda v: 1 <= v <= MAX_THREADS)


def class_list(text: str) -> tuple[int, ...]:
    """'3,7' -> (3, 7): at least two distinct non-negative integers (checked against the data later)."""
    try:
        classes = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class labels like 3,7, got {text!r}") from None
    if min(classes) < 0 or len(set(classes)) != len(classes) or len(classes) < 2:
        raise argparse.ArgumentTypeError(f"expected at least two distinct class labels >= 0, got {text!r}")
    return classes


# ---- common checks -------------------------------------------------------------------------------
def thread_count(given: int | None) -> int:
    """--threads, else $ADVLAB_THREADS, else 1 (never oversubscribe a shared machine unasked)."""
    if given is not None:
        return given
    text = os.environ.get(THREADS_ENV)
    if text is None or not text.strip():
        return 1
    try:
        return threads(text.strip())
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"${THREADS_ENV}: {exc}") from None


def device(name: str) -> torch.device:
    """cpu, cuda, cuda:N, mps or auto (cuda when available), checked against this machine."""
    if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", name):
        raise InputError(f"--device {name!r}: expected cpu, cuda, cuda:N, mps or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: MPS is not available on this machine")
    return torch.device(name)


# ---- output locations ---------------------------------------------------------------------------
def _writable_folder(path: Path, option: str) -> None:
    """`path` is, or can be created as, a folder this user can write into."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: exists and is not a directory")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {ancestor} is not writable")


def output_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """A folder for a command's output files, checked before the work."""
    folder = Path(path)
    _writable_folder(folder, option)
    return folder


def fresh_output_dir(path: str | os.PathLike[str], *, force: bool, resumes: bool = False) -> Path:
    """`output_dir`, and refused when it already holds files unless --force (write over them) or
    `resumes` (a --stream run continuing the one kept in OUT/examples)."""
    folder = output_dir(path)
    if folder.is_dir() and any(folder.iterdir()) and not force and not (resumes and (folder / "examples").is_dir()):
        raise InputError(f"--out {folder}: already exists and is not empty; pass --force to write over its files")
    return folder


def json_target(text: str | None) -> str | Path | None:
    """--json: '-' (stdout) or a file path whose folder is writable and which is not a folder."""
    if text is None or text == "-":
        return text
    path = Path(text)
    if path.is_dir():
        raise InputError(f"--json {path}: is a directory")
    _writable_folder(path.parent, "--json")
    return path


def checkpoint_target(out: str, model: str, *, resume: bool, force: bool) -> Path:
    """Where `train` writes: `out`, or `out/MODEL.safetensors` when `out` is a folder (existing, or
    written with a trailing slash). An existing checkpoint is only continued (--resume) or
    replaced (--force), never overwritten silently."""
    if resume and force:
        raise InputError("--resume continues the checkpoint at --out and --force replaces it: give one of them")
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        path = path / f"{model}.safetensors"
    _writable_folder(path.parent, "--out")
    if path.exists():
        if path.is_dir():
            raise InputError(f"--out {path}: is a directory")
        if not (resume or force):
            raise InputError(f"--out {path}: already exists; pass --resume to continue that run or --force to replace it")
    return path


def targets(text: str | None) -> str | int | None:
    if text is None or text in ("random", "least-likely"):
        return text
    try:
        label = int(text)
    except ValueError:
        label = -1
    if label < 0:
        raise InputError(f"--targets takes random, least-likely or a class label >= 0, got {text!r}")
    return label


def eps_value(text: str) -> float:
    """One eps: a finite number >= 0, written as a decimal or a fraction (8/255)."""
    from advlab.analysis.robustness import parse_number

    return _number(parse_number, text, "a finite number >= 0 (or a fraction like 8/255)", lambda v: math.isfinite(v) and v >= 0)


DEFAULT_GRID = "0:0.3:0.05"  # advlab evaluate's eps grid without --suite


def eps_grid(text: str) -> list[float]:
    """An evaluation's eps values ('START:STOP:STEP' or 'a,b,c', fractions allowed): finite, >= 0, at most MAX_GRID."""
    from advlab.analysis.robustness import parse_eps, parse_number

    parts = text.split(":") if ":" in text else [p for p in text.split(",") if p.strip()]
    try:
        numbers = [parse_number(p) for p in parts]
    except ValueError:
        numbers = []  # parse_eps names the problem
    if numbers and not all(math.isfinite(v) for v in numbers):
        raise InputError(f"--eps {text!r}: every number must be finite")
    if ":" in text and len(numbers) == 3 and numbers[2] > 0 and (numbers[1] - numbers[0]) / numbers[2] + 1 > MAX_GRID:
        raise InputError(f"--eps {text!r}: more than {MAX_GRID} values; use a larger step")
    values = parse_eps(text)
    if len(values) > MAX_GRID:
        raise InputError(f"--eps {text!r}: more than {MAX_GRID} values")
    if values[0] < 0:
        raise InputError(f"--eps {text!r}: eps must be >= 0")
    return values


# ---- per-subcommand checks (set with set_defaults(check=...)) ------------------------------------
def check_data_fetch(args: argparse.Namespace) -> None:
    from advlab.data.sources import check_mirrors

    if args.mirror:
        check_mirrors(args.mirror)
    args.dir = output_dir(args.dir, "DIR")


def objective(args: argparse.Namespace) -> AdversarialObjective | None:
    """--adversarial fgsm|pgd with its settings (defaults: `AdversarialObjective.with_defaults`)."""
    if args.adversarial is None:
        given = [f"--{k.replace('_', '-')}" for k in ("eps", "alpha", "steps", "step_size") if getattr(args, k) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only used with --adversarial fgsm|pgd")
        return None
    if args.adversarial != "pgd" and (args.steps is not None or args.step_size is not None):
        raise InputError("--steps and --step-size only apply with --adversarial pgd")
    return AdversarialObjective.with_defaults(args.adversarial, eps=args.eps, alpha=args.alpha, steps=args.steps,
                                              step_size=args.step_size, craft_mode=args.craft_mode)


def check_train(args: argparse.Namespace) -> None:
    args.objective = objective(args)
    args.out = checkpoint_target(args.out, args.model, resume=args.resume, force=args.force)


def model_source(args: argparse.Namespace) -> None:
    """attack, evaluate, exact: a CHECKPOINT or --model (with optional --weights), not both."""
    if (args.checkpoint is None) == (args.model is None):
        raise InputError("give either a CHECKPOINT or --model package.module:factory|FILE.pt2, not both or neither")
    if args.weights is not None and args.model is None:
        raise InputError("--weights goes with --model package.module:factory")


def check_attack(args: argparse.Namespace) -> None:
    model_source(args)
    args.out = fresh_output_dir(args.out, force=args.force, resumes=args.stream or launched())  # torchrun streams
    args.json = json_target(args.json)
    reserved = {"batch_size": "--batch-size", "seed": "--seed", **({"eps": "--eps"} if args.eps is not None else {})}
    args.params = attack_params(args.method, args.param, reserved=reserved)
    if args.eps is not None:
        args.params["eps"] = args.eps
    if requires_eps(args.method) and "eps" not in args.params:
        raise InputError(f"--eps is required for --method {args.method}")
    args.targets = targets(args.targets)


def suite_entries(text: str, norm: str) -> Any:
    """--suite: a suite name, or a JSON file holding a list of {"attack", "params", "label"};
    resolved here (every parameter typed and range-checked, as -p's)."""
    from advlab.attacks.suites import resolve_suite

    if not text.strip():
        raise InputError("--suite '': give a suite name (fast, standard, quick, ...) or a JSON file")
    suite: Any = text
    if text.endswith(".json"):
        try:
            suite = json.loads(Path(text).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--suite {text}: cannot read a JSON suite: {exc}") from None
    try:
        resolve_suite(suite, ATTACKS, norm=norm)
    except (InputError, UnknownNameError) as exc:
        raise InputError(f"--suite {text}: {exc}") from None
    return suite


def state_files(stem: str | None, eps_values: list[float]) -> dict[float, Path]:
    """--state STEM: the state file of each eps > 0 (STEM.eps<EPS>.npz), each location and each
    existing file's format checked before any work (the fingerprint once the model and data are read)."""
    from advlab.analysis.entry import state_file
    from advlab.analysis.evaluation import check_state_file, check_state_location

    if stem is None:
        return {}
    if not stem.strip():
        raise InputError("--state '': give a path")
    paths = {e: state_file(stem, e) for e in eps_values if e > 0}
    for path in paths.values():
        check_state_location(path)
        if path.exists():
            check_state_file(path)
    return paths


def check_evaluate(args: argparse.Namespace) -> None:
    from advlab.analysis import default_attacks

    model_source(args)
    args.out = fresh_output_dir(args.out, force=args.force, resumes=args.stream or launched())  # torchrun streams
    args.json = json_target(args.json)
    if args.suite is not None:
        if args.attacks or args.param or args.source:
            raise InputError("--suite runs its own attacks: drop --attacks, --param and --source")
        args.suite_entries = suite_entries(args.suite, args.norm)
        if args.eps is None:
            raise InputError("--suite needs --eps (one budget, or a list: the whole cascade runs at each eps > 0)")
        args.eps_values = eps_grid(args.eps)
        if not any(e > 0 for e in args.eps_values):
            raise InputError(f"--suite needs an eps > 0, got --eps {args.eps}")
        if (args.bracket or args.skip_certified) and args.norm != "linf":
            raise InputError("--bracket and --skip-certified are available for --norm linf only")
        args.state_paths = state_files(args.state, args.eps_values)
        return
    if args.bracket or args.skip_certified or args.state is not None or args.carlini_checks:
        raise InputError("--bracket, --skip-certified, --state and --carlini-checks work with --suite only")
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()] if args.attacks else list(default_attacks())
    for name in attacks:
        accepted_params(name)  # an unknown name is refused here
    if not attacks or len(set(attacks)) != len(attacks):
        raise InputError(f"--attacks {args.attacks!r}: give distinct attack names")
    args.attacks = attacks
    args.eps_values = eps_grid(args.eps if args.eps is not None else DEFAULT_GRID)
    reserved = {"eps": "--eps (the grid)", "batch_size": "--batch-size", "seed": "--seed"}
    args.params = grouped_params(attacks, args.param, reserved=reserved)


def check_explore(args: argparse.Namespace) -> None:
    args.out = fresh_output_dir(args.out, force=args.force)


def check_exact(args: argparse.Namespace) -> None:
    model_source(args)
    args.out = fresh_output_dir(args.out, force=args.force)
    args.json = json_target(args.json)


def check_reproduce(args: argparse.Namespace) -> None:
    args.out = output_dir(args.out if args.out is not None else f"results/{args.experiment}")


def progress_mode(args: argparse.Namespace) -> str:
    """-q / --no-progress: never; --progress: always (even in a log); else auto (see advlab.progress)."""
    quiet = args.quiet or getattr(args, "no_progress", False)
    if quiet and args.progress:
        raise InputError("--progress forces progress bars and -q/--no-progress turns them off: give one of them")
    return "never" if quiet else "always" if args.progress else "auto"


def validate(args: argparse.Namespace) -> None:
    """Everything about a command line that can be checked without reading data or models."""
    args.progress_mode = progress_mode(args)
    args.threads = thread_count(getattr(args, "threads", None))
    if isinstance(getattr(args, "device", None), str):
        args.device = device(args.device)
    check = getattr(args, "check", None)
    if check is not None:
        check(args)


# ---- the command's run settings ---------------------------------------------------------------
def add_global_options(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """-q, --progress and --threads, accepted before the subcommand and after it: on the top
    parser with their defaults, on every subcommand (nested ones included) with none, so that a
    value given after the subcommand wins and one given before is not reset."""
    default: Callable[[Any], Any] = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no progress display at all")
    parser.add_argument("--progress", action="store_true", default=default(False),
                        help="progress bars even when stderr is not a terminal (default: bars on a terminal, "
                             "a one-line ETA every 30 s in a log)")
    parser.add_argument("--threads", type=threads, default=default(None),
                        help=f"CPU threads for torch (default: ${THREADS_ENV}, else 1)")
    for action in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for child in dict.fromkeys(action.choices.values()):
            add_global_options(child, top=False)


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that temporary files are removed on the way out."""


@contextlib.contextmanager
def run_settings(threads: int) -> Iterator[None]:
    """torch's thread count and a SIGTERM handler for the command, both restored afterwards."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    try:
        previous_handler = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous_handler = None
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
