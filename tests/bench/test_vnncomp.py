"""bench/vnncomp.py, the VNN-COMP benchmark runner, on a benchmark folder the test writes
itself: a tiny exported ONNX net, VNN-LIB properties whose verdicts are known by
construction, and other tools' results CSVs in VNN-COMP 2021's format."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
from tests.formats.onnx_nets import export, mlp  # noqa: E402
from tests.bench import bench_script, vnnlib_box  # noqa: E402

INPUTS, OUTPUTS = 6, 3


def _vnnlib(x: torch.Tensor, eps: float, region: str) -> str:
    return "\n".join(vnnlib_box(x, eps, OUTPUTS, clip=False) + [f"(assert {region})"]) + "\n"


# name -> (counterexample region, advlab's verdict by construction)
PROPERTIES = {
    "prop_sat.vnnlib": ("(or (and (>= Y_0 -1000000)) (and (>= Y_1 1000000)))", "sat"),  # every point violates
    "prop_unsat.vnnlib": ("(<= (- Y_0 Y_1) -1000000)", "unsat"),  # no point of a small box can
    "prop_unsat2.vnnlib": ("(or (and (>= Y_2 1000000)) (and (<= Y_2 -1000000)))", "unsat"),
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """FOLDER/mnistfc_instances.csv (2021's naming: paths relative to it, no header), the net,
    the properties, and tools/{agrees,wrong,unsure}.csv."""
    folder = tmp_path_factory.mktemp("bench")
    export(mlp(0, (INPUTS, 8, 8, OUTPUTS)), (INPUTS,), folder / "net.onnx")
    x = torch.rand(INPUTS, generator=torch.Generator().manual_seed(0)).double()
    for name, (region, _) in PROPERTIES.items():
        (folder / name).write_text(_vnnlib(x, 0.01, region))
    (folder / "mnistfc_instances.csv").write_text("".join(f"net.onnx,{name},30\n" for name in PROPERTIES))
    tools = folder / "tools"
    tools.mkdir()

    def tool(name: str, verdicts: list[str]) -> None:
        rows = [f"mnistfc,./benchmarks/mnistfc/net.onnx,./benchmarks/mnistfc/{p},0.01,{v},1.5"
                for p, v in zip(PROPERTIES, verdicts)]
        (tools / f"{name}.csv").write_text("\n".join(rows) + "\n")

    tool("agrees", ["violated", "holds", "timeout"])
    tool("unsure", ["timeout", "unknown", "holds"])
    tool("wrong", ["holds", "holds", "holds"])  # its unsat on prop_sat is refuted by advlab's counterexample
    return folder


def _results(folder: Path, runner, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "results.csv"
    code = runner.main([str(folder), "--results", str(out), "--run", *extra])
    return code, out


def test_runs_the_folder_and_reports_per_network(bench: Path, tmp_path: Path, capsys) -> None:
    runner = bench_script("vnncomp")
    code, out = _results(bench, runner, tmp_path, "--tools", str(bench / "tools"), "--exclude", "wrong",
                         "--reference", "agrees", "--timeout", "20")
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["vnnlib"]: r["result"] for r in rows} == {name: v for name, (_, v) in PROPERTIES.items()}
    assert {r["timeout"] for r in rows} == {"20"}  # min(30 in the csv, --timeout 20)
    line = next(s for s in printed.splitlines() if s.startswith("net.onnx"))
    assert line.split()[1:7] == ["3", "1", "2", "0", "0", "3/3"]
    assert "sat counterexamples re-checked: 1 of 1" in printed
    assert "agrees       settled   2 (advlab 3); both settled 2, agree 2; its violations advlab did not find: 0; " \
           "contradictions: 0" in printed
    assert "unsure       settled   1 (advlab 3); both settled 1, agree 1" in printed
    assert "reference agrees: settled 2, advlab 3" in printed
    assert "wrong" not in printed


def test_a_contradiction_refuted_by_the_counterexample_is_marked_and_passes(bench: Path, tmp_path: Path, capsys) -> None:
    code, _ = _results(bench, bench_script("vnncomp"), tmp_path, "--tool", f"wrong={bench / 'tools' / 'wrong.csv'}")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "CONTRADICTION: net.onnx prop_sat.vnnlib: advlab sat, wrong unsat (advlab's counterexample re-checked)" in printed


def test_a_violation_advlab_misses_is_a_contradiction_and_fails(bench: Path, tmp_path: Path, capsys) -> None:
    claims = tmp_path / "claims.csv"
    claims.write_text("mnistfc,net.onnx,prop_unsat.vnnlib,0,violated,2\n")
    code, _ = _results(bench, bench_script("vnncomp"), tmp_path, "--tool", f"claims={claims}")
    printed = capsys.readouterr().out
    assert code == 1
    assert "missed: net.onnx prop_unsat.vnnlib (advlab: unsat)" in printed
    assert "CONTRADICTION: net.onnx prop_unsat.vnnlib: advlab unsat, claims sat\n" in printed


@pytest.mark.parametrize("onnxruntime", [True, False])
def test_a_counterexample_that_does_not_hold_fails_the_recheck(bench: Path, tmp_path: Path, capsys, monkeypatch,
                                                                onnxruntime: bool) -> None:
    runner = bench_script("vnncomp")
    if not onnxruntime:
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the fallback: advlab's converter in float64
    code, out = _results(bench, runner, tmp_path)
    assert code == 0
    runtime = "onnxruntime float32" if onnxruntime else "advlab float64"
    assert f"sat counterexamples re-checked: 1 of 1 ({runtime})" in capsys.readouterr().out
    cex = out.with_suffix(".cex") / "0.txt"
    cex.write_text(cex.read_text().replace("(X_0 ", "(X_0 5.0 ) ; was ", 1))
    assert runner.main([str(bench), "--results", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "COUNTEREXAMPLE FAILS: net.onnx prop_sat.vnnlib: counterexample outside the input box" in printed
    assert "sat counterexamples re-checked: 0 of 1 (none)" in printed


def test_the_property_must_hold_at_the_counterexample(bench: Path, tmp_path: Path, capsys) -> None:
    runner = bench_script("vnncomp")
    (tmp_path / "f").mkdir()
    folder = tmp_path / "f"
    for path in bench.iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    code, out = _results(folder, runner, tmp_path)
    assert code == 0
    # the same point, now checked against a property that no output meets
    (folder / "prop_sat.vnnlib").write_text((bench / "prop_unsat.vnnlib").read_text())
    assert runner.main([str(folder), "--results", str(out)]) == 1
    assert "the property holds at the counterexample under" in capsys.readouterr().out


def test_counterexample_reader_takes_the_inputs_in_order(tmp_path: Path) -> None:
    runner = bench_script("vnncomp")
    path = tmp_path / "cex.txt"
    path.write_text("sat\n((X_1 0.25)\n (X_0 -0.0)\n (Y_0 1e-3))\n")
    assert runner.read_counterexample(path, 2).tolist() == [0.0, 0.25]
    with pytest.raises(ValueError, match="expected X_0..X_2"):
        runner.read_counterexample(path, 3)
