import pytest
import torch

from advlab.errors import CheckpointError
from advlab.models import build_model
from advlab.training import load_checkpoint, read_metadata, save_checkpoint


def _save(path, name="softmax"):
    model = build_model(name, seed=0)
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


def _rewrite(path, out, **changes):
    import json

    from safetensors.torch import save

    from advlab.training import read_state

    weights, _, document = read_state(path)
    document.update(changes)
    out.write_bytes(save(weights, metadata={"advlab": json.dumps(document)}))
    return out


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": {"bogus": 1}}, "no architecture keyword 'bogus'"),
        ({"architecture": [784]}, "must be a mapping"),
        ({"architecture": {"in_features": "784"}}, "expected an integer"),
        ({"architecture": {"in_features": 1 << 30}}, "expected an integer in 1..1048576"),
        ({"architecture": {"in_features": 785}}, "linear.weight has shape \\[10, 784\\], the model needs \\[10, 785\\]"),
        ({"model": None}, "names no model"),
        ({"model": "fc10-1"}, None),  # same weights, a registered alias: loads
        ({"data": {"classes": [3, "7"]}}, "classes must be integers"),
        ({"data": {"classes": [2, 2]}}, "distinct"),
        ({"data": "everything"}, "data.classes must be a list"),
    ],
)
def test_header_is_checked_against_the_schema(tmp_path, changes, message):
    path = tmp_path / "m.safetensors"
    _save(path)
    bad = _rewrite(path, tmp_path / "bad.safetensors", **changes)
    if message is None:
        assert load_checkpoint(bad).model_name == changes["model"]
        return
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_fixed_architecture_names_must_match(tmp_path):
    model = build_model("mlp", hidden=[50, 50])
    save_checkpoint(tmp_path / "m.safetensors", model, model_name="mlp-20-20", architecture={"hidden": [50, 50]})
    with pytest.raises(CheckpointError, match="'mlp-20-20' has hidden=\\[20, 20\\], not \\[50, 50\\]"):
        load_checkpoint(tmp_path / "m.safetensors")
    save_checkpoint(tmp_path / "g.safetensors", model, model_name="mlp", architecture={"hidden": [50, 50]})
    assert load_checkpoint(tmp_path / "g.safetensors").model[1].out_features == 50


def test_a_huge_declared_model_is_refused_without_allocating(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model("mlp-20-20"), model_name="mlp", architecture={"hidden": [1 << 20, 1 << 20]})
    with pytest.raises(CheckpointError, match="would hold"):
        load_checkpoint(path)


def test_non_finite_weights_are_refused(tmp_path):
    model = build_model("softmax")
    with torch.no_grad():
        model.linear.bias[3] = float("nan")
    save_checkpoint(tmp_path / "m.safetensors", model, model_name="softmax", architecture={})
    with pytest.raises(CheckpointError, match="linear.bias holds NaN or inf"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_classes_and_unfinished_read_the_metadata(tmp_path):
    model = build_model("softmax", seed=0)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, model_name="softmax", architecture={},
                    metadata={"data": {"classes": [3, 7]}, "progress": {"epoch": 2, "epochs": 5, "complete": False}})
    loaded = load_checkpoint(path)
    assert loaded.classes == [3, 7] and loaded.unfinished == "epoch 2 of 5"
    save_checkpoint(path, model, model_name="softmax", architecture={},
                    metadata={"progress": {"epoch": 5, "epochs": 5, "complete": True}})
    loaded = load_checkpoint(path)
    assert loaded.classes is None and loaded.unfinished is None
