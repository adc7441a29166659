"""What the Attack base owns: validation, targets, mode restoration, success, norms, batching."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from advlab.attacks import FGSM, AttackResult, ProbabilityOutputWarning
from advlab.errors import DataError, InputError
from tests.invariance import assert_same_per_example


@pytest.fixture
def batch(embedded):
    return embedded.test.images[:64], embedded.test.labels[:64]


@pytest.mark.parametrize(
    "make_x, message",
    [
        (lambda x: x[0, 0, 0], "shape"),
        (lambda x: x[:0], "non-empty"),
        (lambda x: (x * 255).to(torch.uint8), "floating"),
        (lambda x: x.double(), "float64 but the model's parameters are torch.float32"),
        (lambda x: torch.where(torch.arange(x.numel()).reshape(x.shape) == 5, float("nan"), x), "NaN"),
        (lambda x: x.index_put((torch.tensor([0]),), torch.tensor(float("inf"))), "NaN or inf"),
        (lambda x: x * 2 - 0.5, "outside the declared bounds"),
    ],
)
def test_bad_x(softmax_model, batch, make_x, message):
    x, y = batch
    with pytest.raises(InputError, match=message):
        FGSM(softmax_model, eps=0.1)(make_x(x), y[: len(make_x(x))] if make_x(x).ndim > 1 else y)


@pytest.mark.parametrize(
    "y_fn, message",
    [
        (lambda y: y[:-1], "shape"),
        (lambda y: y.float(), "integer"),
        (lambda y: y + 10, "0..9"),
    ],
)
def test_bad_labels(softmax_model, batch, y_fn, message):
    x, y = batch
    with pytest.raises(InputError, match=message):
        FGSM(softmax_model, eps=0.1)(x, y_fn(y))


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), 1.5])
def test_bad_eps(softmax_model, eps):
    with pytest.raises(InputError, match="eps"):
        FGSM(softmax_model, eps=eps)


def test_bad_bounds_and_model():
    with pytest.raises(InputError, match="bounds"):
        FGSM(nn.Linear(2, 2), eps=0.1, bounds=(1, 0))
    with pytest.raises(InputError, match="nn.Module"):
        FGSM(lambda x: x, eps=0.1)


def test_targets_equal_to_labels_are_refused(softmax_model, batch):
    x, y = batch
    targets = (y + 1) % 10
    targets[3] = y[3]
    with pytest.raises(InputError, match=r"targets equal the true labels at 1 example\(s\) \(first: index 3\)"):
        FGSM(softmax_model, eps=0.1)(x, y, targets=targets)
    with pytest.raises(InputError, match="0..9"):
        FGSM(softmax_model, eps=0.1)(x, y, targets=torch.full_like(y, 10))
    with pytest.raises(InputError, match="least-likely"):
        FGSM(softmax_model, eps=0.1)(x, y, targets="most-likely")


def test_random_targets_are_seeded_and_never_the_label(softmax_model, batch):
    x, y = batch
    a = FGSM(softmax_model, eps=0.1, seed=3)(x, y, targets="random").targets
    b = FGSM(softmax_model, eps=0.1, seed=3)(x, y, targets="random").targets
    c = FGSM(softmax_model, eps=0.1, seed=4)(x, y, targets="random").targets
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((a != y).all()) and bool(((a >= 0) & (a < 10)).all())


def test_least_likely_targets(softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.1)(x, y, targets="least-likely")
    logits = softmax_model(x).detach()
    assert torch.equal(result.targets, logits.argmin(1)) or bool((result.targets != y).all())
    assert bool((result.targets != y).all())


def test_success_agrees_with_rerunning_the_model(softmax_model, batch):
    x, y = batch
    for targets in (None, "random"):
        result = FGSM(softmax_model, eps=0.1)(x, y, targets=targets)
        pred = softmax_model(result.x_adv).argmax(1)
        expected = pred != y if targets is None else pred == result.targets
        assert torch.equal(result.success, expected)
        assert torch.equal(result.adv_pred, pred)


def test_eps_zero_is_clean(softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.0)(x, y)
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.success, softmax_model(x).argmax(1) != y)
    assert float(result.l2.max()) == 0.0


def test_norms(softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.2)(x, y)
    r = (result.x_adv - x).flatten(1)
    torch.testing.assert_close(result.linf, r.abs().amax(1))
    torch.testing.assert_close(result.l2, r.norm(dim=1))
    torch.testing.assert_close(result.distortion, (r.pow(2).sum(1) / 784).sqrt())


class DropoutBatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


def test_train_mode_model_is_attacked_in_eval_mode_and_restored(batch):
    x, y = batch
    torch.manual_seed(0)
    model = DropoutBatchNormNet()
    model.train()
    model.body[1].weight.requires_grad_(False)  # a mixed set of flags must come back as it was
    stats = model.body[2].running_mean.clone()
    first = FGSM(model, eps=0.1)(x, y)
    second = FGSM(model, eps=0.1)(x, y)
    assert torch.equal(first.x_adv, second.x_adv)  # no dropout noise: eval mode
    assert torch.equal(model.body[2].running_mean, stats)  # BatchNorm statistics untouched
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * 5
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.invariance
def test_batching_gives_the_same_answer(softmax_model, batch):
    """float64 (in float32 a near-zero gradient coordinate may change sign with the batch shape)."""
    x, y = batch
    model = copy.deepcopy(softmax_model).double()
    whole = FGSM(model, eps=0.1, batch_size=1000)(x.double(), y)
    pieces = FGSM(model, eps=0.1, batch_size=7)(x.double(), y)
    assert_same_per_example(whole, pieces)


def test_numpy_and_float64_inputs(softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.1)(x.numpy(), y.numpy())
    assert isinstance(result.x_adv, torch.Tensor)
    model64 = DropoutBatchNormNet().double().eval()
    result64 = FGSM(model64, eps=0.1)(x.double(), y)
    assert result64.x_adv.dtype == torch.float64


def test_probability_outputs_are_detected(softmax_model, batch):
    x, y = batch
    with pytest.warns(ProbabilityOutputWarning, match="probabilities"):
        FGSM(nn.Sequential(softmax_model, nn.Softmax(dim=1)), eps=0.1)(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FGSM(softmax_model, eps=0.1)(x, y)


def test_model_without_input_gradient(batch):
    x, y = batch

    class Argmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, x):
            return nn.functional.one_hot(self.linear(x.flatten(1)).argmax(1), 10).float()

    with pytest.raises(InputError, match="no gradient"):
        FGSM(Argmax(), eps=0.1)(x, y)


def test_summary_and_save(tmp_path, softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.1)(x, y)
    summary = result.summary()
    assert summary["n"] == 64 and math.isclose(summary["adversarial_accuracy"] + summary["adversarial_error"], 1.0)
    assert summary["clean_accuracy"] == float(result.clean_correct.double().mean())
    result.save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as saved:
        np.testing.assert_array_equal(saved["success"], result.success.numpy())
        assert saved["x_adv"].shape == (64, 1, 28, 28)


@pytest.mark.parametrize("targets", [None, "random"])
def test_load_is_the_inverse_of_save(tmp_path, softmax_model, batch, targets):
    x, y = batch
    result = FGSM(softmax_model, eps=0.1)(x, y, targets=targets)
    result.extra["step"] = torch.arange(64)
    result.save(tmp_path / "r.npz")
    loaded = AttackResult.load(tmp_path / "r.npz", x)
    assert (loaded.attack, loaded.params, loaded.seconds) == (result.attack, result.params, result.seconds)
    for name in ("x_adv", "labels", "success", "clean_logits", "adv_logits", "linf", "l2", "distortion"):
        assert torch.equal(getattr(loaded, name), getattr(result, name)), name
    assert (loaded.targets is None) == (targets is None) and torch.equal(loaded.extra["step"], result.extra["step"])
    assert loaded.summary() == result.summary()
    with pytest.raises(InputError, match="shape"):
        AttackResult.load(tmp_path / "r.npz", x[:3])
    np.savez(tmp_path / "other.npz", x_adv=np.zeros(3))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name in ("other.npz", "junk.npz", "missing.npz"):
        with pytest.raises(DataError):
            AttackResult.load(tmp_path / name, x)


def test_summary_keeps_no_full_size_copy(softmax_model, batch):
    x, y = batch
    result = FGSM(softmax_model, eps=0.1)(x, y)
    result.summary()
    result.arrays()
    full = [k for k, v in vars(result).items() if k not in ("x", "x_adv") and isinstance(v, torch.Tensor) and v.numel() >= x.numel()]
    cached = [k for k, v in vars(result).items() if isinstance(v, tuple) and any(t.numel() >= x.numel() for t in v)]
    assert not full and not cached
    r = (result.x_adv - x).flatten(1)
    torch.testing.assert_close(result.linf, r.abs().amax(1))
    torch.testing.assert_close(result.l2, r.norm(dim=1))
