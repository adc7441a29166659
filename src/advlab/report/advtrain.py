"""Report for the adversarial-training reproduction (Goodfellow et al. 2014, Sec. 6)."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from advlab.experiments.adversarial_generalization import GeneralizationResult
from advlab.experiments.goodfellow_advtrain import PAPER_FGSM_RATIO, TARGET_RATIO, AdvTrainExperiment, TrainedModel
from advlab.experiments.verdict import claim_verdict
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.figures import save_figure
from advlab.report.markdown import number, percent, table
from advlab.report.robustness import checks_table, evaluation_table

def curves_figure(experiment: AdvTrainExperiment, path: str | os.PathLike[str]) -> None:
    """Per model: accuracy against eps for the standard (solid) and adversarially trained (dashed) copies."""
    names = list(experiment.pairs)
    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for trained, style in zip(experiment.pairs[name], ("-", "--")):
            evaluation = trained.evaluation
            for attack, color in zip(evaluation.attacks, ("tab:blue", "tab:red", "tab:green")):
                axis.plot(evaluation.eps, [100 * a for a in evaluation.curve(attack)], linestyle=style, marker="o",
                          color=color, label=f"{trained.training}: {attack}")
            transfer = [p for p in evaluation.transfer if p.attack == "fgsm"]
            if transfer:
                axis.plot([p.eps for p in transfer], [100 * p.accuracy for p in transfer], linestyle=":", marker="x",
                          color="gray", label=f"{trained.training}: fgsm from {transfer[0].source}")
        axis.set_title(f"{name} ({experiment.eval_limit:,} test images, seed {experiment.seeds[0]})")
        axis.set_xlabel("eps (L-inf)")
        axis.set_ylabel("accuracy (%)")
        axis.set_ylim(-2, 102)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Adversarial training (Goodfellow et al. 2014, Sec. 6): robust accuracy against eps (advlab)")
    save_figure(figure, path)


def selection_figure(experiment: AdvTrainExperiment, path: str | os.PathLike[str]) -> bool:
    """Per model: validation error after each epoch of the selection runs, the chosen epoch circled; False
    (nothing written) when no model was early-stopped."""
    names = [name for name, pair in experiment.pairs.items() if any(t.selection for t in pair)]
    if not names:
        return False
    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for trained, color in zip(experiment.pairs[name], ("tab:blue", "tab:red")):
            selection = trained.selection
            if selection is None:
                continue
            epochs = range(1, len(selection.validation) + 1)
            axis.plot(epochs, [100 * v for v in selection.validation], marker=".", color=color,
                      label=f"{trained.training}: {selection.measure}")
            axis.plot([selection.best_epoch], [100 * selection.validation[selection.best_epoch - 1]], "o", markersize=12,
                      markerfacecolor="none", color=color)
        axis.set_title(f"{name}: validation error during selection (seed {experiment.seeds[0]})")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel("validation error (%)")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Early stopping (circled: the epoch retrained for on all training images)")
    save_figure(figure, path)
    return True


def _ratio(ours: float | None, paper: float | None) -> str:
    return f"{ours / paper:.2f}" if ours is not None and paper else "—"


def _mean(copies: list[TrainedModel], metric: str, digits: int = 1) -> str:
    """The mean of `metric` over the seeds' copies, ± the sample standard deviation (percentage points) from 2 seeds."""
    values = [getattr(t, metric) for t in copies]
    if any(v is None or math.isnan(v) for v in values):
        return "—"
    spread = f" ± {100 * statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return percent(statistics.fmean(values), digits) + spread


def _with_ratio(copies: list[TrainedModel], metric: str, paper: float | None, digits: int = 1) -> str:
    """`_mean` with the mean's ratio to the paper's figure in brackets."""
    mean = statistics.fmean(getattr(t, metric) for t in copies)
    return f"{_mean(copies, metric, digits)} ({_ratio(mean, paper) if math.isfinite(mean) else '—'})"


def _seconds(this_run: float, total: float | None) -> str:
    """Training time: over all the runs that trained it, and in this run."""
    over_all = f"{total:.0f} s of training over all runs" if total is not None else "training time of earlier runs not recorded"
    return f"{over_all}, {this_run:.1f} s in this run"


def _selections(copies: list[TrainedModel]) -> str:
    selected = [t.selection for t in copies if t.selection]
    if not selected:
        return "—"
    if len(selected) == 1:
        s = selected[0]
        return f"{s.measure}: lowest {percent(min(s.validation), 2)} at epoch {s.best_epoch} of {len(s.validation)}"
    return (f"{selected[0].measure}: lowest " + ", ".join(percent(min(s.validation), 2) for s in selected)
            + " at epochs " + ", ".join(f"{s.best_epoch} of {len(s.validation)}" for s in selected))


def _cells(copies: list[TrainedModel], paper: dict[str, float]) -> list[str]:
    return [
        _with_ratio(copies, "clean_error", paper.get("clean_error"), 2),
        _with_ratio(copies, "fgsm_error", paper.get("fgsm_error")),
        _mean(copies, "pgd_error"),
        _with_ratio(copies, "fgsm_confidence_on_errors", paper.get("mean_confidence_on_errors")),
        _with_ratio(copies, "transfer_error", paper.get("transfer_error")),
        _mean(copies, "train_error", 2),
        _selections(copies),
        ", ".join(str(t.train_config["epochs"]) for t in copies),
    ]


def results_table(experiment: AdvTrainExperiment, name: str) -> str:
    """Paper against advlab for one pair; each advlab cell the mean over seeds (± standard deviation) with its ratio
    to the paper's figure in brackets."""
    standard, adversarial = (experiment.copies(name, training) for training in ("standard", "adversarial"))
    paper = experiment.paper.get(name, {"standard": {}, "adversarial": {}})

    def paper_column(kind: str) -> list[str]:
        p = paper[kind]
        stated = [p.get(k) for k in ("clean_error", "fgsm_error", None, "mean_confidence_on_errors", "transfer_error")]
        return [f"{100 * v:.4g}%" if v is not None else "—" for v in stated] + ["—", "—", "—"]

    eps, n = f"{experiment.eps:g}", f"{experiment.eval_limit:,}"
    metrics = [
        "clean test error",
        f"FGSM test error, eps={eps}",
        f"PGD test error, eps={eps} (first {n} test images)",
        "mean confidence on misclassified FGSM examples",
        "FGSM error on examples crafted on the other model",
        "training error",
        "early stopping (validation images held out of the training set)",
        "epochs on all training images",
    ]
    columns = [paper_column("standard"), _cells(standard, paper["standard"]), paper_column("adversarial"),
               _cells(adversarial, paper["adversarial"])]
    header = ["", "paper: standard", "advlab: standard (ratio)", "paper: adversarial", "advlab: adversarial (ratio)"]
    return table(header, [[metric, *(column[i] for column in columns)] for i, metric in enumerate(metrics)])


def write_advtrain_report(
    experiment: AdvTrainExperiment, out_dir: str | os.PathLike[str], *, command: str, notes: list[str], extra_sections: list[str] | None = None
) -> list[Path]:
    """results.json, report.md and curves.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves_figure(experiment, out / "curves.png")
    selected = selection_figure(experiment, out / "selection.png")
    lines = [
        "# Goodfellow et al. 2014, Sec. 6: adversarial training on MNIST",
        "",
        f"Produced by: `{command}`",
        "",
        f"Data: {experiment.data_source}; eps = {experiment.eps:g}, alpha = {experiment.alpha:g}, "
        + (f"seed {experiment.seeds[0]}. " if len(experiment.seeds) == 1 else
           f"seeds {', '.join(map(str, experiment.seeds))}: each advlab cell is the mean over seeds ± the standard "
           f"deviation, in percentage points. ")
        + "The paper's numbers are for maxout networks trained on all 60,000 training images; a cell in brackets is "
        "advlab's figure over the paper's.",
        "",
    ]
    for name, (standard, adversarial) in experiment.pairs.items():
        ratio = experiment.fgsm_ratio(name)
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        differences = experiment.setup_differences(name)
        lines += [
            f"## {name}" + (f" ({standard.architecture['hidden']} units x {standard.architecture['pieces']} pieces per layer)"
                            if "hidden" in standard.architecture and "pieces" in standard.architecture else ""),
            "",
            results_table(experiment, name),
            "",
            f"FGSM error of the adversarially trained {name} over the standard one's"
            + (" (their means over seeds)" if len(experiment.seeds) > 1 else "") + f": {ratio:.3f} "
            f"(target <= 1/3: {verdict}; the paper's final model over its Sec. 4 maxout: {PAPER_FGSM_RATIO:.3f}).",
            "",
        ]
        lines += _seed_section(experiment, name)
        if differences:
            lines += [f"Setup differs from the paper's for {name}: " + "; ".join(differences) + ".", ""]
        copies = [experiment.copies(name, training) for training in ("standard", "adversarial")]
        if adversarial.pgd_error is not None:
            over = " (mean over seeds)" if len(experiment.seeds) > 1 else ""
            lines += [
                f"Against PGD at eps={experiment.eps:g} the adversarially trained {name} errs on {_mean(copies[1], 'pgd_error')}"
                f"{over} of the first {experiment.eval_limit:,} test images (standard: {_mean(copies[0], 'pgd_error')}).",
                "",
            ]
        flagged = {seed: [c.name for c in a.evaluation.flagged] for seed, a in zip(experiment.seeds, copies[1])}
        if any(flagged.values()):
            per_seed = (", ".join(next(iter(flagged.values()))) if len(flagged) == 1 else
                        "; ".join(f"seed {seed}: {', '.join(names) or 'none'}" for seed, names in flagged.items()))
            lines += [f"Gradient-masking checks flagged for the adversarially trained {name}: {per_seed}.", ""]
        for trained in (standard, adversarial):
            lines += [
                f"### {name}, {trained.training} training: robustness on the first {experiment.eval_limit:,} test images"
                + (f" (seed {experiment.seeds[0]})" if len(experiment.seeds) > 1 else ""),
                "",
                evaluation_table(trained.evaluation),
                "",
                checks_table(trained.evaluation),
                "",
            ]
            if trained.evaluation.flagged:
                lines += [f"**{len(trained.evaluation.flagged)} gradient-masking check(s) flagged for this model.**", ""]
    lines += ["![robust accuracy against eps](curves.png)", ""]
    if selected:
        lines += ["![validation error during early stopping](selection.png)", ""]
    lines += [*(extra_sections or []), "## Settings", ""]
    for name, runs in experiment.runs.items():
        for seed, trained in ((seed, t) for seed, pair in zip(experiment.seeds, runs) for t in pair):
            selection = trained.selection
            lines.append(
                f"- {name}, {trained.training}, seed {seed}: architecture {trained.architecture}, objective {trained.objective}, "
                f"training {trained.train_config}, {_seconds(trained.train_seconds, trained.total_train_seconds)}"
                + (f" (resumed after epoch {trained.resumed_from})" if trained.resumed_from else "")
                + (f"; selection run: {selection.n_fit:,} images, validated on {selection.n_validation:,} ({selection.measure}), "
                   f"{len(selection.validation)} epochs ({'patience ran out' if selection.stopped_early else 'epoch limit reached'}), "
                   f"{_seconds(selection.seconds, selection.total_seconds)}, its checkpoint `{selection.checkpoint}`" if selection else "")
                + f"; final checkpoint `{trained.checkpoint}`"
            )
    attacks = {p.attack: {k: v for k, v in p.params.items() if k != "eps"}
               for pair in experiment.pairs.values() for t in pair for p in t.evaluation.points}
    lines += [f"- attack `{a}`: {params}" for a, params in attacks.items()]
    notes_all = notes + next(iter(experiment.pairs.values()))[0].evaluation.notes
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes_all] + [""]
    write_json_atomic(out / "results.json", {"command": command, **experiment.to_dict()})
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "results.json", out / "report.md", out / "curves.png", *([out / "selection.png"] if selected else [])]


def summary(experiment: AdvTrainExperiment) -> list[str]:
    """One line per trained model and one FGSM ratio per pair, for the command line."""
    lines = []
    for name, runs in experiment.runs.items():
        for seed, t in ((seed, t) for seed, pair in zip(experiment.seeds, runs) for t in pair):
            if t.selection:
                lines.append(f"  {name} {t.training:>11} seed {seed}: early stopping chose epoch {t.selection.best_epoch} of "
                             f"{len(t.selection.validation)} ({t.selection.measure} {percent(min(t.selection.validation), 2)})")
            lines.append(f"  {name} {t.training:>11} seed {seed}: clean error {percent(t.clean_error, 2)}, FGSM error {percent(t.fgsm_error)} "
                         f"(confidence on errors {percent(t.fgsm_confidence_on_errors)}), PGD error {percent(t.pgd_error)}, "
                         f"transfer error {percent(t.transfer_error)}; flagged checks: {len(t.evaluation.flagged)}")
        lines.append(f"  {name}: FGSM error ratio adversarial / standard = {experiment.fgsm_ratio(name):.3f} (target <= 0.333)")
        if experiment.clean_error_verdict(name):
            n = len(experiment.clean_error_changes(name))
            lines.append(f"  {name}: clean-error claim over {n} seed{'s' * (n > 1)}: {experiment.clean_error_verdict(name)}")
    return lines


def _seed_section(experiment: AdvTrainExperiment, name: str) -> list[str]:
    """The clean-error claim's verdict from the per-seed changes, and (from 2 seeds) the table of seeds."""
    lines = []
    runs, paper = experiment.runs[name], experiment.paper_clean_error_change(name)
    if len(runs) > 1:
        rows = [[seed, percent(s.clean_error, 2), percent(a.clean_error, 2),
                 f"{a.clean_error / s.clean_error - 1:+.1%}" if s.clean_error else "—", percent(s.fgsm_error), percent(a.fgsm_error),
                 " / ".join(str(t.train_config["epochs"]) for t in (s, a))]
                for seed, (s, a) in zip(experiment.seeds, runs)]
        lines += [table(["seed", "clean error, standard", "clean error, adversarial", "relative change", "FGSM error, standard",
                         "FGSM error, adversarial", "epochs (standard / adversarial)"], rows), ""]
    changes = experiment.clean_error_changes(name)
    if paper is not None and changes:
        verdict = claim_verdict(changes, paper)
        bounds = (f", one-sided 95% bounds [{verdict.lower:+.1%}, {verdict.upper:+.1%}], p = {number(verdict.p_value)}"
                  if verdict.lower is not None else "")
        over = f"mean over {len(changes)} seeds" if len(changes) > 1 else "one seed"
        lines += [f"Clean test error with adversarial training, relative to without: {statistics.fmean(changes):+.1%} "
                  f"({over}{bounds}; paper: {paper:+.1%}); verdict (advlab.experiments.verdict, "
                  f"conclusive from 2 seeds): **{experiment.clean_error_verdict(name)}**.", ""]
    return lines


def _spread(values: list[float]) -> str:
    """mean ± sample standard deviation, in percent (n = 1: the value)."""
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return percent(mean, 2)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{percent(mean, 2)} ± {100 * sd:.2f}"


def generalization_section(result: GeneralizationResult, *, heading: str = "##") -> list[str]:
    """Clean test error with and without adversarial training, per dataset and model, with verdicts."""
    runs = result.runs
    rows = []
    for c in result.comparisons:
        sample = next((r for r in runs if r.dataset == c.dataset and r.model == c.model), None)
        rows.append([
            c.dataset, f"{c.model} ({c.source})", sample.n_train if sample else "—", sample.epochs if sample else "—",
            len(c.seeds), _spread(c.standard), _spread(c.adversarial), f"{100 * c.mean_difference:+.2f} pp" if c.seeds else "—",
            number(c.p_value), f"{percent(c.paper_standard, 2)} -> {percent(c.paper_adversarial, 2)}", f"**{c.verdict}**",
        ])
    settings = result.settings
    lines = [
        f"{heading} Does adversarial training improve clean test error? (Szegedy Sec. 4.2, Goodfellow Sec. 6)",
        "",
        "Each model trained with and without its adversarial objective: the same data, epochs, seeds and model selection "
        "(the weights after the last epoch). FC100-100-10: Szegedy's pool (every "
        f"{settings['pool_every']} updates, {settings['pool_size']} training images attacked by targeted L-BFGS "
        f"{settings['pool_attack']} on the current model; {settings['pool_fraction']:g} pool examples per clean example in "
        f"each batch). Maxout: Goodfellow's FGSM objective (eps {settings['fgsm_eps']:g}, alpha {settings['fgsm_alpha']:g}). "
        "Clean test error on the whole test split, mean ± standard deviation over seeds; difference = adversarial - "
        "standard, paired by seed; p: one-sided paired t-test of the relative change. Verdict (advlab.experiments.verdict, "
        "L and U the one-sided 95% bounds of the mean relative change): reproduced when U < 0 and L <= the paper's "
        "relative change; not reproduced when L is above it (\"a smaller effect\" when U < 0 too); otherwise "
        "inconclusive; \"setup differs\" where the run's setup is not the paper's (listed below the table). The paper column is MNIST's for every data "
        "set (the papers report no other): on another set the test is of the relative change only ("
        + ", ".join(f"{method}: {100 * relative:+.1f}%" for method, relative in
                    dict((c.method, c.paper_relative) for c in result.comparisons).items()) + ").",
        "",
        "Data: " + "; ".join(f"{d['name']} from `{d['data_dir'] or 'the embedded default'}`" for d in settings["datasets"]) + ".",
        "",
        table(["data", "model", "train images", "epochs", "seeds", "standard", "adversarial", "difference", "p",
               "paper", "verdict"], rows),
        "",
        *[f"- Setup differs, {c.dataset} {c.model}: " + "; ".join(c.setup_differences) + "." for c in result.comparisons
          if c.setup_differences],
        "",
    ]
    if not result.complete:
        lines += ["The study had not finished every planned run when this report was written: the rows use the seeds "
                  "with both trainings done.", ""]
    return lines


def _pools(kept: list[int]) -> str:
    return f"{len(kept)}: {statistics.fmean(kept):.1f} ({min(kept)}-{max(kept)})" if kept else "—"


def write_generalization_report(result: GeneralizationResult, out_dir: str | os.PathLike[str], *, command: str,
                                notes: list[str]) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_run = [[r.dataset, r.model, r.training, r.seed, r.epochs, r.n_train, percent(r.train_error, 2), percent(r.test_error, 2),
                f"{r.seconds:.0f} s", _pools(r.pool_kept)] for r in result.runs]
    lines = ["# Adversarial training and clean generalization", "", f"Produced by: `{command}`", "",
             *generalization_section(result),
             "## Every run", "",
             table(["data", "model", "training", "seed", "epochs", "train images", "train error", "test error", "time",
                    "pools: count, examples kept (mean, min-max)"], per_run),
             "", "## Notes", "", *[f"- {n}" for n in notes], ""]
    write_json_atomic(out / "results.json", {"command": command, **result.to_dict()})
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "results.json", out / "report.md"]


def generalization_summary(result: GeneralizationResult) -> list[str]:
    return [f"  {c.dataset} {c.model}: standard {_spread(c.standard)}, {c.method} {_spread(c.adversarial)} over seeds {c.seeds}: "
            f"{c.verdict}" for c in result.comparisons]
