"""Learning-rate schedules: the values, the rate each update trains with, bit-for-bit constant
training, exact resume under a decaying schedule, and bad values refused."""

import math

import pytest
import torch
import torch.nn.functional as F

from advlab.errors import CheckpointError, InputError
from advlab.training import EpochCheckpoint, TrainConfig, scheduled_lr, train_model
from advlab.training import loops

from tests.training.small import same_state, small_maxout, state_copy

CONFIG = {"lr": 0.01, "batch_size": 16, "seed": 3}


def test_constant_schedule_is_the_lr_at_every_update():
    config = TrainConfig(epochs=3, lr=0.02)
    assert [scheduled_lr(config, t, 5) for t in range(15)] == [0.02] * 15


def test_cosine_schedule_runs_from_lr_to_zero_over_the_epochs():
    config = TrainConfig(epochs=4, lr=0.1, lr_schedule="cosine")
    values = [scheduled_lr(config, t, 25) for t in range(100)]
    assert values[0] == 0.1
    assert values[50] == pytest.approx(0.05, abs=1e-15)  # half-way: half the rate
    assert values[99] == pytest.approx(0.05 * (1 + math.cos(math.pi * 99 / 100)))
    assert 0 < values[99] < 1e-4 and all(a > b for a, b in zip(values, values[1:]))
    assert scheduled_lr(config, 100, 25) == 0.0


def test_training_steps_with_the_scheduled_rate_of_each_update(monkeypatch, embedded):
    data = embedded.train.take(40)  # 3 updates an epoch (16, 16, 8)
    used = []
    monkeypatch.setattr(loops, "set_lr", lambda optimizer, lr: used.append(lr) or [g.update(lr=lr) for g in optimizer.param_groups])
    config = TrainConfig(epochs=2, lr_schedule="cosine", **CONFIG)
    train_model(small_maxout(), data, config, progress=False)
    assert used == [scheduled_lr(config, t, 3) for t in range(6)]


def test_constant_schedule_trains_exactly_as_plain_adam(embedded):
    """The default schedule leaves every earlier training bit for bit as it was: a hand-written Adam loop."""
    data = embedded.train.take(50)
    config = TrainConfig(epochs=2, **CONFIG)
    trained = small_maxout()
    train_model(trained, data, config, progress=False)
    model = small_maxout()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    order_rng = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(data), generator=order_rng)
            for start in range(0, len(data), config.batch_size):
                index = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(data.images[index]), data.labels[index]).backward()
                optimizer.step()
    assert same_state(state_copy(trained), state_copy(model))


class Killed(Exception):
    pass


def _killed_at(update: int):
    """cross-entropy that stops the process (an exception) at its `update`-th call."""
    calls = []

    def cross_entropy(model, x, y):  # its name is the checkpoint's objective: the same as the default's
        calls.append(1)
        if len(calls) == update:
            raise Killed
        return F.cross_entropy(model(x), y)

    return cross_entropy


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_resumed_cosine_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, embedded, optimizer):
    data = embedded.train.take(48)  # 3 updates an epoch
    config = TrainConfig(epochs=4, lr_schedule="cosine", optimizer=optimizer, **CONFIG)
    straight = small_maxout()
    train_model(straight, data, config, progress=False)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    with pytest.raises(Killed):  # killed in the middle of epoch 3
        train_model(small_maxout(), data, config, objective=_killed_at(8), checkpoint=checkpoint, progress=False)
    resumed = small_maxout()
    history = train_model(resumed, data, config, checkpoint=checkpoint, resume=True, progress=False)
    assert history.resumed_from == 2
    assert same_state(state_copy(straight), state_copy(resumed))
    constant = small_maxout()
    train_model(constant, data, TrainConfig(epochs=4, optimizer=optimizer, **CONFIG), progress=False)
    assert not same_state(state_copy(straight), state_copy(constant))


def test_a_cosine_run_cannot_be_resumed_with_other_epochs(tmp_path, embedded):
    """The schedule spans the epochs: a longer run is another run (a constant one may be extended)."""
    data = embedded.train.take(32)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    train_model(small_maxout(), data, TrainConfig(epochs=1, lr_schedule="cosine", **CONFIG), checkpoint=checkpoint, progress=False)
    with pytest.raises(CheckpointError, match="training.epochs"):
        train_model(small_maxout(), data, TrainConfig(epochs=3, lr_schedule="cosine", **CONFIG), checkpoint=checkpoint, resume=True,
                    progress=False)


@pytest.mark.parametrize("schedule", ["step", "Cosine", "", None, 1])
def test_unknown_schedules_are_refused_before_any_work(schedule):
    with pytest.raises(InputError, match="lr_schedule must be one of constant, cosine"):
        TrainConfig(lr_schedule=schedule)


def test_a_constant_schedule_is_left_out_of_the_records_so_they_read_as_before():
    assert "lr_schedule" not in TrainConfig(epochs=2).to_dict()
    cosine = TrainConfig(epochs=2, lr_schedule="cosine").to_dict()
    assert cosine["lr_schedule"] == "cosine" and TrainConfig(**cosine) == TrainConfig(epochs=2, lr_schedule="cosine")
    assert TrainConfig(**TrainConfig(epochs=2).to_dict()) == TrainConfig(epochs=2)
