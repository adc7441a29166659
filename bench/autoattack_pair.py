"""The side-by-side report of `bench/autoattack.py`, and the pairing of its `--json` files.

A run is one evaluation: library (`autoattack` or `advlab`), variant (AutoAttack `fast-path` or
`as-shipped`; advlab's suite), seed, the robust outcome per example, model passes (forward and
backward, counted per example) and wall and CPU seconds. The report prints every run, then per
example the agreement:

- AutoAttack's seed noise: for each ordered pair of its fast-path seeds (i, j), the points seed i
  breaks and seed j leaves robust; the largest of these is the target's allowance;
- per advlab run: the points only AutoAttack breaks and only advlab breaks, against AutoAttack's
  fast-path run with the same seed (else its first seed) and against the union of AutoAttack's
  fast-path seeds;

and per advlab suite the mean passes and CPU seconds over its seeds, as ratios over AutoAttack's
fast-path mean (the headline) and its as-shipped mean.

Pairing: runs done apart (`bench/autoattack.py --only autoattack|advlab --json F`, e.g. one per
core) print the same report once their files are merged:

    python bench/autoattack_pair.py autoattack.json advlab.json [--json merged.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# what two files must share to be paired: the same model, images, budget and set-up
SAME = ("checkpoint", "wrap", "data", "n", "eps", "norm", "device", "quick", "certify", "threads")
REFERENCE = ("autoattack", "fast-path")  # the runs advlab is measured against


def broken_only_by(first: str, second: str) -> int:
    """Points `first` breaks ('0') that `second` leaves robust ('1'), from per-example strings."""
    if len(first) != len(second):
        raise ValueError(f"per-example outcomes of different lengths: {len(first)} and {len(second)}")
    return sum(a == "0" and b == "1" for a, b in zip(first, second))


def robust_union_complement(outcomes: Sequence[str]) -> str:
    """Per example '1' when every run leaves it robust (the points no run breaks), else '0'."""
    return "".join("1" if all(o[i] == "1" for o in outcomes) else "0" for i in range(len(outcomes[0])))


def seed_noise(runs: Sequence[dict[str, Any]]) -> int:
    """The largest number of points one seed breaks and another leaves robust (0 for one run)."""
    return max((broken_only_by(a["robust"], b["robust"]) for a in runs for b in runs if a is not b), default=0)


def passes(run: dict[str, Any]) -> int:
    return run["forward_passes"] + run["backward_passes"]


def _of(runs: Sequence[dict[str, Any]], library: str, variant: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["library"] == library and r["variant"] == variant]


def _of_library(runs: Sequence[dict[str, Any]], library: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["library"] == library]


def _mean(runs: Sequence[dict[str, Any]], key: Any) -> float:
    return statistics.fmean(key(r) for r in runs)


def report(runs: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The lines printed and the figures derived (module docstring) from a list of runs."""
    lines = ["| library | variant | seed | robust accuracy | forward passes | backward passes | CPU s | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['library']} | {r['variant']} | {r['seed']} | {100 * r['robust'].count('1') / len(r['robust']):.0f}% | "
                     f"{r['forward_passes']:,} | {r['backward_passes']:,} | {r['cpu_seconds']:.1f} | {r['wall_seconds']:.1f} |")
    derived: dict[str, Any] = {}
    reference = _of(runs, *REFERENCE)
    shipped = _of(runs, "autoattack", "as-shipped")
    if reference:
        derived["autoattack_seed_noise"] = seed_noise(reference)
        lines.append(f"AutoAttack's seed noise (most points one fast-path seed breaks and another does not, seeds "
                     f"{','.join(str(r['seed']) for r in reference)}): {derived['autoattack_seed_noise']}")
        union = robust_union_complement([r["robust"] for r in reference])
    for r in _of_library(runs, "advlab"):
        if not reference:
            break
        paired = next((a for a in reference if a["seed"] == r["seed"]), reference[0])
        r["only_autoattack_breaks"] = broken_only_by(paired["robust"], r["robust"])
        r["only_advlab_breaks"] = broken_only_by(r["robust"], paired["robust"])
        r["only_autoattack_any_seed_breaks"] = broken_only_by(union, r["robust"])
        lines.append(f"advlab {r['variant']} seed {r['seed']} against AutoAttack seed {paired['seed']}: only AutoAttack breaks "
                     f"{r['only_autoattack_breaks']}, only advlab breaks {r['only_advlab_breaks']}; "
                     f"points some AutoAttack seed breaks that advlab does not: {r['only_autoattack_any_seed_breaks']}")
    for variant in dict.fromkeys(r["variant"] for r in _of_library(runs, "advlab")):
        mine = _of(runs, "advlab", variant)
        line = f"advlab {variant} (mean of {len(mine)} seeds): {_mean(mine, passes):,.0f} passes, {_mean(mine, lambda r: r['cpu_seconds']):.1f} CPU s"
        for name, against in (("fast-path", reference), ("as-shipped", shipped)):
            if against:
                ratio_passes = _mean(mine, passes) / _mean(against, passes)
                ratio_cpu = _mean(mine, lambda r: r["cpu_seconds"]) / _mean(against, lambda r: r["cpu_seconds"])
                derived[f"{variant}_over_autoattack_{name}"] = {"passes": ratio_passes, "cpu_seconds": ratio_cpu}
                line += f"; over AutoAttack {name}: passes {ratio_passes:.2f}x, CPU {ratio_cpu:.2f}x"
        lines.append(line)
    return lines, derived


def merge(figures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One figures dict with the runs of all; refused when the set-ups differ (SAME)."""
    differ = [key for key in SAME if any(f.get(key) != figures[0].get(key) for f in figures)]
    if differ:
        raise ValueError(f"the runs differ in {', '.join(differ)}")
    return {key: figures[0].get(key) for key in SAME} | {"runs": [r for f in figures for r in f["runs"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="+", help="--json files of bench/autoattack.py runs of the same set-up")
    parser.add_argument("--json", help="write the merged figures here")
    args = parser.parse_args()
    try:
        merged = merge([json.loads(Path(p).read_text()) for p in args.figures])
    except (OSError, ValueError, KeyError) as error:
        sys.exit(f"autoattack_pair.py: error: {error}")
    lines, derived = report(merged["runs"])
    wrap = f" behind {merged['wrap']}" if merged.get('wrap') else ""
    print(f"{merged['checkpoint']}{wrap} on {merged['data']} test[:{merged['n']}], {merged['norm']} eps={merged['eps']}")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(merged | derived, indent=2))


if __name__ == "__main__":
    main()
