"""`advlab evaluate --suite` with no name runs the default suite (`fast`, chosen by measurement:
docs/guide/suites.md); `--suite standard` still runs AutoAttack's chain."""

from __future__ import annotations

import json
import shlex

from advlab.cli import main


def _suite_json(workspace, capsys, argv: str, out) -> dict:
    words = [w.format(**workspace.placeholders()) for w in shlex.split(argv)] + ["--out", str(out)]
    code = main(words)
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads((out / "suite.json").read_text())


def test_suite_without_a_name_is_the_fast_suite(workspace, capsys, tmp_path):
    base = "evaluate {mlp} --data-dir {data} --limit 6 --eps 0.05 --no-progress"
    default = _suite_json(workspace, capsys, base + " --suite", tmp_path / "default")
    named = _suite_json(workspace, capsys, base + " --suite fast", tmp_path / "fast")
    assert default["attacks"] == named["attacks"] == ["apgd-a"]
    assert default["robust_accuracy"] == named["robust_accuracy"]
