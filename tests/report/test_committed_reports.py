"""The reports committed under docs/ were produced by exactly the command they print, record only
relative data paths, and (where it takes seconds) their numbers are what that command gives today."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from advlab.data import load_mnist
from advlab.experiments.goodfellow import goodfellow_fig2, goodfellow_softmax
from advlab.experiments.registry import get_experiment
from advlab.report.reproduce import generalization_sections
from tests.conftest import shared_data

DOCS = Path(__file__).resolve().parents[2] / "docs"
# docs/FOLDER: the experiment whose report it holds
REPORTS = {name: name for name in ("szegedy", "goodfellow-advtrain", "adversarial-generalization", "goodfellow-fig2", "goodfellow-softmax",
                                          "goodfellow-claims")}
REPORTS["goodfellow-advtrain-1600"] = "goodfellow-advtrain"  # the 1600-unit maxout pair, on fixed epochs
MACHINE_PATH = re.compile(r"(^|[\s`'\"(])/(work|tmp|home|root|Users|mnt|var)/")


def _document(name: str) -> tuple[str, dict[str, Any]]:
    return (DOCS / name / "report.md").read_text(), json.loads((DOCS / name / "results.json").read_text())


def _printed_command(report: str) -> str:
    found = re.findall(r"^Produced by: `(.+)`$", report, flags=re.MULTILINE)
    assert len(found) == 1, "a report prints exactly one 'Produced by' line"
    return found[0]


def _option(command: str, name: str) -> str | None:
    words = shlex.split(command)
    return words[words.index(name) + 1] if name in words else None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _recorded_data_paths(name: str, results: dict[str, Any]) -> list[str]:
    """The data folders results.json says the run read (the first word of a data source is its folder)."""
    if REPORTS[name] == "adversarial-generalization":
        return [d["data_dir"] for d in results["settings"]["datasets"][:1]]  # later sets are found beside the first
    sources = [e["data_source"] for e in results["experiments"]] if "experiments" in results else [results["data_source"]]
    return [sources[0].split(" ")[0]]


@pytest.mark.parametrize("name", REPORTS)
def test_the_report_prints_the_command_its_results_record(name):
    report, results = _document(name)
    command = _printed_command(report)
    assert command == results["command"]
    assert command.startswith(f"advlab reproduce {REPORTS[name]} ")


@pytest.mark.parametrize("name", REPORTS)
def test_the_recorded_data_path_is_the_commands_and_relative(name):
    report, results = _document(name)
    data_dir = _option(results["command"], "--data-dir")
    assert data_dir is not None and not Path(data_dir).is_absolute()
    assert _recorded_data_paths(name, results) == [data_dir]
    for text in [report, *_strings(results)]:
        assert not MACHINE_PATH.search(text), f"a machine path in docs/{name}: {MACHINE_PATH.search(text).group(0)!r}"


@pytest.mark.parametrize("name", REPORTS)
def test_the_command_wrote_into_the_reports_own_folder(name):
    _, results = _document(name)
    assert _option(results["command"], "--out") == f"docs/{name}"


def test_the_fig2_image_beside_the_tutorial_is_the_reports_own():
    assert (DOCS / "goodfellow-fig2.png").read_bytes() == (DOCS / "goodfellow-fig2" / "fig2.png").read_bytes()


def _same_numbers(committed: dict[str, Any], rerun: dict[str, Any]) -> None:
    """Equal up to one test example in each rate (kernels differ across CPUs), settings exactly."""
    for key in ("model", "classes", "n_train", "n_test", "eps", "seed", "train_config", "paper"):
        assert rerun[key] == committed[key], key
    one_example = 1 / committed["n_test"]
    for key in ("clean_error", "fgsm_error"):
        assert rerun[key] == pytest.approx(committed[key], abs=one_example + 1e-12), key
    for key in ("mean_adv_confidence", "mean_confidence_on_errors"):
        assert rerun[key] == pytest.approx(committed[key], abs=2e-3), key
    for ours, theirs in zip(rerun["weight_decay_runs"], committed.get("weight_decay_runs", []), strict=True):
        assert ours["weight_decay"] == theirs["weight_decay"]
        for key in ("clean_error", "fgsm_error"):
            assert ours[key] == pytest.approx(theirs[key], abs=one_example + 1e-12), key
        assert ours["mean_adv_confidence"] == pytest.approx(theirs["mean_adv_confidence"], abs=2e-3)


FGSM_REPORTS = {"goodfellow-fig2": goodfellow_fig2, "goodfellow-softmax": goodfellow_softmax}


def _rerun(name: str, splits: Any, committed: dict[str, Any]) -> dict[str, Any]:
    sweep = {"weight_decays": tuple(r["weight_decay"] for r in committed.get("weight_decay_runs", []))} if name == "goodfellow-softmax" else {}
    return FGSM_REPORTS[name](splits, eps=committed["eps"], seed=committed["seed"], **sweep).to_dict()


@pytest.mark.parametrize("name", FGSM_REPORTS)
def test_fgsm_numbers_are_what_its_command_gives_on_the_embedded_data(name, embedded):
    _, results = _document(name)
    committed = next(e for e in results["experiments"] if e["data_source"].startswith("embedded"))
    _same_numbers(committed, _rerun(name, embedded, committed))


@pytest.mark.mnist
@pytest.mark.parametrize("name", FGSM_REPORTS)
def test_fgsm_numbers_are_what_its_command_gives_on_its_data_dir(name):
    _, results = _document(name)
    committed = results["experiments"][0]
    data_dir = shared_data(Path(_option(results["command"], "--data-dir")).name)  # skips when absent
    _same_numbers(committed, _rerun(name, load_mnist(data_dir), committed))


def test_the_goodfellow_claims_report_is_its_results_formatted(tmp_path):
    """report.md is exactly what the report writer makes of results.json (no number edited by hand
    or left stale), with the notes the registry computes from the same results."""
    from advlab.experiments.goodfellow_claims import ClaimsResult
    from advlab.experiments.registry import claims_notes
    from advlab.report.goodfellow_claims import write_report

    report, results = _document("goodfellow-claims")
    result = ClaimsResult.from_dict(results)
    write_report(result, tmp_path, command=results["command"], notes=claims_notes(result))
    assert (tmp_path / "report.md").read_text() == report
    for row in results["rows"]:
        if row["ratio"] is not None:
            assert row["ratio"] == pytest.approx(row["advlab"] / row["paper"])


@pytest.mark.parametrize("name", [n for n, e in REPORTS.items() if get_experiment(e).with_generalization])
def test_the_generalization_section_is_the_committed_studys(name, monkeypatch):
    """A report that includes the generalization study holds exactly the section its writer makes of the
    committed docs/adversarial-generalization/results.json (never a stale copy of an older study)."""
    report, _ = _document(name)
    monkeypatch.chdir(DOCS.parent)  # the reports were written with --out docs/NAME, relative to the repository
    section = "\n".join(generalization_sections(Path("docs") / name))
    assert section and section in report
