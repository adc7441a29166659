"""`advlab evaluate` and `advlab reproduce goodfellow-advtrain` through `main(argv)`."""

import json

import pytest

from advlab.cli import main
from advlab.experiments import goodfellow_advtrain, registry


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_mnist_dir):
    path = tmp_path_factory.mktemp("ckpt") / "softmax.safetensors"
    assert main(["train", "softmax", "--data-dir", str(small_mnist_dir), "--epochs", "3", "--out", str(path), "--no-progress"]) == 0
    return path


def test_evaluate_writes_table_curve_and_checks(tmp_path, capsys, checkpoint, small_mnist_dir):
    code = main(["evaluate", str(checkpoint), "--attacks", "fgsm", "--eps", "0:0.2:0.1", "--source", str(checkpoint),
                 "--data-dir", str(small_mnist_dir), "--out", str(tmp_path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "gradient-masking check" in out and "| 0.1 |" in out
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["n"] == 50 and saved["model"] == "softmax" and saved["eps"] == [0.0, 0.1, 0.2]
    assert saved["points"][0]["accuracy"] == saved["clean_accuracy"]
    assert (tmp_path / "robustness.png").is_file()


def test_reproduce_goodfellow_advtrain_runs_and_resumes(tmp_path, capsys, small_mnist_dir, monkeypatch):
    monkeypatch.setattr(registry, "PaperSchedule", lambda: goodfellow_advtrain.PaperSchedule(patience=1, max_epochs=2))
    argv = ["reproduce", "goodfellow-advtrain", "--data-dir", str(small_mnist_dir), "--out", str(tmp_path), "--models", "maxout",
            "--no-progress"]
    assert main(argv) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    out = capsys.readouterr().out
    assert "FGSM error ratio adversarial / standard" in out and "early stopping chose epoch" in out
    report = (tmp_path / "report.md").read_text()
    assert "89.4%" in report and "0.84%" in report and "gradient-masking check" in report
    assert "this run on 300" in report  # the training-set size of this run, not a fixed figure
    assert "Setup differs from the paper's for maxout: training images: 300 (paper: 60000); optimiser: adam" in report
    assert list(first["models"]) == ["maxout"] and first["schedule"]["patience"] == 1
    maxout = first["models"]["maxout"]
    assert first["seeds"] == [0] and [run["seed"] for run in maxout["runs"]] == [0]
    adversarial, standard = maxout["runs"][0]["adversarial"], maxout["runs"][0]["standard"]
    assert adversarial["train_config"]["epochs"] == adversarial["selection"]["best_epoch"] and adversarial["objective"]["alpha"] == 0.5
    assert adversarial["selection"]["n_fit"] == 250 and adversarial["selection"]["n_validation"] == 50
    assert maxout["fgsm_ratio"] == pytest.approx(adversarial["fgsm_error"] / standard["fgsm_error"])
    assert (tmp_path / "curves.png").is_file() and len(list((tmp_path / "checkpoints" / "seed-0").glob("*.safetensors"))) == 4
    assert (tmp_path / "selection.png").is_file() and "![validation error during early stopping](selection.png)" in report
    assert main(argv) == 0  # a second run reuses every finished checkpoint
    second = json.loads((tmp_path / "results.json").read_text())
    again = second["models"]["maxout"]["runs"][0]
    assert again["adversarial"]["resumed_from"] == adversarial["train_config"]["epochs"]
    assert again["standard"]["fgsm_error"] == standard["fgsm_error"]
