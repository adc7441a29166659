"""The bad-input contract for the FILES a user points advlab at (issue 23): every loader gets
crafted files whose payload, were it ever unpickled, imported or run, would create a marker file.
Each row runs the command in-process and asserts: exit 2, one line `advlab: error: ...` naming the
problem, no traceback, nothing created or changed in the workspace, and no marker. `--model
package.module:factory` runs the user's code by design and has no payload row."""

from __future__ import annotations

import io
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advlab.cli import main
from tests.payloads import crafted_archives, export_tiny, pickled, torch_saved

from .conftest import snapshot

MODEL_SOURCE = '''"""Models for tests/cli/test_bad_input_files.py (`advlab_bad_files:NAME`)."""
import sys
import torch
from torch import nn

class _BatchMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)).mean(0, keepdim=True)  # one row, whatever the batch

def batch_mean():
    return _BatchMean()

def softmax():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

def two_class():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
'''

KINDS = {"pickle": pickled, "torch_save": torch_saved}
A = "attack {model} --data-dir {data} --limit 20 --method fgsm --eps .1 --out {new}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, workspace) -> dict[str, str]:
    """Crafted files outside the workspace (which the rows must leave untouched) and the marker."""
    root = tmp_path_factory.mktemp("bad-files")
    marker = root / "payload-ran"
    names: dict[str, Path] = {"marker": marker}
    for name, (path, _) in crafted_archives(export_tiny(root / "good.pt2"), root, marker).items():
        names[f"pt2_{name}"] = path
    for kind, make in KINDS.items():  # a pickle disguised under every extension a loader reads
        for ext in ("pt2", "safetensors", "npz", "json", "pt"):
            names[f"{kind}_{ext}"] = root / f"{kind}.{ext}"
            names[f"{kind}_{ext}"].write_bytes(make(marker))
        folder = root / f"{kind}-images"
        for label in ("a", "b"):
            (folder / label).mkdir(parents=True)
            (folder / label / "0.png").write_bytes(make(marker))
        names[f"{kind}_folder"] = folder
        idx = root / f"{kind}-idx"
        idx.mkdir()
        for split in ("train", "t10k"):
            for part in ("images-idx3", "labels-idx1"):
                (idx / f"{split}-{part}-ubyte").write_bytes(make(marker))
        names[f"{kind}_idx"] = idx
        (root / f"{kind}-state.eps0.1.npz").write_bytes(make(marker))
        names[f"{kind}_state"] = root / f"{kind}-state"
    np.savez(root / "object-array.npz", x=np.array([pickled(marker)], dtype=object), y=np.zeros(1, np.int64))
    names["npz_object"] = root / "object-array.npz"
    np.savez(root / "object-state.eps0.1.npz", fingerprint=np.array([pickled(marker)], dtype=object))
    names["object_state"] = root / "object-state"
    (root / "suite.json").write_text('[{"attack": "__import__(\'os\').system(\'touch payload-ran\')", "params": {}}]')
    names["suite_code"] = root / "suite.json"
    export_tiny(root / "static1.pt2", batch=1, side=28)
    names["pt2_static_batch"] = root / "static1.pt2"
    _declaring_npz(root / "huge.npz", (10**10, 28, 28))
    names["npz_huge"] = root / "huge.npz"
    np.savez(root / "label-10.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.array([1, 2, 10, 3]))
    names["npz_label_10"] = root / "label-10.npz"
    three = root / "three-classes"
    for label in ("a", "b", "c"):  # for a two-class model: label 2 is outside its classes
        (three / label).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(three / label / "0.png")
    names["folder_three"] = three
    (root / "advlab_bad_files.py").write_text(MODEL_SOURCE)
    (root / "advlab_exits.py").write_text("import sys\nsys.exit(3)\n")
    names["files_root"] = root
    return {k: str(v) for k, v in names.items()}


def _declaring_npz(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz of ~1.4 KB whose x header declares `shape` (uint8) and whose y declares shape[0] labels."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, declared, dtype in (("x", shape, "|u1"), ("y", shape[:1], "<i8")):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": declared})
            archive.writestr(f"{key}.npy", header.getvalue() + bytes(1024))


CRAFTED_PT2 = {
    "legacy_weights": "data/weights/model.pt", "legacy_constants": "data/constants/model.pt",
    "extra_member": "extra/module_info.json", "custom_object": "custom_obj_0", "pickled_weight": "as a pickle",
    "pickled_constant": "as a pickle", "config_names_custom_object": "as a pickle", "calls_os_system": "torch.os.system",
    "guard_code": "guard code", "imports_a_module": "module to import", "compressed": "is compressed",
}

ROWS: list[tuple[str, str]] = [
    # ---- --model FILE.pt2: every crafted archive, through attack -------------------------------
    *[(A.replace("{model}", f"--model {{pt2_{name}}}"), words) for name, words in CRAFTED_PT2.items()],
    # ---- a pickle (plain, and in torch.save's zip) disguised under each loader's extension -------
    *[row for kind in ("pickle", "torch_save") for row in [
        (A.replace("{model}", f"--model {{{kind}_pt2}}"), "not a readable .pt2 archive" if kind == "pickle" else "not a torch.export program"),
        (A.replace("{model}", f"{{{kind}_safetensors}}"), "not a valid advlab checkpoint"),
        (A.replace("{model}", f"{{{kind}_pt}}"), "not a valid advlab checkpoint"),
        (A.replace("{model}", f"--model advlab_bad_files:softmax --weights {{{kind}_safetensors}}"), "not a safetensors file"),
        (f"attack {{mlp}} --data npz:{{{kind}_npz}} --method fgsm --eps .1 --out {{new}}", "npz"),
        (f"attack {{mlp}} --data npz:{{{kind}_npz}} --stream --method fgsm --eps .1 --out {{new}}", "npz"),
        (f"attack {{mlp}} --data folder:{{{kind}_folder}} --method fgsm --eps .1 --out {{new}}", "not a readable image"),
        (f"attack {{mlp}} --data-dir {{{kind}_idx}} --method fgsm --eps .1 --out {{new}}", "-ubyte"),
        (f"evaluate {{mlp}} --data-dir {{data}} --limit 5 --suite {{{kind}_json}} --eps .1 --no-progress --out {{new}}",
         "cannot read a JSON suite"),
    ]],
    ("attack {mlp} --data npz:{npz_object} --method fgsm --eps .1 --out {new}", "x holds Python objects"),
    ("evaluate {mlp} --data-dir {data} --limit 5 --suite {suite_code} --eps .1 --no-progress --out {new}", "unknown attack"),
    # ---- item 5: data and models refused before the work -------------------------------------
    ("attack {mlp} --data npz:{npz_huge} --method fgsm --eps .1 --out {new}", "x declares shape (10000000000, 28, 28)"),
    ("attack {mlp} --data npz:{npz_huge} --stream --method fgsm --eps .1 --out {new}", "x declares shape (10000000000, 28, 28)"),
    ("attack --model {pt2_static_batch} --data-dir {data} --limit 20 --batch-size 10 --method fgsm --eps .1 --out {new}",
     "in a batch of 10"),
    ("attack --model advlab_bad_files:batch_mean --weights none --data-dir {data} --limit 20 --method fgsm --eps .1 --out {new}",
     "its output must follow the batch"),
    ("evaluate --model advlab_bad_files:batch_mean --weights none --data-dir {data} --limit 20 --no-progress --out {new}",
     "its output must follow the batch"),
    ("attack --model advlab_exits:build --data-dir {data} --method fgsm --eps .1 --out {new}", "raised SystemExit: 3"),
    ("attack {mlp} --data npz:{npz_label_10} --method fgsm --eps .1 --out {new}", "label-10.npz: label 10 outside 0..9"),
    ("evaluate {mlp} --data npz:{npz_label_10} --no-progress --out {new}", "label-10.npz: label 10 outside 0..9"),
    ("evaluate {mlp} --data npz:{npz_label_10} --stream --no-progress --out {new}", "label-10.npz: label 10 outside 0..9"),
    ("attack --model advlab_bad_files:two_class --weights none --data folder:{folder_three} --method fgsm --eps .1 --out {new}",
     "three-classes: label 2 outside 0..1"),
    ("attack --model advlab_bad_files:two_class --weights none --data folder:{folder_three} --stream --method fgsm --eps .1 --out {new}",
     "three-classes: label 2 outside 0..1"),
    ("reproduce goodfellow-fig2 --data-dir {data} --no-progress --eps 1e9 --out {new}", "eps=1000000000.0 exceeds the width"),
]


@pytest.mark.parametrize("argv, message", ROWS, ids=[r[0][:90] for r in ROWS])
def test_bad_file_exits_2_with_one_line_runs_nothing_and_changes_nothing(workspace, files, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workspace.root)
    monkeypatch.syspath_prepend(files["files_root"])  # the --model modules written by the fixture
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    words = [w.format(**workspace.placeholders(), **files) for w in shlex.split(argv)]
    before = snapshot(workspace.root), snapshot(workspace.data)
    try:
        code = main(words)
    finally:
        for name in ("advlab_bad_files", "advlab_exits"):
            sys.modules.pop(name, None)
    out, err = capsys.readouterr()
    assert not Path(files["marker"]).exists(), "a payload ran"
    assert code == 2, (out, err)
    assert err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err + out and "Warning" not in err + out
    assert (snapshot(workspace.root), snapshot(workspace.data)) == before


def test_state_files_never_unpickle(workspace, files, capsys, monkeypatch):
    """--state files are read with allow_pickle=False: a pickle or an object array runs nothing
    (their one-line refusal is the state-file work of issue 23 item 3)."""
    monkeypatch.chdir(workspace.root)
    for state in ("pickle_state", "torch_save_state", "object_state"):
        argv = f"evaluate {workspace.mlp} --data-dir {workspace.data} --limit 5 --suite quick --eps 0.1 --no-progress " \
               f"--state {files[state]} --out {workspace.root / 'state-out'}"
        try:
            main(shlex.split(argv))
        except Exception:  # noqa: BLE001  (the refusal's form is not what this test checks)
            pass
        capsys.readouterr()
        assert not Path(files["marker"]).exists(), state
    shutil.rmtree(workspace.root / "state-out", ignore_errors=True)


def test_failed_fetch_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "a" / "O"
    code = main(["data", "fetch", "mnist", str(out), "--mirror", "http://127.0.0.1:9/"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("advlab: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "a").exists()
