"""Crafted files whose payload, if anything ever unpickles, imports or runs it, creates a marker
file: the tests load each one and assert the marker never exists."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch


class Payload:
    """Unpickling this calls open(marker, "w"): the marker file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def pickled(marker: Path) -> bytes:
    """A plain pickle that creates `marker` when loaded."""
    return pickle.dumps(Payload(marker), protocol=2)


def torch_saved(marker: Path) -> bytes:
    """A torch.save file that creates `marker` when loaded with weights_only=False."""
    buffer = io.BytesIO()
    torch.save({"weight": Payload(marker)}, buffer)
    return buffer.getvalue()


def export_tiny(path: Path, *, batch: int | None = None, side: int = 2) -> Path:
    """A side x side grey image -> 3 logits program with a weight and a constant; dynamic batch
    unless `batch` is given (then the program takes only that batch size)."""

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(side * side, 3)
            self.shift = torch.tensor([0.5, -0.5, 0.0])  # a tensor constant

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1)) + self.shift

    x = torch.rand(batch or 3, 1, side, side)
    dynamic = None if batch else ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(Tiny().eval(), (x,), dynamic_shapes=dynamic), path)
    return path


def rewrite(source: Path, target: Path, *, change: dict[str, Callable[[bytes], bytes]] | None = None,
            add: dict[str, bytes] | None = None, compress: bool = False) -> Path:
    """A copy of the archive `source` with members (named by their suffix) changed or added
    (named below the archive's folder)."""
    change, add = change or {}, add or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        prefix = src.namelist()[0].split("/")[0] + "/"
        for info in src.infolist():
            data = src.read(info)
            edit = next((f for suffix, f in change.items() if info.filename.endswith(suffix)), None)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else info.compress_type
            dst.writestr(info, edit(data) if edit else data)
        for name, data in add.items():
            dst.writestr(prefix + name, data)
    return target


def _json_edit(edit: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        document = json.loads(data)
        edit(document)
        return json.dumps(document).encode()
    return change


def _pickle_first(document: dict) -> None:
    next(iter(document["config"].values()))["use_pickle"] = True


def _call_os_system(document: dict) -> None:
    node = document["graph_module"]["graph"]["nodes"][0]
    node["target"] = "torch.os.system"


def _importing_spec(document: dict) -> None:
    signature = document["graph_module"]["module_call_graph"][0]["signature"]
    context = json.dumps({"default_factory_module": "antigravity", "default_factory_name": "x", "dict_context": []})
    spec = json.loads(signature["out_spec"])
    spec[1] = {"type": "collections.defaultdict", "context": context, "children_spec": []}
    signature["out_spec"] = json.dumps(spec)


def crafted_archives(good: Path, folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a .pt2 crafted from `good`, the words its refusal must contain)."""
    payload, saved = pickled(marker), torch_saved(marker)
    guard = _json_edit(lambda d: d.update(guards_code=[f"__import__('builtins').open({str(marker)!r}, 'w') is None"]))
    cases: dict[str, tuple[dict, str]] = {
        "legacy_weights": ({"add": {"data/weights/model.pt": saved}}, "data/weights/model.pt"),
        "legacy_constants": ({"add": {"data/constants/model.pt": saved}}, "data/constants/model.pt"),
        "extra_member": ({"add": {"extra/module_info.json": b"{}"}}, "extra/module_info.json"),
        "custom_object": ({"add": {"data/constants/custom_obj_0": payload}}, "custom_obj_0"),
        "pickled_weight": ({"change": {"model_weights_config.json": _json_edit(_pickle_first)}}, "as a pickle"),
        "pickled_constant": ({"change": {"model_constants_config.json": _json_edit(_pickle_first)}}, "as a pickle"),
        "config_names_custom_object": ({"change": {"model_constants_config.json": _json_edit(
            lambda d: next(iter(d["config"].values())).update(path_name="custom_obj_0"))},
            "add": {"data/constants/custom_obj_0": payload}}, "as a pickle"),
        "calls_os_system": ({"change": {"models/model.json": _json_edit(_call_os_system)}}, "'torch.os.system'"),
        "guard_code": ({"change": {"models/model.json": guard}}, "guard code"),
        "imports_a_module": ({"change": {"models/model.json": _json_edit(_importing_spec)}}, "module to import"),
        "compressed": ({"compress": True}, "is compressed"),
    }
    return {name: (rewrite(good, folder / f"{name}.pt2", **edit), words) for name, (edit, words) in cases.items()}
