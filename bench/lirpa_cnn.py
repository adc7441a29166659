"""advlab's CROWN and alpha-CROWN against auto_LiRPA 0.3's on a CNN: certified counts, bound
differences and CPU milliseconds per image, interleaved, one thread.

Runs in a separate comparison environment (never part of advlab's install), because
`auto-lirpa==0.3` declares torch<1.13 while it runs with our torch 2.13:

    python -m venv VENV && VENV/bin/pip install torch==2.13.0
    VENV/bin/pip install --no-deps auto-lirpa==0.3
    VENV/bin/pip install "numpy<2" "scipy<1.14" appdirs packaging pyyaml tqdm safetensors
    PYTHONPATH=src OMP_NUM_THREADS=1 VENV/bin/python bench/lirpa_cnn.py CHECKPOINT --data-dir DIR

CHECKPOINT: a checkpoint of a registered model (e.g. `advlab train cnn --adversarial pgd`).
The first `--n` test images of DIR (the four IDX files of MNIST or Fashion-MNIST) are bounded at
each eps in batches of `--batch`, on the L-inf ball intersected with [0, 1], both libraries in
float64 (the default dtype here, as auto_LiRPA's alpha-CROWN needs for agreement), each batch
by the four methods in turn (the order rotating from batch to batch), timed by
`time.process_time`. An image counts as certified when the lower bound of z_y - z_k is positive
for every k != y (a misclassified image never is).

- CROWN: `advlab.exact.margin_bounds` and auto_LiRPA's `compute_bounds(method="CROWN")` with
  the margin rows as its C matrix.
- alpha-CROWN: `alpha_margin_bounds(steps=S, hidden_steps=0)` (CROWN hidden bounds, the margins'
  slopes optimised by S Adam steps, stopping once every margin of the batch is positive) and
  auto_LiRPA's `method="CROWN-Optimized"` with its defaults (S iterations, lr 0.5, keep best;
  no intermediate bounds given, so it recomputes them with their own slopes at every iteration,
  optimised jointly for the margins) and the same stopping rule; sparse alphas off.

auto_LiRPA 0.3 imports three torch.onnx internals that torch 2.x moved or removed; `_shim`
aliases them in this process (nothing in site-packages is changed).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def _shim() -> None:
    """Aliases for the torch.onnx internals auto_LiRPA 0.3's graph parser imports."""
    import torch.onnx.symbolic_helper
    import torch.onnx.utils
    from torch.onnx._internal.torchscript_exporter import _globals
    from torch.onnx._internal.torchscript_exporter import utils as exporter_utils

    torch.onnx.utils._optimize_graph = exporter_utils._optimize_graph

    def set_opset_version(version: int) -> None:
        _globals.GLOBALS.export_onnx_opset_version = version

    torch.onnx.symbolic_helper._set_opset_version = set_opset_version
    torch._C.Node.__getitem__ = lambda node, key: getattr(node, node.kindOf(key))(key)  # removed in torch 2


_shim()
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402
from auto_LiRPA.operators import BoundMaxPool  # noqa: E402

from advlab.data.sources import load_idx_dir  # noqa: E402
from advlab.exact import margin_bounds, relu_network  # noqa: E402
from advlab.exact.bounds import box, rival_rows  # noqa: E402
from advlab.exact.optimized import alpha_margin_bounds  # noqa: E402
from advlab.training import load_checkpoint  # noqa: E402

METHODS = ("advlab CROWN", "auto_LiRPA CROWN", "advlab alpha-CROWN", "auto_LiRPA alpha-CROWN")


def lirpa_module(model: torch.nn.Module, shape: tuple[int, ...], steps: int) -> BoundedModule:
    """auto_LiRPA's graph of the model (built once, outside the timings), sparse alphas off,
    convolutions' intermediate alphas shared per channel (full ones took over 19 GB at 10 images),
    max-pools out of its optimised activations (0.3 fails an assertion on a max-pool in patches
    mode; advlab keeps the max-pool relaxation fixed too)."""
    opts = {"sparse_features_alpha": False, "sparse_spec_alpha": False, "use_full_conv_alpha": False,
            "optimize_bound_args": {"iteration": steps, "stop_criterion_func": lambda lb: lb > 0}}
    bounded = BoundedModule(model, torch.zeros(1, *shape), bound_opts=opts, device="cpu")
    bounded.optimizable_activations = [n for n in bounded.optimizable_activations if not isinstance(n, BoundMaxPool)]
    return bounded


def lirpa_bounds(bounded: BoundedModule, x: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor, rows: torch.Tensor,
                 *, method: str) -> torch.Tensor:
    """auto_LiRPA's lower bounds of rows . logits over the box (B, R)."""
    xb = BoundedTensor(x, PerturbationLpNorm(eps=float((xu - xl).max()), x_L=xl.view_as(x), x_U=xu.view_as(x)))
    lower, _ = bounded.compute_bounds(x=(xb,), C=rows, method=method, bound_upper=False)
    return lower.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", required=True, help="folder with the four IDX files (MNIST or Fashion-MNIST)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", default="0.1,0.03")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="alpha-CROWN steps (both libraries)")
    parser.add_argument("--alpha-n", type=int, default=None, help="alpha-CROWN on the first this many images only "
                        "(default: all; 0: none; a multiple of --batch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model.double().eval()
    test = load_idx_dir(args.data_dir, "mnist").test
    images, labels = test.images[: args.n].double(), test.labels[: args.n]
    net = relu_network(model, tuple(images.shape[1:]))
    # one graph per method: after an optimised call auto_LiRPA keeps using its optimised slopes
    crown_module, alpha_module = (lirpa_module(model, tuple(images.shape[1:]), args.steps) for _ in range(2))
    alpha_n = args.n if args.alpha_n is None else min(args.alpha_n, args.n)
    with torch.no_grad():
        correct = int((model(images).argmax(1) == labels).sum())
    print(f"torch {torch.__version__}, 1 thread; {args.checkpoint}: {args.n} test images, {correct} correct; "
          f"batches of {args.batch}, alpha-CROWN {args.steps} steps on the first {alpha_n}")
    print("| eps | method | certified | CPU ms/image |")
    print("| --- | --- | --- | --- |")
    for eps in (float(e) for e in args.eps.split(",")):
        seconds = dict.fromkeys(METHODS, 0.0)
        certified = dict.fromkeys(METHODS, 0)
        lowers: dict[str, list[torch.Tensor]] = {m: [] for m in METHODS}
        for b, (x, y) in enumerate(zip(images.split(args.batch), labels.split(args.batch))):
            xl, xu = box(x.flatten(1), eps, (0.0, 1.0))
            others, rows = rival_rows(y, net.num_classes)
            runs: dict[str, Callable[[], torch.Tensor]] = {
                METHODS[0]: lambda: margin_bounds(net, xl, xu, y).gather(1, others),
                METHODS[1]: lambda: lirpa_bounds(crown_module, x, xl, xu, rows, method="CROWN"),
                METHODS[2]: lambda: alpha_margin_bounds(net, xl, xu, y, steps=args.steps, hidden_steps=0).lower.gather(1, others),
                METHODS[3]: lambda: lirpa_bounds(alpha_module, x, xl, xu, rows, method="CROWN-Optimized"),
            }
            order = METHODS[b % 4:] + METHODS[: b % 4]
            if b * args.batch >= alpha_n:
                order = [m for m in order if "alpha" not in m]
            for name in order:
                start = time.process_time()
                lower = runs[name]()
                seconds[name] += time.process_time() - start
                lowers[name].append(lower)
                certified[name] += int((lower > 0).all(1).sum())
        for name in METHODS if alpha_n else METHODS[:2]:
            count = alpha_n if "alpha" in name else args.n
            print(f"| {eps:g} | {name} | {certified[name]} / {count} | {1000 * seconds[name] / count:.1f} |")
        pairs = {"CROWN": METHODS[:2], "alpha-CROWN": METHODS[2:]} if alpha_n else {"CROWN": METHODS[:2]}
        for kind, (mine, theirs) in pairs.items():
            diff = torch.cat(lowers[mine]) - torch.cat(lowers[theirs])
            print(f"eps {eps:g} {kind}: advlab - auto_LiRPA lower bounds in [{float(diff.min()):.2e}, "
                  f"{float(diff.max()):.2e}]; CPU time ratio advlab / auto_LiRPA "
                  f"{seconds[mine] / seconds[theirs]:.2f}", flush=True)


if __name__ == "__main__":
    main()
