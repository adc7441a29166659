import json

from advlab.experiments.goodfellow import goodfellow_fig2
from advlab.report.goodfellow import write_report


def test_report_files(tmp_path, embedded):
    experiment = goodfellow_fig2(embedded)
    paths = write_report("Fig. 2", [experiment], tmp_path, command="advlab reproduce goodfellow-fig2", notes=["n"], figure_name="fig2.png")
    assert {p.name for p in paths} == {"results.json", "report.md", "fig2.png"}
    assert (tmp_path / "fig2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text()
    assert "| clean test error | 1.6% |" in report and "advlab reproduce goodfellow-fig2" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiments"][0]["fgsm_error"] == experiment.fgsm_error


def test_fig2_paper_column_counts_only_3s_and_7s(tmp_path, embedded):
    experiment = goodfellow_fig2(embedded)
    write_report("Fig. 2", [experiment], tmp_path, command="c", notes=[])
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| train / test images"))
    assert "3s and 7s" in row and "60,000" not in row


def test_report_layer_does_not_import_exact():
    import ast
    from pathlib import Path

    import advlab.report.goodfellow as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(name and name.startswith("advlab.exact") for name in imported)
