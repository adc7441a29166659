"""`advlab attack|evaluate --stream`: IDX folders read batch by batch, per-example results on disk, resumable."""

import json

import numpy as np
import pytest

from advlab.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_mnist_dir):
    path = tmp_path_factory.mktemp("ckpt") / "softmax.safetensors"
    assert main(["train", "softmax", "--data-dir", str(small_mnist_dir), "--epochs", "2", "--out", str(path), "--no-progress"]) == 0
    return path


def test_streamed_evaluate_equals_in_memory_and_resumes(tmp_path, capsys, checkpoint, small_mnist_dir):
    common = [checkpoint, "--data-dir", small_mnist_dir, "--attacks", "fgsm,pgd", "--eps", "0,0.1", "-p", "pgd.steps=3",
              "--batch-size", "16", "--no-progress"]
    assert run(capsys, "evaluate", *common, "--out", tmp_path / "memory")[0] == 0
    for _ in range(2):  # the second run finds every batch recorded
        code, out, err = run(capsys, "evaluate", *common, "--stream", "--out", tmp_path / "stream")
        assert code == 0, err
    memory, stream = (json.loads((tmp_path / d / "robustness.json").read_text()) for d in ("memory", "stream"))
    assert stream["n"] == memory["n"] == 50
    assert [p["accuracy"] for p in stream["points"]] == [p["accuracy"] for p in memory["points"]]
    assert stream["worst_case"] == memory["worst_case"]
    assert len(list((tmp_path / "stream" / "examples").glob("part-*.npz"))) == 4


def test_streamed_attack_keeps_adversarial_points(tmp_path, capsys, checkpoint, small_mnist_dir):
    code, out, err = run(capsys, "attack", checkpoint, "--data-dir", small_mnist_dir, "--method", "fgsm", "--eps", "0.2",
                         "--stream", "--batch-size", "20", "--no-progress", "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["summary"]
    assert summary["n"] == 50 and 0 < summary["success_rate"] <= 1
    with np.load(tmp_path / "a" / "examples" / "part-000002.npz") as part:
        assert part["x_adv"].shape == (10, 1, 28, 28) and part["index"].tolist() == list(range(40, 50))
    code, out, err = run(capsys, "attack", checkpoint, "--data-dir", small_mnist_dir, "--method", "fgsm", "--eps", "0.2",
                         "--stream", "--targets", "3", "--out", tmp_path / "b")
    assert code == 2 and "--stream takes --targets random or least-likely" in err


def test_streamed_class_subset_and_npz_equal_in_memory(tmp_path, capsys, small_mnist_dir):
    """A checkpoint trained on a class subset streams its classes batch by batch (IDX and .npz),
    with the outcomes of the in-memory evaluation."""
    from advlab.data import load_mnist

    checkpoint = tmp_path / "pair.safetensors"
    assert main(["train", "softmax", "--data-dir", str(small_mnist_dir), "--classes", "7,3", "--epochs", "1", "--out", str(checkpoint),
                 "--no-progress"]) == 0
    splits = load_mnist(small_mnist_dir)
    np.savez(tmp_path / "d.npz", x_train=(splits.train.images.numpy() * 255).round().astype(np.uint8), y_train=splits.train.labels.numpy(),
             x_test=(splits.test.images.numpy() * 255).round().astype(np.uint8), y_test=splits.test.labels.numpy())
    common = ["--attacks", "fgsm", "--eps", "0,0.1", "--batch-size", "7", "--no-progress"]
    for data in (["--data-dir", small_mnist_dir], ["--data", f"npz:{tmp_path / 'd.npz'}"]):
        name = data[0].strip("-")
        assert run(capsys, "evaluate", checkpoint, *data, *common, "--out", tmp_path / f"{name}-memory")[0] == 0
        code, out, err = run(capsys, "evaluate", checkpoint, *data, *common, "--stream", "--out", tmp_path / f"{name}-stream")
        assert code == 0, err
        memory, stream = (json.loads((tmp_path / f"{name}-{d}" / "robustness.json").read_text()) for d in ("memory", "stream"))
        assert stream["n"] == memory["n"] > 0
        assert [p["accuracy"] for p in stream["points"]] == [p["accuracy"] for p in memory["points"]]
