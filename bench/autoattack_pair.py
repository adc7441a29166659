"""Pairs two `bench/autoattack.py --only autoattack|advlab --json` runs of the same model, images, eps
and seed (run side by side, one per core, when one library's run takes most of an hour) and prints the
same comparison as a single alternating run: robust accuracy, wall and CPU time, and per example how
many points advlab calls robust that AutoAttack breaks, and the reverse.

    python bench/autoattack_pair.py autoattack.json advlab.json [--json pair.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SAME = ("checkpoint", "data", "n", "eps", "norm", "seed", "device", "quick", "certify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("autoattack", help="figures of the --only autoattack run")
    parser.add_argument("advlab", help="figures of the --only advlab run")
    parser.add_argument("--json", help="write the paired figures here")
    args = parser.parse_args()
    aa, mine = (json.loads(Path(p).read_text()) for p in (args.autoattack, args.advlab))
    if "autoattack_robust_per_example" not in aa or "advlab_robust_per_example" not in mine:
        sys.exit("autoattack_pair.py: error: expected an --only autoattack run, then an --only advlab run")
    differ = [key for key in SAME if aa.get(key) != mine.get(key)]
    if differ:
        sys.exit(f"autoattack_pair.py: error: the runs differ in {', '.join(differ)}")
    a = [c == "1" for c in aa["autoattack_robust_per_example"]]
    b = [c == "1" for c in mine["advlab_robust_per_example"]]
    paired = {key: aa[key] for key in SAME} | {
        "autoattack_robust_accuracy": aa["autoattack_robust_accuracy"], "advlab_robust_accuracy": mine["advlab_robust_accuracy"],
        "autoattack_seconds": aa["autoattack_seconds"], "advlab_seconds": mine["advlab_seconds"],
        "autoattack_cpu_seconds": aa["autoattack_cpu_seconds"], "advlab_cpu_seconds": mine["advlab_cpu_seconds"],
        "time_ratio_advlab_over_autoattack": mine["advlab_seconds"] / aa["autoattack_seconds"],
        "cpu_time_ratio_advlab_over_autoattack": mine["advlab_cpu_seconds"] / aa["autoattack_cpu_seconds"],
        "advlab_robust_autoattack_breaks": sum(m and not r for r, m in zip(a, b)),
        "autoattack_robust_advlab_breaks": sum(r and not m for r, m in zip(a, b)),
        "load_average": {"autoattack": [aa["load_average_start"], aa["load_average_end"]],
                         "advlab": [mine["load_average_start"], mine["load_average_end"]]},
        "advlab_notes": mine.get("advlab_notes", []),
    }
    print(f"{paired['checkpoint']} on {paired['data']} test[:{paired['n']}], {paired['norm']} eps={paired['eps']}, seed {paired['seed']}")
    print(f"robust accuracy: AutoAttack {100 * paired['autoattack_robust_accuracy']:.2f}%  advlab {100 * paired['advlab_robust_accuracy']:.2f}%")
    print(f"wall time: AutoAttack {paired['autoattack_seconds']:.1f} s  advlab {paired['advlab_seconds']:.1f} s  "
          f"ratio advlab/AutoAttack {paired['time_ratio_advlab_over_autoattack']:.3f}")
    print(f"CPU time: AutoAttack {paired['autoattack_cpu_seconds']:.1f} s  advlab {paired['advlab_cpu_seconds']:.1f} s  "
          f"ratio advlab/AutoAttack {paired['cpu_time_ratio_advlab_over_autoattack']:.3f}")
    print(f"points advlab calls robust that AutoAttack breaks: {paired['advlab_robust_autoattack_breaks']} of {paired['n']}; "
          f"the reverse: {paired['autoattack_robust_advlab_breaks']}")
    if args.json:
        Path(args.json).write_text(json.dumps(paired, indent=2))


if __name__ == "__main__":
    main()
