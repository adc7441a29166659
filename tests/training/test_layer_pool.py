"""Szegedy's per-layer adversarial pool (`LayerPool`): examples at layer k flip the sub-network above
k, a refresh replaces exactly the requested share of each pool, and training is seeded and resumable."""

import pytest
import torch

from advlab.data import Dataset
from advlab.errors import InputError
from advlab.models.mlp import MLP
from advlab.training import EpochCheckpoint, TrainConfig, train_model
from advlab.training.objectives import INPUT, LayerPool, sigmoid_layers, split_at

FAST = {"temperature": 1.0, "search_steps": 4, "max_iter": 15}


@pytest.fixture(scope="module")
def data():
    """96 4x4 images, 3 classes given by which third of the image is brightest (learnable in a few epochs)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 4, 4, generator=gen)
    labels = images.flatten(1)[:, :15].reshape(96, 3, 5).sum(2).argmax(1)
    return Dataset(images, labels, "synthetic")


def net(seed=0):
    torch.manual_seed(seed)
    return MLP(16, (8, 8), 3, "sigmoid")


@pytest.fixture(scope="module")
def trained(data):
    model = net()
    train_model(model, data, TrainConfig(epochs=30, lr=0.03, batch_size=16, seed=0), progress=False)
    return model


def test_the_layers_of_a_sigmoid_network_and_its_cuts(trained, data):
    assert sigmoid_layers(trained) == (INPUT, "act1", "act2")
    for layer in sigmoid_layers(trained):
        lower, upper = split_at(trained, layer)
        assert torch.allclose(upper(lower(data.images)), trained(data.images))
    with pytest.raises(InputError, match="not a sigmoid"):
        split_at(trained, "fc1")
    with pytest.raises(InputError, match="no layer"):
        split_at(trained, "act9")


def test_examples_at_layer_k_flip_the_sub_network_above_k(trained, data):
    pool = LayerPool(data, batch_size=16, layers=sigmoid_layers(trained), pool_size=60, attack=FAST)
    torch.manual_seed(0)
    pool.refresh(trained, whole=True)
    for layer in pool.layers:
        features, labels, filled = pool.pool(layer)
        assert int(filled.sum()) > pool.slots // 2, layer
        assert float(features.min()) >= 0 and float(features.max()) <= 1
        upper = split_at(trained, layer)[1]
        with torch.no_grad():
            predicted = upper(features[filled]).argmax(1)
        assert bool((predicted != labels[filled]).all()), layer
        assert pool.reached[layer] == int(filled.sum()) and pool.attacked[layer] == pool.slots
    # hidden examples are activations near real ones: the perturbed unit values stay in (0, 1) and are not images
    assert pool.pool("act1")[0].shape == (pool.slots, 8) and pool.pool(INPUT)[0].shape == (pool.slots, 1, 4, 4)


@pytest.mark.parametrize("fraction, replaced", [(0.1, 2), (0.25, 5), (0.5, 10), (1.0, 20), (0.01, 1)])
def test_a_refresh_replaces_exactly_the_requested_share_of_each_pool(trained, data, fraction, replaced):
    pool = LayerPool(data, batch_size=16, layers=("act1", "act2"), pool_size=40, refresh_fraction=fraction, attack=FAST)
    torch.manual_seed(1)
    pool.refresh(trained, whole=True)
    before = {layer: pool.pool(layer)[0].clone() for layer in pool.layers}
    pool.refresh(trained)
    assert pool.refreshed == replaced
    for layer in pool.layers:
        changed = (pool.pool(layer)[0] != before[layer]).any(1)
        assert int(changed.sum()) == replaced, layer  # a new image's activation differs from the old one's
        assert pool.attacked[layer] == pool.slots + replaced


def test_the_pools_are_built_once_and_refreshed_every_k_updates_across_epochs(data):
    pool = LayerPool(data, batch_size=16, layers=(INPUT, "act2"), pool_size=8, refresh_every=4, refresh_fraction=0.5, attack=FAST)
    assert pool.steps_per_epoch == 6
    train_model(net(), data, TrainConfig(epochs=2, lr=0.03, batch_size=16, seed=0), objective=pool, progress=False)
    # per layer: all 4 slots at update 0, then 2 at updates 4 and 8 (not rebuilt at update 6, the second epoch's start)
    assert pool.attacked == {INPUT: 4 + 2 + 2, "act2": 4 + 2 + 2}


def test_the_pool_state_round_trips_and_refuses_another_pools(data, trained):
    pool = LayerPool(data, batch_size=16, layers=(INPUT, "act1"), pool_size=8, refresh_every=2, attack=FAST)
    pool(trained, data.images[:16], data.labels[:16])
    again = LayerPool(data, batch_size=16, layers=(INPUT, "act1"), pool_size=8, refresh_every=2, attack=FAST)
    again.load_state(pool.state())
    assert again.state().keys() == pool.state().keys()
    assert all(torch.equal(again.state()[k], v) for k, v in pool.state().items())
    assert again.attacked == pool.attacked and again.reached == pool.reached
    for other in (LayerPool(data, batch_size=16, layers=(INPUT, "act1"), pool_size=6, attack=FAST),
                  LayerPool(data, batch_size=16, layers=(INPUT,), pool_size=8, attack=FAST)):
        with pytest.raises((ValueError, KeyError)):
            other.load_state(pool.state())


def _train(data, seed, epochs, checkpoint=None):
    pool = LayerPool(data, batch_size=16, layers=sigmoid_layers(net()), pool_size=12, refresh_every=4, attack=FAST)
    model = net(seed)
    ckpt = EpochCheckpoint(checkpoint, "mlp", model.architecture()) if checkpoint else None
    train_model(model, data, TrainConfig(epochs=epochs, lr=0.03, batch_size=16, seed=seed), objective=pool, progress=False,
                checkpoint=ckpt, resume=True)
    return model


def test_training_is_deterministic_by_seed_and_resumes_to_the_same_weights(data, tmp_path):
    """Resumed after its first epoch (6 updates; the pools refresh every 4, so the resume falls between
    two refreshes), the training continues from the checkpointed pools to the same weights."""
    first, again, other = _train(data, 0, 2), _train(data, 0, 2), _train(data, 1, 2)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters()))
    _train(data, 0, 1, tmp_path / "m.safetensors")
    resumed = _train(data, 0, 2, tmp_path / "m.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), resumed.parameters()))


def test_bad_settings(data):
    for kwargs, match in [({"layers": ()}, "layers"), ({"layers": (INPUT, INPUT)}, "layers"), ({"refresh_every": 0}, "refresh_every"),
                          ({"refresh_fraction": 1.5}, "refresh_fraction"), ({"fraction": float("nan")}, "fraction"),
                          ({"pool_size": 1, "layers": (INPUT, "act1")}, "pool_size")]:
        with pytest.raises(InputError, match=match):
            LayerPool(data, batch_size=16, **kwargs)
    assert LayerPool(data, batch_size=16).to_dict()["name"] == "szegedy_layer_pool"
