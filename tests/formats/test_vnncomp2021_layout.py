"""The layout of VNN-COMP 2021's mnistfc instances, generated here (never the third-party
files): an ONNX graph of opset 9 / IR version 4 taking a fixed (1, n, 1) input through
Flatten and Gemm(transB=1)/Relu layers, and a property file with a comment header, blank
lines, the box as one `<=` and one `>=` per input, and the counterexample region as
`(or (and (>= Y_k Y_label)) ...)`. Read, run against onnxruntime, and decided end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from advlab.exact.instances import verify_files  # noqa: E402
from advlab.formats.onnx import load_onnx  # noqa: E402
from advlab.formats.vnnlib import read_vnnlib  # noqa: E402

INPUTS, HIDDEN, CLASSES = 12, 16, 4


def _mnistfc_like(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sizes = [INPUTS, HIDDEN, HIDDEN, CLASSES]
    inits, nodes, current = [], [helper.make_node("Flatten", ["0"], ["7"], axis=1)], "7"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w, bias = f"layers.{2 * i}.weight", f"layers.{2 * i}.bias"
        inits += [numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(a), (b, a)).astype(np.float32), w),
                  numpy_helper.from_array(rng.normal(0, 0.1, b).astype(np.float32), bias)]
        out = f"g{i}"
        nodes.append(helper.make_node("Gemm", [current, w, bias], [out], alpha=1.0, beta=1.0, transB=1))
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        current = out
    graph = helper.make_graph(nodes, "mnistfc_like", [helper.make_tensor_value_info("0", TensorProto.FLOAT, [1, INPUTS, 1])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _mnistfc_property(x: np.ndarray, label: int, eps: float) -> str:
    text = [f"; Mnist property with label: {label}.", ""]
    text += [f"(declare-const X_{i} Real)" for i in range(INPUTS)] + ["", "; Input constraints:"]
    for i, v in enumerate(x):
        text += [f"(assert (<= X_{i} {min(v + eps, 1.0):.18f}))", f"(assert (>= X_{i} {max(v - eps, 0.0):.18f}))", ""]
    text += [f"(declare-const Y_{j} Real)" for j in range(CLASSES)] + ["", "; Output constraints:", "(assert (or"]
    text += [f"    (and (>= Y_{k} Y_{label}))" for k in range(CLASSES) if k != label] + ["))", ""]
    return "\n".join(text)


def test_the_layout_converts_and_matches_onnxruntime(tmp_path: Path) -> None:
    path = _mnistfc_like(tmp_path / "net.onnx")
    model = load_onnx(path)
    assert tuple(model.input_shape) == (INPUTS, 1)
    x = np.random.default_rng(1).uniform(size=(1, INPUTS, 1)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"0": x})[0]
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("eps", "verdicts"), [(1e-4, {"unsat"}), (1.0, {"sat"})])
def test_the_layout_is_decided_end_to_end(tmp_path: Path, eps: float, verdicts: set[str]) -> None:
    path = _mnistfc_like(tmp_path / "net.onnx")
    x = np.random.default_rng(2).uniform(size=INPUTS)
    with torch.no_grad():
        scores = load_onnx(path).double()(torch.from_numpy(x).reshape(1, INPUTS, 1)).reshape(-1)
    label = int(scores.argmax())
    (tmp_path / "prop.vnnlib").write_text(_mnistfc_property(x, label, eps))
    prop = read_vnnlib(tmp_path / "prop.vnnlib")
    assert len(prop.disjuncts) == CLASSES - 1 and prop.num_inputs == INPUTS and prop.num_outputs == CLASSES
    verdict = verify_files(path, tmp_path / "prop.vnnlib", timeout=30)
    assert verdict.status in verdicts, verdict
    if verdict.status == "sat":  # the whole [0, 1] box: some input gives another class at least the label's score
        assert bool(prop.inside(verdict.counterexample.reshape(1, -1)))
        assert bool(prop.violated(verdict.outputs.reshape(1, -1)))
