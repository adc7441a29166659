"""`advlab verify`: single instances (verdict on stdout, VNN-COMP result file) and benchmark
folders (instances.csv -> results.csv; resumable; the same verdicts for any number of workers)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
from advlab.cli import main  # noqa: E402
from advlab.formats.vnnlib import read_vnnlib  # noqa: E402
from tests.formats.onnx_nets import export, mlp  # noqa: E402


def robustness_vnnlib(x: torch.Tensor, label: int, eps: float, classes: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(x))] + [f"(declare-const Y_{j} Real)" for j in range(classes)]
    for i, v in enumerate(x.tolist()):
        lines += [f"(assert (<= X_{i} {min(v + eps, 1.0)!r}))", f"(assert (>= X_{i} {max(v - eps, 0.0)!r}))"]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{k} Y_{label}))" for k in range(classes) if k != label) + "))")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A tiny benchmark folder: one 6-16-16-3 net, properties at several radii around 4 inputs."""
    folder = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = mlp(2, (6, 16, 16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    export(model, (6,), folder / "net.onnx")
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)).double()
    labels = model(x.float()).argmax(1).tolist()
    rows = []
    for i in range(4):
        for eps in (0.01, 0.3):
            name = f"prop_{i}_{eps}.vnnlib"
            (folder / name).write_text(robustness_vnnlib(x[i], labels[i], eps, 3))
            rows.append(f"net.onnx,{name},20")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder


def _verdicts(path: Path) -> dict[str, str]:
    return {r["vnnlib"]: r["result"] for r in csv.DictReader(io.StringIO(path.read_text()))}


def test_single_instance_prints_the_verdict_and_writes_the_counterexample(bench, tmp_path, capsys):
    out = tmp_path / "result.txt"
    verdicts = {}
    for eps in (0.01, 0.3):
        assert main(["verify", str(bench / "net.onnx"), str(bench / f"prop_0_{eps}.vnnlib"), "--timeout", "20",
                     "--out", str(out)]) == 0
        verdicts[eps] = capsys.readouterr().out.strip()
        text = out.read_text()
        assert text.splitlines()[0] == verdicts[eps]
    assert verdicts[0.01] == "unsat" and verdicts[0.3] == "sat"
    # the counterexample: inside the box, and the network's outputs there violate the property
    values = dict(line.strip(" ()").split() for line in text.splitlines()[1:])
    prop = read_vnnlib(bench / "prop_0_0.3.vnnlib")
    x = torch.tensor([float(values[f"X_{i}"]) for i in range(6)], dtype=torch.float64)
    assert bool(prop.inside(x[None]))
    from advlab.formats.onnx import load_onnx

    y = load_onnx(bench / "net.onnx").double()(x[None])
    assert bool(prop.violated(y))
    torch.testing.assert_close(y[0], torch.tensor([float(values[f"Y_{j}"]) for j in range(3)], dtype=torch.float64))


def test_instances_resumable_and_the_same_for_any_number_of_workers(bench, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--out", str(one), "--no-progress"]) == 0
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--out", str(two), "--workers", "2",
                 "--no-progress"]) == 0
    first = _verdicts(one)
    assert first == _verdicts(two) and len(first) == 8
    assert set(first.values()) <= {"sat", "unsat"} and "sat" in first.values() and "unsat" in first.values()
    assert sorted(p.name for p in one.with_suffix(".cex").iterdir()) == sorted(
        f"{row}.txt" for row, v in enumerate(first.values()) if v == "sat")
    # resume: a results file with one row gets the others; the kept row is not decided again
    lines = one.read_text().splitlines()
    kept = lines[1].split(",")
    kept[4] = "kept"  # the method column, as a marker
    one.write_text(lines[0] + "\n" + ",".join(kept) + "\n")
    assert main(["verify", "--instances", str(bench / "instances.csv"), "--out", str(one), "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(one.read_text())))
    assert len(rows) == 8 and rows[0]["method"] == "kept" and _verdicts(one) == first


@pytest.mark.parametrize("argv, message", [
    (["verify"], "give MODEL SPEC"),
    (["verify", "{net}", "{prop}"], "--timeout is required"),
    (["verify", "{net}", "{prop}", "--timeout", "0"], "--timeout"),
    (["verify", "{net}", "{missing}", "--timeout", "5"], "no such VNN-LIB file"),
    (["verify", "{net}", "{prop}", "--timeout", "5", "--workers", "2"], "--workers applies to --instances"),
    (["verify", "--instances", "{csv}"], "--instances needs --out"),
    (["verify", "--instances", "{missing}", "--out", "{new}"], "no such file"),
    (["verify", "--instances", "{badcsv}", "--out", "{new}"], "badcsv.csv:2: timeout 'soon' is not a number"),
    (["verify", "{net}", "{prop}", "--instances", "{csv}", "--out", "{new}"], "not both"),
    (["verify", "{net}", "{prop}", "--timeout", "5", "--out", "{tmp}"], "is a directory"),
    (["verify", "{bad_onnx}", "{prop}", "--timeout", "5"], "operator Transpose"),
])
def test_bad_input_is_one_line_exit_2_before_any_work(bench, tmp_path, capsys, argv, message):
    from onnx import TensorProto, helper

    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])]))
    (tmp_path / "bad.onnx").write_bytes(bad.SerializeToString())
    (tmp_path / "badcsv.csv").write_text(f"{bench}/net.onnx,{bench}/prop_0_0.01.vnnlib,5\n"
                                         f"{bench}/net.onnx,{bench}/prop_0_0.01.vnnlib,soon\n")
    names = {"net": bench / "net.onnx", "prop": bench / "prop_0_0.01.vnnlib", "csv": bench / "instances.csv",
             "missing": tmp_path / "missing.x", "new": tmp_path / "new.csv", "tmp": tmp_path,
             "badcsv": tmp_path / "badcsv.csv", "bad_onnx": tmp_path / "bad.onnx"}
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(**names) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1
    assert captured.err.startswith("advlab: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
