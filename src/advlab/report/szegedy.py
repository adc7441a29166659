"""The report of the Szegedy et al. 2013 reproduction: Markdown tables beside the paper's
numbers, two figures and a JSON of every result."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import matplotlib.pyplot as plt

from advlab.experiments.szegedy import paper
from advlab.experiments.szegedy.compare import all_off, generated_notes, is_off
from advlab.experiments.szegedy.settings import ARMS, PoolStudy, SzegedyResult, TransferTable
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.figures import image_grid, save_figure
from advlab.report.markdown import number, percent, table
from advlab.report.szegedy_cells import cell, off_markdown

MAGNIFY = 10  # the perturbation is shown as 0.5 + 10 r (Szegedy et al. 2013, Fig. 5)

def adversarial_figure(result: SzegedyResult, path: str | os.PathLike[str]) -> None:
    """Per model: clean images, their adversarial examples, and 0.5 + 10 * perturbation."""
    labels = {row.key: row.label for row in result.models}
    shown = {key: v for key, v in result.examples.items() if len(v[0])}
    figure, axes = plt.subplots(len(shown), 3, figsize=(15, 1.4 * len(shown) + 0.6), squeeze=False)
    for axis_row, (key, (x, x_adv, truth, predicted)) in zip(axes, shown.items()):
        columns = len(x)
        panels = [
            (x, f"{labels[key]}: clean, labels {' '.join(map(str, truth.tolist()))}"),
            (x_adv, f"adversarial, predicted {' '.join(map(str, predicted.tolist()))}"),
            ((0.5 + MAGNIFY * (x_adv - x)).clamp(0, 1), f"perturbation x{MAGNIFY} + 0.5"),
        ]
        for axis, (images, title) in zip(axis_row, panels):
            axis.imshow(image_grid(images, columns), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    figure.suptitle("Minimal adversarial examples per model (Szegedy et al. 2013, Fig. 5 style; advlab)")
    save_figure(figure, path)


def units_figure(result: SzegedyResult, path: str | os.PathLike[str]) -> None:
    """One row per direction (units, then random directions): its top-k test images."""
    units = result.units
    images = result.unit_images
    rows = images.shape[0]
    grid = image_grid(images.reshape(-1, *images.shape[-3:]), units.k)
    names = [f"unit {u} (purity {p:.2f})" for u, p in zip(units.units, units.unit_purity)]
    names += [f"random v{i} (purity {p:.2f})" for i, p in enumerate(units.random_purity)]
    height = images.shape[-2] + 1
    figure, axis = plt.subplots(figsize=(1.2 * units.k + 2.5, 0.75 * rows + 1))
    axis.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_yticks([height * i + height / 2 - 1 for i in range(rows)], names, fontsize=8)
    axis.set_xticks([])
    axis.axhline(height * len(units.units) - 1, color="red", linewidth=1.5)
    axis.set_title(f"Top-{units.k} test images along units (above the line) and random directions\nof {units.layer}", fontsize=10)
    save_figure(figure, path)


def _transfer_markdown(t: TransferTable, cells: dict[tuple[str, str], float], distortions: dict[str, float]) -> str:
    header = ["examples \\ model fed", *t.columns, "mean distortion", "factor", "n"]
    rows = []
    for i, row in enumerate(t.rows):
        values = [cell(t.error[i][j], cells.get((row, column))) for j, column in enumerate(t.columns)]
        base = row.removesuffix(", magnified")
        reference = paper.MAGNIFIED_DISTORTION if row.endswith(", magnified") else distortions.get(base)
        rows.append([row, *values, cell(t.mean_distortion[i], reference, percent_digits=None), f"{t.factor[i]:.3g}", t.n[i]])
    return table(header, rows)


def _baselines_markdown(t: TransferTable) -> str:
    """Per row, on exactly its images: clean error; Gaussian noise of the same norms; at the paper's distortion."""
    header = ["row (its images)", *t.columns]
    rows = []
    for i, row in enumerate(t.rows):
        parts = []
        for j in range(len(t.columns)):
            text = f"clean {percent(t.clean_error[i][j])}"
            if t.noise_error[i] is not None:
                text += f", noise {percent(t.noise_error[i][j])}"
            if t.at_paper[i] is not None:
                text += f", at paper's distortion {percent(t.at_paper[i][j])}"
            parts.append(text)
        rows.append([f"{row} ({t.n[i]})", *parts])
    return table(header, rows)


def _spread(values: list[float]) -> str:
    """mean ± standard deviation, in percent."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{percent(statistics.fmean(values), 2)} ± {100 * sd:.2f}" if values else "—"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%"


def longer_section(result: SzegedyResult) -> list[str]:
    """Each model trained longer, fed Table 2's rows, beside the model as trained and the paper."""
    out = []
    labels = {m.key: m for m in result.models}
    t = result.transfer
    for entry in result.longer:
        base, m = labels[entry.key], entry.model
        j = t.columns.index(base.label)
        rows, off_before, off_after = [], 0, 0
        for i, row in enumerate(entry.rows):
            reference = paper.TABLE2.get((row, base.label))
            before = t.error[t.row(row)][j]
            counted = reference is not None and row != base.label  # its own examples' row: another model's for the longer one
            off_before += counted and is_off(before, reference)
            off_after += counted and is_off(entry.error[i], reference)
            rows.append([row, cell(before, reference), cell(entry.error[i], reference),
                         f"{percent(t.clean_error[t.row(row)][j])} / {percent(entry.clean_error[i])}"])
        known = paper.TABLE1.get(base.label)
        out += [
            f"### {base.label} trained {entry.factor}x longer",
            "",
            f"Does a model nearer the paper's test error move its column of Table 2 towards the paper's? {base.label} trained "
            f"{m.training['epochs']} epochs instead of {base.training['epochs']} (from the start"
            f"{', its learning rate decaying to 0 over all of them' if m.training.get('lr_schedule') == 'cosine' else ''}): train error {percent(m.train_error, 2)} (as trained "
            f"{percent(base.train_error, 2)}), test error {cell(m.test_error, known and known[1], percent_digits=2)} (as trained "
            f"{cell(base.test_error, known and known[1], percent_digits=2)}). Fed the same images as Table 2's rows:",
            "",
            table(["examples", f"{base.label} as trained", f"trained {entry.factor}x longer", "clean error on them (as trained / longer)"], rows),
            "",
            f"Cells of this column more than 1.5x off the paper's (the row of {base.label}'s own examples left out): {off_before} as "
            f"trained, {off_after} trained {entry.factor}x longer.",
            "",
        ]
    return out


def pool_section(study: PoolStudy) -> list[str]:
    """Sec. 4.2: the three arms, the verdict of each pool against no pool, the setup differences."""
    s = study.settings
    wd, adv = paper.ADVERSARIAL_TRAINING["weight_decay"], paper.ADVERSARIAL_TRAINING["adversarial"]
    runs_rows = []
    for arm in ARMS:
        runs = [r for r in study.runs if r.arm == arm]
        if not runs:
            continue
        layers = runs[0].layers
        kept = ", ".join(f"{layer} {sum(r.reached[layer] for r in runs) / max(1, sum(r.attacked[layer] for r in runs)):.0%} of "
                         f"{sum(r.attacked[layer] for r in runs):,}" for layer in layers) or "—"
        runs_rows.append([arm, ", ".join(layers) or "—", len(runs), runs[0].epochs, _spread([r.train_error for r in runs]),
                          _spread([r.test_error for r in runs]), " ".join(percent(r.test_error, 2) for r in runs), kept,
                          f"{statistics.fmean(r.seconds for r in runs):.0f} s"])
    baseline = [r.test_error for r in study.runs if r.arm == "no pool"]
    verdict_rows = [[c.arm, len(c.seeds), f"{percent(statistics.fmean(c.baseline), 2)} -> {percent(statistics.fmean(c.pooled), 2)}"
                     if c.seeds else "—", _signed(c.mean_relative if c.seeds else None), f"[{_signed(c.lower)}, {_signed(c.upper)}]",
                     number(c.p_value), f"{percent(wd, 2)} -> {percent(adv, 2)} ({_signed(study.paper_relative)})", f"**{c.text}**"]
                    for c in study.comparisons]
    by_arm = {c.arm: c for c in study.comparisons}
    differences = [f"- {c.arm}: " + ("; ".join(c.setup_differences) or "none") for c in study.comparisons]
    answer = "changes" if study.changes_verdict else "does not change"
    return [
        "## Section 4.2: training with a pool of adversarial examples",
        "",
        f"The paper: {paper.POOL_SETUP['network']} with weight decay and no dropout reached under {percent(adv)} test error "
        f"with a pool of adversarial examples, a random subset of it continuously replaced, mixed into the training set, against "
        f"{percent(wd)} with weight decay alone; it \"only got improvements by generating adversarial examples for each layer "
        "outputs which were used to train all the layers above\", with a pool per layer. Three arms per seed, the same "
        f"model ({s['model']}: its registered optimiser, learning rate and its schedule (spanning the arm's epochs), batch size "
        "and the paper's weight decays, no dropout), "
        "data, epochs (in the table) and seed: no pool; a pool of input examples "
        "only; a pool per layer (the input and each sigmoid layer's output h_k: the targeted box-constrained L-BFGS of Sec. 4.1 "
        "on the sub-network above layer k, h_k's box [0, 1], towards a random wrong label, with the true label kept; such an "
        "example trains only the layers above k). Pools (`advlab.training.objectives.LayerPool`): "
        f"{s['pool_size']} slots in all, split evenly among the arm's layers, built at the first update; then a random "
        f"{s['refresh_fraction']:.0%} of each pool replaced every {s['refresh_every']} updates, across epochs (the pools are "
        f"checkpointed with the training, so a resumed training continues exactly); {s['fraction']:g} pool examples per clean "
        f"example in each minibatch; attack {s['attack']}.",
        "",
        table(["arm", "pool layers", "seeds", "epochs", "train error", "test error", "per seed", "pool examples kept: share of those attacked (all seeds)",
               "time per training"], runs_rows),
        "",
        "Verdict (`advlab.experiments.verdict`, each pool arm against no pool, paired by seed; L and U the one-sided 95% bounds "
        "of the mean relative change of the test error): reproduced when U < 0 and L <= the paper's change; not reproduced "
        "when L is above it (\"a smaller effect\" when U < 0 too); otherwise inconclusive; \"setup differs\" where this "
        "run's setup is not the paper's (listed below).",
        "",
        table(["arm vs no pool", "seeds", "test error (mean)", "relative change", "[L, U]", "p", "paper", "verdict"], verdict_rows),
        "",
        "Setup differences from the paper's (computed from the settings):",
        "",
        *differences,
        "",
        f"The per-layer pool {answer} the verdict: input pool {by_arm['input pool'].verdict}, per-layer pool "
        f"{by_arm['per-layer pool'].verdict}. The paper itself reports no improvement from input examples alone, so for the "
        "input pool \"not reproduced\" agrees with the paper. Without a pool, the test error is "
        + (f"{percent(statistics.fmean(baseline), 2)}, {statistics.fmean(baseline) / wd:.2f}x the paper's {percent(wd)}." if baseline else "—."),
        "",
    ]


def write_report(result: SzegedyResult, out_dir: str | os.PathLike[str], *, command: str, notes: list[str],
                 extra_sections: list[str] | None = None) -> list[Path]:
    """report.md, results.json, adversarial.png and units_vs_directions.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = result.settings
    adversarial_figure(result, out / "adversarial.png")
    units_figure(result, out / "units_vs_directions.png")
    attacked = f"{settings['attack']} {settings['attack_params'] or '(default parameters)'}"
    off = all_off(result)

    distortion = {d.key: d for d in result.distortion}
    table1 = []
    for row in result.models:
        d = distortion[row.key]
        known = paper.TABLE1.get(row.label)
        table1.append([
            row.label,
            cell(row.train_error, known and known[0], percent_digits=2),
            cell(row.test_error, known and known[1], percent_digits=2),
            cell(d.targeted_mean, known and known[2], percent_digits=None),
            number(d.exact_targeted_mean),
            f"{number(d.all_targets_mean)} ({d.all_targets_method}, {d.all_targets_n} images)",
            f"{number(d.untargeted_mean)} (exact {number(d.exact_untargeted_mean)})",
            f"{d.n_attacked} / {d.n_clean_correct} / {percent(d.targeted_success_rate)}",
            f"{number(row.train_seconds, 1)} s / {number(d.seconds, 1)} s",
        ])
    table3 = []
    for r in result.split_models:
        known = paper.TABLE3.get(r.label)
        table3.append([r.label, r.trained_on, r.n_train, cell(r.train_error, known and known[0], percent_digits=2),
                       cell(r.test_error, known and known[1], percent_digits=2), f"{number(r.train_seconds, 1)} s"])
    labels = {row.key: row.label for row in result.models}
    noise = [[labels[n.key], n.n, number(n.mean_distortion), percent(n.adversarial_error), percent(n.gaussian_error), percent(n.uniform_error)]
             for n in result.noise]
    lipschitz = [[labels[b.key], ", ".join(f"{layer.name} {layer.bound:.3g}" for layer in b.layers if layer.bound != 1.0),
                  f"{b.network_bound:.4g}", f"{b.max_observed_ratio:.4g}", f"{b.mean_observed_ratio:.4g}", b.n]
                 for b in result.lipschitz]
    units = result.units
    units_rows = [
        [f"{len(units.units)} units (natural basis vectors)", " ".join(f"{p:.2f}" for p in units.unit_purity), number(units.mean_unit_purity, 2)],
        [f"{len(units.random_purity)} random directions", " ".join(f"{p:.2f}" for p in units.random_purity), number(units.mean_random_purity, 2)],
        [f"{units.k} random test images (chance)", "—", number(units.chance_purity, 2)],
    ]
    lines = [
        "# Szegedy et al. 2013, \"Intriguing properties of neural networks\", reproduced",
        "",
        f"Produced by: `{command}`",
        "",
        f"Data: {result.data_source}: {result.n_train:,} training and {result.n_test:,} test images "
        f"(the paper: 60,000 and 10,000). Attack: {attacked}, towards one target label per image drawn at random "
        f"among the wrong classes (seeded), on {settings['n_attack']} training images per model (Tables 1, 2, "
        f"equal-size noise, Lipschitz) and {settings['n_attack_test']} test images per model (Table 4), drawn at "
        "random with the run's seed. Every cell with a paper value reads `advlab / paper / ratio`; the ratio is "
        "advlab / paper (— where the paper reports 0). Cells more than 1.5x off are listed under each table with "
        "the explanation the run's own numbers test, or \"not explained\".",
        "",
        "## Table 1: models, errors and average minimal distortion",
        "",
        "Minimal distortion: sqrt(sum r^2 / n) with pixels in [0, 1] and n = 784. Main column (the paper's Sec. 4.1 "
        "definition): the smallest perturbation found that makes the model output a given label l, with "
        "the cross-entropy loss, l drawn at random among the wrong labels of each image; mean over the attacked "
        "training images the model classifies correctly and on which l was reached. Beside it, labelled: the "
        "proven minimum to the same targets (`advlab.exact`, linear models), the mean over all nine targets "
        "(exact for linear models, the attack otherwise, on the first images), and the untargeted minimum.",
        "",
        table(["model", "train error", "test error", "targeted distortion (main)", "exact, same targets",
               "mean over all targets", "untargeted (exact)", "attacked / correct / reached", "train / attack time"], table1),
        "",
        *off_markdown(off["1"]),
        "",
        "![adversarial examples](adversarial.png)",
        "",
        "## Table 2: cross-model transfer",
        "",
        "Each row's images are the targeted adversarial examples found for that model (images it classified "
        "correctly and on which the target was reached), fed to every model; noise rows add N(0, stddev^2) per "
        "pixel to all attacked images, unclipped as in the paper (distortion sqrt(mean r^2) = the stddev); the rows "
        "marked \"clipped to [0, 1]\" are the same draws clipped to the image box (an extra, not the paper's).",
        "",
        _transfer_markdown(result.transfer, paper.TABLE2, paper.TABLE2_DISTORTION),
        "",
        "Baselines, each on exactly its row's images: the fed model's clean error; Gaussian directions of the same "
        "per-image norms; the row's perturbations rescaled to the paper's average distortion for the row.",
        "",
        _baselines_markdown(result.transfer),
        "",
        *off_markdown(off["2"]),
        "",
        *longer_section(result),
        "## Tables 3 and 4: transfer across training sets",
        "",
        "The training set is split at random into disjoint halves P1 and P2 ("
        + " and ".join(dict.fromkeys(f"{r.trained_on} {r.n_train:,}" for r in result.split_models))
        + " images; the paper: two parts of 30,000 of its 60,000).",
        "",
        table(["model", "trained on", "images", "train error", "test error", "train time"], table3),
        "",
        *off_markdown(off["3"]),
        "",
        "Rows: targeted adversarial examples (test images) found for each model; the same perturbations "
        "magnified along r, inside the box, by the paper's factor (0.1 / the paper's distortion for that row, "
        "column `factor`); Gaussian noise at the paper's two stddevs on all attacked test images, unclipped as in the "
        "paper, and the same draws clipped to [0, 1] (extra rows).",
        "",
        _transfer_markdown(result.split_transfer, paper.TABLE4, paper.TABLE4_DISTORTION),
        "",
        "Baselines, each on exactly its row's images (for magnified rows, \"at paper's distortion\" is at 0.1):",
        "",
        _baselines_markdown(result.split_transfer),
        "",
        *off_markdown(off["4"]),
        "",
        *(pool_section(result.pool_study) if result.pool_study is not None else []),
        "## Random noise of the same size",
        "",
        "Each model on its own adversarial examples and on random perturbations of exactly the same per-example "
        "L2 norm (after the [0, 1] box): a Gaussian direction and a uniform (U(-1, 1) per pixel) direction.",
        "",
        table(["model", "n", "mean distortion", "error, adversarial", "error, Gaussian same norm", "error, uniform same norm"], noise),
        "",
        "## Section 3: units vs directions",
        "",
        f"Layer {units.layer} ({units.width} units). For each direction v (a unit e_i, or a random unit vector), the "
        f"{units.k} test images with the largest <phi(x), v>; coherence = label purity, the fraction of the {units.k} "
        "images that share the most common label.",
        "",
        table(["directions", "purity of each", "mean"], units_rows),
        "",
        "![units vs directions](units_vs_directions.png)",
        "",
        "## Section 4.3: upper Lipschitz bounds",
        "",
        "Per layer (L2, layers with bound 1 left out): ||W||_2 for fully connected layers, 1/4 for the sigmoid; the "
        "network bound is their product. Observed: ||f(x + r) - f(x)||_2 / ||r||_2 on the logits, over the "
        "model's adversarial examples; it can never exceed the bound.",
        "",
        table(["model", "layer bounds", "network bound", "max observed", "mean observed", "n"], lipschitz),
        "",
        *(extra_sections or []),
        "## Notes",
        "",
        *[f"- {n}" for n in generated_notes(result) + notes],
        "",
        "## Run",
        "",
        "- Wall time per stage in this run (0: read from the cache): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()),
        f"- Compute time recorded in the cache when each model was trained and attacked: training "
        f"{result.compute_seconds['train']:.0f} s, attacks {result.compute_seconds['attack']:.0f} s"
        + (f", Sec. 4.2 trainings {result.compute_seconds['sec4.2 pool']:.0f} s." if "sec4.2 pool" in result.compute_seconds else "."),
        f"- Cache (trained models, attacks, stage results): `{result.cache_dir}`; a rerun with the same settings "
        "and data resumes from it.",
        f"- Settings: `{settings}`",
        "",
    ]
    payload = {"command": command, **result.to_dict(), "off": {k: [c.__dict__ for c in v] for k, v in off.items()}}
    write_json_atomic(out / "results.json", payload)
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "report.md", out / "results.json", out / "adversarial.png", out / "units_vs_directions.png"]



def summary(result: SzegedyResult) -> list[str]:
    """Table 1 in short, for the command line."""
    distortion = {d.key: d for d in result.distortion}
    return table(
        ["model", "train error", "test error", "targeted distortion / paper", "reached"],
        [[r.label, percent(r.train_error), percent(r.test_error),
          cell(distortion[r.key].targeted_mean, (paper.TABLE1.get(r.label) or (None,) * 3)[2], percent_digits=None),
          percent(distortion[r.key].targeted_success_rate)] for r in result.models],
    ).splitlines()
