"""advlab beside the paper in the Szegedy report's tables: `advlab / paper / ratio` cells and the
list of cells more than 1.5x off (found and explained by `advlab.experiments.szegedy.compare`).
"""

from __future__ import annotations

from advlab.experiments.szegedy.compare import OffCell, ratio
from advlab.report.markdown import number, percent


def cell(value: float | None, reference: float | None, *, percent_digits: int | None = 1) -> str:
    """`advlab / paper / ratio` (ratio "—" where the paper's value is 0 or missing)."""
    show = (lambda v: percent(v, percent_digits)) if percent_digits is not None else number
    if reference is None:
        return show(value)
    r = ratio(value, reference)
    return f"{show(value)} / {show(reference)} / {'—' if r is None else f'{r:.2f}x'}"


def off_markdown(cells: list[OffCell], percents: bool = True) -> list[str]:
    if not cells:
        return ["No cell is more than 1.5x off the paper's."]
    explained = sum(c.explained for c in cells)
    head = f"{len(cells)} cells more than 1.5x off the paper's ({explained} explained by a tested cause):"
    return [head, "", *[f"- {c.line(percents and 'distortion' not in c.column)}" for c in cells]]
