"""Goodfellow Sec. 6: the paper's schedule (early stopping on held-out validation error, then
retraining on every training image for the chosen epochs), the pairs and their setup differences."""

import pytest
import torch

from advlab.data import Dataset, Splits
from advlab.errors import InputError
from advlab.experiments.goodfellow_advtrain import (
    FixedEpochs,
    PaperSchedule,
    check_models,
    check_seeds,
    goodfellow_advtrain,
)
from advlab.experiments.verdict import claim_verdict, verdict_text
from advlab.training import best_epoch, read_metadata


def _numbered(n):
    """n one-pixel images whose value is their index, so a split can be read off the pixels."""
    return Dataset(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.zeros(n, dtype=torch.long), "numbered")


def test_the_paper_schedule_holds_out_the_last_10000_of_60000_images():
    fit, validation = PaperSchedule().split(_numbered(60_000))
    assert len(fit) == 50_000 and len(validation) == 10_000
    assert fit.images[-1].item() == 49_999 and validation.images[0].item() == 50_000
    fit, validation = PaperSchedule().split(_numbered(300))
    assert (len(fit), len(validation)) == (250, 50)


@pytest.mark.parametrize("kwargs", [{"validation_fraction": 0.0}, {"validation_fraction": 1.0}, {"patience": 0}, {"max_epochs": 0}])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(InputError):
        PaperSchedule(**kwargs)


def test_unknown_or_repeated_models_are_refused_before_any_work(tmp_path, embedded):
    for models in (["maxout", "nope"], ["maxout", "maxout"], []):
        with pytest.raises(InputError, match="models must be distinct names"):
            check_models(models)
    with pytest.raises(InputError, match="leave none to hold out"):
        goodfellow_advtrain(Splits(embedded.train.take(2), embedded.test, "tiny"), tmp_path, models=["maxout"])
    with pytest.raises(InputError, match="no epochs for maxout-1600"):
        goodfellow_advtrain(embedded, tmp_path, models=["maxout-1600"], schedule=FixedEpochs({"maxout": (1, 1)}))
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def tiny(embedded):
    return Splits(embedded.train.take(240), embedded.test.take(60), "embedded (first 240 / 60)")


SCHEDULE = PaperSchedule(patience=1, max_epochs=3)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("advtrain")
    experiment = goodfellow_advtrain(tiny, folder, models=["maxout"], schedule=SCHEDULE, eval_limit=20, curve_eps=(0.0, 0.25))
    return folder, experiment


def test_selection_stops_at_the_patience_and_the_retraining_uses_every_image_for_the_best_epoch(paper_run, tiny):
    folder, experiment = paper_run
    fit, validation = SCHEDULE.split(tiny.train)
    for trained in experiment.pairs["maxout"]:
        selection = trained.selection
        assert (selection.n_fit, selection.n_validation) == (200, 40)
        curve = selection.validation
        assert selection.best_epoch == best_epoch(curve)
        assert len(curve) == SCHEDULE.max_epochs or len(curve) - selection.best_epoch == SCHEDULE.patience
        selected = read_metadata(selection.checkpoint)
        assert selected["data"] == {"train": fit.fingerprint()} and selected["validation"]["data"] == validation.fingerprint()
        assert selected["progress"]["validation"] == curve
        final = read_metadata(trained.checkpoint)
        assert final["data"] == {"train": tiny.train.fingerprint()}  # all 240 training images
        assert final["progress"]["epoch"] == trained.train_config["epochs"] == selection.best_epoch
    standard, adversarial = experiment.pairs["maxout"]
    assert standard.selection.measure == "clean error" and adversarial.selection.measure == "FGSM error at eps 0.25"


def test_a_rerun_resumes_every_training_to_the_same_results(paper_run, tiny):
    folder, experiment = paper_run
    again = goodfellow_advtrain(tiny, folder, models=["maxout"], schedule=SCHEDULE, eval_limit=20, curve_eps=(0.0, 0.25))
    for first, second in zip(experiment.pairs["maxout"], again.pairs["maxout"]):
        assert second.resumed_from == first.train_config["epochs"]
        assert second.selection.validation == first.selection.validation
        assert (second.clean_error, second.fgsm_error) == (first.clean_error, first.fgsm_error)
        assert all(torch.equal(a, b) for a, b in zip(first.trained.state_dict().values(), second.trained.state_dict().values()))


def test_setup_differences_are_computed_from_the_settings(paper_run):
    _, experiment = paper_run
    differences = experiment.setup_differences("maxout")
    assert differences == ["training images: 240 (paper: 60000)", "optimiser: adam, no max-norm constraint (paper: SGD with momentum and a max-norm constraint (the maxout paper's))",
                           "patience (epochs): 1 (paper: 100)"]  # the 240-unit claim states its patience, not its selection
    experiment.runs["maxout-1600"] = experiment.runs["maxout"]  # the same run read against the 1600-unit claim
    try:
        wider = experiment.setup_differences("maxout-1600")
    finally:
        del experiment.runs["maxout-1600"]
    assert "units per layer: 240 (paper: 1600)" in wider and "patience (epochs): 1 (paper: 100)" in wider
    assert "seeds: 1 (paper: 5)" in wider and "validation images: 40 (paper: 10000)" in wider
    assert not any(d.startswith("model selection") for d in wider)  # the paper's rule is the one run
    saved = experiment.to_dict()
    assert saved["models"]["maxout"]["setup_differences"] == differences and saved["schedule"]["patience"] == 1


def test_fixed_epochs_train_every_image_for_the_given_epochs(tmp_path, tiny):
    experiment = goodfellow_advtrain(tiny, tmp_path, models=["maxout"], schedule=FixedEpochs({"maxout": (1, 2)}), eval_limit=10,
                                     curve_eps=(0.0,))
    standard, adversarial = experiment.pairs["maxout"]
    assert standard.selection is None and (standard.train_config["epochs"], adversarial.train_config["epochs"]) == (1, 2)
    assert experiment.setup_differences("maxout") == ["training images: 240 (paper: 60000)", "optimiser: adam, no max-norm constraint (paper: SGD with momentum and a max-norm constraint (the maxout paper's))",
                                                      "patience (epochs): not done (paper: 100)"]
    assert experiment.setup("maxout")["model selection"] == "fixed epochs, last-epoch weights"



def test_seeds_must_be_distinct_and_at_least_one(tmp_path, tiny):
    for seeds in ([], [1, 1], [-1], [1.0], [True], [2**63]):
        with pytest.raises(InputError, match="seeds must be one or more distinct"):
            check_seeds(seeds)
        with pytest.raises(InputError, match="seeds must be one or more distinct"):
            goodfellow_advtrain(tiny, tmp_path, models=["maxout"], seeds=seeds)
    assert not any(tmp_path.iterdir())


def test_each_seed_trains_its_own_pair_and_the_verdict_reads_the_per_seed_changes(paper_run, tiny):
    """Seeds 0 and 1: seed 0's pair is the one-seed run's (its checkpoints reused), seed 1's is new and
    differs, and the clean-error verdict is computed from the two paired changes."""
    folder, one_seed = paper_run
    two = goodfellow_advtrain(tiny, folder, models=["maxout"], schedule=SCHEDULE, seeds=(0, 1), eval_limit=20,
                              curve_eps=(0.0, 0.25))
    assert two.seeds == [0, 1] and len(two.runs["maxout"]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["seed-0", "seed-1"]
    first, second = two.runs["maxout"]
    for again, before in zip(first, one_seed.pairs["maxout"]):
        assert again.resumed_from == before.train_config["epochs"] and again.clean_error == before.clean_error
        assert again.checkpoint == str(folder / "seed-0" / f"maxout-{again.training}.safetensors")
    assert [t.train_config["seed"] for t in second] == [1, 1] and [t.train_config["seed"] for t in first] == [0, 0]
    assert second[0].checkpoint.endswith("seed-1/maxout-standard.safetensors")
    first_weights, second_weights = (next(iter(pair[0].trained.state_dict().values())) for pair in (first, second))
    assert not torch.equal(first_weights, second_weights)
    changes = [a.clean_error / s.clean_error - 1 for s, a in two.runs["maxout"]]
    assert two.clean_error_changes("maxout") == changes
    verdict = claim_verdict(changes, 0.0084 / 0.0094 - 1)
    assert two.clean_error_verdict("maxout") == verdict_text(verdict, two.setup_differences("maxout"))
    assert two.fgsm_ratio("maxout") == pytest.approx((first[1].fgsm_error + second[1].fgsm_error) / (first[0].fgsm_error + second[0].fgsm_error))
    saved = two.to_dict()["models"]["maxout"]
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and saved["clean_error_changes"] == changes
