"""Models the user brings: their own code with safetensors weights, or a `torch.export` program.

- `load_factory_model("package.module:factory", weights)` IMPORTS the user's module and calls
  `factory()`: this runs the user's code (as `python -c "import package.module"` would). The
  weights come from a safetensors file, which holds only tensors and JSON.
- `load_exported_model("model.pt2")` reads a program saved by `torch.export.save`: a graph of
  ATen operators (JSON) and raw tensor bytes. It runs no Python code from the file, by
  construction: every zip member must be one the format lists (the fixed tags, the program, the
  two payload configs, the tensor files those configs name, and the sample inputs, which are
  never read); advlab reads the tensors itself from raw bytes and hands torch's deserialiser only
  tensors, so torch's legacy `data/weights/model.pt` path and its retry of `torch.load` without
  `weights_only` are never reached (and `torch.load` is locked to `weights_only=True` meanwhile).
  Refused: pickled weights or constants, custom objects, symbolic-shape expressions other than
  sympy constructors, graph nodes calling anything but torch operators (torch would resolve any
  `torch.<attr>` name), guard code (Python text torch would `exec`), and pytree specs naming a
  module to import. `torch.export.load` is never called.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.errors import CheckpointError, InputError

PRETRAINED = "advlab_pretrained"  # a factory's model with this attribute True carries its own trained weights
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
    except (Exception, SystemExit) as exc:  # the user's module failed (or exited) while importing: one line
        raise InputError(f"--model {spec}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise InputError(f"--model {spec}: module {module_name!r} has no callable {factory_name!r}")
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
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

    def __deepcopy__(self, memo: dict[int, Any]) -> ExportedModel:
        """A copy; torch's graph copy warns about its own deprecated pytree classes, silenced here."""
        clone = ExportedModel.__new__(ExportedModel)
        memo[id(self)] = clone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


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


def _check_expressions(path: Path, program: dict) -> None:
    unsafe = [e for e in _expressions(program) if not _safe_expression(e)]
    if unsafe:
        raise CheckpointError(f"{path}: refusing a symbolic-shape expression that is not a plain sympy constructor: {unsafe[0][:80]!r}")


# Graph nodes may call ATen/prims operators, higher-order operators on the graph's own subgraphs, and
# these arithmetic functions on sizes; torch's deserialiser would resolve any `torch.<attr>...` name
# (torch.os.system included), so every other target is refused.
_SAFE_OPERATOR_FUNCTIONS = frozenset(
    f"_operator.{name}" for name in
    ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "pos", "abs", "lt", "le", "gt", "ge", "eq", "ne",
     "and_", "or_", "not_")
)
_SAFE_TARGET = re.compile(r"^(torch\.ops\.(aten|prims|higher_order)\.\w+(\.\w+)?|torch\.sym_\w+|math\.\w+)$")


def _node_targets(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["target"]] if isinstance(node.get("target"), str) and "inputs" in node else []
        return found + [t for v in node.values() for t in _node_targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _node_targets(v)]
    return []


def _json_strings(node: object, depth: int = 0) -> list[object]:
    """Every JSON document nested in `node`'s strings (a pytree spec holds JSON inside JSON)."""
    if depth > 8:
        return []
    if isinstance(node, dict):
        return [node] + [d for k, v in node.items() for d in _json_strings(k, depth) + _json_strings(v, depth)]
    if isinstance(node, list):
        return [d for v in node for d in _json_strings(v, depth)]
    if isinstance(node, str) and node.lstrip()[:1] in ("[", "{"):
        try:
            return _json_strings(json.loads(node), depth + 1)
        except ValueError:
            return []
    return []


def _check_program(path: Path, program: dict) -> None:
    """Refuse a program that would make torch import a module or run Python text from the file."""
    _check_expressions(path, program)
    unsafe = [t for t in _node_targets(program) if t not in _SAFE_OPERATOR_FUNCTIONS and not _SAFE_TARGET.match(t)]
    if unsafe:
        raise CheckpointError(f"{path}: refusing a graph node that calls {unsafe[0][:80]!r}; only torch operators are run")
    if program.get("guards_code"):
        raise CheckpointError(f"{path}: refusing a program carrying guard code (Python text torch would execute)")
    importing = [d for d in _json_strings(program) if isinstance(d, dict) and {"__enum__", "default_factory_module"} & d.keys()]
    if importing:
        raise CheckpointError(f"{path}: refusing a pytree spec that names a module to import")


@dataclass(frozen=True)
class _Archive:
    """The vetted parts of a .pt2: its program (JSON) and its weights and constants (raw bytes)."""

    program: dict
    weights: dict[str, torch.Tensor]
    constants: dict[str, torch.Tensor]


@dataclass(frozen=True)
class _Layout:
    """The members of a one-program .pt2 as torch.export.save writes it."""

    program: str  # the graph, JSON
    payloads: dict[str, tuple[str, str]]  # payload folder -> (its config member, the prefix of its tensor files)
    unread: frozenset[str]  # tags and versions, and the pickled sample inputs, which advlab never reads


def _archive_layout() -> _Layout:
    # imported here: torch.export's archive package pulls in torch._dynamo (~3 s per process)
    from torch.export.pt2_archive import constants as c

    return _Layout(
        program=c.MODELS_FILENAME_FORMAT.format("model"),
        payloads={c.WEIGHTS_DIR: (c.WEIGHTS_CONFIG_FILENAME_FORMAT.format("model"), c.WEIGHT_FILENAME_PREFIX),
                  c.CONSTANTS_DIR: (c.CONSTANTS_CONFIG_FILENAME_FORMAT.format("model"), c.TENSOR_CONSTANT_FILENAME_PREFIX)},
        unread=frozenset({c.ARCHIVE_FORMAT_PATH, c.ARCHIVE_VERSION_PATH, ".data/version", "byteorder", ".data/serialization_id",
                          c.SAMPLE_INPUTS_FILENAME_FORMAT.format("model")}),
    )


def _payload_config(path: Path, archive: zipfile.ZipFile, prefix: str, config_name: str, file_prefix: str) -> object:
    """The PayloadConfig in `config_name`; every entry must be raw tensor bytes, never a pickle."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import _dict_to_dataclass

    config = _dict_to_dataclass(schema.PayloadConfig, json.loads(archive.read(prefix + config_name)))
    for key, meta in config.config.items():
        if meta.use_pickle or meta.tensor_meta is None or not meta.path_name.startswith(file_prefix) or "/" in meta.path_name:
            raise CheckpointError(f"{path}: {config_name} stores {key!r} as a pickle or custom object ({meta.path_name}); advlab never unpickles")
    return config


def _read_payload(archive: zipfile.ZipFile, prefix: str, folder: str, config: object) -> dict[str, torch.Tensor]:
    """The tensors `config` lists, each a strided view of its member's raw bytes (shared members stay shared)."""
    from torch._export.serde.serialize import deserialize_scalar_type, deserialize_size, deserialize_storage_offset, deserialize_stride

    flat: dict[str, torch.Tensor] = {}
    tensors: dict[str, torch.Tensor] = {}
    for key, meta in config.config.items():  # type: ignore[attr-defined]
        info = meta.tensor_meta
        dtype = deserialize_scalar_type(info.dtype)
        if meta.path_name not in flat:
            data = archive.read(prefix + folder + meta.path_name)
            item = torch.empty((), dtype=dtype).element_size()
            if len(data) % item:
                raise ValueError(f"{folder}{meta.path_name} holds {len(data)} bytes, not a whole number of {dtype} values")
            flat[meta.path_name] = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.empty(0, dtype=dtype)
        tensor = torch.as_strided(flat[meta.path_name], deserialize_size(info.sizes), deserialize_stride(info.strides),
                                  deserialize_storage_offset(info.storage_offset))
        tensors[key] = nn.Parameter(tensor, requires_grad=info.requires_grad) if meta.is_param else tensor
    return tensors


def _read_archive(path: Path) -> _Archive:
    """The program and tensors of `path`, after refusing every member the format does not list and
    anything torch would unpickle, import or evaluate (see the module docstring)."""
    layout = _archive_layout()
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = next((n[: -len("archive_format")] for n in names if n.endswith("archive_format")), None)
            if prefix is None or archive.read(prefix + "archive_format") != b"pt2":
                raise CheckpointError(f"{path}: not a torch.export program saved by torch.export.save (.pt2 archive)")
            needed = [layout.program, *(config for config, _ in layout.payloads.values())]
            missing = [name for name in needed if prefix + name not in names]
            if missing:
                raise CheckpointError(f"{path}: missing member {missing[0]} (an older or legacy .pt2 format, or not one program named 'model')")
            if prefix + "byteorder" in names and archive.read(prefix + "byteorder") != b"little":
                raise CheckpointError(f"{path}: tensors stored big-endian; re-save it on a little-endian machine")
            configs = {folder: _payload_config(path, archive, prefix, config, file_prefix)
                       for folder, (config, file_prefix) in layout.payloads.items()}
            listed = {*layout.unread, *needed, *(folder + m.path_name for folder, config in configs.items() for m in config.config.values())}  # type: ignore[attr-defined]
            for info in archive.infolist():
                if not info.filename.startswith(prefix) or info.filename[len(prefix):] not in listed:
                    raise CheckpointError(f"{path}: member {info.filename!r} is not one the .pt2 format's configs list; refusing the archive")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise CheckpointError(f"{path}: member {info.filename!r} is compressed; torch.export.save stores every member as is")
            program = json.loads(archive.read(prefix + layout.program))
            if not isinstance(program, dict):
                raise ValueError("the program is not a JSON object")
            _check_program(path, program)
            weights, constants = (_read_payload(archive, prefix, folder, config) for folder, config in configs.items())
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable .pt2 archive ({type(exc).__name__}: {_first_line(exc)})") from None
    return _Archive(program, weights, constants)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """While torch deserialises the program, `torch.load` refuses anything but `weights_only=True`
    (a second lock: advlab hands it tensors, so it should never be called)."""
    real = torch.load

    def guarded(*args: Any, weights_only: bool | None = None, **kwargs: Any) -> Any:
        if weights_only is not True:
            raise CheckpointError("torch tried to unpickle part of the program without weights_only=True; refused")
        return real(*args, weights_only=True, **kwargs)

    torch.load = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = real  # type: ignore[assignment]


def load_exported_model(path: str | os.PathLike[str]) -> ExportedModel:
    """The `torch.export` program in `path`, read by advlab from the vetted members (see the module docstring)."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported program")
    archive = _read_archive(path)
    try:
        with _weights_only_torch_load(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's notes on its own export internals
            serialized = _dict_to_dataclass(schema.ExportedProgram, archive.program)
            program = ExportedProgramDeserializer().deserialize(serialized, archive.weights, archive.constants, None)
            module = ExportedModel(program)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except Exception as exc:  # torch's deserialiser raises many types on a damaged file
        raise CheckpointError(f"{path}: cannot read the exported program ({type(exc).__name__}: {_first_line(exc)})") from None
    return module.eval()


def carries_weights(model: nn.Module) -> bool:
    """Whether a factory declared its model trained: `model.advlab_pretrained = True` (for a
    factory that loads its own weights, e.g. from a hub or a file it knows)."""
    return getattr(model, PRETRAINED, False) is True


def load_external_model(spec: str, weights: str | os.PathLike[str] | None = None, *, require_weights: bool = False) -> nn.Module:
    """`package.module:factory` (with optional safetensors weights), a `.pt2` program file, or
    an `.onnx` network (converted by `advlab.formats.onnx`; no code runs from the file).

    require_weights: refuse a factory's model given no `weights` unless it `carries_weights`
    (attacking a randomly initialised network gives numbers that mean nothing)."""
    if spec.endswith(".onnx"):
        from advlab.formats.onnx import load_onnx

        if weights is not None:
            raise InputError("--weights is for --model package.module:factory; an .onnx file holds its own weights")
        return load_onnx(spec)
    if spec.endswith(".pt2") or Path(spec).is_file():
        if weights is not None:
            raise InputError("--weights is for --model package.module:factory; a .pt2 program holds its own weights")
        return load_exported_model(spec)
    model = load_factory_model(spec, weights)
    if require_weights and weights is None and not carries_weights(model):
        raise InputError(f"--model {spec}: no --weights FILE.safetensors, and the factory's model does not set "
                         f"{PRETRAINED} = True; pass --weights none to use it untrained on purpose")
    return model


def _probe(model: nn.Module, batch: torch.Tensor, data_name: str) -> torch.Tensor:
    """The model's logits on `batch` (eval mode, no gradients), or a one-line InputError."""
    from advlab.models.layers import as_multiclass_logits

    mode = model.training
    try:
        with torch.no_grad():
            return as_multiclass_logits(model.eval()(batch))
    except Exception as exc:  # shape or dtype mismatch inside the user's model
        raise InputError(f"the model cannot take {data_name} inputs of shape {tuple(batch.shape[1:])} in a batch of {batch.shape[0]}: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        model.train(mode)


def check_accepts(model: nn.Module, sample: torch.Tensor, data_name: str, batch_size: int = 2) -> int:
    """Forward passes on a batch of 1 and of `batch_size` (the first example repeated): a model
    that cannot take the data, or whose output does not follow the batch (a program exported
    with a fixed batch, a model that pools over the batch), fails here in one line. Returns the
    number of classes (the logits' width)."""
    classes = None
    for n in sorted({1, max(2, batch_size)}):
        logits = _probe(model, sample[:1].expand(n, *sample.shape[1:]), data_name)
        if logits.ndim != 2 or logits.shape[0] != n or (classes is not None and logits.shape[1] != classes):
            raise InputError(f"the model maps a batch of {n} {data_name} inputs to shape {tuple(logits.shape)}; expected ({n}, classes) "
                             "logits (its output must follow the batch: export a .pt2 with a dynamic batch dimension)")
        if not bool(torch.isfinite(logits).all()):
            raise InputError(f"the model's logits on {data_name} hold NaN or inf")
        classes = logits.shape[1]
    return int(classes)  # type: ignore[arg-type]


def check_labels_fit(labels: torch.Tensor, classes: int, where: str) -> None:
    """Every label names one of the model's `classes` outputs, or an InputError naming the data's file."""
    outside = labels[(labels < 0) | (labels >= classes)]
    if outside.numel():
        raise InputError(f"{where}: label {int(outside[0])} outside 0..{classes - 1}, the classes of the model's {classes} outputs")
