"""The ONNX converter against onnxruntime on networks exported here, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from advlab.errors import CheckpointError, InputError  # noqa: E402
from advlab.exact import relu_network  # noqa: E402
from advlab.formats.onnx import OnnxModel, UnsupportedOnnxError, load_onnx  # noqa: E402
from advlab.models.external import load_external_model  # noqa: E402
from tests.formats.onnx_nets import VnncompLike, cnn, export, mlp  # noqa: E402


def _runtime(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


NETS = {
    "mlp": (lambda: mlp(), (6,)),
    "cnn": (lambda: cnn(), (1, 8, 8)),
    "vnncomp": (lambda: VnncompLike().eval(), (16,)),
}


@pytest.mark.parametrize("name", NETS)
def test_converted_network_matches_onnxruntime(tmp_path, name):
    build, shape = NETS[name]
    path = export(build(), shape, tmp_path / f"{name}.onnx", dynamic_batch=True)
    model = load_onnx(path)
    assert isinstance(model, OnnxModel) and model.input_shape == shape and not model.training
    x = torch.rand(7, *shape, generator=torch.Generator().manual_seed(1))
    expected = _runtime(path, x.numpy()).reshape(7, -1)
    with torch.no_grad():
        ours = model(x).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "vnncomp"])
def test_relu_networks_are_read_exactly(tmp_path, name):
    build, shape = NETS[name]
    model = load_onnx(export(build(), shape, tmp_path / "net.onnx"))
    net = relu_network(model, shape)  # checks its reading against the forward pass itself
    x = torch.rand(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x)
    torch.testing.assert_close(net.logits(x.reshape(4, -1)), expected, rtol=1e-9, atol=1e-9)


def test_load_external_model_takes_onnx_files(tmp_path):
    path = export(mlp(), (6,), tmp_path / "net.onnx")
    assert isinstance(load_external_model(str(path)), OnnxModel)
    with pytest.raises(InputError, match="an .onnx file holds its own weights"):
        load_external_model(str(path), weights="w.safetensors")


# ---- graphs written node by node --------------------------------------------------------------------
def _save(tmp_path: Path, nodes: list, inits: dict[str, np.ndarray], in_shape: list, out_shape: list,
          name: str = "g.onnx") -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_matmul_add_gemm_attributes_identity_constant(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"W": rng.normal(size=(5, 4)), "b": rng.normal(size=(4,)), "B": rng.normal(size=(4, 3)),
             "C": rng.normal(size=(1, 3)), "m": rng.normal(size=(1, 5)), "s": rng.uniform(0.5, 2, size=(5,))}
    nodes = [
        helper.make_node("Sub", ["x", "m"], ["a"]),
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["a", "s"], ["a2"]),
        helper.make_node("Div", ["a2", "two"], ["a3"]),
        helper.make_node("MatMul", ["a3", "W"], ["h"]),
        helper.make_node("Add", ["b", "h"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["r"]),
        helper.make_node("Identity", ["r"], ["r2"]),
        helper.make_node("Gemm", ["r2", "B", "C"], ["y"], alpha=0.5, beta=2.0, transB=0),
    ]
    path = _save(tmp_path, nodes, inits, ["N", 5], ["N", 3])
    model = load_onnx(path)
    x = rng.uniform(size=(6, 5)).astype(np.float32)
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), _runtime(path, x), rtol=1e-5, atol=1e-5)
    # MatMul + Add became one Linear with bias: the chain is read exactly
    assert sum(isinstance(layer, torch.nn.Linear) for layer in model.layers) == 2
    relu_network(model, (5,), bounds=(-1.0, 1.0))


def test_residual_addition_runs_but_is_not_a_chain(tmp_path):
    inits = {"W": np.eye(4) * 2}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["y"])]
    path = _save(tmp_path, nodes, inits, [1, 4], [1, 4])
    model = load_onnx(path)
    x = np.linspace(-1, 1, 4, dtype=np.float32)[None]
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), _runtime(path, x), rtol=1e-6)
    with pytest.raises(InputError, match="is a Binary"):
        relu_network(model, (4,))


@pytest.mark.parametrize("node, message", [
    (helper.make_node("Transpose", ["x"], ["y"]), r"operator Transpose \(node 'bad'\) is not supported"),
    (helper.make_node("Softmax", ["x"], ["y"]), "operator Softmax"),
    (helper.make_node("Flatten", ["x"], ["y"], axis=0), "Flatten node 'bad': axis 0"),
])
def test_unsupported_operators_are_refused_in_one_line(tmp_path, node, message):
    node.name = "bad"
    path = _save(tmp_path, [node], {}, [1, 4], [1, 4])
    with pytest.raises(UnsupportedOnnxError, match=message) as info:
        load_onnx(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_shape_computed_reshape_is_refused(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])]
    with pytest.raises(UnsupportedOnnxError, match="operator Shape"):
        load_onnx(_save(tmp_path, nodes, {}, [1, 4], [1, 4]))


def test_external_data_outside_the_folder_is_refused(tmp_path):
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.eye(4)}, [1, 4], [1, 4])
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../secret.bin")
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="outside the model's folder"):
        load_onnx(path)


def test_external_data_inside_the_folder_is_read(tmp_path):
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.eye(4) * 3}, [1, 4], [1, 4])
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    out = load_onnx(path)(torch.ones(1, 4))
    torch.testing.assert_close(out, torch.full((1, 4), 3.0))


def test_damaged_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot protobuf at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX file"):
        load_onnx(bad)
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        load_onnx(tmp_path / "missing.onnx")
