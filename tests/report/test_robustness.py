import json

from advlab.analysis import evaluate_robustness
from advlab.report.robustness import write_robustness_report

from ..analysis.test_masking import Quantised


def test_report_files_and_flags(tmp_path, softmax_model, embedded):
    x, y = embedded.test.images[:100], embedded.test.labels[:100]
    evaluation = evaluate_robustness(Quantised(softmax_model), x, y, attacks=["fgsm"], eps=[0, 0.1, 0.2], source_model=softmax_model)
    paths = write_robustness_report(evaluation, tmp_path, title="masked", command="advlab evaluate m", context={"model": "q"})
    assert [p.name for p in paths] == ["robustness.json", "robustness.md", "robustness.png"]
    text = (tmp_path / "robustness.md").read_text()
    assert "**FLAGGED**" in text and "check(s) flagged" in text and "| 0.2 |" in text
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["model"] == "q" and saved["eps"] == [0.0, 0.1, 0.2] and len(saved["transfer"]) == 2
    assert {c["status"] for c in saved["checks"]} >= {"fail"}
    assert (tmp_path / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
