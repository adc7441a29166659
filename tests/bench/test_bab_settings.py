"""bench/bab_settings.py: `convert` recovers the image and eps of a robustness property's box
(clipped to [0, 1] where it reaches the edge), and `run` decides it like the exact minimal
L-inf distance (robust below it, a counterexample above)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
from advlab.exact import minimal_linf  # noqa: E402
from tests.formats.onnx_nets import export, mlp  # noqa: E402
from tests.bench import bench_script, vnnlib_box  # noqa: E402

INPUTS, OUTPUTS = 6, 3


def _robustness(x: torch.Tensor, label: int, eps: float) -> str:
    lines = vnnlib_box(x, eps, OUTPUTS, clip=True)
    rivals = " ".join(f"(and (>= Y_{k} Y_{label}))" for k in range(OUTPUTS) if k != label)
    return "\n".join(lines + [f"(assert (or {rivals}))"]) + "\n"


def test_convert_recovers_the_ball_and_run_decides_like_the_exact_distance(tmp_path: Path, capsys) -> None:
    model = mlp(2, (INPUTS, 10, 10, OUTPUTS)).double()
    export(model.float(), (INPUTS,), tmp_path / "net.onnx")
    x = torch.rand(INPUTS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[0], x[1] = 0.004, 0.998  # boxes clipped at 0 and at 1
    label = int(model(x[None].float()).argmax())
    exact = minimal_linf(model.float(), x[None].float(), torch.tensor([label]), time_limit=30)
    assert exact.status[0] == "optimal"
    distance = float(exact.lower[0])
    script = bench_script("bab_settings")
    for eps, expected in ((round(distance * 0.8, 6), "robust"), (round(distance * 1.25, 6), "counterexample")):
        prop = tmp_path / f"prop_0_{eps}.vnnlib"
        prop.write_text(_robustness(x, label, eps))
        out = tmp_path / f"{eps}.pt"
        script.convert(str(tmp_path / "net.onnx"), str(prop), str(out))
        saved = torch.load(out, weights_only=True)
        assert saved["label"] == label and saved["eps"] == eps
        assert torch.allclose(saved["x"], x, atol=1e-12)
        capsys.readouterr()
        script.run(str(out), 60.0, [], None, "wall")
        assert capsys.readouterr().out.splitlines()[-1].startswith(expected)
