"""The CLI's bad-input contract, one row per case, for every subcommand: exit code 2, exactly one
line `advlab: error: ...` on stderr naming the problem, no traceback, nothing printed on stdout
before it, and no file or folder created, changed or removed (the workspace and the data folder
are compared before and after). Rows marked `issue10` are the reproducers of issue 10."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from advlab.cli import checks
from advlab.cli import main

from .conftest import CHECKPOINT_EDITS, snapshot

I = "issue10"  # noqa: E741  (a reproducer from issue 10)
A = "attack {mlp} --data-dir {data} --limit 5 --out {new}"  # a valid attack, minus the method
E = "evaluate {mlp} --data-dir {data} --limit 5 --no-progress --out {new}"
X = "exact {logreg} --data-dir {data} --limit 3 --no-progress --out {new}"
T = "train logreg --data-dir {data} --epochs 1 --no-progress"
R = "reproduce goodfellow-fig2 --data-dir {data} --no-progress"

ROWS: list[tuple[str, str, str, str]] = [
    # ---- attack -------------------------------------------------------------------------------
    ("attack", f"{A} --method fgsm", "--eps is required for --method fgsm", I),
    ("attack", f"{A} --method pgd", "--eps is required for --method pgd", I),
    ("attack", f"{A} --method bim", "--eps is required for --method bim", I),
    ("attack", f"{A} --method fgm", "--eps is required for --method fgm", ""),
    ("attack", f"{A} --method fgsm --eps .1 --device foo", "--device 'foo'", I),
    ("attack", f"{A} --method fgsm --eps .1 --device cuda:99", "--device cuda:99", ""),
    ("attack", f"{A} --method fgsm --eps .1 --device cpu:0", "--device 'cpu:0'", ""),
    ("attack", f"{A} --method pgd --eps .1 -p early_exit=maybe", "early_exit=maybe: expected true or false", I),
    ("attack", f"{A} --method pgd --eps .1 -p bounds=0", "bounds=0: expected two numbers", I),
    ("attack", f"{A} --method pgd --eps .1 -p bounds=0,nan", "expected a finite number", ""),
    ("attack", f"{A} --method pgd --eps .1 -p steps=2.5", "--param steps=2.5", ""),
    ("attack", f"{A} --method pgd --eps .1 -p steps=many", "--param steps=many", ""),
    ("attack", f"{A} --method pgd --eps .1 -p step_size=inf", "expected a finite number", ""),
    ("attack", f"{A} --method pgd --eps .1 -p eps=.2", "--param eps: set by --eps", ""),
    ("attack", f"{A} --method pgd --eps .1 -p batch_size=5", "--param batch_size: set by --batch-size", ""),
    ("attack", f"{A} --method pgd --eps .1 -p seed=5", "--param seed: set by --seed", ""),
    ("attack", f"{A} --method pgd --eps .1 -p steps=3 -p steps=4", "given twice", ""),
    ("attack", f"{A} --method fgsm --eps .1 -p steps=3", "has no parameter 'steps'", ""),
    ("attack", f"{A} --method fgsm --eps .1 -p eps", "KEY=VALUE", ""),
    ("attack", f"{A} --method pgd --eps .1 -p steps=0", "steps", ""),
    ("attack", f"{A} --method fgsm --eps -1", "argument --eps: expected a finite number >= 0", ""),
    ("attack", f"{A} --method fgsm --eps nan", "argument --eps: expected a finite number >= 0", ""),
    ("attack", f"{A} --method fgsm --eps inf", "argument --eps: expected a finite number >= 0", ""),
    ("attack", f"{A} --method fgsm --eps 2", "exceeds the width", ""),
    ("attack", "attack {mlp} --data-dir {data} --method fgsm --eps .1 --limit -5 --out {new}", "argument --limit", I),
    ("attack", "attack {mlp} --data-dir {data} --method fgsm --eps .1 --limit 0 --out {new}", "argument --limit", ""),
    ("attack", "attack {mlp} --data-dir {data} --method fgsm --eps .1 --limit 2.5 --out {new}", "argument --limit", ""),
    ("attack", f"{A} --method fgsm --eps .1 --batch-size 0", "argument --batch-size", ""),
    ("attack", f"{A} --method fgsm --eps .1 --seed -1", "argument --seed", ""),
    ("attack", f"{A} --method fgsm --eps .1 --seed x", "argument --seed", ""),
    ("attack", f"{A} --method fgsm --eps .1 --threads 0", "argument --threads", ""),
    ("attack", f"{A} --method fgsm --eps .1 --targets -1", "--targets takes random", ""),
    ("attack", f"{A} --method fgsm --eps .1 --targets most-likely", "--targets takes random", ""),
    ("attack", "attack {logreg} --data-dir {data} --limit 5 --out {new} --method fgsm --eps .1 --targets 5", "targets must lie in 0..1", ""),
    ("attack", f"{A} --method nope --eps .1", "argument --method: invalid choice", ""),
    ("attack", f"{A} --method fgsm --eps .1 --split validation", "argument --split", ""),
    ("attack", f"{A} --method fgsm --eps .1 --bogus", "unrecognized arguments: --bogus", ""),
    ("attack", "attack --data-dir {data} --method fgsm --eps .1 --out {new}", "give either a CHECKPOINT or --model", ""),
    ("attack", "attack {mlp} --model no_such_module_advlab:f --data-dir {data} --method fgsm --eps .1 --out {new}",
     "give either a CHECKPOINT or --model", ""),
    ("attack", "attack {mlp} --weights {mlp} --data-dir {data} --method fgsm --eps .1 --out {new}", "--weights goes with --model", ""),
    ("attack", "attack --model no_such_module_advlab:f --data-dir {data} --method fgsm --eps .1 --out {new}",
     "no_such_module_advlab", ""),
    ("attack", "attack --model tests.cli.bad_models:tuple_output --data-dir {data} --method fgsm --eps .1 --out {new}",
     "the model cannot take", I),
    ("attack", "attack --model tests.cli.bad_models:nan_output --data-dir {data} --method fgsm --eps .1 --out {new}",
     "NaN or inf", I),
    ("evaluate", "evaluate --model tests.cli.bad_models:nan_output --data-dir {data} --no-progress --out {new}", "NaN or inf", ""),
    ("attack", "attack --model {missing}.pt2 --data-dir {data} --method fgsm --eps .1 --out {new}", "no-such-thing.pt2", ""),
    ("attack", "attack {mlp} --method fgsm --eps .1", "the following arguments are required: --out", ""),
    ("attack", "attack {mlp} --data-dir {data} --method fgsm --eps .1 --out {file}", "exists and is not a directory", I),
    ("attack", "attack {mlp} --data-dir {data} --method fgsm --eps .1 --out {file}/sub", "is a file, not a directory", ""),
    ("attack", "attack {missing} --data-dir {data} --method fgsm --eps .1 --out {new}", "no such checkpoint", ""),
    ("attack", "attack {folder} --data-dir {data} --method fgsm --eps .1 --out {new}", "no such checkpoint", ""),
    ("attack", "attack {mlp} --data-dir {missing} --method fgsm --eps .1 --out {new}", "data directory does not exist", ""),
    ("attack", "attack {mlp} --data-dir {file} --method fgsm --eps .1 --out {new}", "data directory does not exist", ""),
    # ---- evaluate ------------------------------------------------------------------------------
    ("evaluate", f"{E} --eps 0,0.1 -p pgd.eps=0.2", "--param eps: set by --eps (the grid)", I),
    ("evaluate", f"{E} --eps 0:0.3:0.0000001", "more than 1000 values", I),
    ("evaluate", f"{E} --eps 0:inf:0.1", "must be finite", ""),
    ("evaluate", f"{E} --eps 0,nan", "must be finite", ""),
    ("evaluate", f"{E} --eps=-0.1,0.1", "eps must be >= 0", ""),
    ("evaluate", f"{E} --eps 0:0.3:0", "eps must be START:STOP:STEP", ""),
    ("evaluate", f"{E} --eps 0.3:0:0.1", "eps must be START:STOP:STEP", ""),
    ("evaluate", f"{E} --eps 0:x", "eps must be", ""),
    ("evaluate", f"{E} --eps ,", "no eps values", ""),
    ("evaluate", f"{E} --eps 0,2", "exceeds the width", ""),
    ("evaluate", f"{E} --attacks nope", "unknown attack 'nope'", ""),
    ("evaluate", f"{E} --attacks fgsm,fgsm", "distinct attack names", ""),
    ("evaluate", f"{E} --attacks deepfool", "no eps budget", ""),
    ("evaluate", f"{E} --attacks fgsm -p pgd.steps=3", "ATTACK.KEY=VALUE", ""),
    ("evaluate", f"{E} --attacks fgsm -p fgsm.nope=3", "no parameter 'nope'", ""),
    ("evaluate", f"{E} -p pgd.early_exit=maybe", "expected true or false", ""),
    ("evaluate", f"{E} -p pgd.batch_size=3", "set by --batch-size", ""),
    ("evaluate", f"{E} --batch-size 0", "argument --batch-size", ""),
    ("evaluate", f"{E} --device foo", "--device 'foo'", ""),
    ("evaluate", f"{E} --source {{missing}}", "no such checkpoint", ""),
    ("evaluate", f"{E} --source {{ckpt_truncated}}", "not a valid advlab checkpoint", ""),
    ("evaluate", "evaluate {mlp} --data-dir {data} --out {file}", "exists and is not a directory", I),
    ("evaluate", "evaluate {mlp} --data-dir {data} --out {logreg}/x", "is a file, not a directory", ""),
    ("evaluate", "evaluate {mlp} --data-dir {data_labels_negative} --out {new}", "label -3 outside 0..9", ""),
    # ---- exact ---------------------------------------------------------------------------------
    ("exact", f"{X} --time-limit 0", "argument --time-limit", ""),
    ("exact", f"{X} --time-limit nan", "argument --time-limit", ""),
    ("exact", f"{X} --norm l3", "argument --norm: invalid choice", ""),
    ("exact", f"{X} --limit=-1", "argument --limit", ""),
    ("exact", "exact {mlp} --data-dir {data} --norm l2 --limit 3 --out {new}", "need a linear model", ""),
    ("exact", "exact {logreg} --data-dir {data} --out {file}", "exists and is not a directory", ""),
    ("exact", "exact {ckpt_nan_weights} --data-dir {data} --out {new}", "NaN or inf", I),
    ("exact", "exact {logreg} --data-dir {data_shape_14x56} --out {new}", "(N, 28, 28)", ""),
    # ---- train ---------------------------------------------------------------------------------
    ("train", f"{T} --classes 3,7,1 --out {{new}}", "labels run from 0 to 2 but the model has 2 classes", I),
    ("train", f"{T} --classes 3,17 --out {{new}}", "class 17 does not occur in the data", I),
    ("train", f"{T} --classes=-1,2 --out {{new}}", "argument --classes", I),
    ("train", f"{T} --classes 3,3 --out {{new}}", "argument --classes", ""),
    ("train", f"{T} --classes 3 --out {{new}}", "argument --classes", ""),
    ("train", f"{T} --classes 3,x --out {{new}}", "argument --classes", ""),
    ("train", f"{T} --lr inf --out {{new}}", "argument --lr", I),
    ("train", f"{T} --lr nan --out {{new}}", "argument --lr", ""),
    ("train", f"{T} --lr 0 --out {{new}}", "argument --lr", ""),
    ("train", f"{T} --epochs 0 --out {{new}}", "argument --epochs", ""),
    ("train", f"{T} --epochs 2.5 --out {{new}}", "argument --epochs", ""),
    ("train", f"{T} --batch-size 0 --out {{new}}", "argument --batch-size", ""),
    ("train", f"{T} --weight-decay -1 --out {{new}}", "argument --weight-decay", ""),
    ("train", f"{T} --weight-decay inf --out {{new}}", "argument --weight-decay", ""),
    ("train", f"{T} --optimizer lbfgs --out {{new}}", "argument --optimizer", ""),
    ("train", f"{T} --eps .1 --out {{new}}", "only used with --adversarial", ""),
    ("train", f"{T} --adversarial fgsm --steps 3 --out {{new}}", "only apply with --adversarial pgd", ""),
    ("train", f"{T} --adversarial fgsm --alpha 2 --out {{new}}", "alpha must lie in [0, 1]", ""),
    ("train", f"{T} --adversarial fgsm --alpha nan --out {{new}}", "argument --alpha", ""),
    ("train", f"{T} --adversarial pgd --eps nan --out {{new}}", "argument --eps", ""),
    ("train", f"{T} --device foo --out {{new}}", "--device 'foo'", I),
    ("train", f"{T} --device cuda:7 --out {{new}}", "--device cuda:7", ""),
    ("train", "train resnet --out {new}", "unknown model 'resnet'", ""),
    ("train", f"{T} --out {{logreg}}", "already exists; pass --resume", I),
    ("train", f"{T} --out {{mlp}}", "already exists; pass --resume", I),
    ("train", f"{T} --out {{file}}", "already exists; pass --resume", ""),
    ("train", f"{T} --out {{file}}/x.safetensors", "notes.txt: exists and is not a directory", I),
    ("train", f"{T} --out {{logreg}} --resume --force", "give one of them", ""),
    ("train", f"{T} --classes 3,7 --out {{mlp}} --resume", "cannot resume a different run", ""),
    ("train", f"{T} --out {{folder}}/keep.txt/", "keep.txt: exists and is not a directory", ""),
    ("train", "train mlp-20-20 --data-dir {data} --epochs 2 --no-progress --out {ckpt_optimizer_corrupt} --resume",
     "corrupt training state, cannot resume", ""),
    ("train", "train logreg --data-dir {data_rows_27} --out {new}", "(N, 28, 28)", I),
    ("train", "train logreg --data-dir {data_labels_10} --out {new}", "label 10 outside 0..9", ""),
    ("train", "train logreg --data-dir {data_missing_file} --out {new}", "missing train-labels", ""),
    ("train", f"{T} --threads many --out {{new}}", "argument --threads", ""),
    # ---- data info / fetch ---------------------------------------------------------------------
    *[("data info", f"data info --data-dir {{data_{k.replace('-', '_')}}}", msg, tag) for k, msg, tag in [
        ("rows-27", "(N, 28, 28), the header declares uint8 (10, 27, 28)", I),
        ("shape-14x56", "(N, 28, 28), the header declares uint8 (10, 14, 56)", I),
        ("labels-negative", "label -3 outside 0..9", I),
        ("labels-10", "label 10 outside 0..9", ""),
        ("labels-float", "1-D integer label array", ""),
        ("labels-2d", "1-D integer label array", ""),
        ("count-mismatch", "10 test images but 9 labels", ""),
        ("images-float", "expected uint8 images", ""),
        ("truncated", "the file holds", ""),
        ("bad-magic", "bad IDX magic number", ""),
        ("bad-gzip", "corrupt or truncated gzip", ""),
        ("missing-file", "missing train-labels", ""),
    ]],
    *[("data info", f"data info --data npz:{{data_{k.replace('-', '_')}}}", msg, "") for k, msg in [
        ("npz-range", "float images must lie in [0, 1]"),
        ("npz-negative", "negative label"),
        ("npz-nan", "NaN or inf"),
        ("npz-no-labels", "missing array(s) y"),
        ("npz-junk", "not a readable .npz"),
    ]],
    ("data info", "data info --data bogus", "--data takes mnist, fashion-mnist", ""),
    ("data info", "data info --data npz:{missing}", "no such file", ""),
    ("data info", "data info --data folder:{file}", "image folder does not exist", ""),
    ("data info", "data info --data folder:{folder}", "one subfolder per class", ""),
    ("data info", "data info --data-dir {missing}", "data directory does not exist", ""),
    ("data info", "data info --data-dir {data} --threads 0", "argument --threads", ""),
    ("data fetch", "data fetch mnist {new} --mirror notaurl", "mirror 'notaurl' is not an http(s), ftp or file URL", I),
    ("data fetch", "data fetch mnist {new} --mirror http://", "is not an http(s), ftp or file URL", ""),
    ("data fetch", "data fetch mnist {file}", "exists and is not a directory", I),
    ("data fetch", "data fetch mnist {file}/sub", "is a file, not a directory", ""),
    ("data fetch", "data fetch cifar {new}", "argument dataset: invalid choice", ""),
    ("data", "data", "the following arguments are required", ""),
    # ---- models --------------------------------------------------------------------------------
    ("models", "models extra", "unrecognized arguments: extra", ""),
    ("models", "models --threads 0", "argument --threads", ""),
    ("", "", "the following arguments are required: command", ""),
    ("", "nonsense", "argument command: invalid choice", ""),
    # ---- reproduce -----------------------------------------------------------------------------
    ("reproduce", f"{R} --out {{file}}", "exists and is not a directory", I),
    ("reproduce", f"{R} --out {{file}}/sub", "is a file, not a directory", ""),
    ("reproduce", "reproduce nope --out {new}", "argument experiment: invalid choice", ""),
    ("reproduce", f"{R} --eps -1 --out {{new}}", "argument --eps", ""),
    ("reproduce", f"{R} --images 0 --out {{new}}", "argument --images", ""),
    ("reproduce", f"{R} --seed -3 --out {{new}}", "argument --seed", ""),
    ("reproduce", f"{R} --jobs 2 --out {{new}}", "--jobs applies to adversarial-generalization only", ""),
    ("reproduce", f"{R} --jobs 0 --out {{new}}", "argument --jobs", ""),
    ("reproduce", f"{R} --epochs 2 --out {{new}}", "--epochs applies to adversarial-generalization, goodfellow-advtrain only", ""),
    ("reproduce", f"{R} --device cuda:9 --out {{new}}", "--device cuda:9", ""),
    ("reproduce", "reproduce goodfellow-fig2 --data-dir {data_labels_negative} --no-progress --out {new}", "label -3 outside", ""),
    # ---- explore -------------------------------------------------------------------------------
    ("explore", "explore --no-progress --out {file}", "exists and is not a directory", ""),
    ("explore", "explore --no-progress --checkpoint {missing} --out {new}", "no such checkpoint", ""),
    ("explore", "explore --no-progress --checkpoint {ckpt_nan_weights} --out {new}", "NaN or inf", ""),
    ("explore", "explore --no-progress --seed -1 --out {new}", "argument --seed", ""),
    # ---- checkpoints, through attack (the loader every command shares) -------------------------
    *[("checkpoint", f"attack {{ckpt_{k.replace('-', '_')}}} --data-dir {{data}} --method fgsm --eps .1 --out {{new}}", msg, tag)
      for k, msg, tag in [
          ("arch-unknown-key", "has no architecture keyword 'bogus'", I),
          ("arch-not-dict", "architecture of 'mlp-20-20' must be a mapping", I),
          ("arch-bad-type", "activation=5: expected a short string", ""),
          ("arch-float-width", "hidden=1000000.0: expected an integer", I),
          ("arch-too-wide", "expected an integer in 1..1048576", I),
          ("huge-model", "would hold", I),
          ("hidden-1e6", "would hold 1,000,796,000,010 numbers", I),
          ("hidden-1000", "fc1.bias has shape [20], the model needs [1000]", ""),
          ("no-model", "names no model", I),
          ("unknown-model", "unknown model 'resnet'", ""),
          ("name-disagrees", "model 'mlp-20-20' has hidden=[20, 20], not [50, 50]", I),
          ("logreg-header", "weights do not fit model 'logreg'", I),
          ("classes-99", "class 99 does not occur in the data", I),
          ("classes-not-list", "data.classes must be a list", ""),
          ("classes-repeated", "distinct classes", ""),
          ("format", "unknown checkpoint format", ""),
          ("progress-not-object", "field 'progress' must be a JSON object", ""),
          ("progress-epoch-text", "progress.epoch must be an integer", ""),
          ("nan-weights", "NaN or inf", I),
          ("inf-weights", "NaN or inf", ""),
          ("missing-tensor", "out.bias has shape none", ""),
          ("extra-tensor", "extra has shape [3], the model needs none", ""),
          ("truncated", "not a valid advlab checkpoint", ""),
          ("junk", "not a valid advlab checkpoint", ""),
          ("empty", "not a valid advlab checkpoint", ""),
          ("header-too-long", "header of 1000000000000 bytes declared", ""),
          ("header-not-object", "not a valid advlab checkpoint", ""),
          ("metadata-not-object", "metadata is not a JSON object", ""),
      ]],
]
assert {k.replace("_", "-") for k in CHECKPOINT_EDITS} <= {r[1].split("{ckpt_")[1].split("}")[0].replace("_", "-") for r in ROWS if "{ckpt_" in r[1]}


def _params():
    for command, argv, message, tag in ROWS:
        yield pytest.param(argv, message, id=f"{command or 'advlab'}: {argv[:70]}{' [' + tag + ']' if tag else ''}")


@pytest.mark.parametrize("argv, message", list(_params()))
def test_bad_input_exits_2_with_one_line_and_changes_nothing(workspace, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workspace.root)  # relative default outputs (results/...) would land here
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    words = [w.format(**workspace.placeholders()) for w in shlex.split(argv)]
    before = snapshot(workspace.root), snapshot(workspace.data)
    code = main(words)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err + out
    assert (snapshot(workspace.root), snapshot(workspace.data)) == before


def test_threads_from_the_environment_are_checked(workspace, capsys, monkeypatch):
    monkeypatch.setenv("ADVLAB_THREADS", "zero")
    before = snapshot(workspace.root)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advlab: error: $ADVLAB_THREADS") and err.count("\n") == 1
    assert snapshot(workspace.root) == before


@pytest.mark.parametrize("argv", [f"{A} --method fgsm --eps .1", f"{T} --out {{new}}/m.safetensors", f"{R} --out {{new}}/r"])
def test_read_only_output_folder_is_refused_before_the_work(workspace, capsys, monkeypatch, argv):
    """A folder the user cannot write into (simulated: the tests may run as root, who can)."""
    locked = workspace.root / "locked"
    locked.mkdir(exist_ok=True)
    real_access = os.access
    monkeypatch.setattr(checks.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    try:
        words = [w.format(**{**workspace.placeholders(), "new": str(locked / "out")}) for w in shlex.split(argv)]
        before = snapshot(workspace.root)
        assert main(words) == 2
        assert "is not writable" in capsys.readouterr().err
        assert snapshot(workspace.root) == before
    finally:
        locked.rmdir()
