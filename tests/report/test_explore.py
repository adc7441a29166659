"""The explorer page's data and its math, without a browser (tests/report/test_explore_browser.py
drives the page itself)."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest
import torch

from advlab.attacks import FGSM
from advlab.cli import main
from advlab.exact import logistic_loss_direction, max_linear_linf, minimal_perturbation
from advlab.models import build_model
from advlab.models.linear import linear_weights
from advlab.experiments.explore import (
    LBFGS_TEMPERATURE,
    WORKED_EXAMPLE,
    binary_linear,
    c_search_traces,
    showcase_indices,
    worst_case_error,
)
from advlab.report.explore import render_page
from advlab.training import save_checkpoint
from tests.report.conftest import page_payload


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_worked_example_numbers():
    """The seed's numbers: p = 0.1192 clean, 0.7858 at eps .3, 0.9998 at eps 1 (truncated to 4 places)."""
    x, w, b = (torch.tensor(WORKED_EXAMPLE[k], dtype=torch.float64) for k in ("x", "w", "b"))
    for eps, shown in ((0.0, "0.1192"), (0.3, "0.7858"), (1.0, "0.9998")):
        z = float(w @ (x + eps * w.sign()) + b)
        assert f"{math.floor(_sigmoid(z) * 1e4) / 1e4:.4f}" == shown
    assert float((w @ x + b).abs() / w.abs().sum()) == pytest.approx(2 / 11)  # the flip point


def test_worst_case_error_is_fgsm_and_the_exact_maximiser(logreg_37, embedded_37):
    x, y = embedded_37.test.images, embedded_37.test.labels
    w, b = binary_linear(logreg_37)
    weight, _ = linear_weights(logreg_37)
    for eps in (0.0, 0.05, 0.1, 0.25):
        exact = max_linear_linf(x.flatten(1).double(), logistic_loss_direction(weight.double(), y), eps)
        exact_error = float((((exact @ w + b) > 0).long() != y).double().mean())
        fgsm_error = float((~FGSM(logreg_37, eps=eps)(x, y).adv_correct).double().mean())
        assert worst_case_error(w, b, x, y, eps) == exact_error == fgsm_error


def test_c_search_trace_finds_the_exact_minimum(logreg_37, embedded_37):
    test = embedded_37.test
    indices = showcase_indices(logreg_37, test, per_class=1)
    assert sorted(test.labels[indices].tolist()) == [0, 1]
    traces = c_search_traces(logreg_37, test, indices)
    exact = minimal_perturbation(logreg_37, test.images[indices], test.labels[indices], norm="l2",
                                 targets=1 - test.labels[indices])
    for trace, distance in zip(traces, exact.distance, strict=True):
        cs = [s.c for s in trace.steps]
        assert cs[0] == 1.0 and len(set(cs)) == len(cs)
        assert any(s.success for s in trace.steps) and not all(s.success for s in trace.steps)
        assert all((s.distance is None) == (not s.success) for s in trace.steps)
        # the search keeps the smallest success; the largest successful c gives it
        successes = [s for s in trace.steps if s.success]
        assert trace.lbfgs_distance == pytest.approx(min(s.distance for s in successes), rel=1e-6)
        assert max(successes, key=lambda s: s.c).distance == pytest.approx(trace.lbfgs_distance, rel=1e-6)
        # every failed c is larger than every successful one (c on the distance term)
        failures = [s.c for s in trace.steps if not s.success]
        assert min(failures) > max(s.c for s in successes)
        assert trace.exact_distance == pytest.approx(float(distance), rel=1e-5)
        assert trace.lbfgs_distance / trace.exact_distance == pytest.approx(1.0, abs=2e-3)
        assert trace.lbfgs_distance >= trace.exact_distance * (1 - 1e-4)


def test_page_is_self_contained_and_embeds_the_model(explore_page, embedded_37):
    html = explore_page.read_text(encoding="utf-8")
    assert not re.search(r"<(link|img|iframe)\b|<script[^>]*\ssrc=|url\(|@import|fetch\(|XMLHttpRequest", html)
    assert "default-src 'none'" in html  # the page's own policy forbids any network request
    # the only URL is the SVG namespace, an identifier that is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    data = page_payload(html)
    fig2 = data["fig2"]
    pixels = np.frombuffer(base64.b64decode(fig2["images"]), dtype=np.uint8).reshape(-1, 784)
    assert fig2["n"] == len(embedded_37.test) == len(pixels)
    assert np.array_equal(pixels / np.float32(255), embedded_37.test.images.flatten(1).numpy().astype(np.float64))
    assert fig2["labels"] == embedded_37.test.labels.tolist() and fig2["classes"] == [3, 7]
    assert len(data["szegedy"]) == 4 and data["worked"] == WORKED_EXAMPLE


def test_page_matches_reproduce_fig2(explore_page, fig2_results, embedded_37):
    """The model in the page is the one `advlab reproduce goodfellow-fig2` trains (same FGSM error)."""
    fig2 = page_payload(explore_page.read_text(encoding="utf-8"))["fig2"]
    assert fig2["fgsm_error"] == fig2_results["fgsm_error"]
    w = torch.from_numpy(np.frombuffer(base64.b64decode(fig2["weight"]), dtype="<f8").copy())
    x, y = embedded_37.test.images, embedded_37.test.labels
    assert worst_case_error(w, fig2["bias"], x, y, 0.25) == fig2_results["fgsm_error"]


def test_render_escapes_the_data_and_the_command():
    page = render_page({"worked": WORKED_EXAMPLE, "note": "</script><script>alert(1)</script>"}, command="advlab <b>")
    assert "</script><script>alert(1)" not in page and "advlab &lt;b&gt;" in page


def test_cli_with_a_checkpoint(tmp_path, capsys, logreg_37):
    path = tmp_path / "logreg.safetensors"
    save_checkpoint(path, logreg_37, model_name="logreg", architecture={"in_features": 784},
                    metadata={"data": {"classes": [3, 7]}})
    assert main(["explore", "--checkpoint", str(path), "--out", str(tmp_path / "page"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "file://" in out and (tmp_path / "page" / "explore.html").is_file()


def test_cli_refuses_models_it_cannot_explain(tmp_path, capsys, softmax_model):
    path = tmp_path / "softmax.safetensors"
    save_checkpoint(path, softmax_model, model_name="softmax", architecture={"in_features": 784, "num_classes": 10})
    assert main(["explore", "--checkpoint", str(path), "--out", str(tmp_path / "page")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advlab: error: ") and err.count("\n") == 1
    assert not (tmp_path / "page").exists()
    mlp = tmp_path / "mlp.safetensors"
    save_checkpoint(mlp, build_model("mlp"), model_name="mlp", architecture={}, metadata={"data": {"classes": [3, 7]}})
    assert main(["explore", "--checkpoint", str(mlp), "--out", str(tmp_path / "page")]) == 2
    assert "nn.Linear" in capsys.readouterr().err
    assert main(["explore", "--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "page")]) == 2
    (tmp_path / "file").write_text("")
    assert main(["explore", "--out", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "page").exists()


def test_panel_3_states_szegedys_objective_advlabs_and_the_loss_temperature():
    page = render_page({"worked": WORKED_EXAMPLE}, command="advlab explore")
    panel = page[page.index('<section id="szegedy"'):]
    assert "c|r| + loss<sub>f</sub>(x + r, l)" in panel  # the paper's objective, as the paper writes it
    assert "c&Vert;r&Vert;<sub>2</sub>&sup2; + loss(x + r, l) instead" in panel  # advlab's, named as advlab's
    assert f"temperature T = {LBFGS_TEMPERATURE:g}" in panel
    assert "Goodfellow et al. call it" not in page
