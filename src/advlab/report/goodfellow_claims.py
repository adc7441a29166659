"""Report for `advlab reproduce goodfellow-claims`: one table per section of the paper, each
claim's paper figure beside advlab's with their ratio and verdict, then the setup differences,
the models and the per-class figures. It formats `ClaimsResult`, nothing more."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from advlab.experiments.goodfellow_claims.paper import AGREEMENT, COMPLEMENT_POINTS, SECTIONS, ZERO_TOLERANCE
from advlab.experiments.goodfellow_claims.run import ClaimsResult
from advlab.io import write_json_atomic, write_text_atomic
from advlab.report.markdown import number, percent, table

TITLE = "Goodfellow et al. 2014: noise controls, RBF network, ensembles and rubbish-class examples on MNIST"


def _ratio(row: dict[str, Any]) -> str:
    return number(row["ratio"], 2) if row["ratio"] is not None else "—"


def section_table(result: ClaimsResult, section: str) -> str:
    rows = [r for r in result.rows if r["section"] == section]
    header = ["claim", f"paper ({rows[0]['data']})", "advlab (MNIST)", "ratio", "verdict"]
    return table(header, [[r["claim"], percent(r["paper"]), percent(r["advlab"]), _ratio(r), r["verdict"]] for r in rows])


def _differences(result: ClaimsResult) -> list[str]:
    by_section: dict[str, list[str]] = {}
    for row in result.rows:
        by_section.setdefault(row["section"], row["setup_differences"])
    return [f"- {SECTIONS[s].split(':')[0]}: " + ("; ".join(d) if d else "none") for s, d in by_section.items()]


def _models_table(result: ClaimsResult) -> str:
    rows = []
    for key, m in result.models.items():
        arch = ", ".join(f"{k}={v}" for k, v in m["architecture"].items())
        config = m["train_config"]
        rows.append([key, f"`{m['model']}` ({arch})", m["objective"]["name"] + (f" ({m['objective']['kind']})" if "kind" in m["objective"] else ""),
                     m["head"], f"{config['epochs']} x {config['optimizer']} lr {config['lr']:g}, seed {m['seed']}",
                     percent(m["train_error"], 2), percent(m["test_error"], 2)])
    return table(["model", "architecture", "objective", "outputs read as", "training", "train error", "test error"], rows)


def _per_class(result: ClaimsResult) -> list[str]:
    details = result.details
    classes = len(details["fooling_success"])
    rows = [["fooling search: success per step", *(percent(v) for v in details["fooling_success"])]]
    rows += [[f"rubbish, {name}: share of the > 0.5 samples", *(percent(v) for v in (shares or [None] * classes))]
             for name, shares in details["rubbish_shares"].items()]
    return [table(["per class", *map(str, range(classes))], rows)]


def write_report(result: ClaimsResult, out_dir: str | os.PathLike[str], *, command: str, notes: list[str]) -> list[Path]:
    """results.json and report.md under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = result.settings
    lines = [f"# {TITLE}", "", f"Produced by: `{command}`", "",
             f"Data: {result.data_source}; eps = {s['eps']:g}, "
             f"seed {s['seed']}. Every row reads the paper's figure, advlab's and their ratio advlab / paper (— where the "
             f"paper's figure is 0). Verdict: reproduced when the ratio lies within [1/{AGREEMENT:g}, {AGREEMENT:g}] and so "
             f"does the ratio of the complements (1 - figure; waived when the two figures are within "
             f"{COMPLEMENT_POINTS * 100:g} points), so that 99% against 86% does not pass as agreement (where "
             f"the paper's figure is 0: when advlab's is at most {percent(ZERO_TOLERANCE)}), not reproduced otherwise; "
             "\"setup differs\" where the run's setup is not the paper's (listed below, computed from the settings).", ""]
    for section, heading in SECTIONS.items():
        lines += [f"## {heading}", "", section_table(result, section), ""]
    lines += ["## Setup differences (paper's stated setup against this run's)", "", *_differences(result), "",
              "## Models", "", _models_table(result), "", "## Per class", "", *_per_class(result), "",
              "## Notes", "", *(f"- {n}" for n in notes), "",
              "Seconds spent computing each stage (training a model included in its `model-` stage; a training resumed after "
              "a stop counts from the resume), one thread: " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items())
              + f"; {sum(result.seconds.values()) / 60:.0f} minutes in all.", ""]
    document = {k: v for k, v in result.to_dict().items() if k != "cache_dir"}  # a machine's path, not a result
    write_json_atomic(out / "results.json", {"command": command, **document})
    write_text_atomic(out / "report.md", "\n".join(lines))
    return [out / "results.json", out / "report.md"]


def summary(result: ClaimsResult) -> list[str]:
    compared = [r for r in result.rows if r["data"] == "MNIST" and r["advlab"] is not None]
    agreeing = sum(r["verdict"].startswith("reproduced") for r in compared)
    lines = [f"  {r['claim']}: advlab {percent(r['advlab'])}, paper {percent(r['paper'])} ({r['verdict']})" for r in compared]
    return [*lines, f"  {agreeing} of {len(compared)} MNIST figures agree with the paper's (within {AGREEMENT:g}x, complements too)"]
