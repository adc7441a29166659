"""The adversarial-training report over several seeds: means ± standard deviations in the paper's table,
one row per seed, and the clean-error verdict with the bounds it was read from."""

import json
import statistics

import pytest

from advlab.data import Splits
from advlab.experiments.goodfellow_advtrain import FixedEpochs, goodfellow_advtrain
from advlab.experiments.verdict import claim_verdict
from advlab.report.advtrain import summary, write_advtrain_report


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, embedded):
    tiny = Splits(embedded.train.take(240), embedded.test.take(60), "embedded (first 240 / 60)")
    experiment = goodfellow_advtrain(tiny, tmp_path_factory.mktemp("checkpoints"), models=["maxout"],
                                     schedule=FixedEpochs({"maxout": (1, 1)}), seeds=(3, 4), eval_limit=10, curve_eps=(0.0,))
    out = tmp_path_factory.mktemp("report")
    write_advtrain_report(experiment, out, command="advlab reproduce goodfellow-advtrain --seed 3 --seeds 2", notes=[])
    return experiment, (out / "report.md").read_text(), json.loads((out / "results.json").read_text())


def test_the_table_cells_are_means_over_seeds_with_their_spread(two_seeds):
    experiment, report, _ = two_seeds
    standard = [pair[0].clean_error for pair in experiment.runs["maxout"]]
    mean, spread = statistics.fmean(standard), statistics.stdev(standard)
    assert f"| clean test error | 0.94% | {100 * mean:.2f}% ± {100 * spread:.2f} ({mean / 0.0094:.2f}) |" in report
    assert "seeds 3, 4: each advlab cell is the mean over seeds" in report


def test_each_seed_has_its_row_and_the_verdict_states_its_bounds(two_seeds):
    experiment, report, results = two_seeds
    for seed, (s, a) in zip((3, 4), experiment.runs["maxout"]):
        assert f"| {seed} | {100 * s.clean_error:.2f}% | {100 * a.clean_error:.2f}% |" in report
    verdict = claim_verdict(experiment.clean_error_changes("maxout"), 0.0084 / 0.0094 - 1)
    assert f"mean over 2 seeds, one-sided 95% bounds [{verdict.lower:+.1%}, {verdict.upper:+.1%}]" in report
    assert f"**{experiment.clean_error_verdict('maxout')}**" in report
    assert results["seeds"] == [3, 4] and [r["seed"] for r in results["models"]["maxout"]["runs"]] == [3, 4]
    assert sum("- maxout, " in line and ", seed " in line for line in report.splitlines()) == 4  # settings: 2 seeds x 2


def test_the_summary_names_every_seed_and_the_verdict(two_seeds):
    experiment, _, _ = two_seeds
    lines = summary(experiment)
    assert sum("seed 3" in line for line in lines) == 2 and sum("seed 4" in line for line in lines) == 2
    assert lines[-1] == f"  maxout: clean-error claim over 2 seeds: {experiment.clean_error_verdict('maxout')}"


def test_figures_over_seeds_say_so_and_the_first_seeds_tables_name_it(two_seeds):
    experiment, report, _ = two_seeds
    adversarial = [pair[1].pgd_error for pair in experiment.runs["maxout"]]
    assert f"errs on {100 * statistics.fmean(adversarial):.1f}% ± {100 * statistics.stdev(adversarial):.1f} (mean over seeds)" in report
    assert f"over the standard one's (their means over seeds): {experiment.fgsm_ratio('maxout'):.3f}" in report
    assert "### maxout, standard training: robustness on the first 10 test images (seed 3)" in report


def test_the_settings_give_each_trainings_time_over_all_runs(two_seeds):
    experiment, report, results = two_seeds
    for pair in experiment.runs["maxout"]:
        for trained in pair:
            assert trained.total_train_seconds is not None and trained.total_train_seconds > 0
            assert f"{trained.total_train_seconds:.0f} s of training over all runs" in report
    assert results["models"]["maxout"]["runs"][0]["standard"]["total_train_seconds"] == experiment.runs["maxout"][0][0].total_train_seconds
