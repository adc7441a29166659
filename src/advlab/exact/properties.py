"""Deciding a Property (input box + linear counterexample region) within one time budget.

    verify_property(model, prop, *, input_shape=None, timeout=60, seed=0, attack_steps=50,
                    restarts=16, alpha_steps=20) -> Verdict

The answer is VNN-COMP's: "sat" (a counterexample, confirmed by the float64 model inside
the box), "unsat" (proven: no point of the box meets any disjunct), "unknown" (gave up before
the budget: a layer the exact tools cannot read, or a search that hit its domain cap and a
MILP that could not decide), "timeout" (the budget ran out). `timeout` bounds the whole call;
each step below checks it, and the complete searches get only what is left.

1. falsify (`advlab.exact.falsify`): the box's centre, random corners and points, PGD on the
   slack and on its temperature-smoothed version.
2. bounds, per disjunct, from the cheapest on (each only for the disjuncts still open):
   interval, CROWN, alpha-CROWN (`alpha_steps`); a disjunct is ruled out when some row has
   lower(C_r f) > d_r.
3. falsify again, starting from the corners at which alpha-CROWN attains its bounds.
4. complete: branch and bound over the open disjuncts (ReLU networks, `advlab.exact.bab.search`),
   its LP leaves and bound corners offering counterexamples; networks with max-pool (or a
   search that stopped on its domain cap) go to the MILP, one feasibility problem per disjunct.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from advlab.errors import InputError
from advlab.exact.bab import search, supports
from advlab.exact.bounds import hidden_bounds, interval_bounds, spec_bounds, spec_lower
from advlab.exact.encoding import INFEASIBLE, NumpyNetwork, meets, to_numpy
from advlab.exact.falsify import confirmed, falsify
from advlab.exact.inputs import check_time_limit
from advlab.exact.optimized import optimise, optimised_hidden
from advlab.exact.relu_network import ReluNetwork, UnsupportedModelError, relu_network
from advlab.exact.specs import goals
from advlab.formats.vnnlib import Property
from advlab.validation import check_count

VERDICTS = ("sat", "unsat", "unknown", "timeout")


@dataclass
class Verdict:
    """status in VERDICTS; for "sat" the counterexample (n,) and the float64 model's outputs
    at it (m,); method: what settled it ("attack", "interval", "crown", "alpha-crown", "bab",
    "milp", "" when unsettled); seconds spent; notes: why it is unknown, where it is."""

    status: str
    counterexample: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    method: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _input_shape(model: nn.Module, prop: Property, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    shape = tuple(input_shape) if input_shape is not None else tuple(getattr(model, "input_shape", (prop.num_inputs,)))
    if math.prod(shape) != prop.num_inputs:
        raise InputError(f"the property has {prop.num_inputs} inputs; the model takes {math.prod(shape)} (shape {shape})")
    return shape


def verify_property(
    model: nn.Module, prop: Property, *, input_shape: tuple[int, ...] | None = None, timeout: float = 60.0,
    seed: int = 0, attack_steps: int = 50, restarts: int = 16, alpha_steps: int = 20,
) -> Verdict:
    """Decide `prop` for `model` within `timeout` seconds in all (module docstring)."""
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    timeout = check_time_limit(timeout)
    attack_steps = check_count("attack_steps", attack_steps, minimum=0)
    restarts = check_count("restarts", restarts)
    alpha_steps = check_count("alpha_steps", alpha_steps, minimum=0)
    shape = _input_shape(model, prop, input_shape)
    model64 = copy.deepcopy(model).cpu().double().eval().requires_grad_(False)
    try:
        with torch.no_grad():
            outputs = model64(((prop.lower + prop.upper) / 2).reshape(1, *shape)).reshape(1, -1).shape[1]
    except RuntimeError as exc:  # shape mismatch inside the model
        raise InputError(f"the property has {prop.num_inputs} inputs; the model cannot take them as shape {shape}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    if outputs != prop.num_outputs:
        raise InputError(f"the property has {prop.num_outputs} outputs; the model gives {outputs}")
    run = _Run(model64, prop, shape, start + timeout, seed)
    verdict = run.decide(attack_steps, restarts, alpha_steps)
    verdict.seconds = time.perf_counter() - start
    return verdict


class _Run:
    def __init__(self, model64: nn.Module, prop: Property, shape: tuple[int, ...], deadline: float, seed: int) -> None:
        self.model64, self.prop, self.shape, self.deadline, self.seed = model64, prop, shape, deadline, seed
        self.notes: list[str] = []

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def sat(self, point: torch.Tensor, how: str) -> Verdict:
        with torch.no_grad():
            out = self.model64(point.reshape(1, *self.shape)).reshape(-1)
        return Verdict("sat", point, out, how, notes=self.notes)

    def out_of_time(self) -> Verdict:
        return Verdict("timeout", notes=self.notes + ["the time budget ran out"])

    def decide(self, attack_steps: int, restarts: int, alpha_steps: int) -> Verdict:
        prop = self.prop
        point = falsify(self.model64, prop, self.shape, steps=attack_steps, restarts=restarts, seed=self.seed,
                        deadline=self.deadline)
        if point is not None:
            return self.sat(point, "attack")
        if self.left() <= 0:
            return self.out_of_time()
        try:
            net = relu_network(self.model64, self.shape, bounds=(float(prop.lower.min()), float(prop.upper.max())))
        except UnsupportedModelError as exc:
            self.notes.append(f"no bounds and no complete search: {exc}")
            point = falsify(self.model64, prop, self.shape, steps=4 * attack_steps, restarts=4 * restarts,
                            seed=self.seed + 1, deadline=self.deadline)
            if point is not None:
                return self.sat(point, "attack")
            return self.out_of_time() if self.left() <= 0 else Verdict("unknown", notes=self.notes)
        xl, xu = prop.lower.unsqueeze(0), prop.upper.unsqueeze(0)
        open_ = list(range(len(prop.disjuncts)))
        corners = None
        for how in ("interval", "crown", "alpha-crown")[: 3 if alpha_steps else 2]:
            lower, corners = self._bounds(net, how, open_, xl, xu, alpha_steps)
            _, offsets = goals(prop, open_)
            open_ = [i for i, ok in zip(open_, ((lower - offsets) <= 0).all(1).tolist()) if ok]
            if not open_:
                return Verdict("unsat", method=how, notes=self.notes)
            if self.left() <= 0:
                return self.out_of_time()
        point = falsify(self.model64, prop, self.shape, steps=attack_steps, restarts=restarts, seed=self.seed + 1,
                        corners=corners, deadline=self.deadline)
        if point is not None:
            return self.sat(point, "attack")
        if self.left() <= 0:
            return self.out_of_time()
        return self._complete(net, open_, xl, xu)

    def _bounds(self, net: ReluNetwork, how: str, open_: list[int], xl: torch.Tensor, xu: torch.Tensor,
                alpha_steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Lower bounds of C f over the box for the open disjuncts ((G, R)) and, for the
        optimised pass, the corners attaining them."""
        rows, _ = goals(self.prop, open_)
        flat = rows.reshape(1, -1, rows.shape[-1])
        if how == "interval":
            hidden = interval_bounds(net, xl, xu)[:-1]
            return spec_bounds(net, hidden, flat, xl, xu, method="interval")[0].reshape(rows.shape[:2]), None
        hidden = hidden_bounds(net, xl, xu)
        crown = spec_lower(net, hidden, flat, xl, xu)
        if how == "crown":
            return crown.reshape(rows.shape[:2]), None
        hidden = optimised_hidden(net, hidden, xl, xu, steps=alpha_steps, deadline=self.deadline)
        opt = optimise(net, hidden, len(net.nonlinear), -flat, xl, xu, steps=alpha_steps, deadline=self.deadline)
        lower = torch.maximum(-opt.upper, crown).reshape(rows.shape[:2])
        return lower, opt.last.argmax[0]

    def _check(self, point: torch.Tensor) -> torch.Tensor | None:
        return confirmed(self.model64, self.prop, point.reshape(1, -1), self.shape)

    def _complete(self, net: ReluNetwork, open_: list[int], xl: torch.Tensor, xu: torch.Tensor) -> Verdict:
        if supports(net):
            rows, offsets = goals(self.prop, open_)
            outcome = search(net, xl[0], xu[0], rows, offsets, time_limit=self.left(), check=self._check)
            if outcome.status == "robust":
                return Verdict("unsat", method="bab", notes=self.notes)
            if outcome.status == "counterexample":
                return self.sat(outcome.point, "bab")
            if self.left() <= 0:
                return self.out_of_time()
            self.notes.append(f"branch and bound stopped ({outcome.reason}): the MILP gets the rest of the time")
        solver_net = NumpyNetwork.of(net)
        hidden = to_numpy(hidden_bounds(net, xl, xu))
        lo, hi = xl[0].numpy(), xu[0].numpy()
        undecided = False
        for i in open_:
            c, d = self.prop.disjuncts[i]
            if self.left() <= 0:
                return self.out_of_time()
            res = meets(solver_net, hidden, lo, hi, c.numpy(), d.numpy(), self.left())
            if res.status == INFEASIBLE:
                continue
            if res.x is None:
                return self.out_of_time() if self.left() <= 0 else Verdict("unknown", notes=self.notes + ["the MILP stopped"])
            point = self._check(torch.from_numpy(res.x[: lo.size]))
            if point is not None:
                return self.sat(point, "milp")
            undecided = True  # a solution on the boundary that the float64 model does not confirm
        if undecided:
            return Verdict("unknown", notes=self.notes + ["a MILP solution is not confirmed by the float64 model"])
        return Verdict("unsat", method="milp", notes=self.notes)
