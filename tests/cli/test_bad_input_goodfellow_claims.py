"""Bad input to `advlab reproduce goodfellow-claims`: exit 2, one line, nothing created (the
helpers and the contract of test_bad_input_table)."""

from __future__ import annotations

import pytest

from .test_bad_input_table import test_bad_input_exits_2_with_one_line_and_changes_nothing as check_bad_input

C = "reproduce goodfellow-claims --data-dir {data} --no-progress"
ROWS = [
    (f"{C} --images 5 --out {{new}}", "--images applies to szegedy only, not goodfellow-claims"),
    (f"{C} --jobs 2 --out {{new}}", "--jobs applies to adversarial-generalization only, not goodfellow-claims"),
    (f"{C} --epochs 2 --out {{new}}", "--epochs applies to adversarial-generalization, goodfellow-advtrain only, not goodfellow-claims"),
    (f"{C} --eps -1 --out {{new}}", "argument --eps"),
    (f"{C} --eps 2 --out {{new}}", "eps"),
    (f"{C} --out {{file}}", "exists and is not a directory"),
    ("reproduce goodfellow-claims --data-dir {data_labels_negative} --no-progress --out {new}", "label -3 outside"),
]


@pytest.mark.parametrize("argv, message", ROWS)
def test_bad_goodfellow_claims_input(workspace, capsys, monkeypatch, argv, message):
    check_bad_input(workspace, capsys, monkeypatch, argv, message)
