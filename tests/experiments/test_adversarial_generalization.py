"""The generalization study's verdicts, and a tiny run end to end (resumable, paired by seed)."""

import pytest

from advlab.errors import InputError
from advlab.experiments.adversarial_generalization import (
    DataSpec,
    GeneralizationSettings,
    adversarial_generalization,
    collect,
    default_settings,
    verdict,
)

PAPER = 0.012 / 0.016 - 1  # Szegedy: -25%


def test_verdicts():
    assert verdict([0.02, 0.021, 0.019], [0.012, 0.0125, 0.0118], PAPER)[3] == "reproduced"
    # no change, tight: an improvement as large as the paper's is ruled out
    assert verdict([0.02, 0.021, 0.019], [0.0201, 0.0209, 0.0191], PAPER)[3] == "not reproduced"
    assert verdict([0.02, 0.021, 0.019], [0.015, 0.028, 0.016], PAPER)[3] == "inconclusive at this sample size"
    mean, p, upper, _ = verdict([0.02, 0.02], [0.01, 0.01], PAPER)
    assert mean == pytest.approx(-0.01) and p == 0.0 and upper == pytest.approx(-0.5)


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
