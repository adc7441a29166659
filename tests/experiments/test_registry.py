"""The reproduction registry: options honoured or refused, --quick described, the full set read whole."""

from pathlib import Path

import pytest

from advlab.errors import InputError, UnknownNameError
from advlab.experiments.registry import EXPERIMENTS, Request, check_request, get_experiment


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_describes_its_quick_mode_or_refuses_it(name):
    experiment = get_experiment(name)
    assert experiment.quick is None or experiment.quick


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


@pytest.mark.parametrize("quick", [False, True])
def test_epochs_gives_goodfellow_advtrain_fixed_epochs_for_every_model(monkeypatch, embedded, tmp_path, quick):
    from advlab.experiments import registry
    from advlab.experiments.goodfellow_advtrain import VARIANTS, FixedEpochs

    seen = {}
    monkeypatch.setattr(registry, "load_mnist", lambda data_dir: embedded)
    monkeypatch.setattr(registry, "goodfellow_advtrain", lambda splits, out, **kwargs: seen.update(kwargs))
    request = Request(data_dir=None, out=tmp_path, epochs=3, quick=quick, models=("maxout-1600",))
    check_request(get_experiment("goodfellow-advtrain"), request)
    get_experiment("goodfellow-advtrain").run(request)
    assert seen["schedule"] == FixedEpochs({name: (3, 3) for name in VARIANTS}) and seen["models"] == ("maxout-1600",)
