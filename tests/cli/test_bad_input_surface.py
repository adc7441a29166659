"""Bad-input rows of issue 19's guard rails and CLI habits, with the contract of
test_bad_input_table.py: exit code 2, one line `advlab: error: ...`, no traceback, nothing on
stdout, no file or folder created, changed or removed. Then the habits that succeed: --version,
global options after the subcommand, `--json -`, eps fractions, --force."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advlab.cli import main

from .conftest import snapshot

A = "attack {mlp} --data-dir {data} --limit 5 --out {new}"
E = "evaluate {mlp} --data-dir {data} --limit 5 --no-progress --out {new}"
X = "exact {logreg} --data-dir {data} --limit 3 --no-progress --out {new}"
M = "--data-dir {data} --limit 5 --method fgsm --eps .1 --out {new}"

ROWS: list[tuple[str, str]] = [
    # ---- image folders: splits with other classes, classes asked for that a split lacks ----------
    ("data info --data folder:{folders}/split-mismatch", "differ from test classes"),
    ("train logreg --data folder:{folders}/split-mismatch --epochs 1 --no-progress --out {new}/m.safetensors",
     "differ from test classes"),
    ("train logreg --data folder:{folders}/digits --classes 3,8 --epochs 1 --no-progress --out {new}/m.safetensors",
     "class 8 does not occur in the data"),
    ("train logreg --data npz:{folders}/test-lacks-3.npz --classes 3,7 --epochs 1 --no-progress --out {new}/m.safetensors",
     "class 3 does not occur in the test split"),
    ("data info --data folder:{folders}/empty-8", "empty-8/8: no image files"),
    ("data info --data folder:{folders}/twice", "name the same number twice"),
    # ---- --model without weights ------------------------------------------------------------------
    (f"attack --model tests.cli.bad_models:untrained {M}", "no --weights FILE.safetensors"),
    ("evaluate --model tests.cli.bad_models:untrained --data-dir {data} --limit 5 --no-progress --out {new}",
     "pass --weights none to use it untrained on purpose"),
    ("exact --model tests.cli.bad_models:untrained --data-dir {data} --limit 3 --no-progress --out {new}", "no --weights"),
    # ---- global options after the subcommand are checked as before it -------------------------------
    (f"{A} --method fgsm --eps .1 --threads 0", "argument --threads"),
    (f"--threads 0 {A} --method fgsm --eps .1", "argument --threads"),
    (f"{A} --method fgsm --eps .1 -q --progress", "give one of them"),
    (f"{A} --method fgsm --eps .1 --no-progress --progress", "give one of them"),
    ("models --threads x", "argument --threads"),
    ("data info --threads 0", "argument --threads"),
    # ---- eps fractions ----------------------------------------------------------------------------
    (f"{A} --method fgsm --eps 8/0", "argument --eps"),
    (f"{A} --method fgsm --eps 8/x", "argument --eps"),
    (f"{A} --method fgsm --eps -8/255", "argument --eps"),
    (f"{E} --eps 0:8/255:0", "STEP > 0"),
    (f"{E} --eps 0:8/255:1/0", "STEP > 0"),
    (f"{E} --eps 2/255,8/x", "comma list"),
    (f"{E} --eps 0:1:1/10000", "more than 1000 values"),
    # ---- an existing --out is refused without --force -----------------------------------------------
    ("attack {mlp} --data-dir {data} --limit 5 --method fgsm --eps .1 --out {root}", "already exists and is not empty"),
    ("evaluate {mlp} --data-dir {data} --limit 5 --no-progress --out {root}", "pass --force"),
    ("exact {logreg} --data-dir {data} --limit 3 --no-progress --out {root}", "already exists and is not empty"),
    ("explore --no-progress --out {root}", "already exists and is not empty"),
    # ---- --json ---------------------------------------------------------------------------------
    (f"{A} --method fgsm --eps .1 --json {{root}}", "--json {root}: is a directory"),
    (f"{A} --method fgsm --eps .1 --json {{file}}/x.json", "exists and is not a directory"),
    (f"{X} --json", "argument --json: expected one argument"),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image folders (28x28 grey, one image per class): digits 0..9 without 8, train/test with
    other classes, an empty class folder, two folders naming the number 1; an .npz whose test
    split has no class 3."""
    root = tmp_path_factory.mktemp("folders")
    layouts = {
        "digits": [str(d) for d in range(10) if d != 8],
        "split-mismatch/train": ["0", "1", "2"], "split-mismatch/test": ["0", "2"],
        "empty-8": ["7", "8", "9"],
        "twice": ["1", "01"],
    }
    for layout, classes in layouts.items():
        for name in classes:
            (root / layout / name).mkdir(parents=True)
            Image.fromarray(np.full((28, 28), 40 * int(name) % 256, np.uint8), mode="L").save(root / layout / name / "a.png")
    (root / "empty-8/8/a.png").unlink()  # the case: a class folder with no images
    x = np.zeros((2, 28, 28), np.uint8)
    np.savez(root / "test-lacks-3.npz", x_train=x, y_train=np.array([3, 7]), x_test=x, y_test=np.array([7, 7]))
    return root


def _words(argv: str, workspace, folders: Path) -> list[str]:
    return [w.format(**workspace.placeholders(), folders=folders) for w in shlex.split(argv)]


@pytest.mark.parametrize("argv, message", ROWS, ids=[r[0][:80] for r in ROWS])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(workspace, folders, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workspace.root)
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    words = _words(argv, workspace, folders)
    message = message.format(**workspace.placeholders())
    before = snapshot(workspace.root), snapshot(workspace.data), snapshot(folders)
    code = main(words)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert out == "" and "Traceback" not in err
    assert (snapshot(workspace.root), snapshot(workspace.data), snapshot(folders)) == before


# ---- what succeeds ----------------------------------------------------------------------------------
def test_version_prints_the_package_version(capsys):
    import advlab

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"advlab {advlab.__version__}\n"


def test_global_options_after_the_subcommand_equal_those_before(workspace, tmp_path, capsys):
    after = ["attack", str(workspace.mlp), *_words(M.replace("{new}", str(tmp_path / "a")), workspace, tmp_path), "-q", "--threads", "1"]
    before = ["-q", "--threads", "1", "attack", str(workspace.mlp), *_words(M.replace("{new}", str(tmp_path / "b")), workspace, tmp_path)]
    assert main(after) == 0 and main(before) == 0
    summaries = [json.loads((tmp_path / d / "summary.json").read_text())["summary"] for d in "ab"]
    for s in summaries:
        s.pop("seconds"), s.pop("images_per_second")
    assert summaries[0] == summaries[1]
    assert capsys.readouterr().err == ""  # -q: no progress, after the subcommand as before it


def test_json_dash_puts_the_result_document_alone_on_stdout(workspace, tmp_path, capsys):
    out = tmp_path / "a"
    argv = _words(f"attack {{mlp}} {M} --json -".replace("{new}", str(out)), workspace, tmp_path)
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    assert json.loads(stdout) == json.loads((out / "summary.json").read_text())
    assert "attack success rate" in stderr  # the table moved to stderr


def test_json_file_for_evaluate_and_exact(workspace, tmp_path, capsys):
    argv = _words(E.replace("{new}", str(tmp_path / "e")) + f" --attacks fgsm --eps 0,8/255 --json {tmp_path / 'e.json'}",
                  workspace, tmp_path)
    assert main(argv) == 0
    document = json.loads((tmp_path / "e.json").read_text())
    assert document == json.loads((tmp_path / "e" / "robustness.json").read_text())
    argv = _words(X.replace("{new}", str(tmp_path / "x")) + " --json -", workspace, tmp_path)
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == json.loads((tmp_path / "x" / "exact.json").read_text())["summary"]


def test_eps_fraction_is_the_float_of_the_division(workspace, tmp_path, capsys):
    argv = _words(f"attack {{mlp}} {M}".replace("--eps .1", "--eps 8/255").replace("{new}", str(tmp_path / "a")), workspace, tmp_path)
    assert main(argv) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["params"]["eps"] == 8 / 255


def test_force_writes_over_an_existing_out(workspace, tmp_path, capsys):
    out = tmp_path / "a"
    argv = _words(f"attack {{mlp}} {M}".replace("{new}", str(out)), workspace, tmp_path)
    assert main(argv) == 0
    assert main(argv) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_model_with_its_own_weights_or_weights_none_is_accepted(workspace, tmp_path, capsys):
    for spec, extra in (("pretrained", []), ("untrained", ["--weights", "none"])):
        argv = _words(f"attack --model tests.cli.bad_models:{spec} {M}".replace("{new}", str(tmp_path / spec)), workspace, tmp_path)
        assert main([*argv, *extra]) == 0, capsys.readouterr().err


def test_data_info_prints_the_class_map_and_results_carry_it(workspace, folders, tmp_path, capsys):
    assert main(["data", "info", "--data", f"folder:{folders / 'digits'}"]) == 0
    assert "classes (folder -> label): 0 -> 0, 1 -> 1, 2 -> 2, 3 -> 3, 4 -> 4, 5 -> 5, 6 -> 6, 7 -> 7, 9 -> 9" in capsys.readouterr().out
    argv = ["attack", "--model", "tests.cli.bad_models:pretrained", "--data", f"folder:{folders / 'digits'}", "--method", "fgsm",
            "--eps", ".1", "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    classes = json.loads((tmp_path / "a" / "summary.json").read_text())["classes"]
    assert classes == {**{str(d): d for d in range(8)}, "9": 9}
