"""`reproduce`: every registered experiment has its report writer; runs write their reports."""

import ast
from pathlib import Path

import pytest

from advlab.errors import InputError
from advlab.experiments.registry import EXPERIMENTS, GENERALIZATION, QUICK_ADVTRAIN, Request, check_request, get_experiment
from advlab.report.reproduce import WRITERS, generalization_sections, reproduce

SRC = Path(__file__).resolve().parents[2] / "src" / "advlab"


def test_every_experiment_has_a_writer_and_nothing_else_does():
    assert set(WRITERS) == set(EXPERIMENTS)


@pytest.mark.parametrize("path", [SRC / "experiments" / "registry.py", SRC / "report" / "reproduce.py"])
def test_experiments_and_writers_are_found_by_plain_imports(path):
    tree = ast.parse(path.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "importlib" not in imported and "import_module" not in path.read_text()
    nested = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not nested  # at the top of the module, where a reader (and the layering test) sees them


def test_goodfellow_advtrain_quick_trains_one_epoch_on_a_subset(tmp_path):
    paths, lines = reproduce("goodfellow-advtrain", Request(data_dir=None, out=tmp_path, quick=True, progress=False), command="c")
    assert {p.name for p in paths} == {"results.json", "report.md", "curves.png"}
    assert any("FGSM error ratio" in line for line in lines)
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints-quick" / "seed-0").iterdir())
    assert checkpoints == sorted(f"{m}-{t}.safetensors" for m in ("cnn", "maxout", "maxout-1600") for t in ("adversarial", "standard"))
    assert "quick" in (tmp_path / "report.md").read_text() and QUICK_ADVTRAIN["epochs"]["maxout"] == (1, 1)


def test_a_report_gains_the_generalization_section_from_the_sibling_study(tmp_path):
    assert generalization_sections(tmp_path / "szegedy") == []
    reproduce(GENERALIZATION, Request(data_dir=None, out=tmp_path / GENERALIZATION, quick=True, progress=False), command="c")
    section = generalization_sections(tmp_path / "szegedy")
    assert section[0].startswith("## Does adversarial training improve clean test error?")
    assert any("fc100-100-10 (Szegedy et al. 2013, Sec. 4.2)" in line and "**" in line for line in section)
    with pytest.raises(InputError, match="--images applies to szegedy only"):
        check_request(get_experiment(GENERALIZATION), Request(data_dir=None, out=tmp_path, images=3))


