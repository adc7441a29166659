"""Robustness reports fit for a paper: the figure (PNG at 300 dpi, PDF, SVG), the Markdown (tables
only) and the numbers (JSON), plus the per-example outcomes (`examples.npz`), for an eps grid and
a suite alike (`advlab.analysis.RobustnessEvaluation`).

Every accuracy is stated with its 95% Clopper-Pearson interval over the n examples
(`advlab.analysis.results.clopper_pearson`); the figure draws robust accuracy against eps with the
bracket [certified, attacked] as a band; the time is the wall time of the whole command with its
parts, when the caller measured it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from advlab.analysis.masking import suite_checks
from advlab.analysis.results import CONFIDENCE, RobustnessEvaluation
from advlab.io import json_bytes, npz_bytes, write_files_atomic
from advlab.report.figures import save_figure_formats
from advlab.report.markdown import percent, table

STATUS = {"pass": "pass", "fail": "**FLAGGED**", "skipped": "skipped"}
CI_NOTE = (f"Intervals are {100 * CONFIDENCE:.0f}% Clopper-Pearson (exact binomial) intervals over the examples; "
           "they cover sampling error of the data, not the strength of the attacks.")


def _interval(evaluation: RobustnessEvaluation, accuracy: float) -> str:
    low, high = evaluation.interval(accuracy)
    return f"{100 * low:.1f}–{100 * high:.1f}%"


def _series(evaluation: RobustnessEvaluation) -> list[tuple[str, list[float]]]:
    """(label, accuracy per eps) per attack: alone (grid) or after it in the cascade (suite)."""
    prefix = "after " if evaluation.kind == "suite" else ""
    return [(f"{prefix}{attack}", evaluation.curve(attack)) for attack in evaluation.attacks]


def plot_evaluation(evaluation: RobustnessEvaluation, stem: str | os.PathLike[str], *, title: str | None = None) -> list[Path]:
    """STEM.png (300 dpi), STEM.pdf, STEM.svg: robust accuracy (95% CI bars) against eps with the
    bracket [certified, attacked] as a band and one line per attack; for one eps, bars per attack."""
    title = title or f"Robust accuracy ({evaluation.suite or ', '.join(evaluation.attacks)})"
    eps = np.asarray(evaluation.eps)
    attacked = 100 * np.asarray(evaluation.worst_case)
    certified = 100 * np.asarray([low for low, _ in evaluation.brackets])
    ci = 100 * np.array([evaluation.interval(a) for a in evaluation.worst_case]).T
    verified = any(c is not None for c, e in zip(evaluation.certified, eps) if e > 0)
    band = "bracket [certified, attacked]" if verified else "bracket [0, attacked]: no verifier ran"
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    if len(eps) == 1:
        labels = ["clean", *(label for label, _ in _series(evaluation))]
        values = [100 * evaluation.clean_accuracy, *(100 * values[0] for _, values in _series(evaluation))]
        axis.bar(range(len(labels)), values, color="tab:blue", alpha=0.8)
        axis.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        axis.axhspan(certified[0], attacked[0], color="tab:green", alpha=0.2, label=band)
        axis.errorbar([len(labels) - 1], [attacked[0]], yerr=[[attacked[0] - ci[0, 0]], [ci[1, 0] - attacked[0]]], color="black",
                      capsize=4, label=f"robust accuracy, {100 * CONFIDENCE:.0f}% CI")
        axis.set_xlabel(f"eps = {eps[0]:g} ({evaluation.suites[0].norm if evaluation.suites else 'linf'})")
    else:
        axis.fill_between(eps, certified, attacked, color="tab:green", alpha=0.2, label=band)
        if verified:
            axis.plot(eps, certified, color="tab:green", linestyle="--", label="certified (lower bound)")
        for label, values in _series(evaluation):
            axis.plot(eps, [100 * v for v in values], marker="o", markersize=3, linewidth=1, label=label)
        for attack in dict.fromkeys(p.attack for p in evaluation.transfer):
            points = [p for p in evaluation.transfer if p.attack == attack]
            axis.plot([p.eps for p in points], [100 * p.accuracy for p in points], linestyle=":", marker="x",
                      label=f"{attack} transferred from {points[0].source}")
        axis.errorbar(eps, attacked, yerr=[attacked - ci[0], ci[1] - attacked], color="black", capsize=3, linewidth=1.5,
                      label=f"robust accuracy (all attacks), {100 * CONFIDENCE:.0f}% CI")
        axis.set_xlabel(f"eps ({evaluation.suites[0].norm if evaluation.suites else 'L-inf'})")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(-2, 102)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    return [Path(p) for p in save_figure_formats(figure, stem)]


def results_table(evaluation: RobustnessEvaluation) -> str:
    """Per eps: robust accuracy under every attack, its 95% CI, the bracket and why."""
    rows = []
    for e, accuracy, (low, high), reason in zip(evaluation.eps, evaluation.worst_case, evaluation.brackets, evaluation.bracket_reasons):
        rows.append([f"{e:g}", percent(accuracy, 2), _interval(evaluation, accuracy), f"[{percent(low, 2)}, {percent(high, 2)}]", reason])
    return table(["eps", "robust accuracy", f"{100 * CONFIDENCE:.0f}% CI", "bracket [certified, attacked]", "why this lower end"], rows)


def evaluation_table(evaluation: RobustnessEvaluation) -> str:
    """The per-attack breakdown. Grid: accuracy (mean confidence on misclassified) per attack alone,
    the worst case and transfer attacks. Suite: clean, then robust accuracy after each attack."""
    if evaluation.kind == "suite":
        header = ["eps", "clean", *(f"after {a}" for a in evaluation.attacks), "bracket [certified, attacked]"]
        rows = [[f"{s.eps:g}", percent(s.clean_accuracy, 2), *(percent(s.after[a], 2) for a in evaluation.attacks),
                 f"[{percent(low, 2)}, {percent(high, 2)}]"] for s, (low, high) in zip(evaluation.suites, evaluation.brackets)]
        return table(header, rows)
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


def broken_table(evaluation: RobustnessEvaluation) -> str:
    """Per eps, how many points each cause broke (from the per-example outcomes)."""
    pe = evaluation.per_example
    if pe is None:
        return ""
    causes = ["clean", *evaluation.attacks, "milp"]
    present = [c for c in causes if (pe.outcome == c).any()]
    rows = [[f"{e:g}", *(int((row == c).sum()) for c in present), int((row == "").sum())] for e, row in zip(pe.eps, pe.outcome)]
    return table(["eps", *(f"broken by {c}" for c in present), "robust"], rows)


def checks_table(evaluation: RobustnessEvaluation) -> str:
    if evaluation.kind == "suite":
        return table(["eps", "check", "result", "detail"],
                     [(f"{s.eps:g}", c.name, STATUS[c.status], c.detail) for s in evaluation.suites for c in suite_checks(s)])
    return table(["gradient-masking check", "result", "detail"], [(c.name, STATUS[c.status], c.detail) for c in evaluation.checks])


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "—"
    return str(value)


def params_table(evaluation: RobustnessEvaluation) -> str:
    if evaluation.kind == "suite":
        params = evaluation.suites[0].params
    else:
        params = {p.attack: {k: v for k, v in p.params.items() if k != "eps"} for p in evaluation.points}
    return table(["attack", "parameters"], [(f"`{a}`", _value(params.get(a, {}))) for a in evaluation.attacks])


def certification_table(evaluation: RobustnessEvaluation) -> str:
    """The verifier's counts per eps and step (bounds, MILP), when a suite ran it."""
    rows = []
    for s in evaluation.suites:
        for step, summary in s.certification.items():
            if summary:
                rows.append([f"{s.eps:g}", step, summary.get("n", "—"), _value(summary.get("counts", {})),
                             _value(summary.get("settled_by", {})), f"{summary.get('median_seconds', float('nan')):.2f}",
                             f"{summary.get('max_seconds', float('nan')):.2f}"])
    return table(["eps", "step", "points", "outcomes", "settled by", "median s", "max s"], rows) if rows else ""


def time_table(evaluation: RobustnessEvaluation, seconds: Mapping[str, float] | None) -> str:
    """The command's wall time and its parts (given by the caller), then the evaluation's parts."""
    rows = [(part, f"{value:.1f}") for part, value in (seconds or {}).items()]
    rows += [(f"evaluation: {part}", f"{value:.1f}") for part, value in evaluation.seconds.items() if part != "total"]
    return table(["part", "seconds"], rows)


def report_markdown(evaluation: RobustnessEvaluation, stem: str, *, title: str, command: str,
                    seconds: Mapping[str, float] | None = None) -> str:
    """The Markdown report: tables only, every number from `evaluation` (and the caller's timing)."""
    kind = (f"Suite `{evaluation.suite}` run as a cascade: each attack runs only on the points every earlier attack left robust."
            if evaluation.kind == "suite" else "Each attack runs alone at each eps; robust accuracy counts an example when "
            "the model is right on the clean input and on every attack's output.")
    classes = f", {evaluation.classes} classes" if evaluation.classes else ""
    lines = [f"# {title}", "", f"Produced by: `{command}`", ""]
    lines += [f"> **Warning:** {w}" for w in evaluation.warnings()] + ([""] if evaluation.warnings() else [])
    lines += [
        f"{evaluation.n:,} examples{classes}; clean accuracy {percent(evaluation.clean_accuracy, 2)} "
        f"({100 * CONFIDENCE:.0f}% CI {_interval(evaluation, evaluation.clean_accuracy)}). {kind} Robust accuracy lies in "
        "[certified, attacked]: the lower end is proven by a verifier (0 where none ran), the upper end is what no attack broke.",
        "", CI_NOTE, "", "## Robust accuracy", "", results_table(evaluation), "",
        f"![robust accuracy against eps]({stem}.png) (also [{stem}.pdf]({stem}.pdf), [{stem}.svg]({stem}.svg))", "",
        "## Per attack", "", evaluation_table(evaluation), "", broken_table(evaluation), "",
        "Per-example outcomes (clean correctness, robustness, the attack that broke each point, the adversarial point): "
        "`examples.npz` (columns in docs/guide/evaluation.md).", "",
        "## Checks against a misleading evaluation" if evaluation.kind == "suite" else "## Gradient-masking checks", "",
        checks_table(evaluation), "",
    ]
    if evaluation.flagged:
        lines += [f"**{len(evaluation.flagged)} check(s) flagged: the accuracies above may overstate robustness.**", ""]
    certification = certification_table(evaluation)
    if certification:
        lines += ["## Certification", "", certification, ""]
    lines += ["## Attacks", "", params_table(evaluation), "", "## Time", ""]
    if seconds and "total" in seconds:
        lines += [f"Wall time of the whole command: {seconds['total']:.1f} s (from the start of the command, "
                  "after Python's start-up, until this report), with its parts:", ""]
    lines += [time_table(evaluation, seconds), ""]
    if evaluation.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in evaluation.notes), ""]
    return "\n".join(lines)


def write_robustness_report(
    evaluation: RobustnessEvaluation,
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    command: str,
    context: dict[str, object] | None = None,
    seconds: Mapping[str, float] | None = None,
    started: float | None = None,
) -> list[Path]:
    """In `out_dir`: STEM.json, STEM.md, examples.npz (when per-example outcomes exist) and
    STEM.png/.pdf/.svg, STEM "robustness" for a grid and "suite" for a suite; the paths.
    seconds: the command's parts; started: its `time.perf_counter()` at the start, which makes the
    stated total the wall time of the whole command up to the report (figures drawn included)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "suite" if evaluation.kind == "suite" else "robustness"
    drawing = time.perf_counter()
    figures = plot_evaluation(evaluation, out / stem, title=title)
    if started is not None:
        now = time.perf_counter()
        parts = {**(seconds or {}), "report (figures)": now - drawing}
        seconds = {"total": now - started, **parts, "other (imports, checks)": max(0.0, now - started - sum(parts.values()))}
    data: dict[str, Any] = {"command": command, **(context or {}), **evaluation.to_dict()}
    data["seconds"] = {**(seconds or {}), **{f"evaluation: {k}": v for k, v in evaluation.seconds.items()}}
    if evaluation.kind == "suite":
        data["evaluations"] = [{**s.to_dict(), "checks": [asdict(c) for c in suite_checks(s)]} for s in evaluation.suites]
    files: dict[Path, bytes] = {out / f"{stem}.json": json_bytes(data),
                                out / f"{stem}.md": report_markdown(evaluation, stem, title=title, command=command, seconds=seconds).encode()}
    if evaluation.per_example is not None:
        files[out / "examples.npz"] = npz_bytes(**evaluation.per_example.columns())
    write_files_atomic(files)
    return [*files, *figures]


def print_summary(evaluation: RobustnessEvaluation, paths: Sequence[Path], title: str) -> None:
    """What a command prints: the title, warnings, the tables, notes and the files written."""
    print(title)
    for warning in evaluation.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    print(results_table(evaluation))
    print(evaluation_table(evaluation))
    print(checks_table(evaluation))
    for note in evaluation.notes:
        print(f"note: {note}")
    for path in paths:
        print(f"wrote {path}")
