"""Robustness reports: accuracy-vs-eps curve (PNG), table (Markdown) and numbers (JSON)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt

from advlab.analysis.evaluation import SuiteEvaluation
from advlab.analysis.masking import suite_checks
from advlab.analysis.robustness import RobustnessEvaluation
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.figures import save_figure
from advlab.report.markdown import percent, table

STATUS = {"pass": "pass", "fail": "**FLAGGED**", "skipped": "skipped"}


def curve_figure(evaluation: RobustnessEvaluation, path: str | os.PathLike[str], *, title: str) -> None:
    """Robust accuracy against eps: one line per attack, the worst case, and transfer attacks."""
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for attack in evaluation.attacks:
        axis.plot(evaluation.eps, [100 * a for a in evaluation.curve(attack)], marker="o", label=attack)
    if len(evaluation.attacks) > 1:
        axis.plot(evaluation.eps, [100 * a for a in evaluation.worst_case], color="black", linestyle="--", label="worst case")
    for attack in dict.fromkeys(p.attack for p in evaluation.transfer):
        points = [p for p in evaluation.transfer if p.attack == attack]
        axis.plot([p.eps for p in points], [100 * p.accuracy for p in points], linestyle=":", marker="x",
                  label=f"{attack} transferred from {points[0].source}")
    axis.set_xlabel("eps (L-inf)")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(-2, 102)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    save_figure(figure, path)


def evaluation_table(evaluation: RobustnessEvaluation) -> str:
    """One row per eps: accuracy (mean confidence on misclassified) per attack, worst case, transfer."""
    sources = list(dict.fromkeys(p.attack for p in evaluation.transfer))
    header = ["eps", *(f"{a} accuracy (conf. on errors)" for a in evaluation.attacks), "worst case",
              *(f"{a} from {evaluation.transfer[0].source}" for a in sources)]
    rows = []
    for i, e in enumerate(evaluation.eps):
        cells = [f"{e:g}"]
        for attack in evaluation.attacks:
            p = evaluation.point(attack, e)
            cells.append(f"{percent(p.accuracy)} ({percent(p.mean_confidence_on_errors)})")
        cells.append(percent(evaluation.worst_case[i]))
        for attack in sources:
            match = [p for p in evaluation.transfer if p.attack == attack and p.eps == e]
            cells.append(percent(match[0].accuracy) if match else "—")
        rows.append(cells)
    return table(header, rows)


def checks_table(evaluation: RobustnessEvaluation) -> str:
    return table(["gradient-masking check", "result", "detail"], [(c.name, STATUS[c.status], c.detail) for c in evaluation.checks])


def write_robustness_report(
    evaluation: RobustnessEvaluation,
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    command: str,
    context: dict[str, object] | None = None,
) -> list[Path]:
    """robustness.json, robustness.md and robustness.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve_figure(evaluation, out / "robustness.png", title=title)
    params = {p.attack: {k: v for k, v in p.params.items() if k != "eps"} for p in evaluation.points}
    lines = [
        f"# {title}",
        "",
        f"Produced by: `{command}`",
        "",
        f"{evaluation.n:,} examples, clean accuracy {percent(evaluation.clean_accuracy, 2)}. Accuracy counts an example "
        "when the model is right on both the clean and the adversarial input.",
        "",
        evaluation_table(evaluation),
        "",
        "![robust accuracy against eps](robustness.png)",
        "",
        "## Gradient-masking checks",
        "",
        checks_table(evaluation),
        "",
    ]
    if evaluation.flagged:
        lines += [f"**{len(evaluation.flagged)} check(s) flagged: the accuracies above may overstate robustness.**", ""]
    lines += ["## Attacks", ""] + [f"- `{a}`: {params[a]}" for a in evaluation.attacks]
    lines += [f"- {note}" for note in evaluation.notes] + [""]
    write_json_atomic(out / "robustness.json", {"command": command, **(context or {}), **evaluation.to_dict()})
    write_text_atomic(out / "robustness.md", "\n".join(lines))
    return [out / "robustness.json", out / "robustness.md", out / "robustness.png"]


# ---- attack suites (advlab.analysis.evaluation) ---------------------------------------------------
def suite_table(evaluations: list[SuiteEvaluation]) -> str:
    """One row per eps: clean accuracy, robust accuracy after each attack, the bracket, time."""
    attacks = evaluations[0].attacks
    header = ["eps", "clean", *(f"after {a}" for a in attacks), "robust accuracy in", "seconds"]
    rows = []
    for ev in evaluations:
        low, high = ev.bracket
        rows.append([f"{ev.eps:g}", percent(ev.clean_accuracy, 2), *(percent(ev.after[a], 2) for a in attacks),
                     f"[{percent(low, 2)}, {percent(high, 2)}]", f"{sum(ev.seconds.values()):.1f}"])
    return table(header, rows)


def write_suite_report(
    evaluations: list[SuiteEvaluation], out_dir: str | os.PathLike[str], *, title: str, command: str,
    context: dict[str, object] | None = None,
) -> list[Path]:
    """suite.json and suite.md in `out_dir`, with the suite checks of `advlab.analysis.masking`."""
    checks = [suite_checks(ev) for ev in evaluations]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = evaluations[0]
    lines = [
        f"# {title}", "", f"Produced by: `{command}`", "",
        f"{first.n:,} examples, {first.norm} budget. Each attack runs only on the points every earlier attack "
        "left robust. Robust accuracy lies in [certified, attacked]: the lower end is proven (bounds or MILP; 0 "
        "without `--bracket`), the upper end is what no attack broke.", "",
        suite_table(evaluations), "",
        "## Who broke each point", "",
        table(["eps", "broken by"], [[f"{ev.eps:g}", ", ".join(f"{k}: {v}" for k, v in ev.broken_counts().items())] for ev in evaluations]),
        "", "## Checks against a misleading evaluation", "",
        table(["eps", "check", "result", "detail"],
              [(f"{ev.eps:g}", c.name, STATUS[c.status], c.detail) for ev, cs in zip(evaluations, checks) for c in cs]),
        "", "## Attacks", "",
    ]
    lines += [f"- `{label}`: {params}" for label, params in first.params.items()]
    for ev in evaluations:
        if ev.certification:
            lines += ["", f"Certification at eps={ev.eps:g}: {ev.certification}"]
    lines += [f"- {note}" for note in dict.fromkeys(n for ev in evaluations for n in ev.notes)] + [""]
    write_json_atomic(out / "suite.json", {"command": command, **(context or {}), "evaluations": [
        {**ev.to_dict(), "checks": [asdict(c) for c in cs]} for ev, cs in zip(evaluations, checks)]})
    write_text_atomic(out / "suite.md", "\n".join(lines))
    return [out / "suite.json", out / "suite.md"]
