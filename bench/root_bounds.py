"""How tight are the bounds branch and bound starts from? Root bounds of one VNN-COMP instance.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/root_bounds.py NET.onnx PROP.vnnlib
        [--steps 20 50 200] [--lp-layers K]

Per method, one line: the seconds it took, the unstable ReLUs (l < 0 < u) per hidden layer,
their mean width u - l per layer, and the property's root bound: per disjunct the largest
lower bound of C_r f - d_r over its rows (alpha-CROWN on the output, 50 steps, from those
hidden bounds), the smallest over the disjuncts (positive: every disjunct ruled out, unsat).

- crown: CROWN hidden bounds (`advlab.exact.bounds.hidden_bounds`).
- alpha-S: those tightened layer by layer by alpha-CROWN with S slope steps per layer
  (`advlab.exact.optimized.optimised_hidden`, what `advlab verify` does at the root).
- lp-K (with --lp-layers K): the alpha-50 bounds of hidden layers 1..K replaced, one layer at a
  time, by the triangle-relaxation LP (HiGHS): min and max of each unstable neuron's input over
  the input box, the earlier layers' exact affine maps and, per unstable ReLU h = relu(z) with
  l < 0 < u, h >= 0, h >= z, h <= u (z - l) / (u - l) (Ehlers 2017); the later layers are then
  re-bounded by alpha-50. The LP is a measurement, not a verifier step: its optimum is
  HiGHS's, not a rigorously rounded bound. Optimal slopes make alpha-CROWN equal to this LP
  (Salman et al. 2019, "A convex relaxation barrier"), so lp-K shows how far alpha-S is from
  its own limit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from advlab.exact.bounds import Interval, hidden_bounds
from advlab.exact.optimized import optimise, optimised_hidden
from advlab.exact.relu_network import ReluNetwork, Relu, relu_network
from advlab.exact.specs import goals
from advlab.formats.onnx import load_onnx
from advlab.formats.vnnlib import Property, read_vnnlib

SPEC_STEPS = 50


def unstable(hidden: list[Interval]) -> list[int]:
    return [int(((lo < 0) & (up > 0)).sum()) for lo, up in hidden]


def mean_width(hidden: list[Interval]) -> list[float]:
    out = []
    for lo, up in hidden:
        mask = (lo < 0) & (up > 0)
        out.append(float((up - lo)[mask].mean()) if bool(mask.any()) else 0.0)
    return out


def root_bound(net: ReluNetwork, prop: Property, hidden: list[Interval]) -> float:
    """min over disjuncts of max over rows of alpha-CROWN's lower bound of C_r f - d_r."""
    rows, offsets = goals(prop)
    flat = rows.reshape(1, -1, rows.shape[-1])
    opt = optimise(net, hidden, len(net.nonlinear), -flat, prop.lower.unsqueeze(0), prop.upper.unsqueeze(0),
                   steps=SPEC_STEPS)
    return float(((-opt.upper).reshape(rows.shape[:2]) - offsets).amax(1).min())


def lp_bounds(net: ReluNetwork, hidden: list[Interval], xl: torch.Tensor, xu: torch.Tensor, depth: int) -> Interval:
    """Triangle-LP bounds of z_depth (module docstring) given bounds on z_0..z_{depth-1}; one
    box (xl, xu of shape (n,)); neurons stable under `hidden[depth]` keep their bounds."""
    blocks_lb, blocks_ub = [xl.numpy()], [xu.numpy()]
    rows: list[sp.spmatrix] = []
    lhs: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    offset, prev, prev_width = xl.numel(), 0, xl.numel()
    spans = []  # (start of z_i, start of h_{i+1}, width)
    for i in range(depth):
        lo, up = (t[0].numpy() for t in hidden[i])
        width = lo.size
        spans.append((offset, offset + width, width, prev, prev_width))
        blocks_lb += [lo, np.maximum(lo, 0.0)]
        blocks_ub += [up, np.maximum(up, 0.0)]
        prev, prev_width = offset + width, width
        offset += 2 * width
    total = offset
    for i, (z0, h0, width, p0, pw) in enumerate(spans):
        lo, up = (t[0].numpy() for t in hidden[i])
        a = net.affines[i]
        weight = sp.coo_matrix(a.dense().numpy())
        # z_i - W h_i = b
        eq = sp.hstack([sp.csr_matrix((width, p0)), -weight.tocsr(), sp.csr_matrix((width, z0 - p0 - pw)),
                        sp.identity(width, format="csr"), sp.csr_matrix((width, total - z0 - width))]).tocsr()
        rows.append(eq)
        lhs.append(a.bias.numpy())
        rhs.append(a.bias.numpy())
        gap = np.where((lo < 0) & (up > 0), up - lo, 1.0)
        slope = np.where((lo < 0) & (up > 0), up / gap, 0.0)
        active = lo >= 0
        # h - z >= 0 (= 0 where active), h - slope z <= -slope l (unstable), h = 0 via bounds where inactive
        eye = sp.identity(width, format="csr")
        pad_l, pad_r = sp.csr_matrix((width, z0)), sp.csr_matrix((width, total - h0 - width))
        rows.append(sp.hstack([pad_l, -eye, eye, pad_r]).tocsr())
        lhs.append(np.zeros(width))
        rhs.append(np.where(active, 0.0, np.inf))
        rows.append(sp.hstack([pad_l, -sp.diags(slope), eye, pad_r]).tocsr())
        lhs.append(np.full(width, -np.inf))
        rhs.append(np.where((lo < 0) & (up > 0), -slope * lo, np.inf))
    matrix = sp.vstack(rows).tocsr()
    bounds = np.stack([np.concatenate(blocks_lb), np.concatenate(blocks_ub)], 1)
    lhs_all, rhs_all = np.concatenate(lhs), np.concatenate(rhs)
    finite_l, finite_u = np.isfinite(lhs_all), np.isfinite(rhs_all)
    a_ub = sp.vstack([-matrix[finite_l], matrix[finite_u]]).tocsr()
    b_ub = np.concatenate([-lhs_all[finite_l], rhs_all[finite_u]])
    weight, bias = net.affines[depth].dense().numpy(), net.affines[depth].bias.numpy()
    lo, up = (t[0].clone() for t in hidden[depth])
    h_start = spans[-1][1]
    for j in ((lo < 0) & (up > 0)).nonzero().flatten().tolist():
        for sign in (1.0, -1.0):
            cost = np.zeros(total)
            cost[h_start : h_start + weight.shape[1]] = sign * weight[j]
            res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
            if res.status != 0:
                continue
            if sign > 0:
                lo[j] = max(float(lo[j]), res.fun + bias[j])
            else:
                up[j] = min(float(up[j]), -res.fun + bias[j])
    return lo.unsqueeze(0), up.unsqueeze(0)


def report(name: str, seconds: float, net: ReluNetwork, prop: Property, hidden: list[Interval]) -> None:
    print(f"{name:>9}  {seconds:7.2f} s  unstable {unstable(hidden)}  mean width "
          f"{[round(w, 2) for w in mean_width(hidden)]}  root bound {root_bound(net, prop, hidden):+.4f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx")
    parser.add_argument("vnnlib")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 200], help="alpha-CROWN steps per layer")
    parser.add_argument("--lp-layers", type=int, default=0, help="hidden layers 1..K bounded by the triangle LP")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prop = read_vnnlib(args.vnnlib)
    model = load_onnx(args.onnx).double()
    shape = tuple(getattr(model, "input_shape", (prop.num_inputs,)))
    net = relu_network(model, shape, bounds=(float(prop.lower.min()), float(prop.upper.max())))
    if not all(isinstance(g, Relu) for g in net.nonlinear):
        raise SystemExit("root_bounds: only networks of ReLUs")
    xl, xu = prop.lower.unsqueeze(0), prop.upper.unsqueeze(0)
    start = time.perf_counter()
    crown = hidden_bounds(net, xl, xu)
    report("crown", time.perf_counter() - start, net, prop, crown)
    for steps in args.steps:
        start = time.perf_counter()
        alpha = optimised_hidden(net, crown, xl, xu, steps=steps)
        report(f"alpha-{steps}", time.perf_counter() - start, net, prop, alpha)
    if args.lp_layers:
        hidden = optimised_hidden(net, crown, xl, xu, steps=50)
        start = time.perf_counter()
        for depth in range(1, min(args.lp_layers, len(hidden) - 1) + 1):
            hidden[depth] = lp_bounds(net, hidden, prop.lower, prop.upper, depth)
            hidden = optimised_hidden(net, hidden, xl, xu, steps=50)
        report(f"lp-{args.lp_layers}", time.perf_counter() - start, net, prop, hidden)


if __name__ == "__main__":
    main()
