"""The Szegedy et al. 2013 experiment on tiny settings: structure, invariants, resume."""

import json
import math

import pytest
import torch

from advlab.errors import InputError
from advlab.experiments.szegedy import SzegedySettings, display_name, szegedy
from advlab.report.szegedy import write_report

TINY = SzegedySettings(
    zoo=("fc10-1e-2", "fc100-100-10"),
    split=(("fc100-100-10", "P1"), ("fc10-1", "P2")),
    n_attack=12,
    n_attack_test=12,
    attack_params=(("search_steps", 8), ("max_iter", 40)),
    max_epochs=2,
    n_units=3,
    n_random=3,
    top_k=4,
    figure_examples=3,
)


@pytest.fixture(scope="module")
def run(embedded, tmp_path_factory):
    work = tmp_path_factory.mktemp("szegedy")
    return work, szegedy(embedded, TINY, work_dir=work)


def test_tables_have_the_papers_shape_and_invariants(run):
    _, result = run
    assert [m.label for m in result.models] == ["FC10(1e-2)", "FC100-100-10"]
    assert [m.label for m in result.split_models] == ["FC100-100-10", "FC10(1)'"]
    assert [m.n_train for m in result.split_models] == [2000, 2000]
    for d in result.distortion:
        assert d.n_attacked == 12 and 0 < d.mean_distortion < 0.3
    linear = result.distortion[0]
    # the exact minimum over the same images can only be smaller than what the attack found
    assert linear.exact_mean_distortion <= linear.mean_distortion * (1 + 1e-6)
    assert result.distortion[1].exact_mean_distortion is None
    table2 = result.transfer
    assert table2.rows[:3] == ["clean images (all attacked)", "FC10(1e-2)", "FC100-100-10"]
    assert table2.rows[3:] == ["Gaussian noise, stddev 0.1", "Gaussian noise, stddev 0.3"]
    assert table2.cell("FC10(1e-2)", "FC10(1e-2)") == 1.0 and table2.cell("FC100-100-10", "FC100-100-10") == 1.0
    assert table2.mean_distortion[0] == 0.0
    table4 = result.split_transfer
    for row, distortion in zip(table4.rows, table4.mean_distortion):
        if "magnified" in row:
            assert distortion == pytest.approx(0.1, rel=1e-6)
    assert table4.rows[-1] == "Gaussian noise, distortion 0.100" and table4.mean_distortion[-1] == pytest.approx(0.1, rel=1e-6)
    for n in result.noise:
        assert n.adversarial_error == 1.0 and 0 <= n.gaussian_error <= 1
    for bounds in result.lipschitz:
        assert 0 < bounds.max_observed_ratio <= bounds.network_bound
    assert len(result.units.unit_top) == 3 and result.unit_images.shape == (6, 4, 1, 28, 28)
    assert set(result.examples) == set(TINY.zoo)


def test_a_rerun_resumes_from_the_cache_and_recomputes_what_is_missing(run, embedded):
    work, first = run
    again = szegedy(embedded, TINY, work_dir=work)
    assert again.to_dict() | {"seconds": None} == first.to_dict() | {"seconds": None}
    assert set(again.seconds.values()) == {again.seconds["train"], again.seconds["attack"], 0.0}
    cache = next((work / "cache").iterdir())
    (cache / "stages" / "table2-transfer.json").unlink()  # as if killed before the stage ended
    (cache / "attacks" / "fc100-100-10.npz").unlink()
    resumed = szegedy(embedded, TINY, work_dir=work)
    assert resumed.seconds["table2"] > 0
    timeless = {"seconds": None, "compute_seconds": None}  # the attack ran again, so its time differs
    assert resumed.to_dict() | timeless == first.to_dict() | timeless


def test_report_files(run, tmp_path):
    _, result = run
    paths = write_report(result, tmp_path, command="advlab reproduce szegedy", notes=["a note"])
    assert {p.name for p in paths} == {"report.md", "results.json", "adversarial.png", "units_vs_directions.png"}
    report = (tmp_path / "report.md").read_text()
    for heading in ("Table 1", "Table 2", "Tables 3 and 4", "same size", "units vs directions", "Lipschitz", "a note"):
        assert heading in report
    assert "(100.0%)" in report  # paper's diagonal beside ours
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["command"] == "advlab reproduce szegedy" and saved["paper"]["table1"]["FC10(1)"] == [0.212, 0.2, 0.14]


def test_any_registered_attack_can_stand_in(embedded, tmp_path):
    settings = SzegedySettings(
        zoo=("fc10-1e-2",), split=(("fc10-1e-2", "P1"),), units_model="fc10-1e-2", units_layer="linear",
        n_attack=10, n_attack_test=10, attack="fgm", attack_params=(("eps", 3.0),), max_epochs=1, n_units=2, n_random=2, top_k=3,
    )
    result = szegedy(embedded, settings, work_dir=tmp_path)
    fooled = result.distortion[0]
    assert fooled.mean_distortion == pytest.approx(3.0 / math.sqrt(784), rel=0.2)  # FGM's fixed L2 budget, clipped
    assert result.units.layer == "fc10-1e-2.linear"


def test_bad_settings():
    with pytest.raises(InputError, match="units_model"):
        SzegedySettings(zoo=("fc10-1",))
    with pytest.raises(InputError, match="P1 or P2"):
        SzegedySettings(split=(("fc10-1", "P3"),))
    with pytest.raises(InputError, match="at least one image"):
        SzegedySettings(n_attack=0)
    assert display_name("fc10-1e-4") == "FC10(1e-4)" and display_name("fc100-100-10", "P2") == "FC100-100-10'"
