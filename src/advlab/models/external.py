"""Models the user brings: their own code with safetensors weights, or a `torch.export` program.

- `load_factory_model("package.module:factory", weights)` IMPORTS the user's module and calls
  `factory()`: this runs the user's code (as `python -c "import package.module"` would). The
  weights come from a safetensors file, which holds only tensors and JSON.
- `load_exported_model("model.pt2")` reads a program saved by `torch.export.save`: a graph of
  ATen operators (JSON) and raw tensor bytes. It runs no Python code from the file: advlab
  refuses archives whose weights or constants are pickled (tensor subclasses, custom objects)
  and symbolic-shape expressions that are anything but sympy constructors, and never reads the
  pickled sample inputs (torch's own `torch.export.load` would unpickle them, falling back to
  unrestricted `torch.load`, and unpickles pickled weights, so it is not called).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from advlab.errors import CheckpointError, InputError

FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
STATE_PREFIX = "@state/"  # advlab checkpoints keep training state under it: not model weights


def is_factory_spec(spec: str) -> bool:
    return bool(FACTORY.match(spec))


def load_factory_model(spec: str, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """Import `package.module`, call `factory()`, load `weights` (safetensors, strict) into it.

    The module is looked up on sys.path and in the current folder. This executes its code.
    """
    if not is_factory_spec(spec):
        raise InputError(f"--model takes package.module:factory or a .pt2 file, got {spec!r}")
    module_name, factory_name = spec.split(":")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--model {spec}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH or in the current folder?") from None
    except Exception as exc:  # the user's module failed while importing: report it in one line
        raise InputError(f"--model {spec}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise InputError(f"--model {spec}: module {module_name!r} has no callable {factory_name!r}")
    try:
        model = factory()
    except Exception as exc:
        raise InputError(f"--model {spec}: {factory_name}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {spec}: {factory_name}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a safetensors file into `model` (strict; an advlab checkpoint's training state is skipped)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        tensors = load_safetensors(path.read_bytes())
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise CheckpointError(
            f"{path}: not a safetensors file ({exc}); pickled .pt files are never loaded: save with "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        ) from None
    tensors = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])
        raise CheckpointError(f"{path}: weights do not fit the model: {first}") from None


class ExportedModel(nn.Module):
    """A `torch.export` program as a module. Its train/eval behaviour was fixed when it was
    exported (export it in eval mode), so `train()`/`eval()` only set this wrapper's flag."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        self.program = program.module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> ExportedModel:
        self.training = mode
        return self


# A symbolic-shape expression is parsed by sympy.sympify (an eval); admit only sympy constructor
# calls: capitalised names, lower-case keyword names, numbers, quoted symbol names, operators.
_TOKEN = re.compile(r"\s*(?:([A-Z]\w*)|([a-z]\w*)\s*(?==)|(\d+(?:\.\d+)?(?:e-?\d+)?)|('[a-z]\w*')|([-+*/%(),=<>!]))")


def _safe_expression(text: str) -> bool:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position or "__" in match.group(0):
            return False
        position = match.end()
    return True


def _expressions(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr_str"]] if isinstance(node.get("expr_str"), str) else []
        return found + [e for v in node.values() for e in _expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in _expressions(v)]
    return []


def _check_archive(path: Path) -> str:
    """Refuse anything torch would unpickle or evaluate; return the archive's folder prefix."""
    # imported here: torch.export's archive package pulls in torch._dynamo (~3 s per process)
    from torch.export.pt2_archive.constants import TENSOR_CONSTANT_FILENAME_PREFIX, WEIGHT_FILENAME_PREFIX

    tensor_files = (WEIGHT_FILENAME_PREFIX, TENSOR_CONSTANT_FILENAME_PREFIX)  # raw tensor bytes, not pickles
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = next((n[: -len("archive_format")] for n in names if n.endswith("archive_format")), None)
            if prefix is None or archive.read(prefix + "archive_format") != b"pt2":
                raise CheckpointError(f"{path}: not a torch.export program saved by torch.export.save (.pt2 archive)")
            models = [n for n in names if n.startswith(prefix + "models/") and n.endswith(".json")]
            if [m[len(prefix) :] for m in models] != ["models/model.json"]:
                raise CheckpointError(f"{path}: expected exactly one exported program named 'model', found {len(models)}")
            for kind in ("weights", "constants"):
                name = f"{prefix}data/{kind}/model_{kind}_config.json"
                if name not in names:
                    raise CheckpointError(f"{path}: missing {name[len(prefix):]} (an older or legacy .pt2 format)")
                for key, meta in json.loads(archive.read(name))["config"].items():
                    if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(tensor_files):
                        raise CheckpointError(f"{path}: {kind[:-1]} {key!r} is stored as a pickle or custom object; advlab never unpickles")
            program = json.loads(archive.read(prefix + "models/model.json"))
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable .pt2 archive ({type(exc).__name__}: {exc})") from None
    unsafe = [e for e in _expressions(program) if not _safe_expression(e)]
    if unsafe:
        raise CheckpointError(f"{path}: refusing a symbolic-shape expression that is not a plain sympy constructor: {unsafe[0][:80]!r}")
    return prefix


def load_exported_model(path: str | os.PathLike[str]) -> ExportedModel:
    """The `torch.export` program in `path`, read without unpickling anything (see the module docstring)."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive._package import PT2ArchiveReader, _load_constants, _load_state_dict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported program")
    _check_archive(path)
    try:
        with PT2ArchiveReader(str(path)) as reader:
            serialized = _bytes_to_dataclass(schema.ExportedProgram, reader.read_bytes("models/model.json"))
            state_dict = _load_state_dict(reader, "model")
            constants = _load_constants(reader, "model")
        program = ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except Exception as exc:  # torch's deserialiser raises many types on a damaged file
        raise CheckpointError(f"{path}: cannot read the exported program ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return ExportedModel(program).eval()


def load_external_model(spec: str, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """`package.module:factory` (with optional safetensors weights), a `.pt2` program file, or
    an `.onnx` network (converted by `advlab.formats.onnx`; no code runs from the file)."""
    if spec.endswith(".onnx"):
        from advlab.formats.onnx import load_onnx

        if weights is not None:
            raise InputError("--weights is for --model package.module:factory; an .onnx file holds its own weights")
        return load_onnx(spec)
    if spec.endswith(".pt2") or Path(spec).is_file():
        if weights is not None:
            raise InputError("--weights is for --model package.module:factory; a .pt2 program holds its own weights")
        return load_exported_model(spec)
    return load_factory_model(spec, weights)


def check_accepts(model: nn.Module, sample: torch.Tensor, data_name: str) -> None:
    """One forward pass on one example: a model that cannot take the data fails here in one line."""
    from advlab.models.layers import as_multiclass_logits

    mode = model.training
    try:
        with torch.no_grad():
            logits = as_multiclass_logits(model.eval()(sample))
    except Exception as exc:  # shape or dtype mismatch inside the user's model
        raise InputError(f"the model cannot take {data_name} inputs of shape {tuple(sample.shape[1:])}: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    finally:
        model.train(mode)
    if logits.ndim != 2:
        raise InputError(f"the model maps a batch of {data_name} inputs to shape {tuple(logits.shape)}; expected (N, classes) logits")
    if not bool(torch.isfinite(logits).all()):
        raise InputError(f"the model's logits on {data_name} hold NaN or inf")
