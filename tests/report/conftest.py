"""The explorer page, written once per session by the CLI, and the Fig. 2 number it must match."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from advlab.cli import main


def page_payload(html: str) -> dict[str, Any]:
    """The JSON the page embeds."""
    match = re.search(r'<script id="explore-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no embedded data"
    return json.loads(match.group(1))


@pytest.fixture(scope="session")
def explore_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`advlab explore --out DIR` on the embedded data: the page's path."""
    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "--out", str(out), "--no-progress"]) == 0
    return out / "explore.html"


@pytest.fixture(scope="session")
def fig2_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `advlab reproduce goodfellow-fig2` reports on the embedded data (its results.json)."""
    out = tmp_path_factory.mktemp("fig2")
    assert main(["reproduce", "goodfellow-fig2", "--out", str(out), "--no-progress"]) == 0
    (experiment,) = json.loads((out / "results.json").read_text())["experiments"]
    return experiment


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print where the browser test left its screenshot."""
    browser_tests = sys.modules.get("tests.report.test_explore_browser")  # there only if it ran
    for path in getattr(browser_tests, "SCREENSHOTS", []):
        terminalreporter.write_line(f"explorer screenshot: {path}")
