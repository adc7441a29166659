"""A proven bracket on robust accuracy at a fixed L-inf eps: certify(model, x, y, eps=...).

    certify(model, x, y, *, eps, bounds=(0.0, 1.0), time_limit=60, milp=True, attack=True,
            attack_steps=40, seed=0, batch_size=64, progress=True, alpha_steps=20, bab=True)
        -> Certification

Per example, in this order (each step only for the examples the ones before left open):

1. "misclassified": the clean input is already wrong (float64 forward).
2. "certified": interval bounds, then CROWN bounds (`advlab.exact.bounds`), then alpha-CROWN
   (optimised slopes, `advlab.exact.optimized`, `alpha_steps` steps; 0 skips it) prove
   z_y > z_k for every k != y on the whole ball B(eps) = {x' in box : ||x' - x||_inf <= eps}.
3. "broken": advlab's PGD (margin loss, `attack_steps` steps, seeded) finds a point of B(eps)
   that the float64 model misclassifies (projected onto B(eps) in float64 and re-checked).
4. Complete verification (`milp=True`), within `time_limit` seconds per example:
   First (unless attack=False) `advlab.exact.falsify` (random corners and points, slack and temperature-smoothed
   steps that keep moving where the outputs saturate; method "attack"), then
   branch and bound on ReLU splits with alpha/beta-CROWN bounds (`advlab.exact.bab`,
   `bab=True`; max-pool layers keep their relaxation, and its sub-domains with few unstable
   ReLUs are decided by the MILP): "verified" (method "bab") or "broken" by a counterexample
   the float64 model confirms. `bab=False`, or a search that stopped on its domain cap with
   time left: the fixed-eps decision MILP (Tjeng, Xiao & Tedrake 2019;
   `advlab.exact.milp.decide`; method "milp"). On convolutional networks alpha-CROWN bounds
   one example per call (`_convolutional`).
5. "unknown": the time limit was reached, complete verification was switched off
   (`milp=False`), or the model has a layer the exact tools cannot read (then no bounds
   either; `notes` says which).

`Certification.bracket()` = (certified_share, not_broken_share): the robust accuracy at eps
lies in [(certified + verified) / n, (n - misclassified - broken) / n]; the two ends meet when
no example is "unknown". `counterexample` holds, for "broken" examples, the float64 point that
breaks them (and x elsewhere); `method` says what settled each example ("clean", "interval",
"crown", "alpha-crown", "attack", "bab", "milp", or "" for unknown).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.attacks import PGD
from advlab.attacks.witness import into_ball
from advlab.exact.bab import branch_and_bound, supports
from advlab.exact.bounds import box, margin_bounds
from advlab.exact.encoding import NumpyNetwork
from advlab.exact.falsify import falsify
from advlab.exact.inputs import check_time_limit, linf_distance, prepare
from advlab.exact.linear_operators import Conv
from advlab.exact.milp import Verifier, decide
from advlab.exact.optimized import alpha_margin_bounds
from advlab.exact.relu_network import ReluNetwork, UnsupportedModelError, relu_network
from advlab.exact.specs import robustness_property
from advlab.models.layers import as_multiclass_logits
from advlab.progress import progress_bar
from advlab.validation import check_count, check_eps

STATUSES = ("misclassified", "certified", "verified", "broken", "unknown")
METHODS = ("clean", "interval", "crown", "alpha-crown", "attack", "bab", "milp")


@dataclass
class Certification:
    """Per-example outcome of `certify` (see the module docstring)."""

    eps: float
    status: list[str]
    method: list[str]
    counterexample: torch.Tensor  # (N, ...) float64
    seconds: torch.Tensor  # (N,) float64
    time_limit: float
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.status)

    def counts(self) -> dict[str, int]:
        return {s: self.status.count(s) for s in STATUSES}

    @property
    def certified_share(self) -> float:
        """Lower end of the bracket: examples proven robust (bounds or MILP) / n."""
        c = self.counts()
        return (c["certified"] + c["verified"]) / self.n

    @property
    def not_broken_share(self) -> float:
        """Upper end of the bracket: examples neither misclassified nor broken / n."""
        c = self.counts()
        return (self.n - c["misclassified"] - c["broken"]) / self.n

    def bracket(self) -> tuple[float, float]:
        return self.certified_share, self.not_broken_share

    def summary(self) -> dict[str, Any]:
        settled_by = {m: self.method.count(m) for m in METHODS if m in self.method}
        return {
            "eps": self.eps,
            "n": self.n,
            "counts": self.counts(),
            "settled_by": settled_by,
            "bracket": list(self.bracket()),
            "exact": self.certified_share == self.not_broken_share,
            "median_seconds": float(self.seconds.median()),
            "max_seconds": float(self.seconds.max()),
            "time_limit": self.time_limit,
            "notes": self.notes,
        }


def certify(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    time_limit: float = 60.0,
    milp: bool = True,
    attack: bool = True,
    attack_steps: int = 40,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
    alpha_steps: int = 20,
    bab: bool = True,
) -> Certification:
    """Settle each example as robust, broken or unknown at L-inf radius eps (module docstring)."""
    data = prepare(model, x, y, bounds)
    bounds = data.bounds
    eps = check_eps(eps, bounds)
    time_limit = check_time_limit(time_limit)
    alpha_steps = check_count("alpha_steps", alpha_steps, minimum=0)
    n = len(data.labels)
    flat = data.x64.flatten(1)
    status, method = ["unknown"] * n, [""] * n
    seconds = torch.zeros(n, dtype=torch.float64)
    counterexample = data.x64.clone()
    notes: list[str] = []

    def settle(indices: torch.Tensor, what: str, how: str) -> None:
        for i in indices.tolist():
            status[i], method[i] = what, how

    wrong = (data.logits.argmax(1) != data.labels).nonzero().flatten()
    settle(wrong, "misclassified", "clean")
    todo = (data.logits.argmax(1) == data.labels).nonzero().flatten()
    try:
        net = relu_network(data.model64, tuple(x.shape[1:]), bounds=bounds)
    except UnsupportedModelError as exc:
        net = None
        notes.append(f"no bounds and no MILP: {exc}")
    if net is not None and len(todo):
        start = time.perf_counter()
        for how in ("interval", "crown", "alpha-crown")[: 3 if alpha_steps else 2]:
            if not len(todo):
                break
            proven = []
            chunks = todo.split(1 if how == "alpha-crown" and _convolutional(net) else batch_size)
            for chunk in progress_bar(len(chunks), f"certify: {how} bounds", enabled=progress, unit="batch", iterable=chunks):
                xl, xu = box(flat[chunk], eps, bounds)
                if how == "alpha-crown":
                    lower = alpha_margin_bounds(net, xl, xu, data.labels[chunk], steps=alpha_steps,
                                                hidden_steps=alpha_steps).lower
                else:
                    lower = margin_bounds(net, xl, xu, data.labels[chunk], method=how)
                proven.append(chunk[(lower > 0).all(1)])
            done = torch.cat(proven)
            settle(done, "certified", how)
            todo = todo[~torch.isin(todo, done)]
        seconds += (time.perf_counter() - start) / n
    if attack and len(todo):
        start = time.perf_counter()
        broken, points = _attack(model, data, todo, eps, attack_steps, seed)
        counterexample[todo[broken]] = points[broken]
        settle(todo[broken], "broken", "attack")
        todo = todo[~broken]
        seconds += (time.perf_counter() - start) / n
    if net is not None and milp and len(todo):
        verify = Verifier(data.model64, torch.float64, tuple(x.shape[1:]), bounds)
        complete = _Complete(net, verify, eps, bounds, time_limit, bab, notes, seed if attack else None)
        for i in progress_bar(len(todo), "certify: complete", enabled=progress, unit="image", iterable=todo.tolist()):
            start = time.perf_counter()
            verdict, found, how = complete(flat[i], int(data.labels[i]))
            if verdict == "robust":
                status[i], method[i] = "verified", how
            elif verdict == "counterexample":
                status[i], method[i] = "broken", how
                counterexample[i] = found.reshape(counterexample[i].shape)
            seconds[i] += time.perf_counter() - start
    elif net is not None and not milp and len(todo):
        notes.append(f"{len(todo)} example(s) left unknown: MILP and branch and bound switched off (milp=False)")
    if status.count("unknown") and net is not None and milp:
        notes.append(f"{status.count('unknown')} example(s) unknown: time limit ({time_limit:g} s per example) reached")
    return Certification(eps, status, method, counterexample, seconds, time_limit, notes)


def _attack(
    model: nn.Module, data: Any, todo: torch.Tensor, eps: float, steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on the examples `todo`; per example whether a float64 point of B(eps) breaks it."""
    x = data.x64[todo]
    pgd = PGD(model, eps=eps, steps=steps, loss="margin", early_exit=True, bounds=data.bounds, seed=seed)
    result = pgd(x.to(_dtype(model)), data.labels[todo])
    adv = result.x_adv.detach().cpu().double()
    adv = into_ball(adv, x, eps, data.bounds)
    with torch.no_grad():
        pred = torch.cat([as_multiclass_logits(data.model64(c)) for c in adv.split(1024)]).argmax(1)
    inside = linf_distance(adv, x) <= eps
    return (pred != data.labels[todo]) & inside, adv


class _Complete:
    """Complete verification of one example: branch and bound (the MILP for the time it leaves
    when it stops on its domain cap), or the decision MILP when branch and bound is off."""

    def __init__(self, net: ReluNetwork, verify: Verifier, eps: float, bounds: tuple[float, float], time_limit: float,
                 bab: bool, notes: list[str], seed: int | None = None) -> None:
        self.net, self.verify, self.eps, self.bounds, self.time_limit = net, verify, eps, bounds, time_limit
        self.seed = seed  # None: no falsification (attack=False)
        self.bab = bab and supports(net)
        self.notes = notes
        self._solver_net: NumpyNetwork | None = None

    def __call__(self, x: torch.Tensor, label: int) -> tuple[str, torch.Tensor | None, str]:
        """(verdict "robust" | "counterexample" | "unknown", the confirmed point, method)."""
        deadline = time.perf_counter() + self.time_limit
        if self.seed is not None:
            prop = robustness_property(x, label, self.eps, self.bounds, self.net.num_classes)
            found = falsify(self.verify.model64, prop, self.verify.shape, seed=self.seed, deadline=deadline)
            if found is not None and (point := self._checked(x, label, found)) is not None:
                return "counterexample", point, "attack"
        if self.bab:
            outcome = branch_and_bound(self.net, x, label, self.eps, self.bounds,
                                       time_limit=max(deadline - time.perf_counter(), 0.0),
                                       check=lambda p: self._checked(x, label, p))
            if outcome.status != "unknown" or outcome.reason == "time limit":
                return outcome.status, outcome.point, "bab"
            self.notes.append(f"branch and bound stopped ({outcome.reason}): the MILP gets the rest of the time")
        left = deadline - time.perf_counter()
        if left <= 0:
            return "unknown", None, "milp"
        if self._solver_net is None:
            self._solver_net = NumpyNetwork.of(self.net)
        decision = decide(self.net, self._solver_net, x.numpy(), label, self.eps, self.bounds, left, self.verify)
        return decision.status, None if decision.point is None else torch.from_numpy(decision.point), "milp"

    def _checked(self, x: torch.Tensor, label: int, point: torch.Tensor) -> torch.Tensor | None:
        """The candidate as the images' dtype, moved into B(eps), if the float64 model misclassifies it."""
        found = self.verify(x.numpy(), label, point.numpy(), self.eps)
        return None if found is None else torch.from_numpy(found[1])


def _convolutional(net: ReluNetwork) -> bool:
    """Whether the network has a convolution. alpha-CROWN re-bounds every hidden neuron unstable
    in any box of its batch for every box; on a CNN (about 1,300 of 9,216 first-layer neurons
    unstable per MNIST image at eps .1, different ones per image) nine images took 195 s at
    once against 3.4 s each alone, so there it bounds one example per call."""
    return any(isinstance(op, Conv) for a in net.affines for op in a.ops)


def _dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype if p.dtype.is_floating_point else torch.float32
    return torch.float32
