"""ONNX networks as torch modules, for a listed set of operators; no code runs from the file.

An ONNX file is a protobuf graph of operators with tensors inside (or, as "external data", in
files beside it). `load_onnx(path)` reads the graph with the `onnx` package (an optional
extra: `pip install advlab[onnx]`), checks every node against OPERATORS before building
anything, and builds an `OnnxModel`: plain torch layers (Linear, Conv2d, ReLU, Flatten,
MaxPool2d, AvgPool2d, Sigmoid, Tanh) plus three small ones of its own (`Elementwise` for
x op constant, `Reshape` keeping the batch axis, `Binary` for two computed inputs), called
in the graph's order. A graph that is a chain (each node fed by the one before it) is thus a
chain of layers that `advlab.exact.relu_network` reads exactly.

Conversions: Gemm (transA = 0) and MatMul by a constant matrix -> Linear, an Add of a
constant right after one (its only use) folded into the bias; Conv (2-D, symmetric pads,
auto_pad NOTSET/VALID) -> Conv2d, a following Add of a per-channel constant folded likewise;
BatchNormalization (inference) -> Elementwise x * s + t with s = scale / sqrt(var + eps),
t = B - mean s; Sub/Add/Mul/Div with one constant -> Elementwise; Flatten (axis 1);
Reshape by a constant shape whose first entry is the batch (1, 0 or -1); MaxPool and
AveragePool (2-D, symmetric pads; AveragePool's count_include_pad as declared, ONNX's
default 0); Constant and Identity; nodes whose inputs are all constants are evaluated at
load time. Anything else (another operator, a Shape-computed reshape, an attribute outside
these cases) is refused in one line naming the node. The model's output is flattened per
example to (N, outputs), the order VNN-LIB's Y_j uses; `input_shape` is the per-example
input shape the graph declares (its X_i are that tensor flattened).

Safety: external data is read only from files inside the model's folder (no absolute paths,
no `..`); the `onnx` package parses protobuf and runs nothing; no custom-domain operators.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.errors import CheckpointError, InputError

OPERATORS = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Conv", "BatchNormalization", "Flatten",
             "Reshape", "MaxPool", "AveragePool", "Sigmoid", "Tanh", "Constant", "Identity")
_ARITHMETIC: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
}


class Elementwise(nn.Module):
    """x op c (or c op x with `swapped`) for op in Add/Sub/Mul/Div and a constant c that
    broadcasts against the batch (N, ...): an affine map with diagonal matrix."""

    def __init__(self, op: str, constant: torch.Tensor, swapped: bool = False) -> None:
        super().__init__()
        self.op, self.swapped = op, swapped
        self.register_buffer("constant", constant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.constant.to(x.dtype)
        return _ARITHMETIC[self.op](c, x) if self.swapped else _ARITHMETIC[self.op](x, c)

    def scale_shift(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t) flat over per-example inputs of `shape` with the layer = s * x + t (float64)."""
        ones = torch.ones(1, *shape, dtype=torch.float64)
        c = (self.constant.double() * ones).reshape(-1)
        one = torch.ones_like(c)
        if self.op in ("Add", "Sub"):
            sign = -1.0 if self.op == "Sub" and not self.swapped else 1.0
            return (-one if self.op == "Sub" and self.swapped else one), sign * c
        if self.op == "Mul":
            return c, torch.zeros_like(c)
        if self.swapped:  # c / x is not affine
            raise InputError("Elementwise: constant / x is not an affine map")
        return 1.0 / c, torch.zeros_like(c)


class Reshape(nn.Module):
    """x -> x.reshape(N, *shape): the batch axis kept, the per-example values in the same order."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Binary(nn.Module):
    """a op b for two computed tensors (e.g. a residual addition)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _ARITHMETIC[self.op](a, b)


class OnnxModel(nn.Module):
    """The converted graph: `layers[i]` is applied to the values named `sources[i]` and stores
    its result under `targets[i]`; the output is flattened per example."""

    def __init__(self, layers: list[nn.Module], sources: list[tuple[str, ...]], targets: list[str],
                 input_name: str, output_name: str, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.sources, self.targets = sources, targets
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for layer, sources, target in zip(self.layers, self.sources, self.targets):
            values[target] = layer(*(values[s] for s in sources))
        return values[self.output_name].flatten(1)


# ---- reading the file ------------------------------------------------------------------------------
def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InputError("reading .onnx models needs the onnx package: pip install 'advlab[onnx]'") from None
    return onnx


def _check_external(onnx: Any, model: Any, folder: Path, path: Path) -> None:
    """Every external-data location must be a relative path inside the model's folder."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if os.path.isabs(location) or ".." in Path(location).parts or folder.resolve() not in target.parents:
            raise CheckpointError(f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder")
        if not target.is_file():
            raise CheckpointError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which does not exist")
    onnx.load_external_data_for_model(model, str(folder))


def load_onnx(path: str | os.PathLike[str]) -> OnnxModel:
    """The ONNX network in `path` as an `OnnxModel` in eval mode (module docstring)."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others on a damaged file
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {str(exc)[:100]})") from None
    _check_external(onnx, model, path.parent, path)
    try:
        return _convert(onnx, model.graph).eval()
    except UnsupportedOnnxError as exc:
        raise UnsupportedOnnxError(f"{path}: {exc}") from None


class UnsupportedOnnxError(InputError):
    """The graph has an operator (or an attribute) the converter does not handle."""


# ---- converting the graph ---------------------------------------------------------------------------
def _attributes(onnx: Any, node: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(onnx: Any, proto: Any) -> torch.Tensor:
    array = onnx.numpy_helper.to_array(proto)
    if array.dtype.kind not in "fiub":
        raise UnsupportedOnnxError(f"constant {proto.name!r} has dtype {array.dtype}, not a number")
    return torch.from_numpy(np.array(array, copy=True))


def _static_input(onnx: Any, graph: Any, constants: dict[str, torch.Tensor]) -> tuple[str, tuple[int, ...], torch.dtype]:
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise UnsupportedOnnxError(f"the graph has {len(inputs)} inputs; advlab reads graphs with exactly one")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    if len(shape) < 2 or any(s <= 0 for s in shape[1:]):
        raise UnsupportedOnnxError(f"input {inputs[0].name!r} has shape {shape}; expected (batch, fixed sizes...)")
    try:
        dtype = torch.from_numpy(np.zeros(1, onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type))).dtype
    except (KeyError, TypeError, ValueError):
        dtype = torch.float32
    if not dtype.is_floating_point:
        raise UnsupportedOnnxError(f"input {inputs[0].name!r} has dtype {dtype}; expected floating point")
    return inputs[0].name, tuple(shape[1:]), dtype


def _convert(onnx: Any, graph: Any) -> OnnxModel:
    for node in graph.node:  # refuse before building anything
        if node.op_type not in OPERATORS or node.domain not in ("", "ai.onnx"):
            name = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            raise UnsupportedOnnxError(f"operator {name} (node {node.name!r}) is not supported; advlab converts "
                                       + ", ".join(OPERATORS))
    constants = {init.name: _tensor(onnx, init) for init in graph.initializer}
    input_name, input_shape, dtype = _static_input(onnx, graph, constants)
    if len(graph.output) != 1:
        raise UnsupportedOnnxError(f"the graph has {len(graph.output)} outputs; advlab reads graphs with exactly one")
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    builder = _Builder(onnx, constants, uses, input_name, input_shape, dtype)
    for node in graph.node:
        builder.add(node)
    output = graph.output[0].name
    if output not in builder.examples:
        raise UnsupportedOnnxError(f"the graph's output {output!r} is a constant or is not computed")
    return OnnxModel(builder.layers, builder.sources, builder.targets, input_name, builder.alias(output), input_shape)


class _Builder:
    """Converts nodes one by one, running each new layer on an example (batch 1) so that the
    shape of every value is known when the next node needs it."""

    def __init__(self, onnx: Any, constants: dict[str, torch.Tensor], uses: dict[str, int], input_name: str,
                 input_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.onnx, self.constants, self.uses = onnx, constants, uses
        self.layers: list[nn.Module] = []
        self.sources: list[tuple[str, ...]] = []
        self.targets: list[str] = []
        self.aliases: dict[str, str] = {}
        self.examples: dict[str, torch.Tensor] = {input_name: torch.zeros(1, *input_shape, dtype=dtype)}

    def alias(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def _push(self, layer: nn.Module, sources: tuple[str, ...], target: str) -> None:
        sources = tuple(self.alias(s) for s in sources)
        with torch.no_grad():
            example = layer(*(self.examples[s] for s in sources))
        self.layers.append(layer)
        self.sources.append(sources)
        self.targets.append(target)
        self.examples[target] = example

    def _refuse(self, node: Any, why: str) -> UnsupportedOnnxError:
        return UnsupportedOnnxError(f"{node.op_type} node {node.name!r}: {why}")

    def add(self, node: Any) -> None:
        attrs = _attributes(self.onnx, node)
        inputs = [i for i in node.input]
        out = node.output[0]
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise self._refuse(node, "only a tensor 'value' is supported")
            self.constants[out] = _tensor(self.onnx, attrs["value"])
            return
        if node.op_type == "Identity":
            if inputs[0] in self.constants:
                self.constants[out] = self.constants[inputs[0]]
            else:
                self.aliases[out] = inputs[0]
            return
        if all(i in self.constants for i in inputs if i):
            self.constants[out] = self._fold(node, attrs, inputs)
            return
        missing = [i for i in inputs if i and i not in self.constants and self.alias(i) not in self.examples]
        if missing:
            raise self._refuse(node, f"input {missing[0]!r} is not computed before it")
        convert = getattr(self, f"_{node.op_type.lower()}")
        convert(node, attrs, inputs, out)

    def _fold(self, node: Any, attrs: dict[str, Any], inputs: list[str]) -> torch.Tensor:
        values = [self.constants[i] for i in inputs if i]
        if node.op_type in _ARITHMETIC:
            return _ARITHMETIC[node.op_type](values[0], values[1])
        if node.op_type == "Reshape":
            return values[0].reshape([int(s) if s != 0 else values[0].shape[i] for i, s in enumerate(values[1].tolist())])
        if node.op_type == "Flatten":
            axis = attrs.get("axis", 1)
            return values[0].reshape(math.prod(values[0].shape[:axis]), -1)
        raise self._refuse(node, "all of its inputs are constants; advlab folds only Add, Sub, Mul, Div, Reshape, Flatten")

    # ---- one method per operator -----------------------------------------------------------------
    def _gemm(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if attrs.get("transA", 0):
            raise self._refuse(node, "transA = 1 is not supported")
        if inputs[1] not in self.constants or (len(inputs) > 2 and inputs[2] and inputs[2] not in self.constants):
            raise self._refuse(node, "B and C must be constants (weights)")
        b = self.constants[inputs[1]].double()
        weight = attrs.get("alpha", 1.0) * (b if attrs.get("transB", 0) else b.T)
        bias = None
        if len(inputs) > 2 and inputs[2]:
            c = self.constants[inputs[2]].double().reshape(-1)
            if c.numel() not in (1, weight.shape[0]):
                raise self._refuse(node, f"C of {c.numel()} entries does not broadcast to {weight.shape[0]} outputs")
            bias = (attrs.get("beta", 1.0) * c).expand(weight.shape[0])
        self._push(_linear(weight, bias, self.constants[inputs[1]].dtype), (inputs[0],), out)

    def _matmul(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if inputs[1] not in self.constants or self.constants[inputs[1]].ndim != 2 or inputs[0] in self.constants:
            raise self._refuse(node, "only x @ W with a constant 2-D matrix W is supported")
        w = self.constants[inputs[1]]
        self._push(_linear(w.double().T, None, w.dtype), (inputs[0],), out)

    def _conv(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if inputs[1] not in self.constants or (len(inputs) > 2 and inputs[2] and inputs[2] not in self.constants):
            raise self._refuse(node, "weights and bias must be constants")
        weight = self.constants[inputs[1]]
        if weight.ndim != 4:
            raise self._refuse(node, f"only 2-D convolutions are supported (weight of rank {weight.ndim})")
        padding = self._pads(node, attrs, 2)
        groups = attrs.get("group", 1)
        conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=tuple(attrs.get("strides", (1, 1))), padding=padding,
                         dilation=tuple(attrs.get("dilations", (1, 1))), groups=groups,
                         bias=len(inputs) > 2 and bool(inputs[2]), dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if conv.bias is not None:
                conv.bias.copy_(self.constants[inputs[2]])
        self._push(conv, (inputs[0],), out)

    def _pads(self, node: Any, attrs: dict[str, Any], dims: int) -> tuple[int, ...]:
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise self._refuse(node, f"auto_pad {attrs['auto_pad']!r} is not supported (give explicit pads)")
        pads = tuple(attrs.get("pads", (0,) * 2 * dims))
        if pads[:dims] != pads[dims:]:
            raise self._refuse(node, f"asymmetric pads {list(pads)} are not supported")
        return pads[:dims]

    def _batchnormalization(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if any(i not in self.constants for i in inputs[1:5]) or len(node.output) > 1 and any(node.output[1:]):
            raise self._refuse(node, "only inference mode (constant scale, B, mean, var; one output) is supported")
        scale, shift, mean, var = (self.constants[i].double() for i in inputs[1:5])
        s = scale / torch.sqrt(var + attrs.get("epsilon", 1e-5))
        t = shift - mean * s
        rank = self.examples[self.alias(inputs[0])].ndim
        view = (-1, *[1] * (rank - 2))
        dtype = self.constants[inputs[1]].dtype
        mul = Elementwise("Mul", s.reshape(view).to(dtype))
        self._push(mul, (inputs[0],), out + "#scaled")
        self._push(Elementwise("Add", t.reshape(view).to(dtype)), (out + "#scaled",), out)

    def _arithmetic(self, node: Any, inputs: list[str], out: str) -> None:
        a, b = inputs
        if a in self.constants or b in self.constants:
            swapped = a in self.constants
            x, c = (b, self.constants[a]) if swapped else (a, self.constants[b])
            if node.op_type == "Add" and self._fold_bias(x, c, out):
                return
            if node.op_type == "Div" and swapped:
                raise self._refuse(node, "constant / x is not supported")
            self._push(Elementwise(node.op_type, c.clone(), swapped), (x,), out)
        else:
            self._push(Binary(node.op_type), (a, b), out)

    def _fold_bias(self, x: str, c: torch.Tensor, out: str) -> bool:
        """Add a constant into the bias of the Linear/Conv2d that computed x (x used only here)."""
        x = self.alias(x)
        if not self.targets or self.targets[-1] != x or self.uses.get(x, 0) != 1:
            return False
        layer, example = self.layers[-1], self.examples[x]
        if isinstance(layer, nn.Linear):
            ok = c.numel() == layer.out_features and c.shape[-1:] == (layer.out_features,) and c.ndim <= example.ndim
            ok = ok and all(s == 1 for s in c.shape[:-1])
        elif isinstance(layer, nn.Conv2d):
            ok = c.numel() == layer.out_channels and c.ndim in (3, 4) and c.shape[-3] == layer.out_channels
        else:
            return False
        if not ok:
            return False
        bias = c.reshape(-1).to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(bias.clone())
        else:
            with torch.no_grad():
                layer.bias.add_(bias)
        self.targets[-1] = out
        with torch.no_grad():
            self.examples[out] = layer(self.examples[self.sources[-1][0]])
        return True

    def _add(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        self._arithmetic(node, inputs, out)

    _sub = _mul = _div = _add

    def _relu(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        self._push(nn.ReLU(), (inputs[0],), out)

    def _sigmoid(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        self._push(nn.Sigmoid(), (inputs[0],), out)

    def _tanh(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        self._push(nn.Tanh(), (inputs[0],), out)

    def _flatten(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if attrs.get("axis", 1) != 1:
            raise self._refuse(node, f"axis {attrs['axis']} is not supported (only 1: keep the batch axis)")
        self._push(nn.Flatten(1), (inputs[0],), out)

    def _reshape(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if inputs[1] not in self.constants:
            raise self._refuse(node, "the shape must be a constant (Shape-computed reshapes are not supported)")
        shape = [int(s) for s in self.constants[inputs[1]].tolist()]
        example = self.examples[self.alias(inputs[0])]
        if not shape or shape[0] not in (0, 1, -1) or (shape[0] == -1 and -1 in shape[1:]):
            raise self._refuse(node, f"shape {shape}: the first entry must be the batch (1, 0 or -1)")
        if attrs.get("allowzero", 0) and 0 in shape:
            raise self._refuse(node, "allowzero = 1 with a zero in the shape is not supported")
        rest = [example.shape[i + 1] if s == 0 else s for i, s in enumerate(shape[1:])]
        if shape[0] == -1:  # the batch inferred: the rest must hold one example
            if math.prod(rest) != example[0].numel():
                raise self._refuse(node, f"shape {shape} does not keep one example per batch entry")
        try:
            self._push(Reshape(tuple(rest)), (inputs[0],), out)
        except RuntimeError as exc:
            raise self._refuse(node, f"shape {shape} does not fit the input of shape {list(example.shape)} ({exc})") from None

    def _pool(self, node: Any, attrs: dict[str, Any]) -> dict[str, Any]:
        kernel = tuple(attrs.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise self._refuse(node, f"only 2-D pooling is supported (kernel {list(kernel)})")
        if attrs.get("storage_order", 0):
            raise self._refuse(node, "storage_order = 1 is not supported")
        return {"kernel_size": kernel, "stride": tuple(attrs.get("strides", (1, 1))),
                "padding": self._pads(node, attrs, 2), "ceil_mode": bool(attrs.get("ceil_mode", 0))}

    def _maxpool(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self._refuse(node, "the Indices output is not supported")
        pool = nn.MaxPool2d(**self._pool(node, attrs), dilation=tuple(attrs.get("dilations", (1, 1))))
        self._push(pool, (inputs[0],), out)

    def _averagepool(self, node: Any, attrs: dict[str, Any], inputs: list[str], out: str) -> None:
        if tuple(attrs.get("dilations", (1, 1))) != (1, 1):
            raise self._refuse(node, "dilations are not supported")
        pool = nn.AvgPool2d(**self._pool(node, attrs), count_include_pad=bool(attrs.get("count_include_pad", 0)))
        self._push(pool, (inputs[0],), out)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> nn.Linear:
    """nn.Linear with weight (out, in) and optional bias, in `dtype`."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def onnx_input_output(model: OnnxModel) -> tuple[tuple[int, ...], int]:
    """(per-example input shape, number of outputs) of a converted model."""
    with torch.no_grad():
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        outputs = model(torch.zeros(1, *model.input_shape, dtype=dtype)).shape[1]
    return model.input_shape, int(outputs)


__all__ = ["OPERATORS", "Binary", "Elementwise", "OnnxModel", "Reshape", "UnsupportedOnnxError", "load_onnx",
           "onnx_input_output"]
