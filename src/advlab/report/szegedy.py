"""The report of the Szegedy et al. 2013 reproduction: Markdown tables beside the paper's
numbers, two figures and a JSON of every result."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from advlab.experiments.szegedy import (
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE4,
    PAPER_TABLE4_NOISE,
    SzegedyResult,
    TransferTable,
)
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.figures import image_grid, save_figure
from advlab.report.markdown import number, percent, table

MAGNIFY = 10  # the perturbation is shown as 0.5 + 10 r (Szegedy et al. 2013, Fig. 5)
NOTES = [
    "The paper trains on the full 60,000-image MNIST training set; `../shared/data/mnist` holds only its first "
    "6,309 images (the embedded default: 4,000). What follows from that: every network's test error is several "
    "times the paper's, FC10(1e-4) has a lower training error than the paper's (a linear model nearly fits "
    "6,309 images), the P1/P2 halves of Tables 3-4 hold about 3,150 images each, and the networks, trained on "
    "less data, are less robust to large Gaussian noise than the paper's.",
    "FC10(lambda): advlab minimises mean cross-entropy + lambda * 0.5 * ||W||^2 (the paper does not say how its "
    "lambda is normalised); read this way, FC10(1) errs about as often as the paper's.",
    "Training: Adam with fixed epochs (FC10: lr 1e-3, batch 256, 60 epochs; sigmoid networks: lr 3e-3, batch 64, "
    "20 epochs; AE400-10: 12 epochs of autoencoder pretraining then 12 of training the classifier with the "
    "encoder), with the paper's weight decays. A softmax on the frozen code of an autoencoder trained on 6,309 "
    "images stays far from the paper's 1.9% test error, so AE400-10's encoder is fine-tuned, as was usual in 2013.",
    "The main attack is untargeted: per image, the smallest perturbation found that changes the prediction, "
    "which is what 'the distortion needed to reach 0% accuracy' asks. Images are a random subset of the training "
    "set (Tables 1-2) and of the test set (Table 4), not all of them, to finish in minutes on two CPU cores.",
]


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


def _cell(value: float, paper: float | None, digits: int = 1) -> str:
    return percent(value, digits) + (f" ({percent(paper, digits)})" if paper is not None else "")


def _transfer_markdown(t: TransferTable, paper: dict[tuple[str, str], float], diagonal_paper: bool) -> str:
    header = ["examples \\ model fed", *t.columns, "mean distortion", "n"]
    rows = []
    for i, row in enumerate(t.rows):
        cells = []
        for j, column in enumerate(t.columns):
            known = paper.get((row, column), 1.0 if diagonal_paper and row == column else None)
            cells.append(_cell(t.error[i][j], known))
        rows.append([row, *cells, number(t.mean_distortion[i]), t.n[i]])
    return table(header, rows)


def write_report(result: SzegedyResult, out_dir: str | os.PathLike[str], *, command: str, notes: list[str]) -> list[Path]:
    """report.md, results.json, adversarial.png and units_vs_directions.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = result.settings
    adversarial_figure(result, out / "adversarial.png")
    units_figure(result, out / "units_vs_directions.png")
    attacked = f"{settings['attack']} {settings['attack_params'] or '(default parameters)'}"

    distortion = {d.key: d for d in result.distortion}
    table1 = []
    for row in result.models:
        d = distortion[row.key]
        paper = PAPER_TABLE1.get(row.label)
        table1.append([
            row.label,
            _cell(row.train_error, paper and paper[0], 2),
            _cell(row.test_error, paper and paper[1], 2),
            number(d.mean_distortion) + (f" ({number(paper[2])})" if paper else ""),
            number(d.exact_mean_distortion),
            number(d.random_target_mean_distortion) + (f" ({percent(d.random_target_success_rate)} reached)" if d.random_target_success_rate is not None else ""),
            f"{d.n_attacked} / {d.n_clean_correct} / {percent(d.success_rate)}",
            f"{number(row.train_seconds, 1)} s / {number(d.seconds, 1)} s",
        ])
    table3 = [[r.label, r.trained_on, r.n_train, percent(r.train_error, 2), percent(r.test_error, 2), f"{number(r.train_seconds, 1)} s"]
              for r in result.split_models]
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
        f"(the paper: 60,000 and 10,000). Attack: {attacked}, untargeted, on {settings['n_attack']} training images "
        f"per model (Tables 1, 2, equal-size noise, Lipschitz) and {settings['n_attack_test']} test images per model "
        "(Table 4), drawn at random with the run's seed. Cells read `advlab (paper)`; the paper's value is given "
        "where the paper reports that cell.",
        "",
        "## Table 1: models, errors and average minimal distortion",
        "",
        "Minimal distortion: sqrt(sum r^2 / n) with pixels in [0, 1] and n = 784, averaged over the attacked training "
        "images the model classifies correctly (the paper: the distortion needed to reach 0% accuracy on the "
        "training set). For the linear models, the exact minimum over the same images (`advlab.exact`) grades the attack. "
        "Random target: the same attack asked to reach a uniformly drawn wrong class on each image (mean over the "
        "images where it did). The paper does not say whether its Table 1 attacks were targeted; compare its numbers "
        "with both columns.",
        "",
        table(["model", "train error", "test error", "mean min. distortion", "exact minimum", "random target",
               "attacked / correct / fooled",
               "train / attack time"], table1),
        "",
        "![adversarial examples](adversarial.png)",
        "",
        "## Table 2: cross-model transfer",
        "",
        "Each row's images are the adversarial examples found for that model (only images it classified "
        "correctly and the attack fooled), fed to every model; the clean row is the same attacked images "
        "unperturbed; noise rows add N(0, stddev^2) per pixel, clipped to [0, 1] (their distortion is measured "
        "after the clip). The paper's diagonal is 100% for every model.",
        "",
        _transfer_markdown(result.transfer, PAPER_TABLE2, diagonal_paper=True),
        "",
        "## Tables 3 and 4: transfer across training sets",
        "",
        "The training set is split at random into disjoint halves P1 and P2.",
        "",
        table(["model", "trained on", "images", "train error", "test error", "train time"], table3),
        "",
        f"Rows: adversarial examples (test images) found for each model, then the same perturbations magnified "
        f"(along r, inside the box) to distortion exactly {settings['magnify_to']:g}, then Gaussian noise of exactly "
        f"the rows' mean distortion and of {settings['magnify_to']:g}. Paper, noise at stddev 0.1: "
        f"{percent(PAPER_TABLE4_NOISE[0])} to {percent(PAPER_TABLE4_NOISE[1])} on all three models.",
        "",
        _transfer_markdown(result.split_transfer, PAPER_TABLE4, diagonal_paper=True),
        "",
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
        "## Notes",
        "",
        *[f"- {n}" for n in notes],
        "",
        "## Run",
        "",
        f"- Wall time per stage in this run (0: read from the cache): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()),
        f"- Compute time recorded in the cache when each model was trained and attacked: training "
        f"{result.compute_seconds['train']:.0f} s, attacks {result.compute_seconds['attack']:.0f} s.",
        f"- Cache (trained models, attacks, stage results): `{result.cache_dir}`; a rerun with the same settings "
        "and data resumes from it.",
        f"- Settings: `{settings}`",
        "",
    ]
    write_json_atomic(out / "results.json", {"command": command, **result.to_dict()})
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "report.md", out / "results.json", out / "adversarial.png", out / "units_vs_directions.png"]

