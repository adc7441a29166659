"""The goodfellow-claims report formats its result: every claim's row, the stated rule, the setup
differences, and results.json holding the command and the rows (no machine path)."""

from __future__ import annotations

import json

import pytest

from advlab.data import Splits
from advlab.experiments.goodfellow_claims import ClaimsResult, goodfellow_claims
from advlab.experiments.goodfellow_claims.paper import CLAIMS, SECTIONS
from advlab.experiments.registry import claims_notes
from advlab.report.goodfellow_claims import summary, write_report
from tests.experiments.test_goodfellow_claims import TINY


@pytest.fixture(scope="module")
def written(embedded, tmp_path_factory):
    splits = Splits(embedded.train.take(300), embedded.test.take(200), "embedded (tiny)")
    result = goodfellow_claims(splits, TINY, work_dir=tmp_path_factory.mktemp("work"))
    out = tmp_path_factory.mktemp("report")
    paths = write_report(result, out, command="advlab reproduce goodfellow-claims --out x", notes=claims_notes(result))
    return result, out, paths


def test_the_report_has_every_claim_and_section(written):
    result, out, paths = written
    assert {p.name for p in paths} == {"report.md", "results.json"}
    report = (out / "report.md").read_text()
    assert "Produced by: `advlab reproduce goodfellow-claims --out x`" in report
    for heading in SECTIONS.values():
        assert f"## {heading}" in report
    for row in result.rows:
        assert f"| {row['claim']} |" in report
    assert "members: 2 (paper: 12)" in report and "The ensemble has 2 members, maxout networks of seeds 0..1 (the paper: 12;" in report


def test_results_json_holds_the_command_and_rebuilds_the_result(written):
    result, out, _ = written
    document = json.loads((out / "results.json").read_text())
    assert document["command"] == "advlab reproduce goodfellow-claims --out x" and "cache_dir" not in document
    assert [r["key"] for r in document["rows"]] == [c.key for c in CLAIMS]
    rebuilt = ClaimsResult.from_dict(document)
    assert rebuilt.rows == result.rows and rebuilt.measurements == result.measurements


def test_summary_counts_the_compared_figures(written):
    result, _, _ = written
    lines = summary(result)
    compared = [r for r in result.rows if r["data"] == "MNIST" and r["advlab"] is not None]
    assert lines[-1].endswith(f"of {len(compared)} MNIST figures agree with the paper's (within 1.5x, complements too)") and len(lines) == len(compared) + 1
