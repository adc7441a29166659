"""Bad input to `evaluate --suite`: suite definitions (typed and capped like -p, one checker),
suite state files (format, pickles, sizes, fingerprint, location, read-only) and -p caps. Each
row: exit 2, one line `advlab: error: ...` naming the problem, nothing created or changed (the
workspace and the files of this module are compared before and after)."""

from __future__ import annotations

import json
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest

from advlab.cli import main

from .conftest import snapshot
from .test_bad_input_table import A, E

S = f"{E} --eps 0.1"  # a valid suite evaluation, minus the suite
SUITES = {
    "unknown-param": [{"attack": "pgd", "params": {"nope": 1}}],
    "deepfool": [{"attack": "deepfool"}],
    "minpgd": [{"attack": "apgd", "params": {"steps": 2}}, {"attack": "minpgd"}],
    "steps-huge": [{"attack": "pgd", "params": {"steps": 10**12}}],
    "steps-float": [{"attack": "pgd", "params": {"steps": 2.5}}],
    "steps-bool": [{"attack": "pgd", "params": {"steps": True}}],
    "restarts-negative": [{"attack": "pgd", "params": {"restarts": -1}}],
    "loss-number": [{"attack": "pgd", "params": {"loss": 5}}],
    "eps-in-params": [{"attack": "pgd", "params": {"eps": 0.3}}],
    "progress-in-params": [{"attack": "pgd", "params": {"progress": False}}],
    "fgsm": [{"attack": "fgsm"}],
    "labels-twice": [{"attack": "pgd"}, {"attack": "pgd"}],
    "label-empty": [{"attack": "pgd", "label": ""}],
    "not-a-list": 5,
    "empty": [],
}


def _layout(n: int = 5, *, fingerprint: str = "{}", **changes: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a suite state file for n points (another evaluation's fingerprint)."""
    arrays = {"fingerprint": np.array(fingerprint), "broken": np.full(n, -1, np.int64),
              "x_adv": np.zeros((n, 1, 28, 28), np.float32), "certified": np.zeros(n, bool),
              "todo": np.zeros(0, np.int64), "position": np.zeros(3, np.int64), "seconds": np.zeros(3)}
    return {**arrays, **changes}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("suite-inputs")
    for name, suite in SUITES.items():
        (root / f"{name}.json").write_text(json.dumps(suite))
    (root / "nan.json").write_text('[{"attack": "pgd", "params": {"step_size": NaN}}]')
    (root / "broken.json").write_text('[{"attack": ')
    states = {
        "foreign": {"x": np.zeros((5, 1, 28, 28), np.float32), "x_adv": np.zeros((5, 1, 28, 28), np.float32), "labels": np.zeros(5)},
        "object-array": _layout(broken=np.array([None, 1, "a", -1, -1], dtype=object)),
        "wrong-length": _layout(certified=np.zeros(20, bool)),
        "wrong-dtype": _layout(broken=np.full(5, -1.0)),
        "two-fingerprints": _layout(fingerprint="", seconds=np.zeros((2, 2))),
        "other-run": _layout(),
    }
    for name, arrays in states.items():
        np.savez(root / f"{name}.eps0.1.npz", **arrays)
    valid = (root / "other-run.eps0.1.npz").read_bytes()
    (root / "truncated.eps0.1.npz").write_bytes(valid[: len(valid) // 2])
    compressed = root / "compressed.npz"
    np.savez_compressed(compressed, **_layout())
    data = bytearray(compressed.read_bytes())
    data[40:60] = b"\xff" * 20  # inside the first member's deflate stream
    (root / "corrupted.eps0.1.npz").write_bytes(bytes(data))
    compressed.unlink()
    (root / "pickled.eps0.1.npz").write_bytes(pickle.dumps({"broken": [1, 2, 3]}))
    (root / "folder.eps0.1.npz").mkdir()
    return root


ROWS: list[tuple[str, str]] = [
    # ---- suite definitions -----------------------------------------------------------------
    (f"{S} --suite ''", "--suite '': give a suite name"),
    (f"{S} --suite nonsense", "unknown suite 'nonsense'"),
    (f"{S} --suite {{files}}/unknown-param.json", "attack 'pgd' has no parameter 'nope'"),
    (f"{S} --suite {{files}}/deepfool.json", "suite attack 'deepfool': deepfool finds minimal perturbations"),
    (f"{S} --suite {{files}}/minpgd.json", "suite attack 'minpgd': minpgd finds minimal perturbations"),
    (f"{S} --suite {{files}}/steps-huge.json", "steps=1000000000000: expected an integer in 1..100,000"),
    (f"{S} --suite {{files}}/steps-float.json", "steps=2.5: expected an integer"),
    (f"{S} --suite {{files}}/steps-bool.json", "steps=True: expected an integer"),
    (f"{S} --suite {{files}}/restarts-negative.json", "restarts=-1: expected an integer in 0..1,000"),
    (f"{S} --suite {{files}}/loss-number.json", "loss=5: expected a short string"),
    (f"{S} --suite {{files}}/nan.json", "step_size=nan: expected a finite number"),
    (f"{S} --suite {{files}}/eps-in-params.json", "eps is set by the evaluation"),
    (f"{S} --suite {{files}}/progress-in-params.json", "progress is set by the evaluation"),
    (f"{S} --suite {{files}}/fgsm.json --norm l2", "fgsm supports --norm linf, not l2"),
    (f"{S} --suite {{files}}/labels-twice.json", "suite labels must be distinct"),
    (f"{S} --suite {{files}}/label-empty.json", "label must be a short non-empty string"),
    (f"{S} --suite {{files}}/not-a-list.json", "a suite is a name or a list of attacks"),
    (f"{S} --suite {{files}}/empty.json", "a suite needs at least one attack"),
    (f"{S} --suite {{files}}/broken.json", "cannot read a JSON suite"),
    (f"{S} --suite {{files}}/missing.json", "cannot read a JSON suite"),
    # ---- -p, the same checker ----------------------------------------------------------------
    (f"{E} --eps 0,0.1 -p pgd.steps=1000000000000", "--param steps=1000000000000: expected an integer in 1..100,000"),
    (f"{A} --method pgd --eps .1 -p steps=1000000000000", "--param steps=1000000000000: expected an integer in 1..100,000"),
    (f"{A} --method square --eps .1 -p queries=10000000", "expected an integer in 1..1,000,000"),
    (f"{A} --method pgd --eps .1 -p step_size=-1", "expected a number >= 0"),
    (f"{A} --method apgd-t --eps .1 -p restarts=100000", "expected an integer in 0..1,000"),
    (f"{A} --method fgsm --eps .1 -p norm=l2", "has no parameter 'norm'"),
    (f"{A} --method bim --eps .1 -p restarts=2", "has no parameter 'restarts'"),
    # ---- state files -------------------------------------------------------------------------
    (f"{S} --suite quick --state {{files}}/truncated", "truncated.eps0.1.npz: not a readable suite state file"),
    (f"{S} --suite quick --state {{files}}/corrupted", "corrupted.eps0.1.npz: not a readable suite state file"),
    (f"{S} --suite quick --state {{files}}/pickled", "pickled.eps0.1.npz: not a readable suite state file"),
    (f"{S} --suite quick --state {{files}}/foreign", "foreign.eps0.1.npz: not a suite state file: it holds labels, x, x_adv"),
    (f"{S} --suite quick --state {{files}}/object-array", "holds Python objects (a pickle)"),
    (f"{S} --suite quick --state {{files}}/wrong-length", "array certified is bool (20,), expected bool (5,)"),
    (f"{S} --suite quick --state {{files}}/wrong-dtype", "array broken is float64 (5,), expected int64"),
    (f"{S} --suite quick --state {{files}}/two-fingerprints", "array seconds is float64 (2, 2)"),
    (f"{S} --suite quick --state {{files}}/other-run", "other-run.eps0.1.npz: the state file belongs to another evaluation"),
    (f"{S} --suite quick --state {{files}}/folder", "folder.eps0.1.npz: is a directory"),
    (f"{S} --suite quick --state {{file}}/sub/st", "notes.txt is a file, not a directory"),
    (f"{S} --suite quick --state ''", "--state '': give a path"),
    (f"{E} --eps 0,0.1 --state {{files}}/st", "work with --suite only"),
    (f"{E} --eps 0,0.1 --carlini-checks", "--carlini-checks work with --suite only"),
]


def _run(workspace, files: Path, capsys, argv: str) -> tuple[int, str, str]:
    words = [w.format(**workspace.placeholders(), files=files) for w in shlex.split(argv)]
    code = main(words)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", ROWS, ids=[f"{argv[:90]}" for argv, _ in ROWS])
def test_bad_suite_input_exits_2_with_one_line_and_changes_nothing(workspace, files, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workspace.root)
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    before = snapshot(workspace.root), snapshot(files)
    code, out, err = _run(workspace, files, capsys, argv)
    assert code == 2, (out, err)
    assert err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err + out
    assert (snapshot(workspace.root), snapshot(files)) == before


@pytest.mark.parametrize("locked, message", [("folder", "is not writable"), ("file", "the state file is read-only")])
def test_unwritable_state_is_refused_before_the_work(workspace, files, capsys, monkeypatch, locked, message):
    """A read-only folder, or an existing read-only state file (never silently replaced); simulated:
    the tests may run as root, who can write anyway."""
    folder = files / "locked"
    folder.mkdir(exist_ok=True)
    target = folder if locked == "folder" else files / "other-run.eps0.1.npz"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == target and mode & os.W_OK else real_access(p, mode))
    stem = folder / "st" if locked == "folder" else files / "other-run"
    before = snapshot(workspace.root), snapshot(files)
    code, out, err = _run(workspace, files, capsys, f"{S} --suite quick --state {stem}")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert (snapshot(workspace.root), snapshot(files)) == before
