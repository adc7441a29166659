"""`reproduce(name, request, command=...)`: run a registered experiment and write its report.

`advlab.experiments.registry` says how each experiment runs; here the same names map to the
functions of `advlab.report` that format its result (found by plain imports), so that running
and reporting meet above both layers, and a report only formats what its experiment computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advlab.experiments.adversarial_generalization import GeneralizationResult
from advlab.experiments.registry import GENERALIZATION, Request, check_request, get_experiment
from advlab.report import advtrain, goodfellow, goodfellow_claims, szegedy


@dataclass(frozen=True)
class Writer:
    write: Callable[..., list[Path]]  # (result, out, *, command, notes[, extra_sections]) -> paths written
    summary: Callable[[Any], list[str]]  # result -> lines to print


WRITERS: dict[str, Writer] = {
    "goodfellow-fig2": Writer(goodfellow.write_fig2, goodfellow.summary),
    "goodfellow-softmax": Writer(goodfellow.write_softmax, goodfellow.summary),
    "goodfellow-advtrain": Writer(advtrain.write_advtrain_report, advtrain.summary),
    "goodfellow-claims": Writer(goodfellow_claims.write_report, goodfellow_claims.summary),
    "szegedy": Writer(szegedy.write_report, szegedy.summary),
    GENERALIZATION: Writer(advtrain.write_generalization_report, advtrain.generalization_summary),
}


def generalization_sections(out: Path) -> list[str]:
    """The generalization study's section for a report written to `out`, from the sibling folder
    `adversarial-generalization` (its runs so far), or nothing when there is none."""
    saved = out.parent / GENERALIZATION / "results.json"
    if not saved.is_file():
        return []
    document = json.loads(saved.read_text())
    result = GeneralizationResult.from_dict({k: document[k] for k in ("settings", "runs", "comparisons", "complete")})
    return [*advtrain.generalization_section(result), f"(From `{saved}`, made by `{document.get('command', '?')}`; the full "
            f"study: `advlab reproduce {GENERALIZATION}`.)", ""]


def reproduce(name: str, request: Request, *, command: str) -> tuple[list[Path], list[str]]:
    """Run the experiment, write its report under request.out; (paths written, summary lines)."""
    experiment = get_experiment(name)
    check_request(experiment, request)
    result = experiment.run(request)
    writer = WRITERS[name]
    extra = {"extra_sections": generalization_sections(request.out)} if experiment.with_generalization else {}
    paths = writer.write(result, request.out, command=command, notes=experiment.notes(result), **extra)
    return paths, writer.summary(result)
