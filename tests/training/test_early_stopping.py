"""Early stopping: the epoch of the lowest validation error, the patience rule, stopping in
`train_model`, validation that leaves training untouched, and exact resume."""

import pytest
import torch

from advlab.errors import CheckpointError, InputError
from advlab.training import (
    EarlyStopping,
    EpochCheckpoint,
    TrainConfig,
    best_epoch,
    patience_exhausted,
    read_metadata,
    stopping_epoch,
    train_model,
)

from tests.training.small import same_state, small_maxout, state_copy

# A synthetic validation curve: lowest at epoch 4 (0.20), tied later at epoch 7.
CURVE = [0.50, 0.30, 0.25, 0.20, 0.22, 0.21, 0.20, 0.24, 0.26, 0.23, 0.10]


def test_best_epoch_is_the_first_epoch_of_the_minimum():
    assert best_epoch(CURVE[:4]) == 4
    assert best_epoch(CURVE[:10]) == 4  # the tie at epoch 7 is not an improvement
    assert best_epoch(CURVE) == 11
    assert best_epoch([0.3]) == 1
    with pytest.raises(InputError):
        best_epoch([])


@pytest.mark.parametrize(("patience", "stop_after"), [(1, 5), (3, 7), (6, 10), (7, None)])
def test_patience_counts_epochs_since_the_best(patience, stop_after):
    """Training stops after the first epoch n with n - best_epoch(curve[:n]) >= patience."""
    stops = [n for n in range(1, len(CURVE) + 1) if patience_exhausted(CURVE[:n], patience)]
    assert (stops[0] if stops else None) == stop_after
    assert not patience_exhausted([], patience)


def test_the_bar_counts_to_the_epoch_the_patience_runs_out():
    assert stopping_epoch([], 3, 200) == 3  # no error measured yet
    assert stopping_epoch(CURVE[:5], 3, 200) == 4 + 3  # best at epoch 4
    assert stopping_epoch(CURVE, 3, 200) == 11 + 3  # a new best at epoch 11 moves it on
    assert stopping_epoch(CURVE, 3, 12) == 12  # never past the most epochs asked for
    for n in range(1, len(CURVE) + 1):  # the loop stops once it has trained that many epochs
        assert patience_exhausted(CURVE[:n], 3) == (n >= stopping_epoch(CURVE[:n], 3, 200))


def test_patience_must_be_a_positive_integer():
    for patience in (0, -1, 1.5, True):
        with pytest.raises(InputError):
            EarlyStopping(lambda model: 0.0, patience)


def _scripted(curve):
    """An EarlyStopping whose validation error after the i-th call is curve[i]; it also draws random
    numbers and leaves the model in train mode, which the loop must undo."""
    calls = []

    def validate(model):
        assert not model.training  # measured in eval mode
        torch.rand(100)
        model.train()
        calls.append(len(calls))
        return curve[len(calls) - 1]

    return EarlyStopping(validate, patience=2, describe={"measure": "scripted"}), calls


CONFIG = {"lr": 1e-3, "batch_size": 32, "seed": 1}


def test_train_model_stops_when_the_patience_runs_out(tmp_path, embedded):
    data = embedded.train.take(64)
    stopping, calls = _scripted(CURVE)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    history = train_model(small_maxout(), data, TrainConfig(epochs=50, **CONFIG), early_stopping=stopping, checkpoint=checkpoint,
                          progress=False)
    assert history.validation == CURVE[:6] and len(history.loss) == 6 and len(calls) == 6  # best 4, patience 2
    assert best_epoch(history.validation) == 4
    progress = read_metadata(checkpoint.path)["progress"]
    assert progress["epoch"] == 6 and progress["complete"] and progress["stopped_early"] and progress["validation"] == CURVE[:6]


def test_the_epoch_limit_still_holds(embedded):
    stopping, _ = _scripted(CURVE)
    history = train_model(small_maxout(), embedded.train.take(64), TrainConfig(epochs=3, **CONFIG), early_stopping=stopping, progress=False)
    assert history.validation == CURVE[:3]


def test_validation_does_not_change_the_training(embedded):
    """The weights after k epochs are those of a plain k-epoch run: validation draws no dropout mask of training's."""
    data = embedded.train.take(64)
    plain = small_maxout()
    train_model(plain, data, TrainConfig(epochs=6, **CONFIG), progress=False)
    stopped = small_maxout()
    train_model(stopped, data, TrainConfig(epochs=50, **CONFIG), early_stopping=_scripted(CURVE)[0], progress=False)
    assert same_state(state_copy(plain), state_copy(stopped))


def test_resume_gives_the_weights_and_curve_of_an_uninterrupted_run(tmp_path, embedded):
    data = embedded.train.take(64)
    straight = small_maxout()
    straight_history = train_model(straight, data, TrainConfig(epochs=50, **CONFIG), early_stopping=_scripted(CURVE)[0],
                                   progress=False)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    train_model(small_maxout(), data, TrainConfig(epochs=2, **CONFIG), early_stopping=_scripted(CURVE)[0], checkpoint=checkpoint,
                progress=False)  # killed after epoch 2 (here: an epoch limit of 2)
    stopping, calls = _scripted(CURVE[2:])  # the resumed run measures epochs 3, 4, ...
    resumed = small_maxout()
    history = train_model(resumed, data, TrainConfig(epochs=50, **CONFIG), early_stopping=stopping, checkpoint=checkpoint,
                          resume=True, progress=False)
    assert history.resumed_from == 2 and len(calls) == 4
    assert history.validation == straight_history.validation == CURVE[:6]
    assert same_state(state_copy(straight), state_copy(resumed))
    again = train_model(small_maxout(), data, TrainConfig(epochs=50, **CONFIG), early_stopping=_scripted([])[0], checkpoint=checkpoint,
                        resume=True, progress=False)  # a finished run trains and validates no further
    assert again.resumed_from == 6 and again.validation == CURVE[:6]


def test_resume_refuses_another_validation_or_a_checkpoint_without_one(tmp_path, embedded):
    data = embedded.train.take(32)
    checkpoint = EpochCheckpoint(tmp_path / "m.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    train_model(small_maxout(), data, TrainConfig(epochs=1, **CONFIG), early_stopping=_scripted(CURVE)[0], checkpoint=checkpoint,
                progress=False)
    other = EarlyStopping(lambda model: 0.0, 2, {"measure": "another"})
    with pytest.raises(CheckpointError, match="validation"):
        train_model(small_maxout(), data, TrainConfig(epochs=3, **CONFIG), early_stopping=other, checkpoint=checkpoint, resume=True,
                    progress=False)
    plain = EpochCheckpoint(tmp_path / "plain.safetensors", "maxout", {"hidden": 16, "pieces": 2})
    train_model(small_maxout(), data, TrainConfig(epochs=1, **CONFIG), checkpoint=plain, progress=False)
    with pytest.raises(CheckpointError, match="validation"):
        train_model(small_maxout(), data, TrainConfig(epochs=3, **CONFIG), early_stopping=_scripted(CURVE)[0], checkpoint=plain,
                    resume=True, progress=False)
