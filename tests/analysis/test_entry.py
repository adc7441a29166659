"""`evaluate_robustness`, the one evaluation entry: every form of data gives the numbers of the
tensors it holds; settings as a frozen dataclass (keywords as a shorthand); per-example outcomes
that agree with the summary; the bracket and why; streaming to `out`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from advlab import EvaluationSettings, evaluate_robustness
from advlab.errors import InputError, UnknownNameError

SETTINGS = EvaluationSettings(attacks=("fgsm", "pgd"), attack_params={"pgd": {"steps": 3}}, batch_size=16)
EPS = [0, 0.05, 0.1]


@pytest.fixture(scope="module")
def data(embedded):
    return embedded.test.images[:40], embedded.test.labels[:40]


@pytest.fixture(scope="module")
def reference(softmax_model, data):
    return evaluate_robustness(softmax_model, *data, eps=EPS, settings=SETTINGS)


def _same(a, b) -> None:
    assert a.worst_case == b.worst_case and a.clean_accuracy == b.clean_accuracy
    assert [p.accuracy for p in a.points] == [p.accuracy for p in b.points]
    assert np.array_equal(a.per_example.outcome, b.per_example.outcome)
    if a.per_example.x_adv_by_eps is not None and b.per_example.x_adv_by_eps is not None:
        assert np.array_equal(a.per_example.x_adv_by_eps, b.per_example.x_adv_by_eps)


FORMS = {
    "numpy": lambda x, y: ((x.numpy(), y.numpy()), None),
    "numpy pair": lambda x, y: (x.numpy(), y.numpy()),
    "tuple": lambda x, y: ((x, y), None),
    "torch Dataset": lambda x, y: (TensorDataset(x, y), None),
    "DataLoader": lambda x, y: (DataLoader(TensorDataset(x, y), batch_size=7), None),
    "list of batches": lambda x, y: ([(x[i : i + 9], y[i : i + 9]) for i in range(0, len(y), 9)], None),
    "generator": lambda x, y: (((x[i : i + 5].numpy(), y[i : i + 5].tolist()) for i in range(0, len(y), 5)), None),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_of_data_gives_the_tensors_numbers(softmax_model, data, reference, form):
    given, labels = FORMS[form](*data)
    _same(evaluate_robustness(softmax_model, given, labels, eps=EPS, settings=SETTINGS), reference)


def test_an_advlab_dataset_and_keywords_give_the_same(softmax_model, embedded, data, reference):
    from advlab.data import Dataset

    _same(evaluate_robustness(softmax_model, Dataset(*data, "d"), eps=EPS, settings=SETTINGS), reference)
    keywords = {f.name: getattr(SETTINGS, f.name) for f in dataclasses.fields(SETTINGS)}
    _same(evaluate_robustness(softmax_model, *data, eps=EPS, **keywords), reference)


def test_settings_are_frozen_and_checked(softmax_model, data):
    with pytest.raises(dataclasses.FrozenInstanceError):
        SETTINGS.seed = 1  # type: ignore[misc]
    with pytest.raises(InputError, match="unknown evaluation setting"):
        evaluate_robustness(softmax_model, *data, eps=0.1, stepz=3)
    with pytest.raises(InputError, match="without labels"):
        evaluate_robustness(softmax_model, data[0], eps=0.1)
    with pytest.raises(InputError, match="does not shuffle"):
        evaluate_robustness(softmax_model, DataLoader(TensorDataset(*data), batch_size=8, shuffle=True), eps=0.1)
    with pytest.raises(InputError, match="no examples"):
        evaluate_robustness(softmax_model, [], eps=0.1)


def test_per_example_outcomes_agree_with_the_summary(softmax_model, data, reference):
    pe = reference.per_example
    assert pe.robust.shape == (3, 40) and pe.robust.mean(1).tolist() == reference.robust_accuracy == reference.worst_case
    assert pe.clean_correct.mean() == reference.clean_accuracy
    for i, e in enumerate(EPS):
        named = np.array(pe.broken_by[i], dtype=object)
        fgsm = reference.point("fgsm", e).accuracy  # the first attack is named on every point it breaks
        assert (named == "fgsm").sum() == round((reference.clean_accuracy - fgsm) * 40)
        assert (named == "clean").sum() == round((1 - reference.clean_accuracy) * 40)
        assert (named == None).sum() == round(reference.worst_case[i] * 40)  # noqa: E711
        x, y = data
        adv = torch.from_numpy(pe.x_adv[i])
        wrong = (softmax_model(adv).argmax(1) != y).numpy()
        assert (wrong == ~pe.robust[i]).all()  # every broken point's adversarial input is misclassified, no robust one is
        assert float((adv - x).abs().max()) <= e + 1e-6
    one = evaluate_robustness(softmax_model, *data, eps=0.1, settings=SETTINGS)
    assert isinstance(one.robust_accuracy, float) and one.per_example.robust.shape == (40,)
    assert one.robust_accuracy == reference.worst_case[2] and len(one.per_example.broken_by) == 40


def test_the_bracket_says_why(softmax_model, data, reference):
    assert reference.brackets[0] == (reference.clean_accuracy, reference.clean_accuracy)
    assert reference.bracket_reasons[0].startswith("eps = 0")
    assert all(low == 0.0 and "no verifier ran" in why for (low, _), why in zip(reference.brackets[1:], reference.bracket_reasons[1:]))
    summary = json.loads(reference.to_json())
    assert summary["bracket_reason"] == reference.bracket_reasons and len(summary["per_example"]["broken_by"]) == 3
    assert "no verifier ran" in reference.summary()


def test_a_verifier_gives_a_proven_lower_end():
    from advlab.exact import certify

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4)).double()
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = model(x).argmax(1).detach()
    result = evaluate_robustness(model, x, y, eps=[0.01, 0.3], attacks=["pgd"], certify=certify, bracket=True, time_limit=10)
    pe = result.per_example
    assert not (pe.certified_by_eps & ~(pe.outcome == "")).any()
    for (low, high), row in zip(result.brackets, pe.certified_by_eps):
        assert low == row.mean() <= high
    assert result.brackets[0][0] > 0 and "proven by interval/CROWN bounds and the fixed-eps MILP" in result.bracket_reasons[0]
    assert result.bracket_reasons[1].startswith("lower end proven") or "proved no point" in result.bracket_reasons[1]


def test_out_streams_to_disk_with_the_same_numbers(softmax_model, data, reference, tmp_path, monkeypatch):
    loader = DataLoader(TensorDataset(*data), batch_size=16)
    streamed = evaluate_robustness(softmax_model, loader, eps=EPS, settings=SETTINGS, out=tmp_path / "o")
    _same(streamed, reference)
    assert len(list((tmp_path / "o").glob("part-*.npz"))) == 3 and streamed.per_example.x_adv is None
    with np.load(tmp_path / "o" / "part-000001.npz") as part:
        assert np.array_equal(part["x_adv@0.1"], reference.per_example.x_adv[2][16:32])
    assert streamed.classes == reference.classes == 10
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    evaluate_robustness(softmax_model, *data, eps=EPS, settings=SETTINGS, suite=None)
    assert not any((tmp_path / "cwd").iterdir())  # in memory: nothing written


def test_bad_settings_are_refused_before_the_data_is_read(softmax_model):
    def never():
        raise AssertionError("the data was read")
        yield

    for kwargs in ({"eps": [2.0]}, {"attacks": ["nope"]}, {"eps": 0.1, "suite": "nope"}, {"eps": -1, "suite": "quick"}):
        with pytest.raises((InputError, UnknownNameError)):
            evaluate_robustness(softmax_model, never(), **kwargs)


def test_without_adversarial_inputs(softmax_model, data, reference):
    light = evaluate_robustness(softmax_model, *data, eps=EPS, settings=dataclasses.replace(SETTINGS, keep_adversarial=False))
    assert light.per_example.x_adv is None and "x_adv" not in light.per_example.columns()
    _same(light, reference)


def test_state_file_names_one_file_per_eps():
    from pathlib import Path

    from advlab.analysis.entry import state_file

    assert state_file("runs/s", 0.1) == Path("runs/s.eps0.1.npz")
    assert state_file(Path("s"), 8 / 255) == Path("s.eps0.0313725.npz")


def test_carlini_checks_run_with_the_suite_when_asked(softmax_model, data):
    """settings.carlini_checks: the checks that need runs of their own are run, not skipped."""
    x, y = data
    quick = EvaluationSettings(batch_size=50, seed=0)
    plain = evaluate_robustness(softmax_model, x[:20], y[:20], eps=0.05, suite="quick", settings=quick)
    checked = evaluate_robustness(softmax_model, x[:20], y[:20], eps=0.05, suite="quick",
                                  settings=dataclasses.replace(quick, carlini_checks=True))
    status = {c.name: c.status for c in checked.checks}
    assert {c.name: c.status for c in plain.checks}["unbounded eps -> 0"] == "skipped"
    assert status["unbounded eps -> 0"] == "pass" and status["attack loss converges"] != "skipped"
    assert checked.worst_case == plain.worst_case  # the checks change no outcome
