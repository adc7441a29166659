"""advlab on a VNN-COMP benchmark folder, side by side with the competition's tools.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/vnncomp.py FOLDER --results RESULTS.csv
        [--instances CSV] [--run] [--only TEXT] [--timeout S] [--workers N]
        [--tool NAME=CSV ...] [--tools DIR] [--exclude NAME ...] [--reference NAME]

FOLDER is a benchmark folder kept outside the repository (e.g. VNN-COMP 2021's
benchmarks/mnistfc: `instances.csv` or `<name>_instances.csv`, the .onnx networks and the
.vnnlib properties, gunzipped). With --run, the instances (those whose network name contains
--only, each within min(its timeout, --timeout)) are decided by `advlab verify`'s API
(`advlab.exact.instances.run_instances`: resumable, so a rerun continues) into RESULTS.csv;
without it RESULTS.csv is only read (give --instances the CSV it was produced from: the
counterexamples RESULTS.cex/ROW.txt are numbered by its rows). Other tools' results are CSVs in VNN-COMP's format
(`category,onnx,vnnlib,prep_time,result,run_time`; `--tools DIR` takes every DIR/*.csv, the
tool named by the file's stem); verdicts holds/unsat count as unsat, violated/sat as sat,
anything else as unsettled. --exclude drops a tool (VNN-COMP 2021's organisers dropped RPM's
mnistfc results for a VNN-LIB parsing bug).

Printed, per network: instances run, sat / unsat / unknown / timeout, settled = sat + unsat,
the median and largest seconds per instance and the median over the settled ones; every
`sat` counterexample re-checked (read back from RESULTS.cex/ROW.txt: inside the box, and the
property violated when the network runs on it, under onnxruntime in float32 when it is installed, else advlab's converter in float64);
per tool, the instances both settled, the violations the tool found that advlab did not, and
every contradiction (one says sat, the other unsat). A contradiction where advlab says sat
with a re-checked counterexample is marked "advlab's counterexample re-checked": the other
tool's unsat is then wrong. Exit status 1 when a counterexample fails its re-check or
advlab's unsat contradicts another tool's sat; 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import re
import statistics
import sys
from pathlib import Path

import torch

from advlab.exact.instances import Instance, read_instances, run_instances
from advlab.formats.onnx import load_onnx
from advlab.formats.vnnlib import Property, read_vnnlib

SETTLED = ("sat", "unsat")
_TOOL_VERDICTS = {"holds": "unsat", "unsat": "unsat", "violated": "sat", "sat": "sat"}
_ASSIGNMENT = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")

Key = tuple[str, str]  # (network file name, property file name)


def instances_csv(folder: Path) -> Path:
    """FOLDER/instances.csv, else the one FOLDER/*instances.csv (VNN-COMP 2021 names it after the benchmark)."""
    plain = folder / "instances.csv"
    if plain.is_file():
        return plain
    found = sorted(folder.glob("*instances.csv"))
    if len(found) != 1:
        raise SystemExit(f"vnncomp: {folder}: expected one instances.csv, found {[p.name for p in found]}; give --instances")
    return found[0]


def key(onnx: str, vnnlib: str) -> Key:
    return Path(onnx).name, Path(vnnlib).name


def tool_verdicts(path: Path, keys: set[Key]) -> dict[Key, str]:
    """A VNN-COMP results CSV (category,onnx,vnnlib,prep,result,time): verdict per instance in `keys`."""
    out = {}
    for row in csv.reader(io.StringIO(path.read_text())):
        if len(row) >= 5 and (k := key(row[1], row[2])) in keys:
            out[k] = _TOOL_VERDICTS.get(row[4].strip().lower(), "unsettled")
    return out


def read_counterexample(path: Path, num_inputs: int) -> torch.Tensor:
    """The X_i values of a VNN-COMP result file ("sat" then ((X_0 v) ... (Y_j v)))."""
    values = {int(i): float(v) for name, i, v in _ASSIGNMENT.findall(path.read_text()) if name == "X"}
    if sorted(values) != list(range(num_inputs)):
        raise ValueError(f"{path}: expected X_0..X_{num_inputs - 1}, got {len(values)} values")
    return torch.tensor([values[i] for i in range(num_inputs)], dtype=torch.float64)


class Network:
    """Runs one network on flat points: onnxruntime in float32 (the network's own precision)
    when it is installed, else advlab's converter in float64."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            self.session, self.model = None, load_onnx(path).double().eval()
            self.runtime = "advlab float64"
            return
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.runtime = "onnxruntime float32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None:
            with torch.no_grad():
                return self.model(x.reshape(1, *self.model.input_shape)).reshape(1, -1).double()
        shape = [1] + [int(s) if isinstance(s, int) else -1 for s in self.input.shape[1:]]
        out = self.session.run(None, {self.input.name: x.float().reshape(shape).numpy()})[0]
        return torch.from_numpy(out).reshape(1, -1).double()


def recheck(folder: Path, cex_folder: Path, row: int, onnx: str, vnnlib: str, networks: dict[str, Network]) -> str:
    """"" when the counterexample of instance `row` is in the box and violates the property
    when the network runs on it, else why not."""
    prop: Property = read_vnnlib(folder / vnnlib)
    path = cex_folder / f"{row}.txt"
    if not path.is_file():
        return f"no counterexample file {path.name}"
    try:
        x = read_counterexample(path, prop.num_inputs)
    except ValueError as exc:
        return str(exc)
    if not bool(prop.inside(x.reshape(1, -1))):
        return "counterexample outside the input box"
    network = networks.setdefault(onnx, Network(folder / onnx))
    if not bool(prop.violated(network(x))):
        return f"the property holds at the counterexample under {network.runtime}"
    return ""


@dataclasses.dataclass
class Comparison:
    tool: str
    both_settled: int = 0
    agree: int = 0
    tool_settled: int = 0
    missed: list[Key] = dataclasses.field(default_factory=list)  # tool: sat, advlab: not sat
    contradictions: list[tuple[Key, str, str]] = dataclasses.field(default_factory=list)  # key, advlab, tool


def compare(ours: dict[Key, str], theirs: dict[Key, str], tool: str) -> Comparison:
    result = Comparison(tool)
    for k, mine in ours.items():
        other = theirs.get(k, "unsettled")
        result.tool_settled += other in SETTLED
        if other == "sat" and mine != "sat":
            result.missed.append(k)
        if mine in SETTLED and other in SETTLED:
            result.both_settled += 1
            result.agree += mine == other
            if mine != other:
                result.contradictions.append((k, mine, other))
    return result


def summary_rows(rows: list[dict[str, str]]) -> list[str]:
    """One line per network: counts, settled, median and largest seconds."""
    lines = [f"{'network':28} {'ran':>4} {'sat':>4} {'unsat':>5} {'unknown':>7} {'timeout':>7} {'settled':>8} "
             f"{'timeouts (s)':>12} {'median s':>8} {'max s':>7} {'median s settled':>16}"]
    by_network: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_network.setdefault(Path(row["onnx"]).name, []).append(row)
    for name, group in list(by_network.items()) + ([("all", rows)] if len(by_network) > 1 else []):
        count = {v: sum(r["result"] == v for r in group) for v in ("sat", "unsat", "unknown", "timeout")}
        seconds = [float(r["seconds"]) for r in group]
        settled = [float(r["seconds"]) for r in group if r["result"] in SETTLED]
        limits = sorted({f"{float(r['timeout']):g}" for r in group})
        lines.append(f"{name:28} {len(group):>4} {count['sat']:>4} {count['unsat']:>5} {count['unknown']:>7} "
                     f"{count['timeout']:>7} {count['sat'] + count['unsat']:>4}/{len(group):<3} {'/'.join(limits):>12} "
                     f"{statistics.median(seconds):>8.3f} {max(seconds):>7.2f} "
                     f"{statistics.median(settled) if settled else float('nan'):>16.3f}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the benchmark folder (outside the repository)")
    parser.add_argument("--results", type=Path, required=True, help="advlab's results CSV (written with --run)")
    parser.add_argument("--instances", type=Path, help="instances CSV (default: FOLDER/instances.csv or *instances.csv)")
    parser.add_argument("--run", action="store_true", help="decide the instances not yet in --results first")
    parser.add_argument("--only", default="", help="only the instances whose network file name contains this")
    parser.add_argument("--timeout", type=float, help="cap every instance's timeout at this many seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tool", action="append", default=[], metavar="NAME=CSV", help="another tool's results CSV")
    parser.add_argument("--tools", type=Path, help="a folder of results CSVs, one per tool (named by the stem)")
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME", help="leave this tool out")
    parser.add_argument("--reference", help="the tool whose settled count is printed beside advlab's")
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[Instance]:
    instances = [i for i in read_instances(args.instances or instances_csv(args.folder)) if args.only in Path(i.onnx).name]
    if args.timeout is not None:
        instances = [dataclasses.replace(i, timeout=min(i.timeout, args.timeout)) for i in instances]
    return instances


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    instances = selected(args)
    if args.run:
        run_instances(instances, args.results, workers=args.workers, seed=args.seed)
    wanted = {key(i.onnx, i.vnnlib): i for i in instances}
    rows = [r for r in csv.DictReader(io.StringIO(args.results.read_text())) if key(r["onnx"], r["vnnlib"]) in wanted]
    ours = {key(r["onnx"], r["vnnlib"]): r["result"] for r in rows}
    print(f"advlab on {args.folder.name}: {len(rows)} of the {len(wanted)} selected instances in {args.results.name}")
    print("\n".join(summary_rows(rows)))

    failures = 0
    networks: dict[str, Network] = {}
    cex_folder = args.results.with_suffix(".cex")
    rechecked: set[Key] = set()
    for r in rows:
        if r["result"] == "sat":
            k = key(r["onnx"], r["vnnlib"])
            why = recheck(args.folder, cex_folder, wanted[k].row, r["onnx"], r["vnnlib"], networks)
            if why:
                failures += 1
                print(f"  COUNTEREXAMPLE FAILS: {k[0]} {k[1]}: {why}")
            else:
                rechecked.add(k)
    runtimes = sorted({n.runtime for n in networks.values()})
    print(f"sat counterexamples re-checked: {len(rechecked)} of {sum(v == 'sat' for v in ours.values())} "
          f"({', '.join(runtimes) or 'none'})")

    tools = dict(t.split("=", 1) for t in args.tool)
    if args.tools is not None:
        tools.update({p.stem: str(p) for p in sorted(args.tools.glob("*.csv"))})
    settled = sum(v in SETTLED for v in ours.values())
    for name, path in tools.items():
        if name in args.exclude:
            continue
        result = compare(ours, tool_verdicts(Path(path), set(ours)), name)
        print(f"{name:12} settled {result.tool_settled:>3} (advlab {settled}); both settled {result.both_settled}, "
              f"agree {result.agree}; its violations advlab did not find: {len(result.missed)}; "
              f"contradictions: {len(result.contradictions)}")
        for k in result.missed:
            print(f"  missed: {k[0]} {k[1]} (advlab: {ours[k]})")
        for k, mine, other in result.contradictions:
            backed = mine == "sat" and k in rechecked
            failures += not backed
            print(f"  CONTRADICTION: {k[0]} {k[1]}: advlab {mine}, {name} {other}"
                  + (" (advlab's counterexample re-checked)" if backed else ""))
        if name == args.reference:
            print(f"reference {name}: settled {result.tool_settled}, advlab {settled}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
