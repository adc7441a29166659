"""Adversarial training: the mixed objective's math, validation, determinism and exact resume."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from advlab.cli import main
from advlab.errors import CheckpointError, InputError
from advlab.exact.linear import logistic_loss_direction, max_linear_linf
from advlab.models import MaxoutNet, SoftmaxRegression
from advlab.training import AdversarialObjective, EpochCheckpoint, TrainConfig, read_metadata, save_checkpoint, train_model
from advlab.training.checkpoints import update_metadata

from tests.training.small import same_state, small_maxout, state_copy

from ..conftest import REPO


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": -0.1}, {"alpha": 1.5}, {"alpha": float("nan")}, {"eps": -0.1}, {"eps": 1.5}, {"eps": 0.3, "bounds": (0.0, 0.2)},
     {"method": "bim"}, {"steps": 0}, {"step_size": 0.0}, {"craft_mode": "test"}, {"bounds": (1.0, 0.0)}],
)
def test_bad_settings_raise_input_error(kwargs):
    with pytest.raises(InputError):
        AdversarialObjective(**kwargs)


def test_fgsm_example_of_logistic_regression_is_the_closed_form(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:64], embedded_37.test.labels[:64]
    objective = AdversarialObjective("fgsm", eps=0.2)
    expected = max_linear_linf(x.flatten(1), logistic_loss_direction(logreg_37.linear.weight, y), 0.2)
    assert torch.equal(objective.fgsm_example(logreg_37, x, y).flatten(1), expected)


def _naive_gradient(model, x, y, alpha, eps):
    """alpha J(x) + (1 - alpha) J(x + eps sign(grad_x J)), x_adv a constant, computed the obvious way."""
    x_req = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(F.cross_entropy(model(x_req), y), x_req)
    x_adv = (x + eps * gx.sign()).clamp(0, 1)
    loss = alpha * F.cross_entropy(model(x), y) + (1 - alpha) * F.cross_entropy(model(x_adv), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.detach(), grads


@pytest.mark.parametrize("craft_mode", ["eval", "train"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_mixed_objective_value_and_gradient(craft_mode, alpha):
    torch.manual_seed(0)
    model = SoftmaxRegression().double()  # no dropout: both modes compute the same function
    x, y = torch.rand(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    expected_loss, expected_grads = _naive_gradient(model, x, y, alpha, 0.1)
    model.zero_grad(set_to_none=True)
    loss = AdversarialObjective("fgsm", eps=0.1, alpha=alpha, craft_mode=craft_mode)(model, x, y)
    loss.backward()
    assert torch.allclose(loss.detach(), expected_loss)
    for p, g in zip(model.parameters(), expected_grads):
        assert torch.allclose(p.grad, g)


def test_pgd_example_stays_in_the_ball_and_box_and_one_full_step_is_fgsm(softmax_model, embedded):
    x, y = embedded.test.images[:50], embedded.test.labels[:50]
    pgd = AdversarialObjective("pgd", eps=0.1, steps=5)
    x_adv = pgd.pgd_example(softmax_model, x, y)
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    one_step = AdversarialObjective("pgd", eps=0.1, steps=1, step_size=0.1, random_start=False)
    assert torch.equal(one_step.pgd_example(softmax_model, x, y), AdversarialObjective("fgsm", eps=0.1).fgsm_example(softmax_model, x, y))
    assert pgd.to_dict()["step_size"] == pytest.approx(2.5 * 0.1 / 5)


def test_crafting_restores_every_module_mode():
    model = MaxoutNet(hidden=8, pieces=2)
    model.train()
    model.net[1].eval()
    AdversarialObjective("pgd", eps=0.1, steps=2)(model, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
    assert model.training and not model.net[1].training and model.net[3].training


# ---- training: determinism, the caller's RNG, exact resume -------------------------------------------
OBJECTIVES = [AdversarialObjective("fgsm", eps=0.25), AdversarialObjective("pgd", eps=0.2, steps=2)]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=["fgsm", "pgd"])
def test_deterministic_given_a_seed(embedded, objective):
    data = embedded.train.take(128)
    runs = []
    for seed in (3, 3, 4):
        model = small_maxout()
        train_model(model, data, TrainConfig(epochs=2, lr=1e-3, batch_size=32, seed=seed), objective=objective, progress=False)
        runs.append(state_copy(model))
    assert same_state(runs[0], runs[1]) and not same_state(runs[0], runs[2])


def test_training_draws_from_a_fork_of_the_global_rng(embedded):
    torch.manual_seed(123)
    model = MaxoutNet(hidden=16, pieces=2)
    state = torch.get_rng_state()
    train_model(model, embedded.train.take(64), TrainConfig(epochs=1, batch_size=32), objective=OBJECTIVES[1], progress=False)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("objective", [None, *OBJECTIVES], ids=["standard", "fgsm", "pgd"])
def test_resume_extends_a_run_to_the_same_weights(tmp_path, embedded, objective):
    data = embedded.train.take(96)
    settings = {"lr": 1e-3, "batch_size": 32, "seed": 1}
    straight = small_maxout()
    train_model(straight, data, TrainConfig(epochs=3, **settings), objective=objective, progress=False)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    first = small_maxout()
    train_model(first, data, TrainConfig(epochs=1, **settings), objective=objective, checkpoint=checkpoint, progress=False)
    assert read_metadata(checkpoint.path)["progress"]["epoch"] == 1
    resumed = small_maxout()  # fresh weights: everything must come from the checkpoint
    history = train_model(resumed, data, TrainConfig(epochs=3, **settings), objective=objective, checkpoint=checkpoint, resume=True, progress=False)
    assert history.resumed_from == 1 and len(history.loss) == 3
    assert same_state(state_copy(straight), state_copy(resumed))
    progress = read_metadata(checkpoint.path)["progress"]
    assert progress == {"epoch": 3, "epochs": 3, "complete": True, "loss": history.loss, "seconds": history.seconds}


def test_training_time_adds_up_over_resumed_runs(tmp_path, embedded):
    """progress.seconds: the wall time of every epoch, the first run's carried into the resumed one; a
    checkpoint that predates the record resumes with the time unknown (None), never a wrong total."""
    data = embedded.train.take(64)
    settings = {"lr": 1e-3, "batch_size": 32, "seed": 1}
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    first = train_model(small_maxout(), data, TrainConfig(epochs=1, **settings), checkpoint=checkpoint, progress=False)
    assert first.seconds > 0 and read_metadata(checkpoint.path)["progress"]["seconds"] == first.seconds
    second = train_model(small_maxout(), data, TrainConfig(epochs=2, **settings), checkpoint=checkpoint, resume=True, progress=False)
    assert second.seconds > first.seconds and read_metadata(checkpoint.path)["progress"]["seconds"] == second.seconds
    document = read_metadata(checkpoint.path)
    del document["progress"]["seconds"]  # as written before the time was recorded
    update_metadata(checkpoint.path, {"progress": document["progress"]})
    third = train_model(small_maxout(), data, TrainConfig(epochs=3, **settings), checkpoint=checkpoint, resume=True, progress=False)
    assert third.seconds is None and read_metadata(checkpoint.path)["progress"]["seconds"] is None
    for bad in (-1.0, "1", True):
        update_metadata(checkpoint.path, {"progress": {**document["progress"], "seconds": bad}})
        with pytest.raises(CheckpointError, match="progress.seconds must be a number"):
            train_model(small_maxout(), data, TrainConfig(epochs=3, **settings), checkpoint=checkpoint, resume=True, progress=False)


def test_resume_refuses_another_run(tmp_path, embedded):
    data = embedded.train.take(32)
    path = tmp_path / "m.safetensors"
    fgsm = AdversarialObjective("fgsm", eps=0.25)
    checkpoint = EpochCheckpoint(path, "maxout", {"hidden": 16, "pieces": 2}, run={"data": "a"})
    train_model(small_maxout(), data, TrainConfig(epochs=2, batch_size=32), objective=fgsm, checkpoint=checkpoint, progress=False)
    attempts = {
        "training.lr": (checkpoint, TrainConfig(epochs=2, batch_size=32, lr=0.5), fgsm),
        "objective.eps": (checkpoint, TrainConfig(epochs=2, batch_size=32), AdversarialObjective("fgsm", eps=0.1)),
        "objective.method": (checkpoint, TrainConfig(epochs=2, batch_size=32), None),
        "model": (EpochCheckpoint(path, "cnn", {"hidden": 16, "pieces": 2}, run={"data": "a"}), TrainConfig(epochs=2, batch_size=32), fgsm),
        "architecture.pieces": (EpochCheckpoint(path, "maxout", {"hidden": 16, "pieces": 3}, run={"data": "a"}), TrainConfig(epochs=2, batch_size=32), fgsm),
        "data": (EpochCheckpoint(path, "maxout", {"hidden": 16, "pieces": 2}, run={"data": "b"}), TrainConfig(epochs=2, batch_size=32), fgsm),
        "past the 1 epochs": (checkpoint, TrainConfig(epochs=1, batch_size=32), fgsm),
    }
    for needle, (ckpt, config, objective) in attempts.items():
        with pytest.raises(CheckpointError, match=needle.replace(".", r"\.") if needle != "objective.method" else "objective"):
            train_model(small_maxout(), data, config, objective=objective, checkpoint=ckpt, resume=True, progress=False)
    save_checkpoint(path, small_maxout(), model_name="maxout", architecture={"hidden": 16, "pieces": 2},
                    metadata={"training": TrainConfig(epochs=2, batch_size=32).to_dict(), "objective": fgsm.to_dict(), "data": "a"})
    with pytest.raises(CheckpointError, match="no training state"):
        train_model(small_maxout(), data, TrainConfig(epochs=2, batch_size=32), objective=fgsm, checkpoint=checkpoint, resume=True, progress=False)


# ---- a real process, killed and resumed ---------------------------------------------------------------
def _train_command(data_dir, out, *extra):
    return [sys.executable, "-m", "advlab.cli", "train", "maxout", "--data-dir", str(data_dir), "--epochs", "4",
            "--batch-size", "50", "--adversarial", "fgsm", "--out", str(out), "--no-progress", *extra]


def test_killed_run_resumes_to_the_same_weights_bit_for_bit(tmp_path, small_mnist_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole.safetensors", tmp_path / "killed.safetensors"
    uninterrupted = subprocess.Popen(_train_command(small_mnist_dir, whole), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    process = subprocess.Popen(_train_command(small_mnist_dir, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not killed.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)  # the checkpoint appears (atomically) when epoch 1 is done
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    progress = read_metadata(killed)["progress"]
    assert 1 <= progress["epoch"] < 4 and not progress["complete"]
    subprocess.run(_train_command(small_mnist_dir, killed, "--resume"), env=env, check=True, capture_output=True)
    assert uninterrupted.wait() == 0, uninterrupted.stderr.read()
    a, b = load_file(whole), load_file(killed)  # weights, optimizer state and RNG states
    assert a.keys() == b.keys() and any(k.startswith("@state/optimizer/") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(killed)["resumed_from_epoch"] == progress["epoch"]


def test_cli_resumes_the_same_data_from_another_folder(tmp_path, small_mnist_dir, capsys):
    out, moved = tmp_path / "m.safetensors", tmp_path / "moved"
    shutil.copytree(small_mnist_dir, moved)
    assert main(["train", "softmax", "--data-dir", str(small_mnist_dir), "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert main(["train", "softmax", "--data-dir", str(moved), "--epochs", "2", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert main(["train", "softmax", "--epochs", "3", "--out", str(out), "--no-progress", "--resume"]) == 2  # other data
    assert "data.train" in capsys.readouterr().err


def test_cli_refuses_to_resume_another_model_or_bad_settings(tmp_path, small_mnist_dir, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "softmax", "--data-dir", str(small_mnist_dir), "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    cases = [
        (["train", "logreg", "--resume"], "cannot resume a different run: architecture"),
        (["train", "softmax", "--resume", "--lr", "0.5"], "training.lr"),
        (["train", "softmax", "--resume", "--adversarial", "fgsm"], "objective"),
        (["train", "softmax", "--adversarial", "fgsm", "--alpha", "2"], "alpha must lie in [0, 1]"),
        (["train", "softmax", "--adversarial", "fgsm", "--eps", "1.5"], "exceeds the width"),
        (["train", "softmax", "--eps", "0.1"], "only used with --adversarial"),
        (["train", "softmax", "--adversarial", "fgsm", "--steps", "3"], "only apply with --adversarial pgd"),
    ]
    for argv, message in cases:
        code = main([*argv, "--data-dir", str(small_mnist_dir), "--epochs", "1", "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (argv, err)


def test_with_defaults_gives_each_paper_its_defaults():
    """Goodfellow et al. 2014: FGSM, alpha .5; Madry et al. 2017: PGD on x_adv only (alpha 0), 10 steps."""
    assert AdversarialObjective.with_defaults("fgsm") == AdversarialObjective("fgsm", eps=0.25, alpha=0.5)
    assert AdversarialObjective.with_defaults("pgd") == AdversarialObjective("pgd", eps=0.25, alpha=0.0, steps=10)
    given = AdversarialObjective.with_defaults("pgd", eps=0.1, alpha=0.3, steps=3, step_size=0.05, craft_mode="train")
    assert given == AdversarialObjective("pgd", eps=0.1, alpha=0.3, steps=3, step_size=0.05, craft_mode="train")
    with pytest.raises(InputError, match="PGD only"):
        AdversarialObjective.with_defaults("fgsm", steps=3)
