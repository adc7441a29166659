"""PGD and BIM: feasibility, closed forms on linear models, restarts, early exit, bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import BIM, PGD, make_attack
from advlab.attacks.losses import margin
from advlab.errors import InputError
from advlab.exact import logistic_loss_direction, max_linear_l2, max_linear_linf
from advlab.models.linear import linear_weights
from advlab.models import as_multiclass_logits
from advlab.training import TrainConfig, train_model

ULP = 1e-6  # float32 rounding of x_adv - x


def tiny_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def mlp(embedded):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    train_model(model, embedded.train, TrainConfig(epochs=2, lr=1e-3, seed=0), progress=False)
    return model.eval()


def loss(model, x, y):
    return nn.functional.cross_entropy(as_multiclass_logits(model(x)), y, reduction="none")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 1.0),
    step_size=st.floats(1e-3, 2.0),
    steps=st.integers(1, 6),
    random_start=st.booleans(),
    restarts=st.integers(1, 3),
    early_exit=st.booleans(),
    loss_name=st.sampled_from(["ce", "margin"]),
    box=st.sampled_from([(0.0, 1.0), (-1.0, 2.0)]),
)
def test_outputs_stay_in_the_ball_and_the_box(seed, norm, eps, step_size, steps, random_start, restarts, early_exit, loss_name, box):
    model = tiny_net(seed % 7)
    generator = torch.Generator().manual_seed(seed)
    x = box[0] + (box[1] - box[0]) * torch.rand(5, 12, generator=generator)
    x[0] = box[0]  # corners of the box, where clipping matters
    x[1] = box[1]
    y = torch.randint(0, 3, (5,), generator=generator)
    attack = PGD(
        model, eps=eps, norm=norm, step_size=step_size, steps=steps, random_start=random_start,
        restarts=restarts if random_start else 1, early_exit=early_exit, loss=loss_name, bounds=box, seed=seed,
    )
    result = attack(x, y)
    r = (result.x_adv - x).flatten(1)
    size = r.abs().amax(1) if norm == "linf" else r.norm(dim=1)
    assert bool((size <= eps + ULP).all())
    assert bool(((result.x_adv >= box[0]) & (result.x_adv <= box[1])).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_eps_zero_returns_x(softmax_model, embedded, norm, random_start):
    x, y = embedded.test.images[:20], embedded.test.labels[:20]
    result = PGD(softmax_model, eps=0.0, norm=norm, steps=5, random_start=random_start)(x, y)
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.success, softmax_model(x).argmax(1) != y)


def test_linf_pgd_reaches_the_exact_maximiser_on_logistic_regression(logreg_37, embedded_37):
    """The loss is monotone in a.x, so every sign step is sign(a): after eps / step steps
    PGD sits at clip(x + eps sign(a)), the exact maximiser over the ball and the box."""
    x, y = embedded_37.test.images[:100], embedded_37.test.labels[:100]
    weight, _ = linear_weights(logreg_37)
    eps = 0.1
    result = PGD(logreg_37, eps=eps, step_size=eps / 4, steps=6, random_start=False)(x, y)
    exact = max_linear_linf(x.flatten(1), logistic_loss_direction(weight, y), eps).reshape(x.shape)
    torch.testing.assert_close(result.x_adv, exact, rtol=0, atol=1e-7)


def test_l2_pgd_approaches_the_exact_maximiser_on_logistic_regression(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:100], embedded_37.test.labels[:100]
    weight, _ = linear_weights(logreg_37)
    eps = 1.0
    result = PGD(logreg_37, eps=eps, norm="l2", step_size=0.1, steps=50, random_start=False)(x, y)
    exact = max_linear_l2(x.flatten(1), logistic_loss_direction(weight, y), eps).reshape(x.shape)
    reached, best = loss(logreg_37, result.x_adv, y), loss(logreg_37, exact, y)
    assert bool((reached <= best + 1e-5).all())  # nothing beats the exact maximiser
    assert bool((reached >= best - 0.02 * best.abs() - 1e-4).all())


@pytest.mark.parametrize("loss_name", ["ce", "margin"])
def test_early_exit_never_reports_higher_robust_accuracy(mlp, softmax_model, embedded, loss_name):
    x, y = embedded.test.images[:300], embedded.test.labels[:300]
    for model in (mlp, softmax_model):
        for eps in (0.03, 0.08):
            kwargs = dict(eps=eps, step_size=eps / 8, steps=15, loss=loss_name, random_start=True, restarts=2, seed=3)
            full = PGD(model, **kwargs)(x, y)
            early = PGD(model, early_exit=True, **kwargs)(x, y)
            assert bool((early.success | ~full.success).all())  # every full-run success is kept
            assert float(early.adv_correct.double().mean()) <= float(full.adv_correct.double().mean())


def test_early_exit_keeps_the_first_adversarial_iterate(softmax_model, embedded):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    eps, step = 0.1, 0.01
    early = PGD(softmax_model, eps=eps, step_size=step, steps=10, random_start=False, early_exit=True)(x, y)
    # From x, the first adversarial iterate t has ||x_t - x||_inf <= t * step: an example
    # that was stopped is never further out than the iterate that fooled the model.
    before = PGD(softmax_model, eps=eps, step_size=step, steps=3, random_start=False)(x, y)
    assert bool(before.success.any())
    assert bool((early.linf[before.success] <= 3 * step + 1e-6).all())
    wrong = ~early.clean_correct  # adversarial at x: left at step 0, unchanged
    assert bool(wrong.any()) and torch.equal(early.x_adv[wrong], x[wrong])


def test_restarts_only_add_successes_and_keep_the_highest_loss(mlp, embedded):
    x, y = embedded.test.images[:200], embedded.test.labels[:200]
    kwargs = dict(eps=0.05, step_size=0.01, steps=8, seed=1)
    one = PGD(mlp, **kwargs)(x, y)
    three = PGD(mlp, restarts=3, **kwargs)(x, y)
    assert bool((three.success | ~one.success).all())
    failed = ~three.success
    assert bool((loss(mlp, three.x_adv, y)[failed] >= loss(mlp, one.x_adv, y)[failed] - 1e-5).all())


def test_random_starts_are_seeded(mlp, embedded):
    x, y = embedded.test.images[:50], embedded.test.labels[:50]
    a = PGD(mlp, eps=0.1, steps=3, seed=5)
    first, second = a(x, y), a(x, y)
    assert torch.equal(first.x_adv, second.x_adv)
    assert not torch.equal(first.x_adv, PGD(mlp, eps=0.1, steps=3, seed=6)(x, y).x_adv)


def test_bim_is_pgd_from_x(mlp, embedded):
    x, y = embedded.test.images[:50], embedded.test.labels[:50]
    bim = BIM(mlp, eps=0.1)
    assert bim.steps == 30 and bim.step_size == pytest.approx(1 / 255)  # min(25.5 + 4, 31.9) -> 30
    pgd = PGD(mlp, eps=0.1, step_size=1 / 255, steps=30, random_start=False)
    assert torch.equal(bim(x, y).x_adv, pgd(x, y).x_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_success_means_the_target_is_predicted(mlp, embedded, norm):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    eps = 0.15 if norm == "linf" else 3.0
    result = make_attack("pgd", mlp, eps=eps, norm=norm, steps=20, loss="margin")(x, y, targets="random")
    with torch.no_grad():
        pred = mlp(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred == result.targets)
    assert float(result.success.double().mean()) > 0.5
    assert bool((margin(result.adv_logits, result.targets, True)[result.success] > 0).all())


def test_success_agrees_with_rerunning_the_model(mlp, embedded):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    result = PGD(mlp, eps=0.05, steps=10, early_exit=True)(x, y)
    with torch.no_grad():
        assert torch.equal(result.success, mlp(result.x_adv).argmax(1) != y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps=-0.1), "eps"),
        (dict(eps=2.0), "eps"),
        (dict(eps=0.1, steps=0), "steps"),
        (dict(eps=0.1, steps=2.5), "steps"),
        (dict(eps=0.1, step_size=0.0), "step_size"),
        (dict(eps=0.1, step_size=-1.0), "step_size"),
        (dict(eps=0.1, restarts=0), "restarts"),
        (dict(eps=0.1, restarts=2, random_start=False), "random_start"),
        (dict(eps=0.1, norm="l1"), "norm"),
        (dict(eps=0.1, loss="hinge"), "loss"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        PGD(nn.Linear(2, 2), **kwargs)


def test_bim_bad_parameters():
    with pytest.raises(InputError, match="eps"):
        BIM(nn.Linear(2, 2), eps=-0.1)
    with pytest.raises(InputError, match="steps"):
        BIM(nn.Linear(2, 2), eps=0.1, steps=0)
