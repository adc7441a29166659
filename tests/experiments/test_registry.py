"""The reproduction registry: every experiment resolves its report, --quick is honoured or refused."""

import importlib
from pathlib import Path

import pytest

from advlab.errors import InputError, UnknownNameError
from advlab.experiments.registry import EXPERIMENTS, Request, check_request, get_experiment


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_names_an_existing_report_and_summary(name):
    experiment = get_experiment(name)
    for path in (experiment.report, experiment.summary):
        module, function = path.split(":")
        assert module.startswith("advlab.report.") and callable(getattr(importlib.import_module(module), function))
    assert experiment.quick is None or experiment.quick  # a quick mode is described, or refused


def test_unknown_experiment_and_options_it_cannot_honour():
    with pytest.raises(UnknownNameError, match="unknown experiment"):
        get_experiment("lecun")
    with pytest.raises(InputError, match="--images applies to szegedy only"):
        check_request(get_experiment("goodfellow-fig2"), Request(data_dir=None, out=Path("o"), images=5))
    with pytest.raises(InputError, match="--jobs applies to adversarial-generalization only, not szegedy"):
        check_request(get_experiment("szegedy"), Request(data_dir=None, out=Path("o"), jobs=2))
    with pytest.raises(InputError, match="--train-images applies to adversarial-generalization only"):
        check_request(get_experiment("goodfellow-fig2"), Request(data_dir=None, out=Path("o"), train_images=9))
    with pytest.raises(InputError, match="--images must be >= 1"):
        check_request(get_experiment("szegedy"), Request(data_dir=None, out=Path("o"), images=0))


def test_goodfellow_advtrain_quick_trains_one_epoch_on_a_subset(tmp_path):
    from advlab.experiments.registry import QUICK_ADVTRAIN, reproduce

    paths, lines = reproduce("goodfellow-advtrain", Request(data_dir=None, out=tmp_path, quick=True, progress=False), command="c")
    assert {p.name for p in paths} == {"results.json", "report.md", "curves.png"}
    assert any("FGSM error ratio" in line for line in lines)
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints-quick").iterdir())
    assert checkpoints == ["cnn-adversarial.safetensors", "cnn-standard.safetensors", "maxout-adversarial.safetensors",
                           "maxout-standard.safetensors"]
    assert "quick" in (tmp_path / "report.md").read_text() and QUICK_ADVTRAIN["epochs"]["maxout"] == (1, 1)


def test_a_report_gains_the_generalization_section_from_the_sibling_study(tmp_path):
    from advlab.experiments.registry import GENERALIZATION, generalization_sections, reproduce

    assert generalization_sections(tmp_path / "szegedy") == []
    reproduce(GENERALIZATION, Request(data_dir=None, out=tmp_path / GENERALIZATION, quick=True, progress=False), command="c")
    section = generalization_sections(tmp_path / "szegedy")
    assert section[0].startswith("## Does adversarial training improve clean test error?")
    assert any("fc100-100-10 (Szegedy et al. 2013, Sec. 4.2)" in line and "**" in line for line in section)
    with pytest.raises(InputError, match="--images applies to szegedy only"):
        check_request(get_experiment(GENERALIZATION), Request(data_dir=None, out=tmp_path, images=3))


def test_quick_trains_on_the_prefix_and_a_full_run_on_everything(embedded):
    from advlab.data import Dataset, Splits
    from advlab.experiments.registry import QUICK_TRAIN_IMAGES, quick_prefix

    big = Dataset(embedded.train.images[:1].expand(QUICK_TRAIN_IMAGES + 5, -1, -1, -1), embedded.train.labels[:1].expand(QUICK_TRAIN_IMAGES + 5), "big")
    splits = Splits(big, embedded.test, "big source")
    assert len(quick_prefix(splits, True).train) == QUICK_TRAIN_IMAGES and "quick" in quick_prefix(splits, True).source
    assert quick_prefix(splits, False) is splits and quick_prefix(embedded, True) is embedded


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist-full" / "train-labels-idx1-ubyte.gz").is_file(),
                    reason="full MNIST not found at ../shared/data/mnist-full")
def test_full_mnist_is_read_whole():
    from advlab.data import load_mnist

    splits = load_mnist(str(Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist-full"))
    assert (len(splits.train), len(splits.test)) == (60_000, 10_000)
    counts = splits.train.labels.bincount().tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # MNIST's, per its README
