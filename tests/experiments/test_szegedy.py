"""The Szegedy et al. 2013 experiment on tiny settings: structure, invariants, same-image baselines, resume."""

import json
import math
import warnings

import pytest
import torch

from advlab.analysis.transfer import error_rate_on
from advlab.errors import InputError
from advlab.experiments.cache import CacheWarning
from advlab.experiments.szegedy import paper, stages
from advlab.experiments.szegedy.run import szegedy
from advlab.experiments.szegedy.settings import ARMS, PoolStudySettings, SzegedySettings, display_name
from advlab.report.szegedy import write_report
from advlab.training import load_checkpoint, train_registered

TINY = SzegedySettings(
    zoo=("fc10-1e-2", "fc100-100-10"),
    split=(("fc100-100-10", "P1"), ("fc10-1", "P2")),
    longer=(("fc100-100-10", 2),),
    n_attack=12,
    n_attack_test=12,
    n_all_targets=2,
    attack_params=(("temperature", 1.0), ("search_steps", 8), ("max_iter", 40)),
    max_epochs=2,
    n_units=3,
    n_random=3,
    top_k=4,
    figure_examples=3,
    pool_study=PoolStudySettings(seeds=(0, 1), pool_size=12, refresh_every=20,
                                 attack=(("temperature", 1.0), ("search_steps", 3), ("max_iter", 10))),
)


def stage_dir(work):
    """The run's cache folder (beside it, `models-*` holds the trained models, `pool-*` the Sec. 4.2 study)."""
    return next(p for p in (work / "cache").iterdir() if not p.name.startswith(("models-", "pool-")))


def model_dir(work):
    return next((work / "cache").glob("models-*")) / "models"


@pytest.fixture(scope="module")
def run(embedded, tmp_path_factory):
    work = tmp_path_factory.mktemp("szegedy")
    return work, szegedy(embedded, TINY, work_dir=work)


def test_tables_have_the_papers_shape_and_invariants(run):
    _, result = run
    assert [m.label for m in result.models] == ["FC10(1e-2)", "FC100-100-10"]
    assert [m.label for m in result.split_models] == ["FC100-100-10", "FC10(1)'"]
    assert [m.n_train for m in result.split_models] == [2000, 2000]
    linear, network = result.distortion
    assert linear.n_attacked == 12 and 0 < linear.targeted_mean < 0.3
    # the proven minimum to the same targets can only be smaller than what the attack found
    assert linear.exact_targeted_mean <= linear.targeted_mean * (1 + 1e-6)
    assert linear.exact_untargeted_mean <= linear.untargeted_mean * (1 + 1e-6)
    # reaching a chosen wrong class takes at least as much as leaving the true one (exact, linear)
    assert linear.exact_untargeted_mean <= linear.all_targets_mean
    assert linear.all_targets_method == "exact" and network.all_targets_method == "attack" and network.all_targets_n <= 2
    assert network.exact_targeted_mean is None
    table2 = result.transfer
    assert table2.rows == ["FC10(1e-2)", "FC100-100-10", "Gaussian noise, stddev 0.1", "Gaussian noise, stddev 0.1, clipped to [0, 1]",
                           "Gaussian noise, stddev 0.3", "Gaussian noise, stddev 0.3, clipped to [0, 1]"]
    assert table2.cell("FC10(1e-2)", "FC10(1e-2)") == 1.0 and table2.cell("FC100-100-10", "FC100-100-10") == 1.0
    table4 = result.split_transfer
    assert table4.rows[2:4] == ["FC100-100-10, magnified", "FC10(1)', magnified"]
    found = table4.row("FC100-100-10")
    assert table4.factor[table4.row("FC100-100-10, magnified")] == pytest.approx(paper.magnify_factor("FC100-100-10"))
    assert table4.mean_distortion[table4.row("FC100-100-10, magnified")] <= table4.factor[2] * table4.mean_distortion[found] + 1e-9
    for n in result.noise:
        assert n.adversarial_error == 1.0 and 0 <= n.gaussian_error <= 1
    for bounds in result.lipschitz:
        assert 0 < bounds.max_observed_ratio <= bounds.network_bound
    assert len(result.units.unit_top) == 3 and result.unit_images.shape == (6, 4, 1, 28, 28)
    assert set(result.examples) == set(TINY.zoo)


def test_noise_rows_are_unclipped_as_in_the_paper_with_the_clipped_draw_beside_them(run):
    """Table 2's noise rows: distortion sqrt(mean r^2) is the stddev within sampling error (the paper's
    column reads 0.1 / 0.3); the clipped extra row is the same draw inside [0, 1], so it is smaller."""
    _, result = run
    t = result.transfer
    for stddev in TINY.noise_stddevs:
        row, clipped = t.row(f"Gaussian noise, stddev {stddev:g}"), t.row(f"Gaussian noise, stddev {stddev:g}, clipped to [0, 1]")
        standard_error = stddev / math.sqrt(2 * 784) / math.sqrt(t.n[row])
        assert abs(t.mean_distortion[row] - stddev) < 5 * standard_error + stddev / (4 * 784)
        assert t.mean_distortion[clipped] < t.mean_distortion[row] - 5 * standard_error
        assert t.n[row] == t.n[clipped] == TINY.n_attack
    assert f"Gaussian noise, stddev {TINY.split_noise_stddevs[0]:g}, clipped to [0, 1]" in result.split_transfer.rows


def test_targets_are_seeded_wrong_labels(run, embedded):
    work, result = run
    attacked = stages.subset(embedded.train, TINY.n_attack, stages.generator(TINY, 2))
    targets = stages.random_targets(attacked.labels, 10, stages.generator(TINY, 4))
    assert bool((targets != attacked.labels).all())
    cached = torch.from_numpy(__import__("numpy").load(stage_dir(work) / "attacks" / "fc10-1e-2-target.npz")["targets"])
    assert torch.equal(cached, targets)


def test_table4_baselines_use_exactly_the_rows_images(run, embedded):
    """Every baseline of a Table 4 row is measured on the images that row was measured on."""
    work, result = run
    table = result.split_transfer
    attacked = stages.subset(embedded.test, TINY.n_attack_test, stages.generator(TINY, 3))
    models = {label: load_checkpoint(model_dir(work) / f"{key}.safetensors").model.eval()
              for key, label in (("fc100-100-10@P1", "FC100-100-10"), ("fc10-1@P2", "FC10(1)'"))}
    for i, row in enumerate(table.rows):
        index = torch.tensor(table.index[i], dtype=torch.long)
        assert table.n[i] == len(index)
        for j, column in enumerate(table.columns):
            expected = error_rate_on(models[column], attacked.images[index], attacked.labels[index])
            assert table.clean_error[i][j] == pytest.approx(expected, nan_ok=True)
    for label in ("FC100-100-10", "FC10(1)'"):  # a magnified row is the same images as the row it magnifies
        assert table.index[table.row(f"{label}, magnified")] == table.index[table.row(label)]
    # an adversarial row holds the images its model classified correctly: its own clean error is 0
    assert table.clean_error[table.row("FC100-100-10")][table.columns.index("FC100-100-10")] == 0.0


def test_a_rerun_resumes_and_a_corrupt_entry_is_recomputed_with_a_warning(run, embedded):
    work, first = run
    again = szegedy(embedded, TINY, work_dir=work)
    assert again.to_dict() | {"seconds": None} == first.to_dict() | {"seconds": None}
    assert set(again.seconds.values()) == {again.seconds["train"], again.seconds["attack"], 0.0}
    cache = stage_dir(work)
    stage = cache / "stages" / "table2-transfer.json"
    stage.write_text(stage.read_text()[:40])  # cut short, as by a kill
    attack = cache / "attacks" / "fc100-100-10-target.npz"
    attack.write_bytes(attack.read_bytes()[:100])
    with pytest.warns(CacheWarning) as caught:
        resumed = szegedy(embedded, TINY, work_dir=work)
    assert {str(w.message).split(" is unreadable")[0] for w in caught if w.category is CacheWarning} == {f"cache entry {stage}", f"cache entry {attack}"}
    assert resumed.seconds["table2"] > 0
    timeless = {"seconds": None, "compute_seconds": None}  # the attack ran again, so its time differs
    assert resumed.to_dict() | timeless == first.to_dict() | timeless
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        szegedy(embedded, TINY, work_dir=work)  # now clean: no warning


def test_report_files(run, tmp_path):
    _, result = run
    paths = write_report(result, tmp_path, command="advlab reproduce szegedy", notes=["a note"])
    assert {p.name for p in paths} == {"report.md", "results.json", "adversarial.png", "units_vs_directions.png"}
    report = (tmp_path / "report.md").read_text()
    for heading in ("Table 1", "Table 2", "Tables 3 and 4", "same size", "units vs directions", "Lipschitz", "a note"):
        assert heading in report
    assert "100.0% / 100.0% / 1.00x" in report  # the paper's diagonal beside ours, with the ratio
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["command"] == "advlab reproduce szegedy" and saved["paper"]["table1"]["FC10(1) -> test error"] == 0.2


def test_notes_state_the_training_the_run_used_not_the_registered_one(run):
    from advlab.experiments.registry import szegedy_notes

    _, result = run
    notes = " ".join(szegedy_notes(result))
    assert "2 epochs" in notes and "60 epochs" not in notes and "20 epochs" not in notes  # TINY caps every model at 2
    assert all(row.training["epochs"] == 2 for row in result.models + result.split_models)
    assert "FC100-100-10: adam lr 0.003 cosine-decayed to 0, batch 64, 2 epochs" in notes  # the sigmoid networks' schedule
    assert "FC10(1e-2), FC10(1)': adam lr 0.001, batch 256, 2 epochs" in notes  # FC10's: constant
    assert f"{TINY.n_attack} seeded random training images" in notes and f"{result.n_train:,} training" in notes


def test_any_registered_attack_can_stand_in(embedded, tmp_path):
    settings = SzegedySettings(
        zoo=("fc10-1e-2",), split=(("fc10-1e-2", "P1"),), units_model="fc10-1e-2", units_layer="linear", untargeted=False,
        n_attack=10, n_attack_test=10, n_all_targets=0, attack="fgm", attack_params=(("eps", 3.0),), max_epochs=1,
        n_units=2, n_random=2, top_k=3,
    )
    result = szegedy(embedded, settings, work_dir=tmp_path)
    fooled = result.distortion[0]
    assert 0.5 * 3.0 / math.sqrt(784) < fooled.targeted_mean <= 3.0 / math.sqrt(784) + 1e-6  # FGM's L2 budget, clipped
    assert fooled.untargeted_mean is None
    assert result.units.layer == "fc10-1e-2.linear"


def test_bad_settings():
    with pytest.raises(InputError, match="units_model"):
        SzegedySettings(zoo=("fc10-1",))
    with pytest.raises(InputError, match="P1 or P2"):
        SzegedySettings(split=(("fc10-1", "P3"),))
    with pytest.raises(InputError, match="at least one image"):
        SzegedySettings(n_attack=0)
    assert display_name("fc10-1e-4") == "FC10(1e-4)" and display_name("fc100-100-10", "P2") == "FC100-100-10'"


def test_runs_that_differ_only_in_the_attacks_share_the_trained_models(run, embedded):
    import dataclasses

    work, first = run
    before = {p.name: p.stat().st_mtime_ns for p in model_dir(work).iterdir()}
    other = dataclasses.replace(TINY, n_attack=5, n_attack_test=5, n_all_targets=0, untargeted=False)
    result = szegedy(embedded, other, work_dir=work)
    assert {p.name: p.stat().st_mtime_ns for p in model_dir(work).iterdir()} == before
    assert [m.test_error for m in result.models] == [m.test_error for m in first.models]
    assert len(list((work / "cache").glob("models-*"))) == 1


def test_an_example_the_exact_solver_cannot_certify_is_left_out(monkeypatch):
    """One uncertified example (SolverError) costs only itself: nan, which the means skip."""
    from types import SimpleNamespace

    from advlab.errors import SolverError

    def fake(model, x, y, targets=None):
        if len(y) > 1 or float(x.sum()) == 1.0:
            raise SolverError("no certificate")
        return SimpleNamespace(distance=torch.tensor([28.0]))

    monkeypatch.setattr(stages, "minimal_perturbation", fake)
    x = torch.zeros(3, 1, 28, 28)
    x[1, 0, 0, 0] = 1.0
    out = stages._exact(None, x, torch.zeros(3, dtype=torch.long), None)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 1.0
    assert stages._mean(out) == 1.0


def test_a_training_killed_mid_way_resumes_from_its_last_epoch_to_the_same_weights(embedded, tmp_path, monkeypatch):
    from dataclasses import replace

    from advlab.experiments.cache import StageCache
    from advlab.training import loops

    settings, data = replace(TINY, max_epochs=3), embedded.train.take(300)
    fresh, _ = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, StageCache(tmp_path / "a"), False)
    original, saved = loops._save, []

    def save_then_die_after_epoch_1(*args):
        original(*args)
        saved.append(args[6])
        if args[6] == 1 and saved.count(1) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loops, "_save", save_then_die_after_epoch_1)
    cache = StageCache(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    resumed, row = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    assert saved == [1, 2, 3]  # the rerun trained epochs 2 and 3 only
    assert row.training["epochs"] == 3
    for (name, a), b in zip(fresh.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_pool_study_compares_each_pool_with_no_pool_seed_by_seed(run):
    _, result = run
    study = result.pool_study
    assert [(r.arm, r.seed) for r in study.runs] == [(arm, seed) for seed in (0, 1) for arm in ARMS]
    layers = {r.arm: r.layers for r in study.runs}
    assert layers == {"no pool": [], "input pool": ["input"], "per-layer pool": ["input", "act1", "act2"]}
    for r in study.runs:
        assert r.epochs == 2 and r.n_train == 4000 and 0 <= r.test_error <= 1
        # per layer over the 2 epochs' 126 updates: every slot at update 0, then 1 slot (10%, at least 1) at updates
        # 20, 40, ..., 120 (counted across epochs: not rebuilt at update 63, the second epoch's start)
        slots = 12 // max(1, len(r.layers))
        assert r.attacked == {layer: slots + 6 for layer in r.layers}
        assert all(0 <= r.reached[k] <= r.attacked[k] for k in r.attacked)
    assert study.paper_relative == pytest.approx(0.012 / 0.016 - 1)
    by = {(r.arm, r.seed): r.test_error for r in study.runs}
    for c in study.comparisons:
        assert c.seeds == [0, 1] and c.baseline == [by["no pool", s] for s in (0, 1)]
        assert c.relative == pytest.approx([by[c.arm, s] / by["no pool", s] - 1 for s in (0, 1)])
        assert c.verdict.split(",")[0] in ("reproduced", "not reproduced", "inconclusive")
        # 2 epochs on 4,000 images, not the paper's 60,000 to convergence: the setup differs, and says where
        assert c.text.endswith("; setup differs")
        assert any(d.startswith("training images: 4000 (paper: 60000)") for d in c.setup_differences)
        assert any(d.startswith("training length: 2 fixed epochs") for d in c.setup_differences)
    per_layer = next(c for c in study.comparisons if c.arm == "per-layer pool")
    assert not any(d.startswith(("pool examples for", "pool refresh", "regularisation", "network")) for d in per_layer.setup_differences)
    assert study.changes_verdict == (study.comparisons[0].verdict != study.comparisons[1].verdict)


def test_table3_halves_of_a_full_training_set_are_the_papers_two_parts_of_30000():
    from advlab.data import Dataset

    full = Dataset(torch.zeros(60_000, 1, 1, 1), torch.arange(60_000), "full")  # the label names the example
    parts = stages.halves(full, SzegedySettings())
    assert [len(parts[p]) for p in ("P1", "P2")] == [30_000, 30_000]
    both = torch.cat([parts["P1"].labels, parts["P2"].labels])
    assert torch.equal(both.sort().values, full.labels)  # disjoint, together the whole set
    assert not torch.equal(parts["P1"].labels, full.labels[:30_000])  # drawn at random, not the first half


def test_a_model_trained_longer_is_trained_from_the_start_and_fed_table2s_rows(run, embedded):
    work, result = run
    (entry,) = result.longer
    base = next(m for m in result.models if m.key == "fc100-100-10")
    assert entry.key == "fc100-100-10" and entry.factor == 2 and entry.model.training["epochs"] == 2 * base.training["epochs"]
    assert entry.model.training == {**base.training, "epochs": 4}  # the registered schedule, spanning the 4 epochs
    assert entry.rows == result.transfer.rows
    from advlab.training import default_config, train_registered

    straight = train_registered("fc100-100-10", embedded.train, default_config("fc100-100-10", seed=0, epochs=4), progress=False).model
    longer = load_checkpoint(model_dir(work) / "fc100-100-10-x2.safetensors").model
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), longer.parameters()))
    assert entry.model.test_error == error_rate_on(longer, embedded.test.images, embedded.test.labels)
    # the noise rows hold all attacked images: unperturbed, the longer model's error on them is its error there
    i = result.transfer.row("Gaussian noise, stddev 0.1")
    x = stages.subset(embedded.train, TINY.n_attack, stages.generator(TINY, 2))
    assert entry.clean_error[i] == error_rate_on(longer, x.images, x.labels)
    assert all(0 <= e <= 1 for e in entry.error)


def test_a_cached_model_or_checkpoint_of_another_training_is_trained_again(embedded, tmp_path, monkeypatch):
    """When the registered training changes, the cache holds stale models: `train` retrains them (and no stale
    checkpoint is resumed)."""
    from dataclasses import replace

    from advlab.experiments.cache import StageCache
    from advlab.training import default_config, loops

    settings, data, cache = replace(TINY, max_epochs=2), embedded.train.take(200), StageCache(tmp_path)
    first, row = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    original, calls = loops._save, []

    def die_after_epoch_1(*args):
        original(*args)
        raise KeyboardInterrupt

    other = {"lr_schedule": "constant" if row.training["lr_schedule"] == "cosine" else "cosine"}
    monkeypatch.setattr(stages, "default_config", lambda name, **kw: default_config(name, **{**kw, **other}))
    monkeypatch.setattr(loops, "_save", die_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):  # the stale model is not read: a training starts, and is killed
        stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    monkeypatch.setattr(stages, "default_config", lambda name, **kw: default_config(name, **{**kw, "lr": 0.01}))
    monkeypatch.setattr(loops, "_save", lambda *args: calls.append(args[6]) or original(*args))
    retrained, new_row = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    assert calls == [1, 2]  # the killed checkpoint (another training again) was not resumed
    assert new_row.training == {**row.training, "lr": 0.01}
    assert not torch.equal(next(first.parameters()), next(retrained.parameters()))
    assert stages.is_cached(cache, "m", "fc100-100-10", stages.training_config("fc100-100-10", settings))
    again, _ = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    assert calls == [1, 2] and torch.equal(next(again.parameters()), next(retrained.parameters()))  # read, not trained


def test_a_cached_model_of_another_registered_architecture_is_trained_again(embedded, tmp_path, monkeypatch):
    """A model cached before its registered architecture changed (AE400-10 made a sparse autoencoder, not
    fine-tuned, on 2026-12-08) is not read as today's: `is_cached` says no and `train` trains it again."""
    from dataclasses import replace

    from advlab.experiments.cache import StageCache

    settings, data, cache = replace(TINY, max_epochs=1), embedded.train.take(200), StageCache(tmp_path)
    config = stages.training_config("fc100-100-10", settings)
    first, _ = stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    assert stages.is_cached(cache, "m", "fc100-100-10", config)
    today = stages.registered_architecture("fc100-100-10")
    monkeypatch.setattr(stages, "registered_architecture", lambda name: {**today, "hidden": [100, 50]})
    assert not stages.is_cached(cache, "m", "fc100-100-10", config)
    trained = []
    monkeypatch.setattr(stages, "train_registered", lambda *a, **k: trained.append(a[0]) or train_registered(*a, **k))
    stages.train("m", "fc100-100-10", "train", data, embedded.test, settings, cache, False)
    assert trained == ["fc100-100-10"]
