"""Adaptive APGD (`apgd-a`): points that will not fall are discarded after the probe run, points
with masked gradients are flagged and handed to Square, the allocation does not depend on the
batch, and a suite never counts a point broken without a float64 witness."""

import pytest
import torch
from torch import nn

from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import AdaptiveAPGD
from advlab.attacks.adaptive import scale_free_margin
from advlab.attacks.suites import SUITES
from tests.invariance import assert_same_per_example
from tests.masked import Rounded


class Counting(nn.Module):
    """Counts the examples of every backward pass through the model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.backward = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.backward += grad.shape[0]


def _linear(bias: list[float]) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, len(bias))).double().eval()
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor(bias))
    return model


def _x(n: int = 20) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_scale_free_margin_is_the_negated_dlr():
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0], [1.0, 4.0, 0.0, 2.0]])
    assert torch.allclose(scale_free_margin(z, torch.tensor([0, 0])), torch.tensor([2 / 4, -3 / 3]))


def test_points_far_from_the_boundary_whose_loss_stalls_get_no_more_targets():
    """Class 0 leads by ~10 logits, the eps-ball moves logits by < 1: the probe run stalls at
    margin ~0.9 > discard_margin, so no further target is tried (fewer backward passes), with
    the same outcome as trying them all."""
    model = Counting(_linear([10.0, 0.5, 0.0, -0.5, 0.2, 0.1]))
    x = _x()
    y = torch.zeros(len(x), dtype=torch.long)
    runs = {}
    for discard in (0.5, 1.0):
        model.backward = 0
        result = AdaptiveAPGD(model, eps=0.02, steps=20, targets=4, restarts=1, queries=10, discard_margin=discard,
                              progress=False)(x, y)
        runs[discard] = (result, model.backward)
    (kept, passes_kept), (full, passes_full) = runs[0.5], runs[1.0]
    assert bool(kept.extra["discarded"].all()) and not bool(full.extra["discarded"].any())
    assert not bool(kept.success.any()) and not bool(full.success.any())
    assert not bool(kept.extra["flagged"].any())
    assert passes_kept < passes_full / 2  # one target instead of four (plus MALT's ranking)


def test_masked_gradients_are_flagged_and_handed_to_square():
    """Behind an input rounding the gradient is zero: every point still robust after the probe
    run is flagged; only Square, which
    needs no gradient, breaks points (few break when it gets two queries)."""
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5)).double().eval()
    model = Rounded(inner).eval()
    x = _x(30)
    with torch.no_grad():
        y = model(x).argmax(1)
    found = AdaptiveAPGD(model, eps=0.3, steps=10, targets=2, restarts=1, queries=200, progress=False)(x, y)
    flagged = found.extra["flagged"]
    assert bool((flagged | found.success).all()) and int(flagged.sum()) >= 20  # all but those its random starts broke
    assert not bool(found.extra["discarded"].any())
    blind = AdaptiveAPGD(model, eps=0.3, steps=10, targets=2, restarts=1, queries=2, flat_restarts=0, progress=False)(x, y)
    assert int(found.success.sum()) >= int(blind.success.sum()) + 5


def test_dead_points_get_no_white_box_run():
    """Behind an input rounding the gradient at every random start is zero: after MALT's ranking
    (one backward pass per other class) and the one dead check, no backward pass runs at all."""
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5)).double().eval()
    model = Counting(Rounded(inner)).eval()
    x = _x(30)
    with torch.no_grad():
        y = model(x).argmax(1)
    found = AdaptiveAPGD(model, eps=0.3, steps=10, targets=2, restarts=1, queries=200, progress=False)(x, y)
    assert model.backward == (4 + 1) * len(x)
    assert bool((found.extra["flagged"] | found.success).all()) and bool(found.success.any())


class Saturated(nn.Module):
    """softmax(1e6 * logits): near one-hot outputs, flat scores."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(1e6 * self.inner(x), dim=1)


@pytest.mark.invariance
@pytest.mark.filterwarnings("ignore::advlab.attacks.ProbabilityOutputWarning")  # probabilities on purpose
def test_flat_points_get_fresh_square_starts_independent_of_the_batch():
    """Near one-hot outputs: Square's margin never moves, its discard rule stops the search at the
    first checkpoint, and the short searches from fresh starts break more points; per example."""
    torch.manual_seed(1)
    model = Saturated(nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6)).double()).eval()
    x = _x(40)
    with torch.no_grad():
        y = model(x).argmax(1)
    settings = {"eps": 0.3, "steps": 5, "targets": 2, "restarts": 1, "queries": 100, "square_checkpoint": 10,
                "flat_queries": 10, "progress": False}
    once = AdaptiveAPGD(model, flat_restarts=0, **settings)(x, y)
    again = AdaptiveAPGD(model, flat_restarts=8, **settings)(x, y)
    assert bool((again.success >= once.success).all()) and int(again.success.sum()) >= int(once.success.sum()) + 5
    assert_same_per_example(again, AdaptiveAPGD(model, flat_restarts=8, batch_size=7, **settings)(x, y))


@pytest.mark.invariance
def test_allocation_does_not_depend_on_the_batch():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6)).double().eval()
    x = _x(40)
    with torch.no_grad():
        model[3].weight.mul_(8)
        y = model(x).argmax(1)
    settings = {"eps": 0.05, "steps": 12, "targets": 3, "restarts": 2, "queries": 30, "progress": False}
    whole = AdaptiveAPGD(model, **settings)(x, y)
    pieces = AdaptiveAPGD(model, batch_size=7, **settings)(x, y)
    assert_same_per_example(whole, pieces)
    for key in ("flagged", "discarded"):
        assert torch.equal(whole.extra[key], pieces.extra[key])
    assert torch.allclose(whole.extra["margin"], pieces.extra["margin"], rtol=0, atol=1e-12)
    assert bool(whole.extra["discarded"].any()) and bool(whole.success.any())  # both branches taken


def _threshold_model() -> nn.Module:
    """One pixel, class 1 iff 1e8 x - 6e7 > 0: the float32 rounding of 0.5 + 0.1 is class 1 but lies
    2.4e-8 outside the float64 ball of radius 0.1 around 0.5, where every point is class 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0], [1e8]]))
        model[1].bias.copy_(torch.tensor([0.0, -6e7]))
    return model


@pytest.mark.filterwarnings("ignore::advlab.attacks.apgd.DLRFallbackWarning")  # two classes on purpose: DLR needs four
def test_the_fast_suite_counts_a_point_broken_only_with_a_float64_witness():
    model = _threshold_model()
    x, y = torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long)
    found = AdaptiveAPGD(model, eps=0.1, steps=5, queries=10, progress=False)(x, y)
    assert bool(found.success[0])  # the float32 attack "breaks" it, outside the float64 ball
    assert evaluate_suite(model, x, y, eps=0.1, suite="fast").broken_by == [""]
    wide = evaluate_suite(model, x, y, eps=0.2, suite="fast")
    assert wide.broken_by == ["apgd-a"]
    assert float(wide.x_adv.double().sub(0.5).abs().max()) <= 0.2
    assert int(model.double()(wide.x_adv.double()).argmax(1)) == 1


def test_fast_suite_witnesses_on_a_network():
    """Every point the fast suite breaks is misclassified by the float64 model at its x_adv, which
    lies in the float64 eps-ball ∩ box."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6)).eval()
    x = _x(40).float()
    with torch.no_grad():
        model[3].weight.mul_(8)
        y = model(x).argmax(1)
    ev = evaluate_suite(model, x, y, eps=0.08, suite=[{"attack": "apgd-a", "params": {"steps": 10, "queries": 50}}])
    broken = torch.tensor([b == "apgd-a" for b in ev.broken_by])
    assert bool(broken.any())
    adv, x64 = ev.x_adv.double()[broken], x.double()[broken]
    assert float((adv - x64).abs().amax()) <= 0.08 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert bool((model.double()(adv).argmax(1) != y[broken]).all())


def test_fast_is_a_suite_and_standard_is_untouched():
    assert [e.attack for e in SUITES["fast"]] == ["apgd-a"]
    assert [e.label for e in SUITES["standard"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
