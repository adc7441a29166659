"""Robust accuracy under an attack suite, run as a cascade, with a proven bracket.

    evaluate_suite(model, x, y, *, eps, norm="linf", suite="fast" (`DEFAULT_SUITE`), bracket=False, ...)

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

Every "broken" carries a witness: the attack's (or the MILP's) point moved into the eps-ball ∩ box
as measured in float64, in the images' dtype, and misclassified by the model run in float64
(`advlab.attacks.witness`); a candidate that fails is not counted broken.

With `state_path`, the state is written atomically after every chunk; a killed run restarts from
the chunk in progress and ends with exactly the result of an uninterrupted run. The state file is
checked before any work (`check_state_location`, `check_state_file`, then `_State.load`: no
pickle, the fingerprint, sizes, dtypes and values); docs/guide/suites.md gives its format.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks import ATTACKS
from advlab.attacks.suites import DEFAULT_SUITE, SuiteAttack, resolve_suite, suite_attacks
from advlab.attacks.witness import confirmed, distance, float64_model, into_ball
from advlab.data.formats import npy_header
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
    carlini: dict[str, Any] = field(default_factory=dict)  # what `run_carlini_checks` measured on a sample

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
            "notes": self.notes, "carlini": self.carlini,
        }


@dataclass
class _State:
    """What a killed run needs to continue: everything but the clean logits, which are recomputed."""

    fingerprint: str
    broken: np.ndarray  # (N,) int64: ROBUST, CLEAN, MILP or the suite position
    x_adv: np.ndarray  # (N, ...) in the images' dtype: the witness where broken, x elsewhere
    certified: np.ndarray  # (N,) bool
    todo: np.ndarray  # indices the current attack runs on
    position: np.ndarray  # [attack, chunk, stage]: stage 0 before the bounds, 1 cascade, 2 done
    seconds: np.ndarray  # per attack

    def save(self, path: Path | None) -> None:
        if path is not None:
            write_npz_atomic(path, fingerprint=np.array(self.fingerprint), broken=self.broken, x_adv=self.x_adv,
                             certified=self.certified, todo=self.todo, position=self.position, seconds=self.seconds)

    @classmethod
    def load(cls, path: Path, fingerprint: str, x: torch.Tensor, attacks: int, witnesses: Witnesses) -> _State:
        """The state saved at `path`, checked against this evaluation before anything runs: its
        format (`check_state_file`), its fingerprint (model, data, suite, settings), the sizes of
        its arrays, and their values (codes, indices, positions, and every witness in the ball)."""
        headers = check_state_file(path)
        if str(_read_arrays(path, ("fingerprint",))["fingerprint"]) != fingerprint:
            raise InputError(f"{path}: the state file belongs to another evaluation (model, data, suite or settings differ)")
        want = {"broken": (len(x),), "x_adv": tuple(x.shape), "seconds": (attacks,)}
        for name, shape in want.items():
            if headers[name][0] != shape:
                raise InputError(f"{path}: array {name} has shape {headers[name][0]}, this evaluation needs {shape}")
        if headers["x_adv"][1] != _numpy_dtype(x):
            raise InputError(f"{path}: array x_adv is {headers['x_adv'][1]}, the images are {x.dtype}")
        if headers["todo"][0][0] > len(x):
            raise InputError(f"{path}: array todo has {headers['todo'][0][0]} entries, more than the {len(x)} points")
        state = cls(fingerprint, **_read_arrays(path, STATE_ARRAYS[1:]))
        problem = state._problem(x, attacks, witnesses)
        if problem:
            raise InputError(f"{path}: corrupt suite state: {problem}")
        return state

    def _problem(self, x: torch.Tensor, attacks: int, witnesses: Witnesses) -> str:
        """What is inconsistent in the arrays' values ("" when nothing)."""
        n, (attack, chunk, stage) = len(self.broken), self.position.tolist()
        if not bool(((self.broken >= MILP) & (self.broken < attacks)).all()):
            return f"broken holds codes outside {MILP}..{attacks - 1}"
        if bool((self.certified & (self.broken != ROBUST)).any()):
            return "a point is both certified and not robust"
        if len(self.todo) and not (self.todo.min() >= 0 and self.todo.max() < n and bool((np.diff(self.todo) > 0).all())):
            return f"todo must hold increasing indices in 0..{n - 1}"
        if not (0 <= attack <= attacks and chunk >= 0 and 0 <= stage <= 2 and (attack < attacks or chunk == 0)):
            return f"position {self.position.tolist()} is outside the suite's {attacks} attacks"
        if not bool((np.isfinite(self.seconds) & (self.seconds >= 0)).all()):
            return "seconds must be finite and >= 0"
        x_adv = torch.from_numpy(self.x_adv)
        broken = torch.from_numpy((self.broken >= 0) | (self.broken == MILP))
        if not torch.equal(x_adv[~broken], x.detach().cpu()[~broken]):
            return "x_adv differs from the images at points no attack broke"
        if not bool(witnesses.inside(torch.from_numpy(np.flatnonzero(broken.numpy())), x_adv[broken]).all()):
            return "a witness lies outside the eps-ball or the box"
        return ""


def _read_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except _UNREADABLE as exc:
        raise InputError(f"{path}: not a readable suite state file ({type(exc).__name__}: {exc})") from None


def _numpy_dtype(x: torch.Tensor) -> np.dtype:
    return torch.empty(0, dtype=x.dtype).numpy().dtype


STATE_ARRAYS = ("fingerprint", "broken", "x_adv", "certified", "todo", "position", "seconds")
MAX_FINGERPRINT = 1 << 20  # characters of the fingerprint a state file may declare
_UNREADABLE = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


def check_state_location(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a state path the run could not save to: a folder, a path under a
    file, an unwritable folder, or an existing read-only state file (never silently replaced)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a state file")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{path}: the state file is read-only; make it writable or choose another --state")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{path}: {ancestor} is not writable")
    return path


def check_state_file(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays an existing state file declares (shape, dtype), read from the .npy headers alone
    (no array is allocated), refused unless they are exactly those `_State` writes."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {info.filename.removesuffix(".npy"): _npy_header(archive, info) for info in archive.infolist()}
    except _UNREADABLE as exc:
        raise InputError(f"{path}: not a readable suite state file ({type(exc).__name__}: {exc})") from None
    if set(headers) != set(STATE_ARRAYS):
        raise InputError(f"{path}: not a suite state file: it holds {', '.join(sorted(headers)) or 'nothing'}; "
                         f"a state file holds {', '.join(STATE_ARRAYS)}")
    shape, dtype = headers["fingerprint"]
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_FINGERPRINT:
        raise InputError(f"{path}: the fingerprint is {dtype} {shape}, expected one string")
    n = headers["broken"][0][:1]
    expected = {"broken": (n, np.int64), "certified": (n, np.bool_), "position": ((3,), np.int64)}
    for name, (want, kind) in expected.items():
        shape, dtype = headers[name]
        if shape != want or dtype != kind:
            raise InputError(f"{path}: array {name} is {dtype} {shape}, expected {np.dtype(kind)} {want or '(N,)'}")
    for name, kind in (("todo", np.int64), ("seconds", np.float64)):
        shape, dtype = headers[name]
        if len(shape) != 1 or dtype != kind:
            raise InputError(f"{path}: array {name} is {dtype} {shape}, expected a 1-D {np.dtype(kind)} array")
    shape, dtype = headers["x_adv"]
    if len(shape) < 2 or shape[:1] != n or dtype not in (np.float32, np.float64):
        raise InputError(f"{path}: array x_adv is {dtype} {shape}, expected float32 or float64 (N, ...) with N = {n[0] if n else '?'}")
    return headers


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from one member's .npy header; object arrays (pickles) refused."""
    with archive.open(info) as member:
        shape, _, dtype = npy_header(member)  # type: ignore[arg-type]
    if dtype.hasobject:
        raise ValueError(f"array {info.filename} holds Python objects (a pickle), which advlab never loads")
    return tuple(shape), dtype


class Witnesses:
    """Every "broken" carries a witness (`advlab.attacks.witness`): the attack's point moved into
    the eps-ball ∩ box as measured in float64 (in the images' dtype), which the model run in
    float64 misclassifies; a point that fails is not counted broken."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, bounds: Bounds,
                 batch_size: int) -> None:
        self.model, self.model64 = model, float64_model(model)
        self.x, self.y, self.eps, self.norm, self.bounds, self.batch_size = x.detach().cpu(), y.cpu(), eps, norm, bounds, batch_size

    def check(self, index: np.ndarray, points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(which candidates are witnesses, the candidates moved into the ball) for the points `index`."""
        rows = torch.from_numpy(index)
        moved = into_ball(points.detach().cpu(), self.x[rows], self.eps, self.bounds, self.norm)
        model = self.model64 if self.model64 is not None else self.model  # no float64 copy: its own dtype
        hit = confirmed(model, moved, self.y[rows], batch_size=self.batch_size)
        return hit.numpy(), moved.numpy()

    def inside(self, index: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(K,) bool: each point lies in the box and in the eps-ball around x[index], in float64."""
        low, high = self.bounds
        in_box = (points >= low).flatten(1).all(1) & (points <= high).flatten(1).all(1)
        return in_box & (distance(points, self.x[index], self.norm) <= self.eps)


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
    suite: str | Sequence[SuiteAttack | Mapping[str, Any]] = DEFAULT_SUITE,
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
    entries, missing = resolve_suite(suite, ATTACKS, norm=norm)
    if (bracket or skip_certified) and norm != "linf":
        raise InputError("the certified bracket and skip_certified are available for norm='linf' only")
    if skip_certified and certify is None:
        raise InputError("skip_certified needs a verifier: pass certify=advlab.exact.certify")
    attacks = suite_attacks(entries, ATTACKS, model, eps=eps, norm=norm, bounds=bounds, seed=seed, batch_size=batch_size,
                            progress=progress)
    path = None if state_path is None else check_state_location(state_path)
    n = len(y)
    settings = {"eps": eps, "norm": norm, "bounds": bounds, "seed": seed, "batch_size": batch_size, "bracket": bracket,
                "skip_certified": skip_certified,
                "time_limit": time_limit, "suite": [(e.label, e.attack, dict(e.params)) for e in entries]}
    fingerprint = _fingerprint(model, x, y, settings)
    witnesses = Witnesses(model, x, y, eps, norm, bounds, batch_size)
    resumed = None if path is None or not path.exists() else _State.load(path, fingerprint, x, len(entries), witnesses)
    clean_logits = model_logits(model, x, batch_size=batch_size)
    clean = clean_logits.argmax(1).cpu() == y.cpu()
    probe = probe_model(model, x, y, clean_logits, batch_size=batch_size)
    if resumed is not None:
        state = resumed
    else:
        broken = np.where(clean.numpy(), ROBUST, CLEAN)
        state = _State(fingerprint, broken, x.detach().cpu().numpy().copy(), np.zeros(n, bool), np.zeros(0, np.int64),
                       np.array([0, 0, 0]), np.zeros(len(entries)))
    notes: list[str] = []
    certification: dict[str, Any] = {}
    if (bracket or skip_certified) and state.position[2] == 0:
        certification["bounds"] = _certify(certify, model, x, y, state, eps, bounds, time_limit, milp=False, notes=notes,
                                           progress=progress, witnesses=witnesses)
    state.position[2] = max(state.position[2], 1)
    _cascade(attacks, entries, x, y, state, batch_size, path, progress, witnesses)
    if bracket and state.position[2] == 1:
        certification["milp"] = _certify(certify, model, x, y, state, eps, bounds, time_limit, milp=True, notes=notes,
                                         progress=progress, witnesses=witnesses)
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


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, *, batch_size: int = 500) -> dict[str, float]:
    """Facts the masking checks read (no attack), over every point given, in batches: the largest
    change between two forward passes (randomness), whether outputs look like probabilities, and
    the share of points whose cross-entropy gradient is zero or not finite."""
    again = model_logits(model, x, batch_size=batch_size)
    probabilities = bool((logits >= 0).all()) and bool(torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4))
    device = next(iter(model.parameters()), x).device
    dead = 0
    with frozen_eval(model), torch.enable_grad():
        for start in range(0, len(x), batch_size):
            z = x[start : start + batch_size].to(device).detach().requires_grad_(True)
            out = as_multiclass_logits(model(z))
            loss = torch.nn.functional.cross_entropy(out, y[start : start + batch_size].to(device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, z)
            size = grad.flatten(1).abs().sum(1)
            dead += int(((size == 0) | ~torch.isfinite(size)).sum())
    return {
        "max_logit_change": float((again - logits).abs().max()),
        "probabilities": float(probabilities),
        "zero_or_nonfinite_gradient_share": dead / len(x),
        "probed_points": float(len(x)),
    }


def _cascade(attacks: list[Any], entries: list[SuiteAttack], x: torch.Tensor, y: torch.Tensor, state: _State,
             batch_size: int, path: Path | None, progress: bool, witnesses: Witnesses) -> None:
    """Run the attacks from state.position on, each on the points still robust, saving after every
    chunk; a point counts as broken only with a witness (`Witnesses`)."""
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
            rows = chunks[int(state.position[1])][hit]
            confirmed_hit, points = witnesses.check(rows, result.x_adv.detach().cpu()[torch.from_numpy(hit)])
            state.broken[rows[confirmed_hit]] = k
            state.x_adv[rows[confirmed_hit]] = points[confirmed_hit]
            state.seconds[k] += time.perf_counter() - start
            state.position[1] += 1
            state.save(path)
        state.position[:2] = (k + 1, 0)
        state.save(path)
        bar.update()
    bar.close()


def _certify(certify: Callable[..., Any] | None, model: nn.Module, x: torch.Tensor, y: torch.Tensor, state: _State, eps: float, bounds: Bounds,
             time_limit: float, *, milp: bool, notes: list[str], progress: bool, witnesses: Witnesses) -> dict[str, Any]:
    """Bounds (milp=False) or the MILP (milp=True) on the points still open; updates the state.
    A MILP counterexample counts only as a witness in the images' dtype (`Witnesses`)."""
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
        found, points = witnesses.check(todo[broken], result.counterexample[torch.from_numpy(broken)])
        state.broken[todo[broken][found]] = MILP
        state.x_adv[todo[broken][found]] = points[found]
    notes.extend(note for note in result.notes if milp or "MILP" not in note)
    return result.summary()
