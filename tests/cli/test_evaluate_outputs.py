"""`advlab evaluate`'s output files: per-example outcomes beside every report (examples.npz), a
plot for a grid and a suite alike, --stream composed with --suite, a suite refused without --eps,
the bracket's reason, titles from the model's name."""

from __future__ import annotations

import argparse
import json
import shlex

import numpy as np
import pytest

from advlab.cli import main
from advlab.cli.evaluate import _title
from advlab.data import load_mnist

from .conftest import snapshot

FIGURES = ("png", "pdf", "svg")


def _run(workspace, capsys, argv: str, out) -> tuple[int, str, str]:
    words = [w.format(**workspace.placeholders()) for w in shlex.split(argv)] + ["--out", str(out)]
    code = main(words)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _examples(folder) -> dict[str, np.ndarray]:
    with np.load(folder / "examples.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_a_grid_writes_examples_that_agree_with_its_summary(workspace, capsys, tmp_path):
    code, out, err = _run(workspace, capsys, "evaluate {mlp} --data-dir {data} --limit 20 --attacks fgsm,pgd -p pgd.steps=3 "
                          "--eps 0,0.1 --no-progress", tmp_path)
    assert code == 0, err
    assert {f"robustness.{f}" for f in (*FIGURES, "json", "md")} | {"examples.npz"} <= {p.name for p in tmp_path.iterdir()}
    saved, columns = json.loads((tmp_path / "robustness.json").read_text()), _examples(tmp_path)
    assert set(columns) == {"index", "label", "clean_correct", "eps", "robust", "broken_by", "x_adv"}
    assert columns["robust"].shape == (2, 20) and columns["x_adv"].shape == (2, 20, 1, 28, 28)
    assert columns["robust"].mean(1).tolist() == saved["robust_accuracy"] == saved["worst_case"]
    assert columns["clean_correct"].mean() == saved["clean_accuracy"]
    assert ((columns["broken_by"] == "clean") == ~columns["clean_correct"]).all()
    assert set(np.unique(columns["broken_by"])) <= {"", "clean", "fgsm", "pgd"}
    x = load_mnist(workspace.data).test.images[:20].numpy()
    assert np.abs(columns["x_adv"][1] - x).max() <= 0.1 + 1e-6 and np.array_equal(columns["x_adv"][0], x)
    assert saved["bracket"][0] == [saved["clean_accuracy"]] * 2 and "no verifier ran" in saved["bracket_reason"][1]
    text = (tmp_path / "robustness.md").read_text()
    assert "Wall time of the whole command" in text and "evaluation: pgd" in text
    assert saved["seconds"]["total"] >= saved["seconds"]["evaluate"] >= saved["seconds"]["evaluation: pgd"]


def test_a_suite_writes_a_plot_and_examples_and_streams(workspace, capsys, tmp_path):
    argv = "evaluate {mlp} --data-dir {data} --limit 12 --suite quick --eps 0.05,0.1 --batch-size 5 --no-progress"
    code, out, err = _run(workspace, capsys, argv, tmp_path / "memory")
    assert code == 0, err
    names = {p.name for p in (tmp_path / "memory").iterdir()}
    assert {f"suite.{f}" for f in (*FIGURES, "json", "md")} | {"examples.npz"} <= names and "robustness.json" not in names
    saved, columns = json.loads((tmp_path / "memory" / "suite.json").read_text()), _examples(tmp_path / "memory")
    assert columns["robust"].mean(1).tolist() == saved["robust_accuracy"] == [e["robust_accuracy"] for e in saved["evaluations"]]
    assert set(np.unique(columns["broken_by"])) <= {"", "clean", *saved["attacks"]}
    counts = [e["broken_counts"] for e in saved["evaluations"]]
    for i, count in enumerate(counts):
        assert {k: int((columns["broken_by"][i] == k).sum()) for k in count} == count
    assert all("no verifier ran" in r for r in saved["bracket_reason"])
    code, out, err = _run(workspace, capsys, argv + " --stream", tmp_path / "stream")
    assert code == 0, err
    streamed = _examples(tmp_path / "stream")
    assert all(np.array_equal(streamed[k], columns[k]) for k in columns)
    assert {p.name for p in (tmp_path / "stream" / "examples").iterdir()} == {"state.eps0.05.npz", "state.eps0.1.npz"}


def test_a_suite_without_eps_is_refused_in_one_line(workspace, capsys, tmp_path):
    before = snapshot(workspace.root)
    code, out, err = _run(workspace, capsys, "evaluate {mlp} --data-dir {data} --limit 5 --suite quick", tmp_path / "none")
    assert code == 2 and err.startswith("advlab: error: --suite needs --eps") and err.count("\n") == 1, err
    assert not (tmp_path / "none").exists() and snapshot(workspace.root) == before


def test_help_names_what_is_written(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "suite.*" in text and "examples.npz" in text and "required with --suite" in text


@pytest.mark.parametrize("model, checkpoint, expected", [
    ("mynet:build", None, "Robustness of mynet:build on d"),
    (None, "runs/m.safetensors", "Robustness of mlp-20-20 (m.safetensors) on d"),
])
def test_titles_name_the_model_once(model, checkpoint, expected):
    args = argparse.Namespace(model=model, checkpoint=checkpoint, suite=None)
    assert _title(args, model or "mlp-20-20", "d") == expected
