"""One contract for every registered attack (iterates over ATTACKS: a new attack is picked up).

Each attack is run with the small settings in FAST (an attack not listed gets {} or, if it has
an eps budget, {"eps": EPS}; add a row when a new attack needs one) on a small seeded ReLU
network with dropout, and must: restore every module's mode and every parameter's
requires_grad; give the same result for any batch size; work in float64 and on numpy input;
report success exactly as re-running the model says (targeted too); stay in the box and, for a
fixed budget, in the eps-ball; return x itself at eps = 0; refuse bad input with a one-line
InputError before any work; and name the model when its output is NaN/inf or not a tensor.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from advlab.attacks import ATTACKS, make_attack
from advlab.attacks.base import FixedBudgetAttack
from advlab.errors import InputError
from tests.invariance import assert_same_per_example

EPS = 0.1
FAST: dict[str, dict] = {
    "fgsm": {"eps": EPS},
    "fgm": {"eps": 1.0},
    "pgd": {"eps": EPS, "steps": 3, "restarts": 2},
    "bim": {"eps": EPS, "steps": 3},
    "lbfgs": {"search_steps": 3, "max_iter": 10},
    "penalty": {"steps": 5, "search_steps": 2},
    "deepfool": {"steps": 5},
    "cw": {"steps": 10, "search_steps": 2},
    "minpgd": {"steps": 5, "search_steps": 3},
    "apgd": {"eps": EPS, "steps": 5},
    "apgd-t": {"eps": EPS, "steps": 5, "targets": 2},
    "apgd-a": {"eps": EPS, "steps": 6, "targets": 2, "restarts": 1, "queries": 20},
    "fab-t": {"eps": EPS, "steps": 5, "targets": 2},
    "fab": {"eps": EPS, "steps": 5},
    "square": {"eps": EPS, "queries": 30},
}
NAMES = sorted(ATTACKS)
# (attack, settings): the success, ball and batch-size promises checked again under other norms
# (a norm is one geometry class; the ball test below runs every norm an attack lists) and target rankings
VARIANTS: list[tuple[str, dict]] = [
    ("apgd", {"norm": "l1", "eps": 1.0}),
    ("apgd-t", {"norm": "l1", "eps": 1.0}),
    ("apgd-t", {"target_ranking": "malt"}),
    ("fab-t", {"target_ranking": "malt"}),
    ("square", {"restarts": 2}),
    ("square", {"discard_after": 4}),
    ("apgd-a", {"square_checkpoint": 4, "flat_restarts": 2, "flat_queries": 5}),
    ("apgd", {"eot": 2}),
]


def fast(name: str, **overrides) -> dict:
    default = {"eps": EPS} if issubclass(ATTACKS[name], FixedBudgetAttack) else {}
    return {**FAST.get(name, default), **overrides}


def network(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 5))
    return model.to(dtype)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, 6, 6, generator=generator)
    with torch.no_grad():
        y = network()(x).argmax(1)  # labels the model gets right
    y[:2] = (y[:2] + 1) % 5  # and two it gets wrong
    return x, y


def targets_for(y: torch.Tensor) -> torch.Tensor:
    return (y + 1 + torch.arange(len(y)) % 4) % 5


@pytest.mark.parametrize("name", NAMES)
def test_modes_and_flags_restored(name, data):
    model = network().train()
    model[3].eval()
    model[1].bias.requires_grad_(False)
    before = [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]
    make_attack(name, model, **fast(name))(*data)
    make_attack(name, model, **fast(name))(*data, targets=targets_for(data[1]))
    assert ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]) == before


@pytest.mark.parametrize("name", NAMES)
def test_success_is_what_the_model_says(name, data):
    x, y = data
    model = network().eval()
    for targets in (None, targets_for(y)):
        result = make_attack(name, model, **fast(name))(x, y, targets=targets)
        with torch.no_grad():
            pred = model(result.x_adv).argmax(1)
        expected = pred == targets if targets is not None else pred != y
        assert torch.equal(result.success, expected)
        assert torch.equal(result.adv_logits.argmax(1), pred)
        assert bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())


@pytest.mark.invariance
@pytest.mark.parametrize("name", NAMES)
def test_batch_size_float64_and_numpy(name, data):
    x, y = data
    model = network(torch.float64).eval()
    x64 = x.double()
    whole = make_attack(name, model, batch_size=1000, seed=4, **fast(name))(x64, y)
    pieces = make_attack(name, model, batch_size=5, seed=4, **fast(name))(x64, y)
    assert whole.x_adv.dtype == torch.float64
    assert_same_per_example(pieces, whole)
    from_numpy = make_attack(name, model, batch_size=1000, seed=4, **fast(name))(x64.numpy(), y.numpy())
    assert torch.equal(from_numpy.x_adv, whole.x_adv) and torch.equal(from_numpy.success, whole.success)


@pytest.mark.invariance
@pytest.mark.parametrize("name,settings", VARIANTS)
def test_variants_keep_the_promises(name, settings, data):
    x, y = data
    model = network(torch.float64).eval()
    x64 = x.double()
    params = fast(name, **settings)
    eps = params["eps"]
    whole = make_attack(name, model, batch_size=1000, seed=4, **params)(x64, y)
    assert_same_per_example(make_attack(name, model, batch_size=5, seed=4, **params)(x64, y), whole)
    for targets in (None, targets_for(y)):
        result = make_attack(name, model, **params)(x64, y, targets=targets)
        with torch.no_grad():
            pred = model(result.x_adv).argmax(1)
        assert torch.equal(result.success, pred == targets if targets is not None else pred != y)
        assert bool((make_attack(name, model, **params).geometry.distance(result.x_adv - x64) <= eps * (1 + 1e-9)).all())


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(ATTACKS[n], FixedBudgetAttack)])
def test_fixed_budget_stays_in_the_ball_and_eps_zero_is_identity(name, data):
    x, y = data
    model = network().eval()
    for norm in ATTACKS[name].norms:
        eps = 0.05 if norm == "linf" else 0.3
        params = fast(name, eps=eps)
        if "norm" in params or len(ATTACKS[name].norms) > 1:
            params["norm"] = norm
        attack = make_attack(name, model, **params)
        result = attack(x, y, targets=targets_for(y))
        distance = attack.geometry.distance(result.x_adv - x)
        assert bool((distance <= eps * (1 + 1e-6) + 1e-7).all()), float(distance.max())
        zero = make_attack(name, model, **{**params, "eps": 0.0})(x, y)
        assert torch.equal(zero.x_adv, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "case",
    ["nan x", "outside bounds", "integer x", "short labels", "float labels", "label range", "target equals label",
     "bad batch size", "unknown parameter"],
)
def test_bad_input_is_one_line(name, case, data):
    x, y = data
    model = network().eval()
    params = fast(name)
    bad_x, bad_y, targets = x, y, None
    if case == "nan x":
        bad_x = x.clone()
        bad_x[0, 0, 0, 0] = float("nan")
    elif case == "outside bounds":
        bad_x = x + 2
    elif case == "integer x":
        bad_x = (x * 255).long()
    elif case == "short labels":
        bad_y = y[:-1]
    elif case == "float labels":
        bad_y = y.float()
    elif case == "label range":
        bad_y = y + 5
    elif case == "target equals label":
        targets = y
    elif case == "bad batch size":
        params["batch_size"] = 2.5
    elif case == "unknown parameter":
        params["no_such_parameter"] = 1
    with pytest.raises((InputError, TypeError)) as error:
        make_attack(name, model, **params)(bad_x, bad_y, targets=targets)
    if case == "unknown parameter":  # Python's own message for an unknown keyword
        assert error.type is TypeError
    else:
        assert error.type is InputError and "\n" not in str(error.value)


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(36, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return torch.where(torch.arange(len(x)).unsqueeze(1) == 3, float("nan"), out)


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(36, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(x.flatten(1))
        return out, out


@pytest.mark.parametrize("name", NAMES)
def test_broken_model_output_is_named(name, data):
    x, y = data
    with pytest.raises(InputError, match="_NaNModel.*NaN or inf"):
        make_attack(name, _NaNModel(), **fast(name))(x, y)
    with pytest.raises(InputError, match="_TupleModel.*tuple"):
        make_attack(name, _TupleModel(), **fast(name))(x, y)


def test_every_attack_is_covered():
    assert set(FAST) <= set(ATTACKS), "FAST lists an attack that is not registered"
    assert copy.copy(NAMES) == sorted(ATTACKS) and len(NAMES) >= 9
    assert all(settings.get("norm", "linf") in ATTACKS[name].norms for name, settings in VARIANTS)
    assert np.all([issubclass(ATTACKS[n], FixedBudgetAttack) for n in ("fgsm", "fgm", "pgd", "bim")])
