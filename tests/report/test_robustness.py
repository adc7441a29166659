import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import beta

from advlab.analysis import EvaluationSettings, clopper_pearson, evaluate_robustness
from advlab.report.robustness import write_robustness_report

from ..analysis.test_masking import Quantised

RAW_DICT = re.compile(r"\{'|': |\{\"")  # a Python or JSON dict printed into the Markdown


def _tiny_relu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4)).double()
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, x, model(x).argmax(1).detach()


def test_report_files_and_flags(tmp_path, softmax_model, embedded):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    evaluation = evaluate_robustness(Quantised(softmax_model), x, y, attacks=["fgsm"], eps=[0, 0.1, 0.2], source_model=softmax_model)
    paths = write_robustness_report(evaluation, tmp_path, title="masked", command="advlab evaluate m", context={"model": "q"})
    assert [p.name for p in paths] == ["robustness.json", "robustness.md", "examples.npz", "robustness.png", "robustness.pdf",
                                       "robustness.svg"]
    text = (tmp_path / "robustness.md").read_text()
    assert "**FLAGGED**" in text and "check(s) flagged" in text and "| 0.2 |" in text
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["model"] == "q" and saved["eps"] == [0.0, 0.1, 0.2] and len(saved["transfer"]) == 2
    assert {c["status"] for c in saved["checks"]} >= {"fail"}
    assert (tmp_path / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "robustness.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "robustness.svg").read_bytes()[:2000]
    with Image.open(tmp_path / "robustness.png") as png:
        assert png.info["dpi"] == pytest.approx((300, 300), abs=0.1)


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (3, 10), (874, 1000), (1, 1), (50, 60)])
def test_clopper_pearson_is_the_beta_quantile_interval(k, n):
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1), abs=1e-12)
    assert high == pytest.approx(1.0 if k == n else beta.ppf(0.975, k + 1, n - k), abs=1e-12)
    if k == 0:  # the closed form: P(0 successes) = (1 - p)^n = 0.025 at the upper end
        assert high == pytest.approx(1 - 0.025 ** (1 / n))
    assert low <= k / n <= high


def test_markdown_states_the_interval_and_holds_tables_only(tmp_path, softmax_model, embedded):
    x, y = embedded.test.images[:60], embedded.test.labels[:60]
    evaluation = evaluate_robustness(softmax_model, x, y, attacks=["fgsm"], eps=[0, 0.1])
    write_robustness_report(evaluation, tmp_path, title="t", command="c", seconds={"load": 1.0}, started=0.0)
    text = (tmp_path / "robustness.md").read_text()
    low, high = clopper_pearson(round(evaluation.clean_accuracy * 60), 60)
    assert "Clopper-Pearson" in text and f"{100 * low:.1f}–{100 * high:.1f}%" in text
    assert "Wall time of the whole command" in text and "| load | 1.0 |" in text
    assert not RAW_DICT.search(text), RAW_DICT.search(text)
    assert "within 5 points of chance" not in text


def test_suite_report_has_a_plot_tables_only_and_examples(tmp_path):
    from advlab.exact import certify

    model, x, y = _tiny_relu()
    settings = EvaluationSettings(bracket=True, certify=certify, time_limit=10)
    evaluation = evaluate_robustness(model, x, y, eps=[0.02, 0.2], suite=[{"attack": "apgd", "params": {"steps": 5}}], settings=settings)
    assert evaluation.suites[0].certification  # the verifier's summary dict, which the report must not print raw
    paths = write_robustness_report(evaluation, tmp_path, title="suite", command="c")
    assert {p.name for p in paths} == {"suite.json", "suite.md", "examples.npz", "suite.png", "suite.pdf", "suite.svg"}
    text = (tmp_path / "suite.md").read_text()
    assert "## Certification" in text and not RAW_DICT.search(text), text
    with np.load(tmp_path / "examples.npz", allow_pickle=False) as saved:
        assert saved["robust"].shape == (2, 12) and saved["certified"].shape == (2, 12)
        assert not (saved["certified"] & ~saved["robust"]).any()  # a proven point is never broken
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert saved["evaluations"][1]["robust_accuracy"] == evaluation.worst_case[1]


def test_every_report_warns_near_chance(tmp_path, embedded):
    torch.manual_seed(0)
    untrained = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    evaluation = evaluate_robustness(untrained, x, y, attacks=["fgsm"], eps=[0, 0.1])
    assert evaluation.clean_accuracy <= 0.15 and evaluation.near_chance
    write_robustness_report(evaluation, tmp_path, title="t", command="c")
    assert "**Warning:** clean accuracy" in (tmp_path / "robustness.md").read_text()
    assert "within 5 points of chance" in evaluation.summary()
