"""APGD and APGD-T: the step-size schedule, the DLR losses, exact grading on linear models and
against the MILP on small ReLU nets, batch invariance, the few-classes fallback, bad input."""

import pytest
import torch
from torch import nn

from advlab.attacks import APGD, APGDT, make_attack
from advlab.attacks.apgd import DLRFallbackWarning, checkpoints, dlr_loss, targeted_dlr_loss
from advlab.errors import InputError
from advlab.exact import minimal_linf, minimal_perturbation
from advlab.models import MLP
from tests.invariance import ATOL, assert_same_per_example, clear_rows


def test_checkpoints_follow_the_paper():
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (Sec. 3.2)."""
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_dlr_losses_are_shift_and_scale_invariant_and_signed():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (50,), generator=g)
    t = (y + 1 + torch.randint(0, 9, (50,), generator=g)) % 10
    for loss in (lambda v: dlr_loss(v, y), lambda v: targeted_dlr_loss(v, y, t)):
        assert torch.allclose(loss(z), loss(3.0 * z + 7.0), atol=1e-9)
    misclassified = z.argmax(1) != y
    assert bool(((dlr_loss(z, y) > 0) == misclassified).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("cls,kwargs", [(APGD, {"loss": "ce"}), (APGD, {"loss": "dlr"}), (APGDT, {"targets": 3})])
def test_against_the_exact_minimal_perturbation_of_softmax_regression(softmax_model, embedded, norm, cls, kwargs):
    """Sound (success only where the exact distance is within eps) and strong (breaks nearly every
    point whose exact distance is at most 0.8 eps)."""
    eps = 0.05 if norm == "linf" else 0.6
    model = softmax_model.double()
    try:
        x, y = embedded.test.images[:150].double(), embedded.test.labels[:150]
        exact = minimal_perturbation(model, x, y, norm=norm).distance
        result = cls(model, eps=eps, norm=norm, steps=30, **kwargs)(x, y)
    finally:
        model.float()
    size = result.linf if norm == "linf" else result.l2
    assert bool((size <= eps * (1 + 1e-9)).all())
    assert bool((exact[result.success] <= eps + 1e-9).all())
    reachable = exact <= 0.8 * eps
    assert reachable.sum() >= 20
    assert result.success[reachable].double().mean() >= 0.97


def _steep_net(seed: int) -> nn.Module:
    """A ReLU net 6-10-10-4 with many small decision regions (steep first-layer units centred in the box)."""
    torch.manual_seed(seed)
    model = MLP(6, (10, 10), 4).double().eval()
    with torch.no_grad():
        model.fc1.weight *= 8
        centres = torch.rand(10, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        model.fc1.bias.copy_(-(model.fc1.weight * centres).sum(1))
    return model


@pytest.fixture(scope="module")
def milp_case():
    """A small ReLU net, 14 points and their MILP-proven minimal L-inf distances d*."""
    model = _steep_net(3)
    x = torch.rand(14, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=20)
    proven = torch.tensor([s == "optimal" for s in exact.status]) & (exact.upper > 0)
    return model, x[proven], y[proven], exact.lower[proven], exact.upper[proven]


@pytest.mark.parametrize("cls,kwargs,share", [(APGD, {"restarts": 5}, 0.6), (APGDT, {}, 0.9)])
def test_against_the_milp_on_a_small_relu_net(cls, kwargs, share, milp_case):
    """Below the proven d* no attack may succeed; at eps = 1.25 d* APGD-T must break nearly every
    point (untargeted cross-entropy, like PGD, stalls in this net's many small regions: 9-10 of 14)."""
    model, x, y, lower, upper = milp_case
    assert len(x) >= 8

    def success(eps: torch.Tensor) -> torch.Tensor:
        return torch.stack([cls(model, eps=float(e), **kwargs)(x[i : i + 1], y[i : i + 1]).success[0] for i, e in enumerate(eps)])

    assert not bool(success(0.98 * lower).any())
    assert success(1.25 * upper).double().mean() >= share


@pytest.mark.invariance
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_batch_size_invariant_and_seeded(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(30, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    eps = {"linf": 0.05, "l2": 0.3, "l1": 1.0}[norm]
    whole = APGDT(model, eps=eps, norm=norm, steps=15, targets=2)(x, y)
    pieces = APGDT(model, eps=eps, norm=norm, steps=15, targets=2, batch_size=7)(x, y)
    # the same per example up to the model's own float64 rounding for another batch size
    assert_same_per_example(whole, pieces)
    other_seed = APGDT(model, eps=eps, norm=norm, steps=15, targets=2, seed=1)(x, y)
    assert float((whole.x_adv - other_seed.x_adv).abs().max()) > 1e-3


def test_few_classes_fall_back_to_cross_entropy_with_a_warning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).double()
    x = torch.rand(10, 5, dtype=torch.float64)
    y = model(x).argmax(1)
    with pytest.warns(DLRFallbackWarning, match="4 classes"):
        result = APGDT(model, eps=0.3, steps=10)(x, y)  # 9 targets asked, 2 possible
    assert result.params["targets"] == 9
    binary = nn.Linear(5, 1).double()
    with pytest.warns(DLRFallbackWarning, match="3 classes"):
        APGD(binary, eps=0.3, steps=5, loss="dlr")(x, (binary(x).squeeze(1) > 0).long())


def test_eps_zero_registry_and_bad_input(softmax_model, embedded):
    x, y = embedded.test.images[:10], embedded.test.labels[:10]
    assert torch.equal(make_attack("apgd", softmax_model, eps=0.0)(x, y).x_adv, x)
    assert torch.equal(make_attack("apgd-t", softmax_model, eps=0.0)(x, y).x_adv, x)
    for kwargs in ({"eps": -1.0}, {"eps": 0.1, "loss": "hinge"}, {"eps": 0.1, "steps": 0}, {"eps": 0.1, "rho": 1.5},
                   {"eps": 0.1, "restarts": 1.5}, {"eps": 0.1, "norm": "l5"}):
        with pytest.raises(InputError):
            APGD(softmax_model, **kwargs)
    with pytest.raises(TypeError):  # APGD-T's loss is fixed (targeted DLR), not a parameter
        APGDT(softmax_model, eps=0.1, loss="ce")
    reached = APGD(softmax_model, eps=0.3, steps=20)(x, y, targets="random")  # a caller's target: reach it
    assert torch.equal(reached.adv_pred[reached.success], reached.targets[reached.success])


def _textbook_apgd(attack: APGD, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Alg. 1 of Croce & Hein 2020 for one example, written out plainly (no fused arithmetic, no
    shared state): the first misclassified iterate, else the best-loss point."""
    eps, steps = attack.eps, attack.steps
    lo, hi = attack.bounds

    def project(z: torch.Tensor) -> torch.Tensor:
        if attack.norm == "linf":
            return torch.min(torch.max(z, x - eps), x + eps).clamp(lo, hi)
        r = z - x
        return (x + r * min(1.0, eps / float(r.norm()))).clamp(lo, hi) if float(r.norm()) > eps else z.clamp(lo, hi)

    def loss_grad(z: torch.Tensor) -> tuple[float, torch.Tensor, int]:
        z = z.detach().requires_grad_(True)
        logits = attack.model(z)
        loss = nn.functional.cross_entropy(logits, y) if attack.loss == "ce" else dlr_loss(logits, y).sum()
        (g,) = torch.autograd.grad(loss, z)
        return float(loss.detach()), g, int(logits.argmax(1))

    tie = torch.finfo(torch.float64).eps ** 0.75  # a rise or an improvement counts beyond rounding only

    def above(a: float, b: float) -> bool:
        return a - b > tie * (1 + abs(b))

    marks, step = checkpoints(steps), 2 * eps
    x_k = x_old = x_best = start
    f, g, pred = loss_grad(x_k)
    f_best, g_best, f_last, f_best_check, reduced, rises, since = f, g, f, f, True, 0, 0
    for i in range(steps):
        if pred != int(y):
            return x_k, True
        d = g.sign() if attack.norm == "linf" else g / (g.norm() + 1e-12)
        z = project(x_k + step * d)
        a = 1.0 if i == 0 else 0.75
        x_old, x_k = x_k, project(x_k + a * (z - x_k) + (1 - a) * (x_k - x_old))
        f, g, pred = loss_grad(x_k)
        rises, f_last, since = rises + above(f, f_last), f, since + 1
        if above(f, f_best):
            x_best, g_best, f_best = x_k, g, f
        if i + 1 in marks:
            halve = rises <= since * attack.rho or (not reduced and f_best_check >= f_best)
            reduced, f_best_check, rises, since = halve, f_best, 0, 0
            if halve:
                step, x_k, g = step / 2, x_best, g_best
    return (x_k, True) if pred != int(y) else (x_best, False)


@pytest.mark.invariance
@pytest.mark.parametrize("norm,loss", [("linf", "ce"), ("linf", "dlr"), ("l2", "ce")])
def test_the_batched_loop_is_the_textbook_algorithm(norm, loss):
    """The fused, early-exiting batch loop returns, per example, what Alg. 1 run on that example alone returns."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(24, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    attack = APGD(model, eps=0.04 if norm == "linf" else 0.25, norm=norm, loss=loss, steps=25, progress=False)
    result = attack(x, y)
    starts = attack._start(x, torch.arange(len(x)), 0)
    outcomes = [_textbook_apgd(attack, x[i : i + 1], y[i : i + 1], starts[i : i + 1]) for i in range(len(x))]
    assert 0 < result.success.sum() < len(x)  # both kinds of outcome are checked
    # one example at a time is another batch shape: equal as docs/guide/reproducibility.md promises
    clear = clear_rows(result)
    assert torch.tensor([s for _, s in outcomes])[clear].tolist() == result.success[clear].tolist()
    gap = (torch.cat([p for p, _ in outcomes]) - result.x_adv)[clear].abs().max()
    assert float(gap) <= ATOL


def test_l1_closed_form_on_a_linear_binary_model():
    """Under L1 the cheapest way across a linear boundary moves the single coordinate of largest
    |w_i| (while the box allows): distance margin / max|w_i|. APGD-L1 (Croce & Hein 2021) finds
    the boundary at 1.05 times that distance, mostly along that coordinate, and cannot at 0.98."""
    model = nn.Linear(12, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0] * 12, [0.5, -1.0, 0.3, 2.5, -0.7, 0.2, 1.1, -0.4, 0.9, -1.3, 0.6, 0.1]]))
        model.bias.copy_(torch.tensor([0.0, -0.9]))
    x = torch.full((1, 12), 0.5, dtype=torch.float64)
    x[0, 3] = 0.6
    with torch.no_grad():
        gap = float(model(x)[0, 1] - model(x)[0, 0])  # 0.75
    y = torch.tensor([1])
    assert 0 < gap < 2.5 * 0.6  # crossing needs less than the room of coordinate 3 (down to 0)
    distance = gap / 2.5
    exact = minimal_perturbation(model, x, y, norm="l1")
    assert abs(float(exact.distance[0]) - distance) < 1e-12
    found = APGD(model, eps=1.05 * distance, norm="l1", steps=100, progress=False)(x, y)
    assert bool(found.success[0]) and float(found.l1[0]) <= 1.05 * distance * (1 + 1e-12)
    r = (found.x_adv - x)[0]
    assert int(r.abs().argmax()) == 3 and float(r[3]) < 0 and float(r.abs()[3]) >= 0.9 * float(r.abs().sum())
    assert not bool(APGD(model, eps=0.98 * distance, norm="l1", steps=100, progress=False)(x, y).success[0])


@pytest.mark.parametrize("cls,kwargs", [(APGD, {"loss": "ce"}), (APGDT, {"targets": 3})])
def test_l1_against_the_exact_minimal_perturbation_of_softmax_regression(softmax_model, embedded, cls, kwargs):
    """Sound and strong under L1 too: breaks nearly every point whose exact L1 distance is at most 0.8 eps."""
    eps = 3.0
    model = softmax_model.double()
    try:
        x, y = embedded.test.images[:100].double(), embedded.test.labels[:100]
        exact = minimal_perturbation(model, x, y, norm="l1").distance
        result = cls(model, eps=eps, norm="l1", steps=50, progress=False, **kwargs)(x, y)
    finally:
        model.float()
    assert bool((result.l1 <= eps * (1 + 1e-9)).all()) and bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())
    assert bool((exact[result.success] <= eps + 1e-9).all())
    reachable = exact <= 0.8 * eps
    assert reachable.sum() >= 20
    assert result.success[reachable].double().mean() >= 0.95


class _Noisy(nn.Module):
    """A randomised model: Gaussian noise on the input at every pass (the case EOT is for)."""

    def __init__(self, inner: nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.sigma * torch.randn_like(x))


def test_eot_averages_the_gradient_over_passes():
    """On a deterministic model eot passes give the one-pass iterates (up to rounding of the mean);
    on a noisy one two averaged gradients differ far less than two single-pass ones."""
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).double().eval()
    x = torch.rand(20, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = inner(x).argmax(1)
    one = APGD(inner, eps=0.05, steps=10, progress=False)(x, y)
    four = APGD(inner, eps=0.05, steps=10, eot=4, progress=False)(x, y)
    torch.testing.assert_close(four.x_adv, one.x_adv, rtol=0, atol=1e-9)
    state = type("State", (), {"x_adv": x, "y": y, "target": y})()  # what _loss_grad reads
    torch.manual_seed(1)
    single = APGD(_Noisy(inner, 0.2), eps=0.05, progress=False)
    averaged = APGD(_Noisy(inner, 0.2), eps=0.05, eot=20, progress=False)
    spread_single = (single._loss_grad(state, "ce", False)[1] - single._loss_grad(state, "ce", False)[1]).norm()
    spread_averaged = (averaged._loss_grad(state, "ce", False)[1] - averaged._loss_grad(state, "ce", False)[1]).norm()
    assert float(spread_averaged) < 0.5 * float(spread_single)  # sqrt(20) less spread, in expectation
