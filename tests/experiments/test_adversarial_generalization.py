"""The generalization study's verdicts, and a tiny run end to end (resumable, paired by seed)."""

import pytest

from advlab.errors import InputError
from advlab.experiments.adversarial_generalization import (
    DataSpec,
    GeneralizationSettings,
    adversarial_generalization,
    collect,
    default_settings,
)

def test_bad_settings():
    with pytest.raises(InputError, match="at least 2 seeds"):
        GeneralizationSettings(datasets=(), seeds=(0,))
    with pytest.raises(InputError, match="no adversarial-training claim"):
        GeneralizationSettings(datasets=(), models=("cnn",))


def test_tiny_study_runs_pairs_and_resumes(tmp_path):
    settings = GeneralizationSettings(datasets=(DataSpec("embedded", None, 200, 1),), seeds=(0, 1), pool_size=6, pool_every=2,
                                      pool_attack=(("temperature", 1.0), ("search_steps", 3), ("max_iter", 10)))
    result = adversarial_generalization(settings, tmp_path)
    assert result.complete and len(result.runs) == 8
    assert [(c.model, c.method, c.seeds) for c in result.comparisons] == [("fc100-100-10", "szegedy-pool", [0, 1]),
                                                                          ("maxout", "fgsm", [0, 1])]
    again = collect(settings, tmp_path)  # reads the cached runs, trains nothing
    assert again.comparisons == result.comparisons and sorted(map(repr, again.runs)) == sorted(map(repr, result.runs))


def test_worker_processes_give_the_same_runs(tmp_path):
    """jobs=2 trains the same models as jobs=1 (each run seeded by itself, one thread each)."""
    settings = GeneralizationSettings(datasets=(DataSpec("embedded", None, 120, 1),), models=("maxout",), seeds=(0, 1))
    one = adversarial_generalization(settings, tmp_path / "one")
    two = adversarial_generalization(settings, tmp_path / "two", jobs=2)
    key = lambda r: (r.training, r.seed)  # noqa: E731
    assert [(key(r), r.test_error, r.train_error) for r in sorted(one.runs, key=key)] == \
        [(key(r), r.test_error, r.train_error) for r in sorted(two.runs, key=key)]
    assert one.comparisons == two.comparisons


def test_default_settings_use_every_image_and_the_registered_epochs(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "fashion-mnist").mkdir()
    full = default_settings(str(tmp_path / "mnist"))
    assert [(d.name, d.train_limit, d.epochs) for d in full.datasets] == [("mnist", None, None), ("fashion-mnist", None, None)]
    small = default_settings(str(tmp_path / "mnist"), epochs=2, train_images=500)
    assert {(d.train_limit, d.epochs) for d in small.datasets} == {(500, 2)}


def test_setup_differences_are_computed_from_the_settings_and_runs():
    from advlab.experiments.adversarial_generalization import PAPER_SETUP, RunResult, compare

    settings = GeneralizationSettings(datasets=(DataSpec("mnist", "d", None, 3),))
    runs = [RunResult("mnist", model, training, seed, 3, 60_000, 0.0, 0.02 - 0.001 * seed, 1.0, {})
            for model in settings.models for training in ("standard", "szegedy-pool" if model == "fc100-100-10" else "fgsm")
            for seed in settings.seeds]
    pool, maxout = compare(runs, settings)
    assert pool.setup_differences == [
        "model selection: 3 fixed epochs, last-epoch weights (paper: trained to convergence)",
        f"pool examples for: the input only (paper: {PAPER_SETUP['fc100-100-10']['pool examples for']})",
        "pool refresh: whole pool of 100 replaced every 100 updates (paper: continuous: a random subset replaced)",
    ]  # 60,000 MNIST training images: those agree, so they are not listed
    assert maxout.setup_differences[0].startswith("model selection: 3 fixed epochs") and len(maxout.setup_differences) == 1
    assert pool.verdict.endswith("; setup differs")
