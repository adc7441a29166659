"""The suite cascade: each attack only on points still robust, who broke what, resume after a
kill equal to an uninterrupted run, user suites as data, and the bracket."""

import functools
import os

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


# ---- witnesses, state files, the probe (issue 23) ---------------------------------------------
def _threshold_model() -> nn.Module:
    """One pixel, class 1 iff 1e8 * x - 6e7 > 0: the float32 point 0.6000000238 (the rounding of
    0.5 + 0.1, 2.4e-8 outside the float64 ball) is class 1 in float32; every point of the float64
    ball around 0.5 is class 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0], [1e8]]))
        model[1].bias.copy_(torch.tensor([0.0, -6e7]))
    return model


def test_a_float32_point_outside_the_float64_ball_is_not_counted_broken():
    model = _threshold_model()
    x, y = torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long)
    suite = [{"attack": "pgd", "params": {"steps": 5, "random_start": False, "loss": "margin"}}]
    from advlab.attacks import PGD

    found = PGD(model, eps=0.1, steps=5, random_start=False, loss="margin")(x, y)
    assert bool(found.success[0]) and float(found.x_adv) > 0.6  # the float32 attack "breaks" it, outside the ball
    ev = evaluate_suite(model, x, y, eps=0.1, suite=suite)
    assert ev.broken_by == [""] and ev.robust_accuracy == 1.0
    wide = evaluate_suite(model, x, y, eps=0.2, suite=suite)  # a real break keeps its witness, inside the ball
    assert wide.broken_by == ["pgd"]
    assert float(wide.x_adv.double().sub(0.5).abs().max()) <= 0.2
    assert int(model.double()(wide.x_adv.double()).argmax(1)) == 1


def _state_run(case, tmp_path):
    model, x, y = case
    state = tmp_path / "state.npz"
    ev = evaluate_suite(model, x, y, eps=0.08, suite=TINY[:1], batch_size=32, state_path=state)
    return model, x, y, state, ev


def test_state_files_are_checked_before_any_attack(case, tmp_path, monkeypatch):
    import numpy as np

    from advlab.attacks import APGD

    model, x, y, state, ev = _state_run(case, tmp_path)
    arrays = dict(np.load(state))
    calls = []
    monkeypatch.setattr(APGD, "__call__", lambda *a, **k: calls.append(1))

    def refused(path, match):
        with pytest.raises(InputError, match=match):
            evaluate_suite(model, x, y, eps=0.08, suite=TINY[:1], batch_size=32, state_path=path)

    broken = int(np.flatnonzero(arrays["broken"] == 0)[0])
    edits = {
        "outside": {"x_adv": arrays["x_adv"].copy()},
        "longer": {"broken": np.append(arrays["broken"], -1), "certified": np.append(arrays["certified"], False),
                   "x_adv": np.concatenate([arrays["x_adv"], arrays["x_adv"][:1]])},
        "codes": {"broken": np.where(arrays["broken"] == 0, 7, arrays["broken"])},
        "moved": {"x_adv": arrays["x_adv"] + 1e-3},
        "position": {"position": np.array([5, 0, 2])},
    }
    edits["outside"]["x_adv"][broken] = x[broken].numpy() + 0.5
    messages = {"outside": "witness lies outside", "longer": r"array broken has shape \(61,\)", "codes": "codes outside",
                "moved": "x_adv differs from the images", "position": "position"}
    for name, change in edits.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **{**arrays, **change})
        refused(path, messages[name])
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(state.read_bytes()[:200])
    refused(truncated, "not a readable suite state file")
    (tmp_path / "a-file").write_text("")
    refused(tmp_path / "a-file" / "state.npz", "is a file, not a directory")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(state) and mode & os.W_OK else real_access(p, mode))
    before = state.read_bytes()
    refused(state, "read-only")
    assert state.read_bytes() == before and calls == []


def test_the_probe_covers_every_point():
    from advlab.analysis.evaluation import probe_model

    class DeadAfter(nn.Module):
        """Zero input gradient for the points with x[..., 0] > 0.5 (a ReLU gate closed there)."""

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            flat = x.flatten(1)
            gate = (flat[:, :1] <= 0.5).to(x.dtype)
            return torch.cat([flat[:, :1] * gate * self.scale, 1 - flat[:, :1] * gate], 1)

    x = torch.cat([torch.full((10, 1, 2), 0.2), torch.full((30, 1, 2), 0.9)])
    y = torch.zeros(40, dtype=torch.long)
    model = DeadAfter()
    probe = probe_model(model, x, y, model(x).detach(), batch_size=10)
    assert probe["probed_points"] == 40 and probe["zero_or_nonfinite_gradient_share"] == 0.75
