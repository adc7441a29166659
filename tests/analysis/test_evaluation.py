"""The suite cascade: each attack only on points still robust, who broke what, resume after a
kill equal to an uninterrupted run, user suites as data, and the bracket."""

import functools

import pytest
import torch
from torch import nn

from advlab.analysis.evaluation import evaluate_suite
from advlab.attacks import Square
from advlab.attacks.suites import SUITES, SuiteAttack, resolve_suite
from advlab.errors import InputError, UnknownNameError

TINY = [
    {"attack": "apgd", "label": "apgd-ce", "params": {"steps": 8}},
    {"attack": "apgd-t", "params": {"steps": 8, "targets": 2}},
    {"attack": "square", "params": {"queries": 40}},
]


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 5)).double().eval()
    x = torch.rand(60, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 5  # five clean errors
    return model, x, y


def test_cascade_bookkeeping(case):
    model, x, y = case
    ev = evaluate_suite(model, x, y, eps=0.08, suite=TINY, batch_size=16)
    assert ev.attacks == ["apgd-ce", "apgd-t", "square"]
    assert ev.broken_by[:5] == ["clean"] * 5
    assert ev.robust_accuracy == ev.after["square"]
    assert ev.after["apgd-ce"] >= ev.after["apgd-t"] >= ev.after["square"]
    pred = model(ev.x_adv).argmax(1)
    broken = torch.tensor([b not in ("", "clean") for b in ev.broken_by])
    assert bool((pred[broken] != y[broken]).all())  # every recorded adversarial point is one
    assert bool(((ev.x_adv - x).flatten(1).abs().amax(1) <= 0.08 + 1e-12).all())
    assert torch.equal(ev.x_adv[ev.robust], x[ev.robust])
    assert sum(ev.broken_counts().values()) == len(x) - int(ev.robust.sum())
    assert ev.certified is None and ev.bracket == (0.0, ev.robust_accuracy)


def test_later_attacks_only_see_points_still_robust(case, monkeypatch):
    model, x, y = case
    seen: list[torch.Tensor] = []
    original = Square.__call__

    def spy(self, xs, ys, **kwargs):
        seen.append(torch.as_tensor(kwargs["indices"]).clone())
        return original(self, xs, ys, **kwargs)

    monkeypatch.setattr(Square, "__call__", spy)
    ev = evaluate_suite(model, x, y, eps=0.08, suite=TINY, batch_size=1000)
    before = [b in ("", "square") for b in ev.broken_by]
    assert sorted(torch.cat(seen).tolist()) == [i for i, keep in enumerate(before) if keep]


def test_resumed_run_equals_an_uninterrupted_one(case, tmp_path, monkeypatch):
    model, x, y = case
    whole = evaluate_suite(model, x, y, eps=0.08, suite=TINY, batch_size=16)
    calls = {"n": 0}
    original = Square.__call__

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed in the middle of the last attack
        return original(self, *args, **kwargs)

    state = tmp_path / "state.npz"
    monkeypatch.setattr(Square, "__call__", dies)
    with pytest.raises(KeyboardInterrupt):
        evaluate_suite(model, x, y, eps=0.08, suite=TINY, batch_size=16, state_path=state)
    assert state.exists()
    monkeypatch.setattr(Square, "__call__", original)
    resumed = evaluate_suite(model, x, y, eps=0.08, suite=TINY, batch_size=16, state_path=state)
    assert resumed.broken_by == whole.broken_by
    assert torch.equal(resumed.x_adv, whole.x_adv)
    assert resumed.after == whole.after
    with pytest.raises(InputError, match="another evaluation"):
        evaluate_suite(model, x, y, eps=0.07, suite=TINY, batch_size=16, state_path=state)


def test_suites_are_data():
    from advlab.attacks import ATTACKS

    standard = [(e.label, e.attack) for e in SUITES["standard"]]
    assert standard == [("apgd-ce", "apgd"), ("apgd-t", "apgd-t"), ("fab-t", "fab-t"), ("square", "square")]
    assert dict(SUITES["standard"][1].params) == {"steps": 100, "targets": 9, "restarts": 1}
    assert SUITES["standard"][3].params["queries"] == 5000
    entries, missing = resolve_suite("standard", ATTACKS)
    assert [e.label for e in entries] + missing == ["apgd-ce", "apgd-t", "square", "fab-t"] or not missing
    assert resolve_suite([SuiteAttack("a", "apgd")], ATTACKS)[0][0].attack == "apgd"
    for bad, error in (("nonsense", UnknownNameError), ([{"attack": "nope"}], UnknownNameError), ([], InputError),
                       ([{"attack": "apgd", "params": {"eps": 0.3}}], InputError), ([{"attack": "apgd"}, {"attack": "apgd"}], InputError),
                       ([{"attack": "apgd", "colour": 1}], InputError)):
        with pytest.raises(error):
            resolve_suite(bad, ATTACKS)


def test_bracket_contains_the_exact_robust_accuracy():
    """On a small ReLU net the MILP settles every point: certified = attacked = the exact value,
    and the bracket never excludes the exact robust accuracy (min over the MILP distances)."""
    certify = pytest.importorskip("advlab.exact").__dict__.get("certify")
    if certify is None:
        pytest.skip("this build has no advlab.exact.certify")
    from advlab.exact import minimal_linf
    from advlab.models import MLP

    torch.manual_seed(2)
    model = MLP(6, (10, 10), 4).double().eval()
    x = torch.rand(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    exact = minimal_linf(model, x, y, time_limit=20)
    for eps in (0.02, 0.05):
        ev = evaluate_suite(model, x, y, eps=eps, suite=TINY, bracket=True, certify=certify, time_limit=20)
        low, high = ev.bracket
        truth_low = float((exact.lower > eps).double().mean())  # r* lies between these two
        truth_high = float((exact.upper >= eps).double().mean())
        assert low <= truth_high + 1e-12 and high >= truth_low - 1e-12
        assert low <= high


@pytest.mark.invariance
def test_skip_certified_attacks_only_the_points_the_bounds_leave_open(case, monkeypatch):
    """With skip_certified, CROWN/interval bounds run first; proven points are never attacked, and
    every outcome equals the full cascade's (a proven point has no adversarial point to find)."""
    certify = pytest.importorskip("advlab.exact").__dict__.get("certify")
    if certify is None:
        pytest.skip("this build has no advlab.exact.certify")
    from advlab.attacks import APGD

    model, x, y = case
    seen: list[int] = []
    original = APGD.__call__

    def spy(self, xs, ys, **kwargs):
        seen.extend(torch.as_tensor(kwargs["indices"]).tolist())
        return original(self, xs, ys, **kwargs)

    full = evaluate_suite(model, x, y, eps=0.02, suite=TINY)
    monkeypatch.setattr(APGD, "__call__", spy)
    # interval/CROWN only: alpha-CROWN proves every robust point of this case, leaving nothing open
    certify = functools.partial(certify, alpha_steps=0)
    ev = evaluate_suite(model, x, y, eps=0.02, suite=TINY, skip_certified=True, certify=certify)
    assert ev.certified is not None and 0 < int(ev.certified.sum()) < int(ev.robust.sum())
    assert not bool((ev.certified & ~ev.robust).any())
    assert torch.equal(ev.robust, full.robust) and ev.broken_by == full.broken_by
    first = [i for i in range(len(y)) if full.clean_correct[i] and not ev.certified[i]]
    assert sorted(seen[: len(first)]) == first  # APGD-CE saw exactly the open points (APGD-T runs after it)
    assert not set(seen) & set(ev.certified.nonzero().flatten().tolist())
    with pytest.raises(InputError, match="verifier"):
        evaluate_suite(model, x, y, eps=0.02, suite=TINY, skip_certified=True)
    with pytest.raises(InputError, match="linf"):
        evaluate_suite(model, x, y, eps=0.2, norm="l2", suite=TINY, skip_certified=True, certify=certify)
