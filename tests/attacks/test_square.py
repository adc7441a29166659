"""Square attack: never a gradient, query accounting, ball and box, batch invariance, exact grading."""

import pytest
import torch
from torch import nn

from advlab.attacks import Square, make_attack
from advlab.attacks.randomness import counter_uniform, counter_uniform_draws
from advlab.attacks.square import _Search, discard_checks, eta, square_fraction
from advlab.errors import InputError
from advlab.exact import minimal_perturbation
from tests.invariance import assert_same_per_example, clear_rows


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        raise AssertionError("Square asked for a gradient")


class NoGradientModel(nn.Module):
    """A small net whose backward raises and whose forward refuses to build a graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4))
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not x.requires_grad, "Square differentiates with respect to its input"
        self.rows += x.shape[0]
        return self.net(_NoBackward.apply(x))


@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 1.0)])
def test_square_never_requests_a_gradient_and_counts_its_queries(norm, eps):
    model = NoGradientModel()
    x = torch.rand(30, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    model.rows = 0
    result = Square(model, eps=eps, norm=norm, queries=200)(x, y)
    queries = result.extra["queries"]
    assert bool((queries >= 1).all()) and bool((queries <= 200).all())
    # the base runs 1 probe row, then the clean and the re-check pass: 2 rows per example
    assert model.rows == 1 + 2 * len(x) + int(queries.sum())
    assert bool((queries[~result.success] == 200).all())  # unbroken examples used the whole budget
    assert result.success.any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("box", [(0.0, 1.0), (-1.0, 2.0)])
@pytest.mark.parametrize("shape", [(1, 7, 7), (49,), (2, 5, 6)])
def test_square_stays_in_the_ball_and_the_box(norm, box, shape):
    torch.manual_seed(0)
    features = torch.tensor(shape).prod().item()
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, 5)).double()
    g = torch.Generator().manual_seed(2)
    x = (box[0] + (box[1] - box[0]) * torch.rand(12, *shape, generator=g, dtype=torch.float64))
    x[0] = box[0]
    x[1] = box[1]
    y = torch.randint(0, 5, (12,), generator=g)
    eps = 0.3 if norm == "linf" else 1.5
    result = Square(model, eps=eps, norm=norm, queries=60, bounds=box)(x, y)
    size = result.linf if norm == "linf" else result.l2
    assert bool((size <= eps * (1 + 1e-9)).all())
    assert bool(((result.x_adv >= box[0]) & (result.x_adv <= box[1])).all())


@pytest.mark.invariance
@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 0.8)])
def test_square_is_batch_size_invariant(norm, eps):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(20, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    whole = Square(model, eps=eps, norm=norm, queries=60, seed=4)(x, y)
    pieces = Square(model, eps=eps, norm=norm, queries=60, seed=4, batch_size=7)(x, y)
    assert_same_per_example(whole, pieces)
    clear = clear_rows(whole, pieces)
    assert torch.equal(whole.extra["queries"][clear], pieces.extra["queries"][clear])
    other_seed = Square(model, eps=eps, norm=norm, queries=60, seed=5)(x, y)
    assert float((whole.x_adv - other_seed.x_adv).abs().max()) > 1e-3  # the draws matter: a wrong seed is caught


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_square_against_the_exact_minimal_perturbation_of_softmax_regression(softmax_model, embedded, norm, eps):
    """Sound (no success beyond the exact minimal distance) and strong (breaks the points whose
    exact distance is at most half the budget)."""
    model = softmax_model.double()
    try:
        x, y = embedded.test.images[:100].double(), embedded.test.labels[:100]
        exact = minimal_perturbation(model, x, y, norm=norm).distance
        result = Square(model, eps=eps, norm=norm, queries=400)(x, y)
    finally:
        model.float()
    assert bool((exact[result.success] <= eps + 1e-9).all())
    easy = exact <= eps / 2
    assert easy.sum() >= 10
    assert result.success[easy].double().mean() >= 0.95


def test_targeted_square_reaches_the_target(softmax_model, embedded):
    x, y = embedded.test.images[:60], embedded.test.labels[:60]
    result = Square(softmax_model, eps=0.3, queries=300)(x[:30], y[:30], targets="random")
    assert result.success.double().mean() > 0.8
    assert torch.equal(result.adv_pred[result.success], result.targets[result.success])


def test_eps_zero_returns_x_and_registry(softmax_model, embedded):
    x, y = embedded.test.images[:10], embedded.test.labels[:10]
    result = make_attack("square", softmax_model, eps=0.0)(x, y)
    assert torch.equal(result.x_adv, x)


@pytest.mark.parametrize(
    "kwargs", [{"eps": -0.1}, {"eps": 0.1, "norm": "l7"}, {"eps": 0.1, "queries": 0}, {"eps": 0.1, "queries": 2.5},
               {"eps": 0.1, "p_init": 0.0}, {"eps": 0.1, "loss": "hinge"}]
)
def test_bad_parameters_are_refused(softmax_model, kwargs):
    with pytest.raises(InputError):
        Square(softmax_model, **kwargs)


def test_schedule_and_pattern():
    assert square_fraction(0, 0.8) == 0.8 and square_fraction(11, 0.8) == 0.4 and square_fraction(9000, 0.8) == 0.8 / 512
    pattern = eta(5, 5, torch.float64, torch.device("cpu"))
    assert torch.isclose(pattern.norm(), torch.tensor(1.0, dtype=torch.float64))
    assert bool((pattern[:2] > 0).all()) and bool((pattern[2:] < 0).all())


@pytest.mark.invariance
def test_counter_numbers_depend_only_on_their_coordinates():
    index = torch.arange(10, 20)
    a = counter_uniform(3, index, 5, 4)
    b = counter_uniform(3, torch.arange(0, 30), 5, 4)[10:20]
    assert torch.equal(a, b)
    assert bool(((a >= 0) & (a < 1)).all())
    assert not torch.equal(a, counter_uniform(3, index, 6, 4))
    assert not torch.equal(a, counter_uniform(3, index, 5, 4, stream=1))
    many = counter_uniform(0, torch.arange(20000), 0, 1)
    assert abs(float(many.mean()) - 0.5) < 0.01
    # a block of draws (what Square fetches for 64 iterations at once) holds exactly the single draws
    block = counter_uniform_draws(3, index, range(2**31 - 2, 2**31 + 3), 4, stream=2)
    assert block.shape == (10, 5, 4)
    for k, draw in enumerate(range(2**31 - 2, 2**31 + 3)):
        assert torch.equal(block[:, k], counter_uniform(3, index, draw, 4, stream=2))


def test_linf_proposal_is_the_window_update_bit_for_bit():
    """The float-mask proposal equals where(window, the interval's end in the sign's direction, best)
    exactly: every coordinate of every point the search visits is exactly low or high, whatever the
    rounding of x +- eps (a step of 2 eps from low can stop an ulp below high)."""
    gen = torch.Generator().manual_seed(0)
    n, c, h, w, eps = 7, 3, 9, 8, 0.15
    top, left = torch.randint(0, h - 3, (n,), generator=gen), torch.randint(0, w - 2, (n,), generator=gen)
    mask = Square._mask(top, left, 4, 3, h, w)
    torch.testing.assert_close(Square._window_weights(top, left, 4, 3, h, w, torch.float32), mask.float(), rtol=0, atol=0)
    image = torch.rand(n, c, h, w, generator=gen, dtype=torch.float64)
    low, high = (image - eps).clamp_min(0), (image + eps).clamp_max(1)
    best = torch.where(torch.rand(n, c, h, w, generator=gen) < 0.5, low, high)
    signs = torch.where(torch.rand(n, c, 1, 1, generator=gen) < 0.5, -1.0, 1.0)
    assert not torch.equal((low + 2 * eps).clamp(low, high), high)  # low + 2 eps falls an ulp short of high here
    attack = Square(nn.Linear(1, 2), eps=eps)
    rows, cols = attack._window(0.1, c, h, w, l2=False)
    zeros = torch.zeros(n)
    run = _Search(slot=zeros, index=zeros, image=image, low=low, high=high, goal=zeros, best=best, margin=zeros, loss=zeros,
                  start=zeros, mark=zeros)
    # corner draws that put the window's top-left corner at (top, left)
    step = {"corner0": (top + 0.5) / (h - rows + 1), "corner1": (left + 0.5) / (w - cols + 1), "sign": signs.view(n, c)}
    expected = torch.where(Square._mask(top, left, rows, cols, h, w), torch.where(signs > 0, high, low), best)
    assert torch.equal(attack._linf_step(run, step, 0.1), expected)


@pytest.mark.invariance
def test_square_restarts_search_again_on_the_unbroken_points():
    """restarts=1 is the single search; each further restart starts afresh (new draws) on the
    points still robust: never fewer successes, queries add up, batch-size invariant."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(30, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    once = Square(model, eps=0.08, queries=30, seed=4)(x, y)
    assert torch.equal(Square(model, eps=0.08, queries=30, seed=4, restarts=1)(x, y).x_adv, once.x_adv)
    thrice = Square(model, eps=0.08, queries=30, seed=4, restarts=3)(x, y)
    assert bool((thrice.success >= once.success).all()) and int(thrice.success.sum()) > int(once.success.sum())
    late = thrice.success & ~once.success
    assert bool((thrice.extra["queries"][late] > 30).all()) and int(thrice.extra["queries"].max()) <= 90
    assert torch.equal(thrice.x_adv[once.success], once.x_adv[once.success])
    assert_same_per_example(thrice, Square(model, eps=0.08, queries=30, seed=4, restarts=3, batch_size=7)(x, y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_query_is_the_initial_proposal(norm):
    """queries=1: only the initial perturbation is tried (it used to fail writing its result)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    model.double()
    y = model(x).argmax(1)
    result = Square(model, eps=0.1 if norm == "linf" else 0.5, norm=norm, queries=1, progress=False)(x, y)
    assert result.x_adv.shape == x.shape and (result.x_adv - x).abs().max() > 0


def test_discard_checkpoints_double_from_discard_after():
    assert discard_checks(500, 5000) == {250: False, 500: True, 1000: True, 2000: True, 4000: True}
    assert discard_checks(0, 5000) == {} and discard_checks(4, 4) == {}


@pytest.mark.parametrize("kwargs", [{"discard_after": 1}, {"discard_ratio": 1.5}, {"discard_factor": float("inf")}])
def test_bad_discard_parameters_are_refused(kwargs):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(InputError):
        Square(model, eps=0.1, **kwargs)


@pytest.mark.invariance
def test_square_discards_the_searches_that_will_not_fall():
    """discard_after > 0 changes nothing for the searches it keeps (same draws, same points); a
    discarded one stops unbroken at a checkpoint; fewer queries in all; batch-size invariant."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = torch.rand(40, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    full = Square(model, eps=0.05, queries=200, seed=4)(x, y)
    cut = Square(model, eps=0.05, queries=200, seed=4, discard_after=8)(x, y)
    discarded = cut.extra["discarded"]
    assert bool(discarded.any()) and bool(cut.success.any()) and not bool(cut.success[discarded].any())
    assert set(cut.extra["queries"][discarded].tolist()) <= {8, 16, 32, 64, 128}
    kept = ~discarded
    assert torch.equal(cut.x_adv[kept], full.x_adv[kept]) and torch.equal(cut.success[kept], full.success[kept])
    assert int(cut.extra["queries"].sum()) < int(full.extra["queries"].sum())
    pieces = Square(model, eps=0.05, queries=200, seed=4, discard_after=8, batch_size=7)(x, y)
    assert_same_per_example(cut, pieces)
    assert torch.equal(pieces.extra["discarded"], discarded)


class _Saturated(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(1e6 * self.inner(x), dim=1)


@pytest.mark.filterwarnings("ignore::advlab.attacks.ProbabilityOutputWarning")  # probabilities on purpose
def test_flat_searches_are_marked_and_stop_at_the_first_checkpoint():
    """Near one-hot outputs: the margin of an unbroken point never moves (flat), so the discard
    rule stops it at the first checkpoint."""
    torch.manual_seed(0)
    model = _Saturated(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double()).eval()
    x = torch.rand(40, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    result = Square(model, eps=0.05, queries=100, seed=4, discard_after=10)(x, y)
    robust, flat = ~result.success, result.extra["flat"]
    assert int(flat[robust].sum()) >= 0.9 * int(robust.sum()) > 0 and not bool(flat[result.success].any())
    assert bool((result.extra["queries"][robust & flat] == 10).all()) and bool(result.extra["discarded"][robust & flat].all())
