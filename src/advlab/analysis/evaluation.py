"""Robust accuracy under an attack suite, run as a cascade, with a proven bracket.

    evaluate_suite(model, x, y, *, eps, norm="linf", suite="standard", bracket=False, ...)

1. Clean predictions: misclassified points are not robust (broken by "clean").
2. With `bracket` or `skip_certified` (L-inf): interval and CROWN bounds (`advlab.exact.certify`,
   no MILP) prove some points robust on the whole eps-ball; those need no attack, so they are not
   attacked (the attacks could not break them). The verifier is passed in (`certify=`).
   `skip_certified` alone only saves time: a proven point has no misclassified point in its ball
   (for the float64 model the bounds read), so no attack could have broken it.
3. The cascade (Croce & Hein 2020, Sec. 5): each attack of the suite runs only on the points every
   earlier attack left robust, in chunks of `batch_size`; per point we keep which attack broke it
   and its adversarial point. Attacks that draw random numbers get each point's position in the
   data set, so a point's fate does not depend on which others are still in the chain.
4. With `bracket`: the fixed-eps MILP (Tjeng, Xiao & Tedrake 2019) decides the points still
   open within `time_limit` seconds each: verified robust, or broken by a counterexample.

Robust accuracy then lies in [certified, attacked]: certified = points proven robust / n (a lower
bound), attacked = points no attack broke / n (an upper bound). When the exact tools cannot read
the model the bracket is honestly [0, attacked] and the notes say why.

With `state_path`, the state is written atomically after every chunk; a killed run restarts from
the chunk in progress and ends with exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks import ATTACKS, make_attack
from advlab.attacks.suites import SuiteAttack, resolve_suite
from advlab.errors import InputError
from advlab.io import write_npz_atomic
from advlab.models.inference import frozen_eval
from advlab.models.inference import logits as model_logits
from advlab.models.layers import as_multiclass_logits
from advlab.progress import progress_bar
from advlab.validation import Bounds, check_bounds, check_count, check_eps, check_images, check_labels, check_norm

ROBUST, CLEAN, MILP = -1, -2, -3  # broken_by codes besides the suite position


@dataclass
class SuiteEvaluation:
    """Per point: robust after the cascade, which attack broke it, its adversarial point."""

    eps: float
    norm: str
    attacks: list[str]  # suite labels, in order
    params: dict[str, dict[str, Any]]
    clean_correct: torch.Tensor  # (N,) bool
    robust: torch.Tensor  # (N,) bool: no attack (nor the MILP) broke it
    broken_by: list[str]  # "" (robust), "clean", a suite label, or "milp"
    x_adv: torch.Tensor  # the breaking point where broken, x elsewhere
    after: dict[str, float]  # robust accuracy after each attack
    seconds: dict[str, float]
    certified: torch.Tensor | None = None  # (N,) bool: proven robust (bounds or MILP); None: no bracket
    certification: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # suite attacks not registered in this build
    notes: list[str] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)  # measured on the clean points (see `probe_model`)

    @property
    def n(self) -> int:
        return len(self.broken_by)

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.double().mean())

    @property
    def robust_accuracy(self) -> float:
        """The attacks' figure: an upper bound on the true robust accuracy."""
        return float(self.robust.double().mean())

    @property
    def certified_accuracy(self) -> float:
        """Proven robust share: a lower bound (0 without a bracket)."""
        return 0.0 if self.certified is None else float(self.certified.double().mean())

    @property
    def bracket(self) -> tuple[float, float]:
        return self.certified_accuracy, self.robust_accuracy

    def broken_counts(self) -> dict[str, int]:
        return {label: self.broken_by.count(label) for label in ("clean", *self.attacks, "milp") if label in self.broken_by}

    def to_dict(self) -> dict[str, Any]:
        return {
            "eps": self.eps, "norm": self.norm, "n": self.n, "attacks": self.attacks, "params": self.params,
            "missing": self.missing, "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
            "certified_accuracy": self.certified_accuracy, "bracket": list(self.bracket), "after": self.after, "probe": self.probe,
            "seconds": self.seconds, "broken_counts": self.broken_counts(), "certification": self.certification,
            "notes": self.notes,
        }


@dataclass
class _State:
    """What a killed run needs to continue: everything but the clean logits, which are recomputed."""

    fingerprint: str
    broken: np.ndarray  # (N,) int: ROBUST, CLEAN, MILP or the suite position
    x_adv: np.ndarray
    certified: np.ndarray  # (N,) bool
    todo: np.ndarray  # indices the current attack runs on
    position: np.ndarray  # [attack, chunk, stage]: stage 0 before the bounds, 1 cascade, 2 done
    seconds: np.ndarray  # per attack

    def save(self, path: Path | None) -> None:
        if path is not None:
            write_npz_atomic(path, fingerprint=np.array(self.fingerprint), broken=self.broken, x_adv=self.x_adv,
                             certified=self.certified, todo=self.todo, position=self.position, seconds=self.seconds)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> _State:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                raise InputError(f"state file {path} belongs to another evaluation (model, data, suite or settings differ)")
            return cls(fingerprint, *(data[k].copy() for k in ("broken", "x_adv", "certified", "todo", "position", "seconds")))


def _fingerprint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for tensor in (*model.state_dict().values(), x, y):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return json.dumps({"sha256": digest.hexdigest(), **settings}, sort_keys=True, default=str)


def evaluate_suite(
    model: nn.Module,
    images: Any,
    labels: Any,
    *,
    eps: float,
    norm: str = "linf",
    suite: str | Sequence[SuiteAttack | Mapping[str, Any]] = "standard",
    bounds: Bounds = (0.0, 1.0),
    batch_size: int = 500,
    seed: int = 0,
    bracket: bool = False,
    skip_certified: bool = False,
    certify: Callable[..., Any] | None = None,
    time_limit: float = 120.0,
    state_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> SuiteEvaluation:
    """Run `suite` as a cascade at budget eps; with `bracket`, prove the lower end (module docstring).

    certify: the verifier for the bracket, `advlab.exact.certify` (passed in: analysis and exact
    are sibling layers); without it the bracket is [0, attacked]. skip_certified: run the bounds
    before the attacks (as `bracket` does, without the MILP) and attack only the points they
    leave open; needs `certify`."""
    bounds = check_bounds(bounds)
    norm = check_norm(norm, ("linf", "l2"))
    eps = check_eps(eps, bounds, norm=norm)
    x = check_images("images", images, bounds)
    y = check_labels("labels", labels, len(x))
    batch_size = check_count("batch_size", batch_size)
    entries, missing = resolve_suite(suite, ATTACKS)
    if (bracket or skip_certified) and norm != "linf":
        raise InputError("the certified bracket and skip_certified are available for norm='linf' only")
    if skip_certified and certify is None:
        raise InputError("skip_certified needs a verifier: pass certify=advlab.exact.certify")
    attacks = [make_attack(e.attack, model, **{**e.params, "eps": eps, "norm": norm, "bounds": bounds, "seed": seed, "batch_size": batch_size})
               for e in entries]
    clean_logits = model_logits(model, x, batch_size=batch_size)
    clean = clean_logits.argmax(1).cpu() == y.cpu()
    probe = probe_model(model, x[:batch_size], y[:batch_size], clean_logits[:batch_size])
    n = len(y)
    settings = {"eps": eps, "norm": norm, "bounds": bounds, "seed": seed, "batch_size": batch_size, "bracket": bracket,
                "skip_certified": skip_certified,
                "time_limit": time_limit, "suite": [(e.label, e.attack, dict(e.params)) for e in entries]}
    fingerprint = _fingerprint(model, x, y, settings)
    path = None if state_path is None else Path(state_path)
    if path is not None and path.exists():
        state = _State.load(path, fingerprint)
    else:
        broken = np.where(clean.numpy(), ROBUST, CLEAN)
        state = _State(fingerprint, broken, x.detach().cpu().numpy().copy(), np.zeros(n, bool), np.zeros(0, np.int64),
                       np.array([0, 0, 0]), np.zeros(len(entries)))
    notes: list[str] = []
    certification: dict[str, Any] = {}
    if (bracket or skip_certified) and state.position[2] == 0:
        certification["bounds"] = _certify(certify, model, x, y, state, eps, bounds, time_limit, milp=False, notes=notes, progress=progress)
    state.position[2] = max(state.position[2], 1)
    _cascade(attacks, entries, x, y, state, batch_size, path, progress)
    if bracket and state.position[2] == 1:
        certification["milp"] = _certify(certify, model, x, y, state, eps, bounds, time_limit, milp=True, notes=notes, progress=progress)
    state.position[2] = 2
    state.save(path)
    broken = torch.from_numpy(state.broken)
    labels_of = {ROBUST: "", CLEAN: "clean", MILP: "milp", **{i: e.label for i, e in enumerate(entries)}}
    after, remaining = {}, int(clean.sum())
    for i, e in enumerate(entries):
        remaining -= int((broken == i).sum())
        after[e.label] = remaining / n
    if missing:
        notes.append(f"not registered in this build, so not run: {', '.join(missing)}")
    if bracket and not bool(torch.from_numpy(state.certified).any()):
        notes.append("no point was proven robust: the bracket's lower end is 0")
    return SuiteEvaluation(
        eps=eps, norm=norm, attacks=[e.label for e in entries], params={e.label: dict(e.params) for e in entries},
        clean_correct=clean, robust=broken == ROBUST, broken_by=[labels_of[int(b)] for b in state.broken],
        x_adv=torch.from_numpy(state.x_adv).to(x.device, x.dtype), after=after,
        seconds={e.label: float(s) for e, s in zip(entries, state.seconds)},
        certified=torch.from_numpy(state.certified) if bracket or skip_certified else None, certification=certification,
        missing=missing, notes=notes, probe=probe,
    )


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """Facts the masking checks read (no attack): the largest change between two forward passes
    (randomness), whether outputs look like probabilities, and the share of points whose
    cross-entropy gradient is zero or not finite."""
    again = model_logits(model, x, batch_size=len(x))
    probabilities = bool((logits >= 0).all()) and bool(torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4))
    device = next(iter(model.parameters()), x).device
    with frozen_eval(model), torch.enable_grad():
        z = x.to(device).detach().requires_grad_(True)
        out = as_multiclass_logits(model(z))
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y.to(device), reduction="sum"), z)
    size = grad.flatten(1).abs().sum(1)
    return {
        "max_logit_change": float((again - logits).abs().max()),
        "probabilities": float(probabilities),
        "zero_or_nonfinite_gradient_share": float(((size == 0) | ~torch.isfinite(size)).double().mean()),
        "probed_points": float(len(x)),
    }


def _cascade(attacks: list[Any], entries: list[SuiteAttack], x: torch.Tensor, y: torch.Tensor, state: _State,
             batch_size: int, path: Path | None, progress: bool) -> None:
    """Run the attacks from state.position on, each on the points still robust, saving after every chunk."""
    bar = progress_bar(len(entries), "suite", enabled=progress, unit="attack")
    bar.update(int(state.position[0]))
    while state.position[0] < len(entries):
        k = int(state.position[0])
        if state.position[1] == 0:
            state.todo = np.flatnonzero((state.broken == ROBUST) & ~state.certified)
        chunks = [state.todo[i : i + batch_size] for i in range(0, len(state.todo), batch_size)]
        bar.set_postfix_str(f"{entries[k].label}: {len(state.todo)} points")
        while state.position[1] < len(chunks):
            chunk = torch.from_numpy(chunks[int(state.position[1])])
            start = time.perf_counter()
            attack = attacks[k]
            result = attack(x[chunk], y[chunk], indices=chunk)
            hit = (result.adv_pred.cpu() != y[chunk].cpu()).numpy()
            state.broken[chunks[int(state.position[1])][hit]] = k
            state.x_adv[chunks[int(state.position[1])][hit]] = result.x_adv.detach().cpu().numpy()[hit]
            state.seconds[k] += time.perf_counter() - start
            state.position[1] += 1
            state.save(path)
        state.position[:2] = (k + 1, 0)
        state.save(path)
        bar.update()
    bar.close()


def _certify(certify: Callable[..., Any] | None, model: nn.Module, x: torch.Tensor, y: torch.Tensor, state: _State, eps: float, bounds: Bounds,
             time_limit: float, *, milp: bool, notes: list[str], progress: bool) -> dict[str, Any]:
    """Bounds (milp=False) or the MILP (milp=True) on the points still open; updates the state."""
    if certify is None:
        notes.append("no verifier given (advlab.exact.certify): the bracket is [0, attacked]")
        return {}
    todo = np.flatnonzero((state.broken == ROBUST) & ~state.certified)
    if not len(todo):
        return {}
    index = torch.from_numpy(todo)
    result = certify(model, x[index], y[index], eps=eps, bounds=bounds, time_limit=time_limit, milp=milp, attack=False, progress=progress)
    proven = np.array([s in ("certified", "verified") for s in result.status])
    state.certified[todo[proven]] = True
    if milp:
        broken = np.array([s == "broken" for s in result.status])
        state.broken[todo[broken]] = MILP
        state.x_adv[todo[broken]] = result.counterexample[torch.from_numpy(broken)].to(x.dtype).numpy()
    notes.extend(note for note in result.notes if milp or "MILP" not in note)
    return result.summary()
