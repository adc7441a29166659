"""Bad input to `advlab reproduce goodfellow-claims`: exit 2, one line, nothing created (the
helpers and the contract of test_bad_input_table)."""

from __future__ import annotations

import shlex

import pytest

from advlab.cli import main

from .conftest import snapshot

C = "reproduce goodfellow-claims --data-dir {data} --no-progress"
ROWS = [
    (f"{C} --images 5 --out {{new}}", "--images applies to szegedy only, not goodfellow-claims"),
    (f"{C} --jobs 2 --out {{new}}", "--jobs applies to adversarial-generalization only, not goodfellow-claims"),
    (f"{C} --epochs 2 --out {{new}}", "--epochs applies to adversarial-generalization only, not goodfellow-claims"),
    (f"{C} --eps -1 --out {{new}}", "argument --eps"),
    (f"{C} --eps 2 --out {{new}}", "eps"),
    (f"{C} --out {{file}}", "exists and is not a directory"),
    ("reproduce goodfellow-claims --data-dir {data_labels_negative} --no-progress --out {new}", "label -3 outside"),
]


@pytest.mark.parametrize("argv, message", ROWS)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(workspace, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workspace.root)
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    words = [w.format(**workspace.placeholders()) for w in shlex.split(argv)]
    before = snapshot(workspace.root), snapshot(workspace.data)
    code = main(words)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err + out
    assert (snapshot(workspace.root), snapshot(workspace.data)) == before
