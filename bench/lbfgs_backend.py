"""Which quasi-Newton solver should the L-BFGS attack use? Measured, in one run.

Candidates, each solving every c-step of the attack's search for a whole batch:
- torch: advlab's batched projected L-BFGS (`advlab.attacks.lbfgs.projected_lbfgs`): each
  example keeps its own curvature pairs, line search and stopping test; only examples still
  running are evaluated.
- scipy: scipy.optimize's L-BFGS-B (Fortran, generalised Cauchy point + subspace minimisation)
  on the whole batch as ONE problem whose objective is the sum of the per-example objectives
  (separable, so its minimiser is the per-example minimisers); one shared memory, line search
  and stopping test, maxiter counted for the whole batch.

Same attack, same search over c, same data; only the solver differs. Printed per model:
seconds per image, success rate, and the ratio of the found L2 distance to the exact minimum
(linear models) or the median L2 distance (MLP).

    OMP_NUM_THREADS=1 .venv/bin/python bench/lbfgs_backend.py [--n 100]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from common import bench_data, mlp, trained
from scipy.optimize import Bounds, minimize

import advlab.attacks.lbfgs as lbfgs_module
from advlab.attacks import LBFGS
from advlab.exact import minimal_perturbation

TORCH_SOLVER = lbfgs_module.projected_lbfgs


def scipy_lbfgsb(objective, x0: torch.Tensor, bounds, *, max_iter: int, memory: int = 10) -> torch.Tensor:  # noqa: ANN001
    """scipy's L-BFGS-B on the sum of the per-row objectives (one problem for the batch)."""
    n, d = x0.shape
    rows = torch.arange(n, device=x0.device)

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective(torch.from_numpy(z).view(n, d).to(x0), rows)
        return float(f.sum()), g.double().flatten().cpu().numpy()

    result = minimize(
        fun,
        x0.double().flatten().cpu().numpy(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(bounds[0], bounds[1]),
        options={"maxiter": max_iter, "maxcor": memory, "gtol": 1e-10, "ftol": 4 * torch.finfo(x0.dtype).eps},
    )
    return torch.from_numpy(result.x).view(n, d).to(x0)


def run(solver, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targets, max_iter: int):  # noqa: ANN001
    lbfgs_module.projected_lbfgs = solver
    try:
        attack = LBFGS(model, max_iter=max_iter, batch_size=len(x))
        start = time.perf_counter()
        result = attack(x, y, targets=targets)
        return result, time.perf_counter() - start
    finally:
        lbfgs_module.projected_lbfgs = TORCH_SOLVER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="test images per model")
    args = parser.parse_args()
    splits = bench_data()
    s37 = splits.select_classes([3, 7])
    print(f"data: {splits.source}; first {args.n} test images; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    generator = torch.Generator().manual_seed(0)
    cases = [
        ("logreg 3v7, untargeted", trained("logreg", s37, epochs=10), s37.test, None),
        ("softmax, targeted random", trained("softmax", splits, epochs=10), splits.test, "random"),
        ("mlp 784-256-256-10, untargeted", mlp(splits), splits.test, None),
    ]
    header = f"{'model':<32}{'solver':<16}{'s/img':>8}{'success':>9}{'med ratio':>11}{'max ratio':>11}{'med L2':>9}"
    print(header)
    for label, model, data, targets in cases:
        for p in model.parameters():
            p.requires_grad_(False)
        x, y = data.images[: args.n], data.labels[: args.n]
        if targets == "random":
            classes = int(y.max()) + 1
            targets = (y + torch.randint(1, classes, y.shape, generator=generator)) % classes
        exact = None
        if label.startswith(("logreg", "softmax")):
            exact = minimal_perturbation(model, x, y, targets=targets).distance
        for solver_name, solver, max_iter in (
            ("torch", TORCH_SOLVER, 100),
            ("scipy", scipy_lbfgsb, 100),
            ("scipy", scipy_lbfgsb, 1000),
        ):
            result, seconds = run(solver, model, x, y, targets, max_iter)
            ok = result.success
            l2 = result.l2.double()
            if exact is not None:
                ok = ok & (exact > 0)
                ratio = l2[ok] / exact[ok]
                med, worst = f"{float(ratio.median()):.5f}", f"{float(ratio.max()):.5f}"
            else:
                med = worst = "-"
            print(f"{label:<32}{solver_name + f' it={max_iter}':<16}{seconds / len(x):>8.3f}"
                  f"{float(result.success.double().mean()):>9.2f}{med:>11}{worst:>11}{float(l2[ok].median()):>9.4f}")


if __name__ == "__main__":
    main()
