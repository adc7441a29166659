"""FGSM/FGM: the seed's worked example, optimality on linear models, and invariants."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.attacks import FGM, FGSM
from advlab.exact import logistic_loss_direction, max_linear_l2, max_linear_linf
from advlab.models.linear import linear_weights
from advlab.models import LogisticRegression, as_multiclass_logits


def worked_example_model():
    model = LogisticRegression(5).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[3.0, 2.0, -1.0, 1.0, 4.0]]))
        model.linear.bias.zero_()
    return model.eval()


X_WORKED = torch.tensor([[-2.0, 2.0, 1.0, -3.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize(
    "eps, probability, places",
    [(0.0, 0.11920292202211755, 15), (0.3, 0.7858349830425586, 15), (1.0, 0.9998, 4)],
)
def test_worked_example(eps, probability, places):
    """x=[-2,2,1,-3,1], w=[3,2,-1,1,4], b=0: sigmoid(w.x) = 0.1192 (class 0). FGSM away from
    class 0 adds eps*sign(w): 0.7858 at eps=.3 and 0.9998 at eps=1."""
    model = worked_example_model()
    result = FGSM(model, eps=eps, bounds=(-10.0, 10.0))(X_WORKED, torch.tensor([0]))
    if eps == 0.3:
        torch.testing.assert_close(result.x_adv, torch.tensor([[-1.7, 2.3, 0.7, -2.7, 1.3]], dtype=torch.float64))
    p = float(torch.sigmoid(model(result.x_adv))[0, 0].detach())
    assert abs(p - probability) < 10.0**-places
    assert bool(result.success[0]) == (eps > 0)


def logistic_loss(model, x, y):
    return F.cross_entropy(as_multiclass_logits(model(x)), y, reduction="none")


def test_fgsm_is_the_exact_loss_maximiser_of_logistic_regression(logreg_37, embedded_37):
    x, y = embedded_37.test.images, embedded_37.test.labels
    weight, _ = linear_weights(logreg_37)
    for eps in (0.05, 0.1, 0.25):
        result = FGSM(logreg_37, eps=eps)(x, y)
        exact = max_linear_linf(x.flatten(1), logistic_loss_direction(weight, y), eps).reshape(x.shape)
        torch.testing.assert_close(result.x_adv, exact, rtol=0, atol=0)


def test_fgsm_moves_confident_examples(embedded_37):
    """Margins past float32's resolution of 1 - p (|z| > ~17, up to 80 here) still get the exact step."""
    x, y = embedded_37.test.images, embedded_37.test.labels
    model = LogisticRegression()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.linear.weight.copy_(torch.randn(1, 784, generator=generator))
        model.linear.bias.zero_()
        z = model(x).squeeze(1)
        model.linear.weight.mul_(40 / z.abs().median())
        keep = model(x).squeeze(1).abs() < 80
    x, y = x[keep], y[keep]
    assert int((model(x).abs() > 20).sum()) > 50
    exact = max_linear_linf(x.flatten(1), logistic_loss_direction(model.linear.weight.detach(), y), 0.1)
    torch.testing.assert_close(FGSM(model, eps=0.1)(x, y).x_adv, exact.reshape(x.shape), rtol=0, atol=0)


def test_no_random_point_in_the_box_beats_fgsm(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:20], embedded_37.test.labels[:20]
    eps = 0.1
    best = logistic_loss(logreg_37, FGSM(logreg_37, eps=eps)(x, y).x_adv, y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):  # 10 x 500 random points per image, corners of the box included
        noise = torch.rand((500, *x.shape), generator=generator) * 2 - 1
        noise = torch.where(torch.rand(noise.shape, generator=generator) < 0.5, noise.sign(), noise)
        candidates = (x.unsqueeze(0) + eps * noise).clamp(0, 1)
        losses = logistic_loss(logreg_37, candidates.flatten(0, 1), y.repeat(500)).reshape(500, -1)
        assert bool((losses <= best + 1e-5).all())


def test_binary_targeted_equals_untargeted(logreg_37, embedded_37):
    x, y = embedded_37.test.images[:50], embedded_37.test.labels[:50]
    untargeted = FGSM(logreg_37, eps=0.2)(x, y)
    targeted = FGSM(logreg_37, eps=0.2)(x, y, targets=1 - y)
    torch.testing.assert_close(untargeted.x_adv, targeted.x_adv)
    assert torch.equal(untargeted.success, targeted.success)


def test_targeted_fgsm_lowers_the_target_loss(softmax_model, embedded):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    result = FGSM(softmax_model, eps=0.02)(x, y, targets="random")
    before = logistic_loss(softmax_model, x, result.targets)
    after = logistic_loss(softmax_model, result.x_adv, result.targets)
    assert float((after < before).double().mean()) > 0.95


def test_fgm_l2_matches_the_exact_l2_maximiser_when_the_box_is_loose():
    torch.manual_seed(0)
    model = LogisticRegression(20).double().eval()
    x = torch.rand(30, 20, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    result = FGM(model, eps=0.5, bounds=(-10, 10))(x, y)
    exact = max_linear_l2(x, logistic_loss_direction(model.linear.weight.detach(), y), 0.5, (-10, 10))
    torch.testing.assert_close(result.x_adv, exact)


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0, 1), seed=st.integers(0, 2**16), targeted=st.booleans())
def test_outputs_stay_in_the_eps_ball_and_box(softmax_model, embedded, eps, seed, targeted):
    x, y = embedded.test.images[:32], embedded.test.labels[:32]
    result = FGSM(softmax_model, eps=eps, seed=seed)(x, y, targets="random" if targeted else None)
    assert float((result.x_adv - x).abs().max()) <= eps + 1e-6
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    l2 = FGM(softmax_model, eps=eps * 5, seed=seed)(x, y)
    assert float(l2.l2.max()) <= eps * 5 + 1e-5
    assert float(l2.x_adv.min()) >= 0 and float(l2.x_adv.max()) <= 1


def test_paper_error_rate_on_real_mnist(mnist_dir):
    """Goodfellow et al. Fig. 2: clean error <= 2.5% and FGSM error >= 95% at eps=.25."""
    from advlab.data import load_mnist
    from advlab.experiments.goodfellow import goodfellow_fig2

    experiment = goodfellow_fig2(load_mnist(mnist_dir))
    assert experiment.clean_error <= 0.025
    assert experiment.fgsm_error >= 0.95
