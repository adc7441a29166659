"""Branch and bound alone on one VNN-COMP robustness instance, under any advlab version.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bab_settings.py convert NET.onnx PROP.vnnlib OUT.pt
    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bab_settings.py run OUT.pt SECONDS
        [--set max_splits=4 --set steps=20 ...] [--lr ALPHA BETA] [--clock cpu|wall]

`convert` (needs the ONNX reader, so today's advlab) reads a fully connected ReLU network
(Flatten, Gemm/MatMul + Add, Relu) and a robustness property (an input box; the output
disjunction of Y_k >= Y_y over k != y) and saves the layers' weights, the image x (the box is
[x - eps, x + eps] clipped to [0, 1]; eps from the file name's last field), its label and eps
as a plain tensor file. `run` rebuilds the network as an nn.Sequential and calls
`advlab.exact.bab.branch_and_bound(net, x, y, eps, (0, 1), ...)` of whichever advlab is on
PYTHONPATH: that signature has not changed since branch and bound came in (commit 2e99bba), so
an old checkout's `src` runs the same instance. It prints the outcome, the sub-domains bounded,
the lowest bound of the last round's picked sub-domains (when the version keeps a pool) and
the wall and CPU seconds.

--clock cpu makes the deadline count CPU seconds of this process (time.perf_counter is
replaced by time.process_time), so that runs on a shared machine compare. --set overrides a
BabSettings field; --lr replaces the slope and multiplier learning rates of the branch-and-
bound rounds (not the root's).
"""

from __future__ import annotations

import argparse
import ast
import time

import torch
from torch import nn


def convert(onnx_path: str, vnnlib_path: str, out: str) -> None:
    from advlab.formats.onnx import load_onnx
    from advlab.formats.vnnlib import read_vnnlib

    model, prop = load_onnx(onnx_path), read_vnnlib(vnnlib_path)
    layers = [m for m in model.layers if isinstance(m, (nn.Linear, nn.ReLU))]
    rows = torch.stack([c[0] for c, _ in prop.disjuncts])  # e_y - e_k per disjunct
    label = int((rows.sum(0) > 0).nonzero())
    eps = float(vnnlib_path.rsplit("_", 1)[-1].removesuffix(".vnnlib"))
    lo, up = prop.lower, prop.upper
    x = torch.where(lo > 0, lo + eps, torch.where(up < 1, up - eps, (lo + up) / 2)).clamp(0, 1)
    gap = max(float(((x - eps).clamp_min(0) - lo).abs().max()), float(((x + eps).clamp_max(1) - up).abs().max()))
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    torch.save({"weights": [m.weight.detach().double() for m in linear], "biases": [m.bias.detach().double() for m in linear],
                "x": x, "label": label, "eps": eps}, out)
    print(f"label {label}, eps {eps}, box recovered within {gap:.1e}")


def run(path: str, seconds: float, overrides: list[str], lr: list[float] | None, clock: str) -> None:
    if clock == "cpu":
        time.perf_counter = time.process_time  # every deadline inside advlab reads this clock
    import advlab.exact.bab as bab
    import advlab.exact.optimized as optimized
    from advlab.exact.relu_network import relu_network

    torch.set_num_threads(1)
    data = torch.load(path, weights_only=True)  # tensors and numbers only: nothing executed
    layers: list[nn.Module] = []
    for w, b in zip(data["weights"], data["biases"]):
        linear = nn.Linear(w.shape[1], w.shape[0]).double()
        linear.weight.data, linear.bias.data = w, b
        layers += [linear, nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).eval()
    net = relu_network(model, (data["weights"][0].shape[1],))
    x, label, eps = data["x"], data["label"], data["eps"]
    low, high = (x - eps).clamp_min(0), (x + eps).clamp_max(1)

    def check(point: torch.Tensor) -> torch.Tensor | None:
        point = torch.minimum(torch.maximum(point.double(), low), high)
        return point if int(model(point[None]).argmax(1)) != label else None

    fields = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in overrides)}
    settings = bab.BabSettings(**fields)
    if lr is not None:
        inner = bab._optimised

        def with_rates(*args, **kwargs):
            saved = optimized.ALPHA_LR, optimized.BETA_LR
            optimized.ALPHA_LR, optimized.BETA_LR = lr
            try:
                return inner(*args, **kwargs)
            finally:
                optimized.ALPHA_LR, optimized.BETA_LR = saved

        bab._optimised = with_rates
    lowest: list[float] = []
    pool = getattr(bab, "Pool", None) or getattr(bab, "_Pool", None)  # the name today, then before advlab.exact.domains
    if pool is not None:
        pick = pool.pick

        def recording(self, batch):
            chosen = pick(self, batch)
            if len(chosen):
                lowest.append(float(chosen.lower.min()))
            return chosen

        pool.pick = recording
    print(settings, flush=True)
    wall, cpu = time.time(), time.process_time()
    out = bab.branch_and_bound(net, x, label, eps, (0.0, 1.0), time_limit=seconds, check=check, settings=settings)
    last = f"{lowest[-1]:.3f}" if lowest else "n/a"
    print(f"{out.status} ({out.reason or 'done'}): {out.domains} sub-domains, lowest open bound {last}, "
          f"wall {time.time() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert")
    c.add_argument("onnx")
    c.add_argument("vnnlib")
    c.add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("instance")
    r.add_argument("seconds", type=float)
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    r.add_argument("--lr", type=float, nargs=2, metavar=("ALPHA", "BETA"))
    r.add_argument("--clock", choices=("cpu", "wall"), default="wall")
    args = parser.parse_args()
    if args.command == "convert":
        convert(args.onnx, args.vnnlib, args.out)
    else:
        run(args.instance, args.seconds, args.set, args.lr, args.clock)


if __name__ == "__main__":
    main()
