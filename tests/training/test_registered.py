"""The seed decides the initial weights on every path; `train_registered` is the one entry point."""

import subprocess
import sys

import torch

from advlab.cli import main
from advlab.models import build_model
from advlab.training import (
    TrainConfig,
    default_config,
    error_rate,
    load_checkpoint,
    record_errors,
    train_model,
    train_registered,
)

README_EXAMPLE = """
import hashlib, sys, torch
from advlab.data import load_mnist
from advlab.models import build_model
from advlab.training import TrainConfig, train_model
torch.randn(int(sys.argv[1]))  # a caller that used the global RNG before: must not matter
data = load_mnist(None).select_classes([3, 7]).train.take(200)
model = build_model("logreg")
before = model.linear.weight.detach().numpy().tobytes()
train_model(model, data, TrainConfig(epochs=1, seed=0), progress=False)
print(hashlib.sha256(before).hexdigest(), hashlib.sha256(model.linear.weight.detach().numpy().tobytes()).hexdigest())
"""


def test_readme_example_gives_the_same_weights_in_two_processes():
    runs = [
        subprocess.run([sys.executable, "-c", README_EXAMPLE, str(n)], capture_output=True, text=True, check=True).stdout
        for n in (1, 7)
    ]
    assert runs[0] == runs[1] and len(runs[0].split()) == 2


def test_build_model_seeds_the_weights_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = build_model("softmax", seed=3), build_model("softmax", seed=3), build_model("softmax", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.linear.weight, b.linear.weight) and not torch.equal(a.linear.weight, c.linear.weight)


def test_seed_matches_global_seeding_then_building():
    """Bit-identical to the old `torch.manual_seed(seed); build_model(name)`: earlier figures stand."""
    from advlab.models import get_spec

    spec = get_spec("mlp-20-20")
    torch.manual_seed(5)
    legacy = spec.builder(**spec.architecture)
    seeded = build_model("mlp-20-20", seed=5)
    assert all(torch.equal(p, q) for p, q in zip(legacy.parameters(), seeded.parameters()))


def test_train_registered_is_the_cli_path(tmp_path, embedded):
    data = embedded.select_classes([3, 7])
    trained = train_registered("logreg", data.train, default_config("logreg", epochs=1, seed=2), progress=False)
    assert trained.config.lr == 0.01 and trained.architecture == {"in_features": 784} and not trained.model.training
    by_hand = build_model("logreg", seed=2)
    train_model(by_hand, data.train, TrainConfig(epochs=1, lr=0.01, weight_decay=1e-4, seed=2), progress=False)
    assert torch.equal(by_hand.linear.weight, trained.model.linear.weight)
    out = tmp_path / "m.safetensors"
    assert main(["train", "logreg", "--classes", "3,7", "--epochs", "1", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    assert torch.equal(load_checkpoint(out).model.linear.weight, trained.model.linear.weight)


def test_train_registered_checkpoints_and_resumes(tmp_path, embedded):
    data = embedded.train.take(300)
    path = tmp_path / "c.safetensors"
    config = default_config("softmax", epochs=2, seed=1)
    whole = train_registered("softmax", data, config, checkpoint=path, progress=False)
    train_registered("softmax", data, default_config("softmax", epochs=1, seed=1), checkpoint=tmp_path / "d.safetensors", progress=False)
    resumed = train_registered("softmax", data, config, checkpoint=tmp_path / "d.safetensors", resume=True, progress=False)
    assert resumed.history.resumed_from == 1
    assert torch.equal(whole.model.linear.weight, resumed.model.linear.weight)
    assert load_checkpoint(path).metadata["progress"]["complete"]


def test_record_errors_writes_the_metrics_the_cli_writes(tmp_path, embedded):
    data = embedded.select_classes([3, 7])
    path = tmp_path / "m.safetensors"
    trained = train_registered("logreg", data.train.take(200), default_config("logreg", epochs=1, seed=0), checkpoint=path,
                               progress=False)
    metrics = record_errors(path, trained, data.train, data.test, command="advlab train ...")
    assert metrics == {"train_error": error_rate(trained.model, data.train), "test_error": error_rate(trained.model, data.test)}
    metadata = load_checkpoint(path).metadata
    assert metadata["metrics"] == metrics and metadata["command"] == "advlab train ..."
    assert metadata["final_loss"] == trained.history.loss[-1] and metadata["resumed_from_epoch"] == trained.history.resumed_from
    assert metadata["train_seconds"] == trained.seconds
