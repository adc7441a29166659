"""Szegedy et al. 2013 beside advlab, cell by cell: which cells are more than 1.5x off the
paper's, and for each the explanation that the run's own numbers test (or "not explained"): the
fed model's clean error on the same images, the distortion rescaled to the paper's, Gaussian noise
of the same norms, the same model trained longer, the training-set size. Every sentence is
computed from the result it describes; `advlab.report.szegedy` only lays them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advlab.experiments.szegedy import paper
from advlab.experiments.szegedy.settings import LongerTraining, SzegedyResult, TransferTable
from advlab.experiments.text import number, percent

OFF = 1.5  # a cell is "off" when advlab / paper is above this or below its inverse
ZERO = 0.01  # where the paper reports 0, an advlab value of at least this (1 pp) counts as off


def ratio(value: float | None, reference: float | None) -> float | None:
    """advlab / paper, None where undefined (a missing value or a paper value of 0)."""
    if value is None or reference is None or reference == 0 or math.isnan(value):
        return None
    return value / reference


def is_off(value: float | None, reference: float | None) -> bool:
    if value is None or reference is None or math.isnan(value):
        return False
    if reference == 0:
        return value >= ZERO
    r = value / reference
    return r > OFF or r < 1 / OFF


def within(value: float | None, reference: float | None) -> bool:
    return value is not None and reference is not None and not math.isnan(value) and not is_off(value, reference)


@dataclass
class OffCell:
    table: str
    row: str
    column: str
    advlab: float
    paper: float
    explanation: str
    explained: bool

    def line(self, percents: bool = True) -> str:
        show = percent if percents else number
        return f"{self.row} -> {self.column}: advlab {show(self.advlab)}, paper {show(self.paper)}: {self.explanation}"


def _data_size_effect(result: SzegedyResult) -> tuple[float, float, int, int] | None:
    """(test error of FC100-100-10 on all N training images, on half of them, N, N/2), when both ran."""
    full = next((m for m in result.models if m.label == "FC100-100-10"), None)
    half = next((m for m in result.split_models if m.label == "FC100-100-10"), None)
    if full is None or half is None:
        return None
    return full.test_error, half.test_error, full.n_train, half.n_train


def _longer(result: SzegedyResult, label: str) -> LongerTraining | None:
    """The entry of the model displayed as `label` trained longer, if the run made one."""
    keys = {m.key: m.label for m in result.models}
    return next((e for e in result.longer if keys.get(e.key) == label), None)


def _explain_error(result: SzegedyResult, value: float, reference: float, which: str, label: str = "") -> tuple[str, bool]:
    """Test error above the paper's: explained by the training's length when the same model trained longer
    comes within 1.5x of the paper's; by training-set size when halving the set measurably raised it."""
    longer = _longer(result, label) if which == "test" and label else None
    if longer is not None and value > reference and within(longer.model.test_error, reference):
        return (f"training length (tested: the same model trained {longer.factor}x longer, {longer.model.training['epochs']} epochs "
                f"from the start, has test error {percent(longer.model.test_error, 2)})"), True
    effect = _data_size_effect(result)
    if which == "test" and value > reference and effect and result.n_train < 60_000 and effect[1] > 1.2 * effect[0]:
        full, half, n, n_half = effect
        return (f"training-set size (tested: halving the training set from {n:,} to {n_half:,} images raised "
                f"FC100-100-10's test error from {percent(full, 2)} to {percent(half, 2)}; the paper trained on 60,000)"), True
    if longer is not None:
        return (f"not explained (tested: the same model trained {longer.factor}x longer has test error "
                f"{percent(longer.model.test_error, 2)})"), False
    return "not explained", False


def _error_cells(result: SzegedyResult, table: str, label: str, errors: tuple[float, float],
                 known: tuple[float, ...]) -> list[OffCell]:
    """The train/test error cells of one model row that are off the paper's, with their explanation."""
    out = []
    for column, value, reference in (("train error", errors[0], known[0]), ("test error", errors[1], known[1])):
        if is_off(value, reference):
            # only a zoo row (Table 1) is the model that was trained longer; a split model of the same name is another
            text, ok = _explain_error(result, value, reference, column.split()[0], label if table == "1" else "")
            out.append(OffCell(table, label, column, value, reference, text, ok))
    return out


def table1_off(result: SzegedyResult) -> list[OffCell]:
    out = []
    dist = {d.key: d for d in result.distortion}
    for m in result.models:
        known = paper.TABLE1.get(m.label)
        if known is None:
            continue
        out += _error_cells(result, "1", m.label, (m.train_error, m.test_error), known)
        d = dist[m.key]
        if is_off(d.targeted_mean, known[2]):
            if d.exact_targeted_mean is not None and within(d.targeted_mean, d.exact_targeted_mean):
                text = (f"not explained; the attack is ruled out (the proven minimum to the same targets is "
                        f"{number(d.exact_targeted_mean)})")
            else:
                text = "not explained"
            out.append(OffCell("1", m.label, "targeted distortion", d.targeted_mean, known[2], text, False))
    return out


def _transfer_explanation(t: TransferTable, i: int, j: int, reference: float, base: float | None, noise: bool,
                          longer: LongerTraining | None = None) -> tuple[str, bool]:
    """Tests, in order: the fed model's clean error on the same images; the size of the distortion; the fed
    model trained longer (`longer`, when the run made it) on the same images."""
    clean = t.clean_error[i][j]
    if base is not None:
        adjusted = t.error[i][j] - clean + base
        if within(adjusted, reference) or (reference == 0 and adjusted < ZERO):
            return (f"the fed model's clean error on the same {t.n[i]} images is {percent(clean)} (paper's baseline "
                    f"{percent(base)}); without that difference the cell is {percent(adjusted)}"), True
    at_paper = t.at_paper[i]
    if at_paper is not None and within(at_paper[j], reference):
        return (f"the distortion's size: with this row's perturbations rescaled to the paper's distortion for the "
                f"row, the cell is {percent(at_paper[j])}"), True
    trained = longer.error[longer.rows.index(t.rows[i])] if longer is not None and t.rows[i] in longer.rows else None
    if trained is not None and within(trained, reference):
        return (f"the fed model's training length: the same model trained {longer.factor}x longer (test error "
                f"{percent(longer.model.test_error, 2)}) gives {percent(trained)} on the same images"), True
    tested = [f"clean error on the same images {percent(clean)}"]
    if at_paper is not None:
        tested.append(f"at the paper's distortion {percent(at_paper[j])}")
    if not noise and t.noise_error[i] is not None:
        tested.append(f"Gaussian noise of the same norms {percent(t.noise_error[i][j])}")
    if trained is not None:
        tested.append(f"the fed model trained {longer.factor}x longer {percent(trained)}")
    return "not explained (tested: " + "; ".join(tested) + ")", False


def transfer_off(result: SzegedyResult, which: str) -> list[OffCell]:
    """Table 2 ("2") or Table 4 ("4") cells more than 1.5x off the paper's."""
    t = result.transfer if which == "2" else result.split_transfer
    cells = paper.TABLE2 if which == "2" else paper.TABLE4
    # the paper's error of the fed model without perturbation: training error (Table 2 attacks training
    # images), test error (Table 4 attacks test images)
    base = {k: v[0] for k, v in paper.TABLE1.items()} if which == "2" else {k: v[1] for k, v in paper.TABLE3.items()}
    out = []
    for i, row in enumerate(t.rows):
        for j, column in enumerate(t.columns):
            reference = cells.get((row, column))
            if reference is None or not is_off(t.error[i][j], reference):
                continue
            longer = _longer(result, column) if which == "2" else None
            text, ok = _transfer_explanation(t, i, j, reference, base.get(column), row.startswith("Gaussian"), longer)
            out.append(OffCell(which, row, column, t.error[i][j], reference, text, ok))
    return out


def table3_off(result: SzegedyResult) -> list[OffCell]:
    out = []
    for m in result.split_models:
        known = paper.TABLE3.get(m.label)
        if known is not None:
            out += _error_cells(result, "3", m.label, (m.train_error, m.test_error), known)
    return out


def all_off(result: SzegedyResult) -> dict[str, list[OffCell]]:
    return {"1": table1_off(result), "2": transfer_off(result, "2"), "3": table3_off(result), "4": transfer_off(result, "4")}


def generated_notes(result: SzegedyResult) -> list[str]:
    """Notes written from the measured numbers (tests check each against them)."""
    notes = []
    for m in result.models:
        known = paper.TABLE1.get(m.label)
        if known is None:
            continue
        train, test = m.train_error, m.test_error
        shown, papers = (float(f"{100 * v:.2f}") for v in (train, known[0]))  # as printed (percent, 2 decimals)
        relation = "lower than" if shown < papers else "higher than" if shown > papers else "equal to"
        notes.append(f"{m.label}: training error {percent(train, 2)}, {relation} the paper's {percent(known[0], 2)}; "
                     f"test error {percent(test, 2)} against {percent(known[1], 2)}.")
    if result.n_train < 60_000:
        notes.append(f"Training set: {result.n_train:,} images against the paper's 60,000 (P1/P2 halves: "
                     f"{', '.join(str(m.n_train) for m in result.split_models)} images).")
    dist = {d.key: d for d in result.distortion}
    for m in result.models:
        d, known = dist[m.key], paper.TABLE1.get(m.label)
        if known is None or d.untargeted_mean is None or math.isnan(d.targeted_mean):
            continue
        notes.append(f"{m.label}: targeted distortion {number(d.targeted_mean)} is {d.targeted_mean / d.untargeted_mean:.2f}x "
                     f"the untargeted {number(d.untargeted_mean)}; paper {number(known[2])} "
                     f"({'within' if within(d.targeted_mean, known[2]) else 'more than'} 1.5x).")
    return notes
