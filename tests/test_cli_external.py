"""The CLI with the user's own model (--model, --weights) and data (--data npz:, folder:)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from advlab.cli import main
from tests.models.tiny_external import build

SPEC = "tests.models.tiny_external:build"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A 2x2 grey 3-class .npz, the tiny model's safetensors weights and its torch.export program."""
    folder = tmp_path_factory.mktemp("user")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 2, 2), dtype=np.uint8)
    model = build().eval()
    with torch.no_grad():
        y = model(torch.from_numpy(x[:, None] / 255).float()).argmax(1).numpy()  # the model is right on all
    np.savez(folder / "data.npz", x=x, y=y)
    save_file(model.state_dict(), folder / "w.safetensors")
    program = torch.export.export(model, (torch.rand(2, 1, 2, 2),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "model.pt2")
    return folder


@pytest.mark.parametrize("how", ["factory", "exported"])
def test_attack_and_evaluate_own_model_on_own_data(tmp_path, capsys, user_files, how):
    model = ["--model", SPEC, "--weights", user_files / "w.safetensors"] if how == "factory" else ["--model", user_files / "model.pt2"]
    data = ["--data", f"npz:{user_files / 'data.npz'}"]
    code, out, err = run(capsys, "attack", *model, *data, "--method", "fgsm", "--eps", "0.3", "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["summary"]
    assert summary["n"] == 12 and summary["clean_accuracy"] == 1.0
    code, out, err = run(capsys, "evaluate", *model, *data, "--attacks", "fgsm", "--eps", "0,0.2", "--no-progress", "--out", tmp_path / "e")
    assert code == 0, err
    assert json.loads((tmp_path / "e" / "robustness.json").read_text())["n"] == 12


def test_exact_on_own_relu_network(tmp_path, capsys, user_files):
    code, out, err = run(capsys, "exact", "--model", SPEC, "--weights", user_files / "w.safetensors", "--data", f"npz:{user_files / 'data.npz'}",
                         "--limit", "3", "--time-limit", "20", "--no-progress", "--out", tmp_path / "x")
    assert code == 0, err
    report = json.loads((tmp_path / "x" / "exact.json").read_text())
    assert report["summary"]["solver"].startswith("MILP") and len(report["per_example"]["lower"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", SPEC, "CKPT"], "not both or neither"),
        ([], "not both or neither"),
        (["--weights", "w.safetensors", "CKPT"], "--weights goes with --model"),
        (["--model", SPEC, "--weights", "none"], "cannot take mnist5k-test inputs of shape (1, 28, 28)"),
        (["--model", "tests.models.nothing_here:build"], "cannot import"),
        (["--model", SPEC, "--weights", "none", "--data", "npz:/absent.npz"], "/absent.npz: no such file"),
    ],
)
def test_bad_model_options_are_one_line(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "attack", *argv, "--method", "fgsm", "--eps", "0.1", "--out", tmp_path / "o")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
