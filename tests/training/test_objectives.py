"""Szegedy's adversarial pool: regenerated on schedule from targeted L-BFGS examples, mixed into the
batches, and resumable to the same weights."""

import pytest
import torch

from advlab.errors import InputError
from advlab.training import default_config, train_registered
from advlab.training.objectives import AdversarialPool

FAST = {"temperature": 1.0, "search_steps": 4, "max_iter": 15}


@pytest.fixture(scope="module")
def small(embedded):
    return embedded.train.take(192)


def test_pool_is_regenerated_every_k_updates_from_the_start_of_each_epoch(small):
    pool = AdversarialPool(small, batch_size=64, pool_size=12, every=2, attack=FAST)
    assert pool.steps_per_epoch == 3
    train_registered("softmax", small, default_config("softmax", epochs=2, batch_size=64, seed=0), objective=pool, progress=False)
    assert pool.regenerations == 4  # steps 0 and 2 of each of the two epochs
    assert len(pool.kept) == 4 and all(0 <= k <= 12 for k in pool.kept)


def test_pool_examples_reach_their_target_and_stay_in_the_box(small):
    trained = train_registered("softmax", small, default_config("softmax", epochs=3, seed=0), progress=False)
    pool = AdversarialPool(small, batch_size=64, pool_size=20, attack=FAST)
    torch.manual_seed(0)
    pool.regenerate(trained.model)
    x, y = pool._pool
    assert len(y) == pool.kept[0] > 0
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    predicted = trained.model(x).argmax(1)
    assert bool((predicted != y).all())  # each kept example is misclassified (it reached a wrong target)


def test_resume_gives_the_same_weights(small, tmp_path):
    def run(epochs, resume):
        pool = AdversarialPool(small, batch_size=64, pool_size=8, every=2, attack=FAST)
        return train_registered("softmax", small, default_config("softmax", epochs=epochs, batch_size=64, seed=3), objective=pool,
                                checkpoint=tmp_path / ("a" if not resume else "b") / "m.safetensors", resume=True, progress=False)

    straight = run(2, False).model
    run(1, True)
    resumed = run(2, True)
    assert resumed.history.resumed_from == 1
    for a, b in zip(straight.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_bad_settings(small):
    with pytest.raises(InputError, match="every"):
        AdversarialPool(small, batch_size=64, every=0)
    with pytest.raises(InputError, match="fraction"):
        AdversarialPool(small, batch_size=64, fraction=float("nan"))
    assert AdversarialPool(small, batch_size=8).to_dict()["name"] == "szegedy_pool"
