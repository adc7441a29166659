"""The documentation as a test: every Python example runs, no machine path, attack pages current.

Every ```python block of README.md and docs/**/*.md runs, file by file in one namespace (a later
block may use what an earlier one defined), in a temporary working directory. A block preceded
by the line `<!-- no-test -->` is not run (the few that need real data, a GPU or minutes).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
NO_TEST = "<!-- no-test -->"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|root)/")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str


def python_blocks(path: Path) -> list[Block]:
    """The runnable ```python blocks of one Markdown file, with their first line numbers."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before.strip() == NO_TEST:
            continue
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 2, match.group(2)))
    return blocks


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


FILES_WITH_CODE = [p for p in MARKDOWN if python_blocks(p)]


def test_the_extractor_finds_blocks_and_honours_the_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n```python\na = 1\n```\n<!-- no-test -->\n```python\nraise SystemExit\n```\n```sh\nls\n```\n")
    assert [(b.line, b.code) for b in python_blocks(page)] == [(3, "a = 1\n")]


@pytest.mark.parametrize("path", FILES_WITH_CODE, ids=_name)
def test_every_python_example_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["example"])
    namespace: dict[str, object] = {"__name__": "__docs__"}
    rng_state = torch.get_rng_state()
    try:
        for block in python_blocks(path):
            try:
                exec(compile(block.code, f"{_name(path)}:{block.line}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{_name(path)}, the block at line {block.line} fails: {error!r}") from error
    finally:
        torch.set_rng_state(rng_state)


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "mkdocs.yml"]
    for path in sorted(DOCS.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".json", ".py", ".yml", ".html", ".txt"}:
            files.append(path)
    return files


def test_no_absolute_machine_path_in_the_docs() -> None:
    found = [
        f"{_name(path)}:{number}: {line.strip()}"
        for path in _text_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not found, "absolute machine paths (write them relative to the repository):\n" + "\n".join(found)


def test_the_machine_path_check_catches_paths() -> None:
    assert MACHINE_PATH.search("see /work/notes/x.txt") and MACHINE_PATH.search("`/tmp/out`")
    assert not MACHINE_PATH.search("../shared/data/mnist and docs/work/ and ~/tmp/x")


def _generator():  # docs/gen_attack_pages.py, imported from its file (docs/ is not a package)
    spec = importlib.util.spec_from_file_location("gen_attack_pages", DOCS / "gen_attack_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_attack_pages_are_current() -> None:
    stale = [_name(path) for path, text in _generator().pages().items() if not path.exists() or path.read_text() != text]
    assert not stale, f"regenerate with `PYTHONPATH=src python docs/gen_attack_pages.py`: {stale}"


def test_every_attack_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [path.name for path in _generator().pages() if f"attacks/{path.name}" not in nav]
    assert not missing, f"add to the nav of mkdocs.yml: {missing}"


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if f": {p.relative_to(DOCS)}" not in nav and f"- {p.relative_to(DOCS)}" not in nav]
    assert not missing, f"add to the nav of mkdocs.yml: {missing}"
