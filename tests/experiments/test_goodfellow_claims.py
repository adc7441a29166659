"""goodfellow-claims on tiny embedded data: a row per paper claim with the stated ratio and verdict
rule, deterministic by seed, resumed from its cache; the heads, objectives and attacks it uses."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks import FGSM
from advlab.data import Splits
from advlab.errors import InputError
from advlab.experiments.goodfellow_claims import ClaimsSettings, goodfellow_claims
from advlab.experiments.goodfellow_claims.heads import SIGMOID, SOFTMAX, Ensemble, HeadFGSM, NoiseObjective, one_vs_all
from advlab.experiments.goodfellow_claims.paper import CIFAR, CLAIMS, MNIST, PaperClaim, agrees
from advlab.experiments.goodfellow_claims.run import claim_row, fooling_figures, gaussian_samples, rubbish_figures

TINY = ClaimsSettings(maxout_epochs=1, members=2, rbf_epochs=1, softmax_epochs=1, rubbish_samples=200, fooling_samples=5,
                      maxout={"hidden": 16, "pieces": 2})


@pytest.fixture(scope="module")
def tiny(embedded) -> Splits:
    return Splits(embedded.train.take(300), embedded.test.take(200), "embedded (tiny)")


@pytest.fixture(scope="module")
def result(tiny, tmp_path_factory):
    return goodfellow_claims(tiny, TINY, work_dir=tmp_path_factory.mktemp("claims"))


def test_every_claim_has_a_row_with_the_ratio_and_the_stated_rule(result):
    assert [r["key"] for r in result.rows] == [c.key for c in CLAIMS]
    for row in result.rows:
        if row["data"] == CIFAR:
            assert row["verdict"].startswith("not compared")
            continue
        if row["advlab"] is None:
            assert row["verdict"].startswith("not measured")
        elif row["paper"] == 0:
            assert row["ratio"] is None and row["verdict"].startswith("reproduced" if row["advlab"] <= 0.01 else "not reproduced")
        else:
            assert row["ratio"] == pytest.approx(row["advlab"] / row["paper"])
            both_sides = 1 / 1.5 <= row["ratio"] <= 1.5 and (
                1 / 1.5 <= (1 - row["advlab"]) / (1 - row["paper"]) <= 1.5 or abs(row["advlab"] - row["paper"]) <= 0.05)
            assert row["verdict"].startswith("reproduced" if both_sides else "not reproduced")
        assert "training images: 300 (paper: 60000)" in row["setup_differences"] and row["verdict"].endswith("; setup differs")


def test_agreement_is_judged_on_both_sides_of_a_rate():
    assert agrees(0.5, 0.4) and agrees(0.958, 0.9835) and agrees(0.02, 0.015)
    assert not agrees(0.992, 0.862)  # 1.15x as an error, 17x as an accuracy
    assert not agrees(0.12, 0.012) and not agrees(0.3, 0.6)


def test_the_figures_are_rates_and_the_models_are_the_plans(result):
    for key, value in result.measurements.items():
        assert value is None or 0.0 <= value <= 1.0, key
    assert set(result.models) == {"maxout-0", "maxout-1", "noise-sign", "noise-uniform", "rbf", "softmax", "sigmoid"}
    assert result.models["noise-sign"]["objective"] == {"name": "noise", "kind": "sign", "eps": 0.25, "alpha": 0.5, "bounds": [0.0, 1.0]}
    assert result.models["maxout-1"]["seed"] == 1 and result.models["maxout-0"]["architecture"]["hidden"] == 16
    assert len(result.details["fooling_success"]) == 10 and len(result.details["member_test_errors"]) == 2


def test_same_seed_same_numbers_and_a_rerun_reads_the_cache(tiny, result, tmp_path):
    again = goodfellow_claims(tiny, TINY, work_dir=tmp_path)
    assert again.measurements == result.measurements and again.rows == result.rows
    cached = goodfellow_claims(tiny, TINY, work_dir=tmp_path)
    assert cached.seconds == again.seconds and cached.rows == again.rows  # the seconds of the run that computed them
    (stage,) = [p for p in tmp_path.glob("cache/*/stages/noise.json")]
    stage.unlink()
    recomputed = goodfellow_claims(tiny, TINY, work_dir=tmp_path)
    assert recomputed.rows == again.rows and stage.is_file()  # a removed stage is computed again, to the same numbers


def test_another_seed_gives_other_models(tiny, result, tmp_path):
    other = goodfellow_claims(tiny, replace(TINY, seed=1), work_dir=tmp_path)
    assert other.models["maxout-0"]["train_error"] != result.models["maxout-0"]["train_error"] or \
        other.measurements != result.measurements


def test_bad_settings_are_refused():
    with pytest.raises(InputError):
        ClaimsSettings(members=1)
    with pytest.raises(InputError):
        ClaimsSettings(eps=2.0)
    with pytest.raises(InputError):
        ClaimsSettings(rubbish_samples=0)


def test_claim_row_rule():
    claim = PaperClaim("k", "noise", "x", 0.2)
    assert claim_row(claim, 0.29, [])["verdict"] == "reproduced"
    assert claim_row(claim, 0.31, [])["verdict"] == "not reproduced"
    assert claim_row(claim, 0.14, ["a"])["verdict"] == "reproduced; setup differs"
    assert claim_row(claim, 0.13, [])["ratio"] == pytest.approx(0.65)
    assert claim_row(PaperClaim("k", "noise", "x", 0.5), 0.74, [])["verdict"] == "not reproduced"  # 0.26 vs 0.5 left
    zero = PaperClaim("k", "rubbish", "x", 0.0)
    assert claim_row(zero, 0.01, [])["verdict"] == "reproduced" and claim_row(zero, 0.02, [])["verdict"] == "not reproduced"
    assert claim_row(zero, 0.0, [])["ratio"] is None
    assert claim_row(PaperClaim("k", "cifar", "x", 0.5, CIFAR), 0.5, ["d"])["verdict"] == "not compared: the paper's figure is CIFAR-10's"
    assert claim_row(claim, None, [])["verdict"].startswith("not measured")
    assert {c.data for c in CLAIMS} == {MNIST, CIFAR}


def test_noise_objective_draws_the_stated_noise():
    x = torch.full((4, 1, 28, 28), 0.5)
    sign, uniform = NoiseObjective("sign", 0.25), NoiseObjective("uniform", 0.25)
    assert torch.equal(sign.noise(x).abs(), torch.full_like(x, 0.25))
    noise = uniform.noise(x)
    assert noise.abs().max() <= 0.25 and noise.abs().min() < 0.25 and len(noise.unique()) > 100
    with pytest.raises(InputError):
        NoiseObjective("gaussian")


def test_noise_objective_is_the_mixed_cross_entropy():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    objective = NoiseObjective("sign", 0.1, alpha=0.3)
    torch.manual_seed(7)
    loss = objective(model, x, y)
    torch.manual_seed(7)
    noisy = (x + objective.noise(x)).clamp(0, 1)
    expected = 0.3 * F.cross_entropy(model(x), y) + 0.7 * F.cross_entropy(model(noisy), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_head_fgsm_with_softmax_is_fgsm_and_with_sigmoid_steps_along_the_one_vs_all_cost():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x, y = torch.rand(6, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(HeadFGSM(model, eps=0.1, progress=False)(x, y).x_adv, FGSM(model, eps=0.1, progress=False)(x, y).x_adv)
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        grad = (torch.sigmoid(x.flatten(1) @ w.T + b) - F.one_hot(y, 3).double()) @ w  # d/dx sum_k BCE
    expected = (x + 0.1 * grad.view_as(x).sign()).clamp(0, 1)
    assert torch.allclose(HeadFGSM(model, eps=0.1, head=SIGMOID, progress=False)(x, y).x_adv, expected)


def test_one_vs_all_is_the_mean_sum_of_binary_cross_entropies():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    z = model(x)
    expected = sum(F.binary_cross_entropy(torch.sigmoid(z[i]), F.one_hot(y[i], 3).float(), reduction="sum") for i in range(5)) / 5
    assert one_vs_all(model, x, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_ensembles_softmax_is_the_members_mean():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(3)]
    x = torch.rand(5, 1, 2, 2)
    mean = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    assert torch.allclose(Ensemble(members)(x).softmax(1), mean, atol=1e-6)
    with pytest.raises(InputError):
        Ensemble([])


class Constant(nn.Module):
    """Logits that do not depend on the input."""

    def __init__(self, z: list[float]) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.tensor(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


def test_rubbish_counts_samples_given_more_than_half():
    samples = gaussian_samples(8, torch.Size([1, 2, 2]), seed=0)
    confident = rubbish_figures(Constant([3.0, 0.0, 0.0]), SOFTMAX, samples)
    p = math.exp(3) / (math.exp(3) + 2)
    assert confident["error"] == 1.0 and confident["confidence"] == pytest.approx(p) and confident["shares"] == [1.0, 0.0, 0.0]
    unsure = rubbish_figures(Constant([0.0, 0.0, 0.0]), SOFTMAX, samples)
    assert unsure == {"error": 0.0, "confidence": None, "shares": None}
    assert rubbish_figures(Constant([-1.0, 0.5, -2.0]), SIGMOID, samples)["shares"] == [0.0, 1.0, 0.0]
    assert torch.equal(samples, gaussian_samples(8, torch.Size([1, 2, 2]), seed=0))


def test_fooling_succeeds_where_one_step_reaches_the_class():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0]]))
        model[1].bias.copy_(torch.tensor([0.0, 0.0, -1000.0]))
    samples = gaussian_samples(30, torch.Size([1, 2, 2]), seed=0)
    # a step of 100 moves z_0 = x_0 and z_1 = x_1 by 100 towards the target: enough for classes 0 and 1,
    # not for class 2, whose logit is fixed at -1000
    assert fooling_figures(model, samples, 3, eps=100.0) == [1.0, 1.0, 0.0]


def test_agreement_counts_the_other_models_predicting_the_sources_class():
    from advlab.data import Dataset
    from advlab.experiments.goodfellow_claims.run import agreement_figures

    data = Dataset(torch.rand(6, 1, 2, 2), torch.tensor([0, 0, 1, 1, 2, 2]), "six")
    maxout, softmax, rbf = Constant([0.0, 5.0, 0.0]), Constant([0.0, 5.0, 0.0]), Constant([0.0, 0.0, 5.0])
    # maxout and softmax predict 1, the RBF network 2: maxout errs on the 0s and 2s, all three on the 0s
    assert agreement_figures(maxout, softmax, rbf, data, 0.1, False) == {
        "rbf_on_maxout_errors": 0.0, "softmax_on_maxout_errors": 1.0, "softmax_where_both_err": 1.0,
        "rbf_where_both_err": 0.0, "rbf_on_softmax_where_all_err": 0.0}
