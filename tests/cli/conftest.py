"""A workspace for the CLI tests, built once per session: a tiny MNIST folder, two small trained
checkpoints, and one broken data folder or checkpoint per kind of bad input."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from advlab.cli import main
from advlab.data import write_idx
from advlab.training import read_state
from advlab.training.checkpoints import STATE_PREFIX

# checkpoint edits: name -> f(document, tensors) changing them in place
CHECKPOINT_EDITS = {
    "arch-unknown-key": lambda d, t: d["architecture"].update(bogus=1),
    "arch-not-dict": lambda d, t: d.update(architecture=[20, 20]),
    "arch-bad-type": lambda d, t: d["architecture"].update(activation=5),
    "arch-float-width": lambda d, t: d["architecture"].update(hidden=[1e6, 1e6]),
    "arch-too-wide": lambda d, t: d["architecture"].update(hidden=[1 << 21, 20]),
    "huge-model": lambda d, t: d.update(model="mlp", architecture={"hidden": [1 << 20, 1 << 20]}),
    "hidden-1e6": lambda d, t: d.update(model="mlp", architecture={"hidden": [1000000, 1000000]}),
    "hidden-1000": lambda d, t: d.update(model="mlp", architecture={"hidden": [1000, 1000]}),
    "no-model": lambda d, t: d.pop("model"),
    "unknown-model": lambda d, t: d.update(model="resnet"),
    "name-disagrees": lambda d, t: d["architecture"].update(hidden=[50, 50]),
    "logreg-header": lambda d, t: d.update(model="logreg", architecture={}),
    "classes-99": lambda d, t: d.update(data={"classes": [3, 99]}),
    "classes-not-list": lambda d, t: d.update(data={"classes": "3,7"}),
    "classes-repeated": lambda d, t: d.update(data={"classes": [3, 3]}),
    "format": lambda d, t: d.update(format="other/9"),
    "progress-not-object": lambda d, t: d.update(progress=[1, 2]),
    "progress-epoch-text": lambda d, t: d["progress"].update(epoch="one"),
    "optimizer-corrupt": lambda d, t: d["optimizer"].update(scalars=5),
    "nan-weights": lambda d, t: t["out.weight"].fill_(float("nan")),
    "inf-weights": lambda d, t: t["fc1.bias"].fill_(float("inf")),
    "missing-tensor": lambda d, t: t.pop("out.bias"),
    "extra-tensor": lambda d, t: t.update(extra=torch.zeros(3)),
}


def _write_checkpoint(path: Path, document: dict, tensors: dict) -> None:
    path.write_bytes(save_safetensors(tensors, metadata={"advlab": json.dumps(document)}))


def _idx_folder(root: Path, name: str, *, images=None, labels=None, raw: dict[str, bytes] | None = None) -> Path:
    """A copy of a valid 20/10-image MNIST folder with one file replaced."""
    folder = root / name
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)
    if images is not None:
        write_idx(folder / "t10k-images-idx3-ubyte", images)
    if labels is not None:
        write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    for file, payload in (raw or {}).items():
        (folder / file).write_bytes(payload)
    return folder


@dataclass
class Workspace:
    root: Path
    data: Path  # a valid tiny MNIST folder (300 train / 50 test images)
    logreg: Path  # logreg on 3 vs 7
    mlp: Path  # mlp-20-20 on all digits
    file: Path  # an existing ordinary file
    folder: Path  # an existing folder holding one file
    bad_data: dict[str, Path]
    bad_checkpoint: dict[str, Path]

    def placeholders(self) -> dict[str, str]:
        names = {"root": self.root, "data": self.data, "logreg": self.logreg, "mlp": self.mlp, "file": self.file,
                 "folder": self.folder, "new": self.root / "new-out", "missing": self.root / "no-such-thing"}
        names.update({f"data_{k.replace('-', '_')}": v for k, v in self.bad_data.items()})
        names.update({f"ckpt_{k.replace('-', '_')}": v for k, v in self.bad_checkpoint.items()})
        return {k: str(v) for k, v in names.items()}


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, small_mnist_dir: Path) -> Workspace:
    root = tmp_path_factory.mktemp("cli-workspace")
    logreg, mlp = root / "logreg.safetensors", root / "mlp.safetensors"
    common = ["--data-dir", str(small_mnist_dir), "--epochs", "1", "--no-progress"]
    assert main(["train", "logreg", "--classes", "3,7", "--out", str(logreg), *common]) == 0
    assert main(["train", "mlp-20-20", "--out", str(mlp), *common]) == 0
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "folder").mkdir()
    (root / "folder" / "keep.txt").write_text("keep\n")

    bad = root / "bad-data"
    bad.mkdir()
    gz = gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 40)
    bad_data = {
        "rows-27": _idx_folder(bad, "rows-27", images=np.zeros((10, 27, 28), np.uint8)),
        "shape-14x56": _idx_folder(bad, "shape-14x56", images=np.zeros((10, 14, 56), np.uint8)),
        "labels-negative": _idx_folder(bad, "labels-negative", labels=np.full(10, -3, np.int8)),
        "labels-10": _idx_folder(bad, "labels-10", labels=np.full(10, 10, np.uint8)),
        "labels-float": _idx_folder(bad, "labels-float", labels=np.zeros(10, np.float32)),
        "labels-2d": _idx_folder(bad, "labels-2d", labels=np.zeros((10, 1), np.uint8)),
        "count-mismatch": _idx_folder(bad, "count-mismatch", labels=np.zeros(9, np.uint8)),
        "images-float": _idx_folder(bad, "images-float", images=np.zeros((10, 28, 28), np.float32)),
        "truncated": _idx_folder(bad, "truncated", raw={"t10k-images-idx3-ubyte": b"\x00\x00\x08\x03" + b"\x00" * 20}),
        "bad-magic": _idx_folder(bad, "bad-magic", raw={"t10k-labels-idx1-ubyte": b"\x12\x34\x56\x78" + b"\x00" * 10}),
        "bad-gzip": _idx_folder(bad, "bad-gzip", raw={"t10k-labels-idx1-ubyte": gz[:20]}),
        "missing-file": _idx_folder(bad, "missing-file"),
    }
    os.unlink(bad_data["missing-file"] / "train-labels-idx1-ubyte")
    images, labels = np.zeros((5, 1, 28, 28), np.float32), np.zeros(5, np.int64)
    for name, arrays in {"npz-range": {"x": images + 2, "y": labels}, "npz-negative": {"x": images, "y": labels - 1},
                         "npz-nan": {"x": images * np.nan, "y": labels}, "npz-no-labels": {"x": images}}.items():
        np.savez(bad / f"{name}.npz", **arrays)
        bad_data[name] = bad / f"{name}.npz"
    (bad / "npz-junk.npz").write_bytes(b"junk")
    bad_data["npz-junk"] = bad / "npz-junk.npz"

    broken = root / "bad-checkpoints"
    broken.mkdir()
    weights, state, document = read_state(mlp)
    bad_checkpoint = {}
    for name, edit in CHECKPOINT_EDITS.items():
        doc, tensors = json.loads(json.dumps(document)), {k: v.clone() for k, v in weights.items()}
        edit(doc, tensors)
        _write_checkpoint(broken / f"{name}.safetensors", doc, {**tensors, **{STATE_PREFIX + k: v for k, v in state.items()}})
        bad_checkpoint[name] = broken / f"{name}.safetensors"
    raw = mlp.read_bytes()
    for name, payload in {"truncated": raw[: len(raw) // 2], "junk": b"not a checkpoint at all", "empty": b"",
                          "header-too-long": (10**12).to_bytes(8, "little") + b"{}",
                          "header-not-object": (2).to_bytes(8, "little") + b"[]"}.items():
        (broken / f"{name}.safetensors").write_bytes(payload)
        bad_checkpoint[name] = broken / f"{name}.safetensors"
    no_json = broken / "metadata-not-object.safetensors"
    no_json.write_bytes(save_safetensors(dict(weights), metadata={"advlab": "[1, 2]"}))
    bad_checkpoint["metadata-not-object"] = no_json
    return Workspace(root, small_mnist_dir, logreg, mlp, root / "notes.txt", root / "folder", bad_data, bad_checkpoint)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: (kind, size, mtime, mode)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            state[str(path.relative_to(root))] = (path.is_dir(), info.st_size if not path.is_dir() else 0, info.st_mtime_ns, info.st_mode)
    return state
