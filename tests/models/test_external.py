import json
import pickle
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from advlab.errors import CheckpointError, InputError
from advlab.models.external import check_accepts, load_exported_model, load_external_model, load_factory_model
from tests.models.tiny_external import build
from tests.payloads import crafted_archives, export_tiny, torch_saved

SPEC = "tests.models.tiny_external:build"


def _trained_weights(tmp_path):
    model = build()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # differ from what build() gives, so loading them is observable
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), path)
    return model, path


def test_factory_with_safetensors_weights(tmp_path):
    reference, path = _trained_weights(tmp_path)
    model = load_factory_model(SPEC, path)
    x = torch.rand(5, 1, 2, 2)
    assert torch.equal(model(x), reference(x)) and not model.training


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.models.tiny_external", "package.module:factory"),
        ("tests.models.absent_module:build", "cannot import"),
        ("tests.models.tiny_external:missing", "no callable 'missing'"),
        ("tests.models.tiny_external:not_a_model", "returned str"),
        ("tests.models.tiny_external:broken", "RuntimeError: no GPU here"),
    ],
)
def test_factory_errors_are_one_line(spec, message):
    with pytest.raises(InputError, match=message):
        load_factory_model(spec)


def test_weights_must_be_safetensors_that_fit(tmp_path):
    pickled = tmp_path / "w.pt"
    torch.save(build().state_dict(), pickled)
    with pytest.raises(CheckpointError, match="never loaded"):
        load_factory_model(SPEC, pickled)
    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_factory_model(SPEC, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no such"):
        load_factory_model(SPEC, tmp_path / "absent.safetensors")


def _export(tmp_path, model=None):
    model = (model or build()).eval()
    program = torch.export.export(model, (torch.rand(2, 1, 2, 2),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    return model, path


def test_exported_program_any_batch_size_and_gradients(tmp_path):
    model, path = _export(tmp_path)
    loaded = load_external_model(str(path))
    x = torch.rand(7, 1, 2, 2, requires_grad=True)
    assert torch.allclose(loaded(x), model(x))
    loaded(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    loaded.train()  # the graph's mode was fixed at export: only the flag changes
    assert loaded.training and torch.allclose(loaded(x), model(x))
    with pytest.raises(InputError, match="--weights is for"):
        load_external_model(str(path), path)


def _rewrite(path, target, edit):
    """Copy the archive to `target` with member `edit[0]` (suffix) replaced by edit[1](old bytes)."""
    suffix, change = edit
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, change(data) if info.filename.endswith(suffix) else data)
    return target


class _Boom:
    def __reduce__(self):
        return (shutil.copyfile, (__file__, str(_Boom.marker)))


def test_exported_program_never_unpickles(tmp_path):
    """torch.export.load would unpickle the sample inputs; advlab's reader never reads them."""
    _, path = _export(tmp_path)
    _Boom.marker = tmp_path / "executed"
    bad = _rewrite(path, tmp_path / "evil.pt2", ("sample_inputs/model.pt", lambda _: pickle.dumps(_Boom())))
    load_exported_model(bad)(torch.rand(3, 1, 2, 2))
    assert not _Boom.marker.exists()


def _pickled_weight(data):
    config = json.loads(data)
    next(iter(config["config"].values()))["use_pickle"] = True
    return json.dumps(config).encode()


def _evil_expression(data):
    return data.replace(b"Symbol('", b"__import__('os').system('true') or Symbol('", 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("model_weights_config.json", _pickled_weight), "never unpickles"),
        (("models/model.json", _evil_expression), "symbolic-shape expression"),
        (("archive_format", lambda _: b"zip"), "not a torch.export program"),
    ],
)
def test_tampered_archives_are_refused(tmp_path, edit, message):
    _, path = _export(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_exported_model(_rewrite(path, tmp_path / "bad.pt2", edit))


def test_not_an_archive(tmp_path):
    (tmp_path / "x.pt2").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a readable .pt2"):
        load_exported_model(tmp_path / "x.pt2")


def test_check_accepts_names_the_shape():
    check_accepts(build(), torch.rand(1, 1, 2, 2), "tiny")
    with pytest.raises(InputError, match=r"cannot take mnist inputs of shape \(1, 28, 28\)"):
        check_accepts(build(), torch.rand(1, 1, 28, 28), "mnist")


CRAFTED = ["legacy_weights", "legacy_constants", "extra_member", "custom_object", "pickled_weight", "pickled_constant",
           "config_names_custom_object", "calls_os_system", "guard_code", "imports_a_module", "compressed"]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crafted")
    marker = folder / "payload-ran"
    archives = crafted_archives(export_tiny(folder / "good.pt2"), folder, marker)
    assert sorted(archives) == sorted(CRAFTED)
    return archives, marker


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_archive_is_refused_and_runs_nothing(crafted, name):
    archives, marker = crafted
    path, words = archives[name]
    with pytest.raises(CheckpointError) as caught:
        model = load_exported_model(path)
        model(torch.rand(2, 1, 2, 2))  # were it accepted, running it must not trigger the payload either
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_exported_constants_and_weights_are_read_from_raw_bytes(tmp_path, monkeypatch):
    """A program with a weight and a tensor constant loads, matches torch's own reader, and no
    torch.load happens on the way."""
    path = export_tiny(tmp_path / "good.pt2")
    reference = torch.export.load(path).module()
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    x = torch.rand(5, 1, 2, 2)
    assert torch.equal(load_exported_model(path)(x), reference(x))
    assert calls == []


def test_torch_load_is_locked_to_weights_only_while_deserialising(tmp_path):
    from advlab.models.external import _weights_only_torch_load

    marker = tmp_path / "ran"
    (tmp_path / "p.pt").write_bytes(torch_saved(marker))
    with _weights_only_torch_load(), pytest.raises(CheckpointError, match="weights_only=True"):
        unpickle = torch.load  # the guarded loader, called as torch's legacy path would call it
        unpickle(tmp_path / "p.pt", weights_only=False)
    assert not marker.exists() and torch.load is not None and "guarded" not in torch.load.__name__


def test_copying_an_exported_model_warns_nothing(tmp_path):
    """`advlab exact` deep-copies the model; torch's graph copy must not print its FutureWarnings."""
    import copy
    import warnings

    model = load_exported_model(export_tiny(tmp_path / "good.pt2"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clone = copy.deepcopy(model)
    x = torch.rand(4, 1, 2, 2)
    assert torch.equal(clone(x), model(x)) and clone.program is not model.program
