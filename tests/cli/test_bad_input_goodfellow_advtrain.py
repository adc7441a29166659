"""Bad input to `reproduce goodfellow-advtrain --models` and `--seeds`, through the CLI's bad-input contract
(exit 2, one line `advlab: error: ...`, nothing created or changed): the rows of the shared table's test."""

import pytest

from .test_bad_input_table import R
from .test_bad_input_table import test_bad_input_exits_2_with_one_line_and_changes_nothing as check_bad_input

G = "reproduce goodfellow-advtrain --data-dir {data} --no-progress --out {new}"

ROWS = [
    (f"{G} --models maxout,nope", "models must be distinct names among maxout, maxout-1600, cnn, got maxout, nope"),
    (f"{G} --models maxout,maxout", "models must be distinct names"),
    (f"{G} --models maxout,,cnn", "argument --models: expected comma-separated names"),
    (f"{R} --models maxout --out {{new}}", "--models applies to goodfellow-advtrain only"),
    (f"{G} --seeds 0", "argument --seeds"),
    (f"{G} --seed {2**63 - 1} --seeds 2", "--seeds must be >= 1 with --seed + --seeds <= 2**63"),
    (f"{R} --seeds 2 --out {{new}}", "--seeds applies to goodfellow-advtrain only"),
]


@pytest.mark.parametrize(("argv", "message"), ROWS)
def test_bad_models(workspace, capsys, monkeypatch, argv, message):
    check_bad_input(workspace, capsys, monkeypatch, argv, message)
