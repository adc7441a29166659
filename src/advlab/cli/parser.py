"""advlab's argument parser: every command, its options and their help, each option typed and
each command's check attached (`advlab.cli.checks`)."""

from __future__ import annotations

import argparse
import sys

from advlab.attacks import ATTACKS
from advlab.attacks.suites import DEFAULT_SUITE
from advlab.cli import checks
from advlab.cli.attack import cmd_attack
from advlab.cli.data import cmd_data_fetch, cmd_data_info
from advlab.cli.evaluate import cmd_evaluate
from advlab.cli.exact import cmd_exact
from advlab.cli.explore import cmd_explore
from advlab.cli.models import cmd_models
from advlab.cli.params import requires_eps
from advlab.cli.reproduce import cmd_reproduce
from advlab.cli.train import cmd_train
from advlab.cli.verify import add_verify_parser
from advlab.experiments.registry import EXPERIMENTS


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
        """What `advlab.cli.common.checkpoint_and_split` reads: the checkpoint, the split and its data."""
        p.add_argument("checkpoint", nargs="?", help="an advlab checkpoint (.safetensors); or use --model")
        p.add_argument("--model", metavar="package.module:factory|FILE.pt2|FILE.onnx",
                       help="your own model instead of a checkpoint: package.module:factory IMPORTS AND RUNS your module "
                            "(found on PYTHONPATH or in the current folder) and calls factory(); FILE.pt2 is a torch.export "
                            "program and FILE.onnx an ONNX network, both read without running code from them")
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
    evaluate.add_argument("--suite", nargs="?", const=DEFAULT_SUITE,
                          help=f"run an attack suite as a cascade: {DEFAULT_SUITE} (the default: adaptive APGD, Square where "
                               "gradients look masked), standard (AutoAttack's), plus, rand, malt, quick, or a JSON list")
    evaluate.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model of --suite")
    evaluate.add_argument("--bracket", action="store_true", help="with --suite: prove a lower bound (bounds + MILP, L-inf)")
    evaluate.add_argument("--carlini-checks", action="store_true",
                          help="with --suite: also run the checks of Carlini et al. 2019 that need runs of their own (loss "
                               "convergence, a doubled budget, unbounded eps, black-box) on up to 20 points left robust")
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
                           "(default: each model's registered epochs); goodfellow-advtrain: train every model this many "
                           "epochs on all training images instead of early stopping")
    reproduce.add_argument("--train-images", type=checks.positive_int, help="adversarial-generalization: the first N "
                           "training images of each set (default: all)")
    reproduce.add_argument("--models", type=checks.name_list, help="goodfellow-advtrain: comma-separated model pairs to train, "
                           "in order (default: maxout,maxout-1600,cnn)")
    reproduce.add_argument("--seeds", type=checks.positive_int, default=1, help="goodfellow-advtrain: train each pair with "
                           "this many seeds, --seed, --seed + 1, ... (default 1; the clean-error verdict needs 2 or more)")
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
    add_verify_parser(sub)
    checks.add_global_options(parser)
    return parser
