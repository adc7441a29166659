"""The CUDA paths, checked against the CPU (marker `cuda`; every test skips without a GPU, so CI,
which has none, skips them all: run them on a GPU machine with `pytest -m cuda`).

The promise checked is "independent of the device": in float64 every attack, evaluation,
verification and training step gives on the GPU what it gives on the CPU, up to float64
rounding of the GPU's own kernels (atol 1e-6 on points, equal success flags beyond near-ties). Two GPUs or more
also run a torchrun evaluation over NCCL against the one-process result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advlab.analysis import evaluate_robustness
from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import ATTACKS, make_attack
from advlab.attacks.stream import stream_attack
from advlab.data import Dataset
from advlab.exact import certify
from advlab.training import TrainConfig, train_registered
from advlab.training.objectives import AdversarialPool
from tests.invariance import clear_rows
from tests.attacks.test_contract import fast, targets_for

# ADVLAB_TEST_DEVICE=cpu runs these tests' own logic on the CPU (a dry run of this file)
DEVICE = os.environ.get("ADVLAB_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device")]
REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-6


def relu_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5)).double().eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(16, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        y = relu_net()(x).argmax(1)
    y[:2] = (y[:2] + 1) % 5
    return x, y


def on_gpu(model: nn.Module) -> nn.Module:
    return model.to(DEVICE)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("targeted", [False, True])
def test_every_attack_gives_on_the_gpu_what_it_gives_on_the_cpu(name, targeted, data):
    x, y = data
    targets = targets_for(y) if targeted else None
    cpu = make_attack(name, relu_net(), **fast(name))(x, y, targets=targets)
    gpu = make_attack(name, on_gpu(relu_net()), **fast(name))(x.to(DEVICE), y.to(DEVICE), targets=None if targets is None else targets.to(DEVICE))
    assert gpu.x_adv.device.type == torch.device(DEVICE).type
    clear = clear_rows(cpu, gpu)  # flags are promised equal beyond near-ties (docs/guide/reproducibility.md)
    assert torch.equal(gpu.success.cpu()[clear], cpu.success[clear])
    assert torch.allclose(gpu.x_adv.cpu()[clear], cpu.x_adv[clear], atol=ATOL)
    with torch.no_grad():  # success re-checked by the model, on the GPU
        predicted = relu_net().to(DEVICE)(gpu.x_adv).argmax(1)
    goal = (predicted == targets.to(DEVICE)) if targeted else (predicted != y.to(DEVICE))
    assert torch.equal(goal, gpu.success)


def test_evaluation_and_suite_on_the_gpu_match_the_cpu(data):
    x, y = data
    kwargs = {"eps": [0.0, 0.05, 0.2], "attack_params": {"pgd": {"steps": 5, "restarts": 1}}}
    cpu = evaluate_robustness(relu_net(), x, y, **kwargs)
    gpu = evaluate_robustness(on_gpu(relu_net()), x.to(DEVICE), y.to(DEVICE), **kwargs)
    assert [p.accuracy for p in gpu.points] == [p.accuracy for p in cpu.points]
    assert gpu.worst_case == cpu.worst_case
    suite_cpu = evaluate_suite(relu_net(), x, y, eps=0.1, suite="quick")
    suite_gpu = evaluate_suite(on_gpu(relu_net()), x.to(DEVICE), y.to(DEVICE), eps=0.1, suite="quick")
    assert suite_gpu.broken_by == suite_cpu.broken_by
    assert torch.allclose(suite_gpu.x_adv.cpu(), suite_cpu.x_adv, atol=ATOL)


def test_bracket_with_a_gpu_model_matches_the_cpu(data):
    x, y = data
    cpu = certify(relu_net(), x, y, eps=0.05, time_limit=20, progress=False)
    gpu = certify(on_gpu(relu_net()), x.to(DEVICE), y.to(DEVICE), eps=0.05, time_limit=20, progress=False)
    assert gpu.status == cpu.status
    suite = evaluate_suite(on_gpu(relu_net()), x.to(DEVICE), y.to(DEVICE), eps=0.05, suite="quick", bracket=True, certify=certify)
    low, high = suite.bracket
    assert low == cpu.certified_share and low <= high


def test_streamed_attack_on_the_gpu_equals_the_tensor_call(data, tmp_path):
    x, y = data
    attack = make_attack("pgd", on_gpu(relu_net()), eps=0.1, steps=3, restarts=1)
    whole = attack(x.to(DEVICE), y.to(DEVICE))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    streamed = stream_attack(attack, ((bx.to(DEVICE), by.to(DEVICE)) for bx, by in loader), tmp_path / "store", keep_adversarial=True,
                             progress=False)
    assert np.array_equal(streamed.store.column("success"), whole.success.cpu().numpy())
    assert np.allclose(streamed.store.column("x_adv"), whole.x_adv.cpu().numpy(), atol=ATOL)


def _dataset() -> Dataset:
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(96, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (96,), generator=generator)
    return Dataset(images, labels, name="random")


@pytest.mark.parametrize("objective", [None, "pool"])
def test_training_on_the_gpu_resumes_exactly(objective, tmp_path):
    """Two epochs in one go equal one epoch, a kill and a resume, on the GPU (the checkpoint
    holds the CUDA generator's state); the Szegedy pool's targeted L-BFGS runs on the GPU too."""
    data = _dataset()
    config = TrainConfig(epochs=2, lr=0.01, batch_size=16, seed=0)

    def run(epochs: int, checkpoint: Path, resume: bool) -> nn.Module:
        made = None if objective is None else AdversarialPool(data, batch_size=16, pool_size=8, every=3, fraction=0.5,
                                                               attack={"search_steps": 2, "max_iter": 5}, seed=0)
        settings = TrainConfig(**{**config.to_dict(), "epochs": epochs})
        return train_registered("fc100-100-10", data, settings, objective=made, checkpoint=checkpoint, resume=resume,
                                device=DEVICE, progress=False).model

    whole = run(2, tmp_path / "whole.safetensors", False)
    run(1, tmp_path / "split.safetensors", False)
    resumed = run(2, tmp_path / "split.safetensors", True)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert a.device.type == torch.device(DEVICE).type and torch.equal(a, b)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "advlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _npz(tmp_path: Path) -> str:
    generator = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=generator.integers(0, 256, (256, 28, 28), dtype=np.uint8), y_train=generator.integers(0, 10, 256),
             x_test=generator.integers(0, 256, (64, 28, 28), dtype=np.uint8), y_test=generator.integers(0, 10, 64))
    return f"npz:{path}"


def test_cli_trains_attacks_and_evaluates_on_the_gpu(tmp_path):
    checkpoint, data = tmp_path / "mlp.safetensors", _npz(tmp_path)
    trained = _cli("train", "mlp-20-20", "--data", data, "--epochs", "1", "--device", DEVICE, "--out", str(checkpoint),
                   "--no-progress", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    for device in ("cpu", DEVICE):
        done = _cli("attack", str(checkpoint), "--data", data, "--method", "pgd", "--eps", ".1", "--device", device,
                    "--out", str(tmp_path / f"attack-{device}"), "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        done = _cli("evaluate", str(checkpoint), "--data", data, "--suite", "quick", "--eps", ".1", "--device", device,
                    "--out", str(tmp_path / f"evaluate-{device}"), "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    robust = [json.loads((tmp_path / f"evaluate-{d}" / "suite.json").read_text())["evaluations"][0]["robust_accuracy"]
              for d in ("cpu", DEVICE)]
    assert robust[0] == robust[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two GPUs")
def test_torchrun_over_nccl_equals_one_process(tmp_path):
    checkpoint, data = tmp_path / "mlp.safetensors", _npz(tmp_path)
    assert _cli("train", "mlp-20-20", "--data", data, "--epochs", "1", "--out", str(checkpoint), "--no-progress", cwd=tmp_path).returncode == 0
    outs = {}
    for n in (1, 2):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "-m", "advlab", "evaluate",
                   str(checkpoint), "--data", data, "--eps", "0,.1", "--device", DEVICE, "--stream",
                   "--out", str(tmp_path / f"n{n}"), "--no-progress"]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outs[n] = json.loads((tmp_path / f"n{n}" / "robustness.json").read_text())
    assert outs[1]["points"] == outs[2]["points"]
