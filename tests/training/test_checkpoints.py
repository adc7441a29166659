import pytest
import torch

from advlab.errors import CheckpointError
from advlab.models import build_model
from advlab.training import load_checkpoint, read_metadata, save_checkpoint


def _save(path, name="softmax"):
    torch.manual_seed(0)
    model = build_model(name)
    save_checkpoint(path, model, model_name=name, architecture={}, metadata={"metrics": {"test_error": 0.1}})
    return model


def test_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    model = _save(path)
    loaded = load_checkpoint(path)
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), model(x))
    assert loaded.model_name == "softmax" and loaded.metadata["metrics"]["test_error"] == 0.1
    assert read_metadata(path)["model"] == "softmax"
    assert not loaded.model.training
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary files left


def test_corrupt_and_truncated_files(tmp_path):
    path = tmp_path / "m.safetensors"
    _save(path)
    raw = path.read_bytes()
    for name, payload in [("cut", raw[: len(raw) // 2]), ("junk", b"not a checkpoint"), ("empty", b"")]:
        bad = tmp_path / name
        bad.write_bytes(payload)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent")


def test_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    _save(path, "softmax")
    with pytest.raises(CheckpointError, match="holds model 'softmax', expected 'logreg'"):
        load_checkpoint(path, expected_model="logreg")
    # weights of one model under the name of another
    model = build_model("softmax")
    save_checkpoint(path, model, model_name="logreg", architecture={})
    with pytest.raises(CheckpointError, match="do not fit model 'logreg'"):
        load_checkpoint(path)
