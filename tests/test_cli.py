"""The CLI end to end through `main(argv)`: exit codes, one-line errors, files written."""

import json

import numpy as np
import pytest

from advlab.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "logreg.safetensors"
    assert main(["train", "logreg", "--classes", "3,7", "--epochs", "3", "--out", str(path), "--no-progress"]) == 0
    return path


def test_train_attack_round_trip(tmp_path, capsys, checkpoint):
    code, out, err = run(capsys, "attack", checkpoint, "--method", "fgsm", "--eps", "0.25", "--out", tmp_path / "a")
    assert code == 0, err
    assert "adversarial accuracy" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["model"] == "logreg" and summary["summary"]["n"] == 194
    assert summary["summary"]["adversarial_error"] > 0.9
    with np.load(tmp_path / "a" / "adversarial.npz") as saved:
        assert saved["x_adv"].shape == (194, 1, 28, 28)


def test_targeted_and_params(tmp_path, capsys, checkpoint):
    code, out, err = run(capsys, "attack", checkpoint, "--method", "fgm", "-p", "eps=2.0", "--targets", "random", "--limit", "20", "--out", tmp_path / "b")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["summary"]["targeted"] is True


def test_reproduce_fig2_on_embedded(tmp_path, capsys):
    code, out, err = run(capsys, "reproduce", "goodfellow-fig2", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"fig2.png", "report.md", "results.json"}
    assert "FGSM error" in out


def test_models_and_data_info(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "logreg" in out and "softmax" in out
    code, out, _ = run(capsys, "data", "info")
    assert code == 0 and "4000 images" in out


def test_reproduce_szegedy_quick_resumes(tmp_path, capsys, monkeypatch):
    from advlab.experiments.szegedy.settings import SzegedySettings

    tiny = SzegedySettings(zoo=("fc10-1e-4", "fc100-100-10"), split=(("fc10-1", "P1"),), max_epochs=1, n_all_targets=1,
                           attack_params=(("search_steps", 4), ("max_iter", 20)), n_units=2, n_random=2, top_k=3)
    monkeypatch.setattr(SzegedySettings, "quick", classmethod(lambda cls, seed=0: tiny))
    code, out, err = run(capsys, "reproduce", "szegedy", "--quick", "--images", "5", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert {"report.md", "results.json", "adversarial.png", "units_vs_directions.png", "cache"} <= {p.name for p in tmp_path.iterdir()}
    assert "FC10(1e-4)" in out and "FC100-100-10" in out
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["n_attack"] == 5
    first = json.loads((tmp_path / "results.json").read_text())
    code, out, err = run(capsys, "reproduce", "szegedy", "--quick", "--images", "5", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["models"] == first["models"] and again["transfer"] == first["transfer"]
    assert again["seconds"]["table2"] == 0.0


def test_exact_linear_and_relu(tmp_path, capsys, checkpoint):
    code, out, err = run(capsys, "exact", checkpoint, "--norm", "l2", "--limit", "20", "--out", tmp_path / "lin")
    assert code == 0, err
    report = json.loads((tmp_path / "lin" / "exact.json").read_text())
    assert report["summary"]["solver"] == "closed form" and len(report["per_example"]["upper"]) == 20
    assert report["per_example"]["lower"] == report["per_example"]["upper"]
    mlp = tmp_path / "mlp.safetensors"
    assert main(["train", "mlp-20-20", "--epochs", "1", "--out", str(mlp), "--no-progress"]) == 0
    code, out, err = run(capsys, "exact", mlp, "--limit", "3", "--time-limit", "60", "--out", tmp_path / "relu", "--no-progress")
    assert code == 0, err
    report = json.loads((tmp_path / "relu" / "exact.json").read_text())
    assert report["summary"]["solver"] == "MILP (HiGHS)" and len(report["per_example"]["status"]) == 3
    with np.load(tmp_path / "relu" / "witnesses.npz") as saved:
        assert saved["witness"].shape == (3, 1, 28, 28)
    code, _, err = run(capsys, "exact", mlp, "--norm", "l2", "--out", tmp_path / "bad")
    assert code == 2 and "need a linear model" in err and not (tmp_path / "bad").exists()
