"""Reports for the Goodfellow et al. 2014 reproductions: PNG, JSON and Markdown."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from advlab.experiments.goodfellow import FGSMExperiment
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.figures import image_grid, save_figure
from advlab.report.markdown import number, percent, table

EXAMPLES_PER_CLASS = 8


def fig2_figure(experiment: FGSMExperiment, path: str | os.PathLike[str]) -> None:
    """The four panels of Fig. 2: w, sign(w), clean 3s and 7s, their FGSM examples."""
    weight = experiment.weights.reshape(28, 28)
    labels = experiment.attack.labels
    picks = torch.cat([(labels == c).nonzero().flatten()[:EXAMPLES_PER_CLASS] for c in (0, 1)])
    clean = image_grid(experiment.test_images[picks], EXAMPLES_PER_CLASS)
    adversarial = image_grid(experiment.attack.x_adv[picks], EXAMPLES_PER_CLASS)
    limit = float(weight.abs().max())
    figure, axes = plt.subplots(1, 4, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1, 2.2, 2.2]})
    panels = [
        (weight.numpy(), "(a) weights w", {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}),
        (torch.sign(weight).numpy(), "(b) sign(w)", {"cmap": "RdBu_r", "vmin": -1, "vmax": 1}),
        (clean, f"(c) clean 3s and 7s\nerror {percent(experiment.clean_error)}", {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (adversarial, f"(d) FGSM, eps={experiment.eps:g}\nerror {percent(experiment.fgsm_error)}", {"cmap": "gray", "vmin": 0, "vmax": 1}),
    ]
    for axis, (image, title, style) in zip(axes, panels):
        axis.imshow(image, interpolation="nearest", **style)
        axis.set_title(title)
        axis.axis("off")
    figure.suptitle("Goodfellow et al. 2014, Fig. 2: logistic regression on MNIST 3 vs 7 (advlab)")
    save_figure(figure, path)


def _beside_paper(value: float, paper: float | None) -> str:
    """'99.4% (0.99x)', the ratio to the paper's figure where the paper has one, else the value alone."""
    return percent(value) if paper is None else f"{percent(value)} ({value / paper:.2f}x)"


def _column(experiment: FGSMExperiment) -> list[str]:
    paper = experiment.paper
    return [
        _beside_paper(experiment.clean_error, paper.get("clean_error")),
        _beside_paper(experiment.fgsm_error, paper.get("fgsm_error")),
        _beside_paper(experiment.mean_adv_confidence, paper.get("mean_confidence")),
        percent(experiment.mean_confidence_on_errors),
        percent(experiment.train_error),
        f"{experiment.n_train:,} / {experiment.n_test:,}",
    ]


def write_report(
    title: str,
    experiments: list[FGSMExperiment],
    out_dir: str | os.PathLike[str],
    *,
    command: str,
    notes: list[str],
    figure_name: str | None = None,
) -> list[Path]:
    """results.json, report.md (paper beside advlab, one column per data source) and a figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    primary = experiments[0]
    paper = primary.paper
    paper_column = [
        percent(paper.get("clean_error")),
        percent(paper.get("fgsm_error")),
        percent(paper.get("mean_confidence")),
        "—",
        "—",
        primary.paper_images,
    ]
    metrics = [
        "clean test error",
        f"FGSM test error, eps={primary.eps:g}",
        "mean confidence on adversarial inputs",
        "mean confidence on misclassified adversarial inputs",
        "training error",
        "train / test images",
    ]
    columns = [paper_column] + [_column(e) for e in experiments]
    header = ["", "paper"] + [f"advlab: {e.data_source}" for e in experiments]
    rows = [[metric, *(column[i] for column in columns)] for i, metric in enumerate(metrics)]
    written = []
    lines = [f"# {title}", "", f"Produced by: `{command}`", "", table(header, rows), ""]
    if figure_name:
        fig2_figure(primary, out / figure_name)
        written.append(out / figure_name)
        lines += [f"![Fig. 2 panels]({figure_name})", ""]
    lines += _weight_decay_section(experiments)
    lines += ["## Settings", ""]
    for e in experiments:
        lines.append(
            f"- {e.data_source}: model `{e.model}`, classes {e.classes or 'all'}, seed {e.seed}, "
            f"training {e.train_config}, {number(e.train_seconds, 1)} s training, "
            f"{number(e.attack_seconds, 3)} s attack"
        )
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes] + [""]
    write_json_atomic(out / "results.json", {"command": command, "experiments": [e.to_dict() for e in experiments]})
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "results.json", out / "report.md", *written]


def _weight_decay_section(experiments: list[FGSMExperiment]) -> list[str]:
    """Each source's model retrained with other weight decays (the paper states none), beside the run's own."""
    rows = []
    for e in (e for e in experiments if e.weight_decay_runs):
        rows += [[e.data_source, f"{r.weight_decay:g}{' (this run)' if own else ''}", percent(r.train_error), percent(r.clean_error),
                  _beside_paper(r.fgsm_error, e.paper.get("fgsm_error")), _beside_paper(r.mean_adv_confidence, e.paper.get("mean_confidence"))]
                 for r, own in e.by_weight_decay()]
    if not rows:
        return []
    header = ["data", "weight decay", "training error", "clean test error", "FGSM test error", "mean confidence on FGSM examples"]
    return ["## Weight decay", "", "The paper states none for this model; the same training with others, attacked the same way "
            "(ratios to the paper's figures in parentheses):", "", table(header, rows), ""]


def write_fig2(experiments: list[FGSMExperiment], out_dir: str | os.PathLike[str], *, command: str, notes: list[str]) -> list[Path]:
    return write_report("Goodfellow et al. 2014, Fig. 2: logistic regression, MNIST 3 vs 7", experiments, out_dir,
                        command=command, notes=notes, figure_name="fig2.png")


def write_softmax(experiments: list[FGSMExperiment], out_dir: str | os.PathLike[str], *, command: str, notes: list[str]) -> list[Path]:
    return write_report("Goodfellow et al. 2014, Sec. 5: softmax regression on MNIST", experiments, out_dir,
                        command=command, notes=notes)


def summary(experiments: list[FGSMExperiment]) -> list[str]:
    return [f"  {e.data_source}: clean error {percent(e.clean_error, 2)}, FGSM error {percent(e.fgsm_error, 2)} at eps={e.eps:g}, "
            f"mean confidence on errors {percent(e.mean_confidence_on_errors)} (paper: {_paper_figures(e.paper)})" for e in experiments]


def _paper_figures(paper: dict[str, float]) -> str:
    """The paper's figures in words: 'clean error 1.6%, FGSM error 99.0%, eps 0.25'."""
    return ", ".join(f"{key.replace('_', ' ').replace('fgsm', 'FGSM')} {percent(value) if key != 'eps' else f'{value:g}'}"
                     for key, value in paper.items())
