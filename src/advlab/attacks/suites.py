"""Attack suites as data: an ordered list of (label, registered attack, parameters).

A suite runs as a cascade (`advlab.analysis.evaluation`): each attack only on the points every
attack before it left robust. eps, norm, bounds, seed and batch size come from the evaluation,
not from the suite. A user suite is a list of dicts {"attack": name, "params": {...}, "label": ...}
(for instance read from JSON) or of `SuiteAttack`s.

`standard` is AutoAttack's standard version (Croce & Hein 2020, Sec. 5; `version="standard"` of
the reference code, L-inf and L2): APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations,
9 target classes, 1 restart each), FAB-T (9 target classes, 100 iterations) and Square (5,000
queries, p_init 0.8, unstretched schedule). FAB-T is listed only when a `fab-t` attack is
registered; without it the suite says so (`missing`).

`plus` is AutoAttack's `plus` version (reference code, `version="plus"`): APGD-CE and APGD-DLR
with 5 restarts each, untargeted FAB with 5 restarts, Square (5,000 queries, 1 restart), APGD-T
and FAB-T (9 targets, 1 restart each). `rand` is its `rand` version, for randomised models:
APGD-CE and APGD-DLR (1 restart) with the gradient averaged over 20 passes (EOT).

`fast` (the default, `DEFAULT_SUITE`) is one attack, adaptive APGD (`advlab.attacks.adaptive`):
MALT-ranked APGD-T with the budget allocated per point from its loss trajectory, and Square only
on the points whose gradients look masked. Measured against AutoAttack standard on every bench
model, it is at least as strong at about a tenth of the model passes (docs/guide/suites.md).

`malt` is MALT (Melamed, Yehudai & Shamir 2024, "MALT Powers Up Adversarial Attacks"): APGD-T,
100 iterations, on the 5 target classes of smallest linearised distance to the boundary,
(z_y - z_t) / ||grad (z_y - z_t)||_* (`advlab.attacks.targeting`), instead of the 9 most likely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from advlab.attacks.base import Attack, FixedBudgetAttack
from advlab.attacks.params import MAX_TEXT, check_params, declared_params
from advlab.errors import InputError, UnknownNameError
from advlab.validation import Bounds

RESERVED = ("eps", "norm", "bounds", "seed", "batch_size", "progress")  # set by the evaluation
DEFAULT_SUITE = "fast"  # chosen by measurement against AutoAttack standard (docs/guide/suites.md)


@dataclass(frozen=True)
class SuiteAttack:
    label: str
    attack: str
    params: Mapping[str, Any] = field(default_factory=dict)


SUITES: dict[str, tuple[SuiteAttack, ...]] = {
    "standard": (
        SuiteAttack("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
        SuiteAttack("apgd-t", "apgd-t", {"steps": 100, "targets": 9, "restarts": 1}),
        SuiteAttack("fab-t", "fab-t", {"steps": 100, "targets": 9}),
        SuiteAttack("square", "square", {"queries": 5000, "p_init": 0.8, "rescale_schedule": False}),
    ),
    # APGD-T on the 5 targets MALT ranks first (Melamed, Yehudai & Shamir 2024), 100 steps each
    "malt": (
        SuiteAttack("apgd-t-malt", "apgd-t", {"steps": 100, "targets": 5, "restarts": 1, "target_ranking": "malt"}),
    ),
    # the default: MALT-ranked APGD-T with per-point budget from its loss trajectory, Square on the
    # points whose gradients look masked (attacks.adaptive)
    "fast": (
        SuiteAttack("apgd-a", "apgd-a", {"steps": 100, "targets": 5, "restarts": 2, "queries": 5000, "square_checkpoint": 500,
                                         "flat_restarts": 10, "flat_queries": 50}),
    ),
    # AutoAttack's `plus` version (`version="plus"` of the reference code)
    "plus": (
        SuiteAttack("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 5}),
        SuiteAttack("apgd-dlr", "apgd", {"loss": "dlr", "steps": 100, "restarts": 5}),
        SuiteAttack("fab", "fab", {"steps": 100, "restarts": 5}),
        SuiteAttack("square", "square", {"queries": 5000, "p_init": 0.8, "rescale_schedule": False, "restarts": 1}),
        SuiteAttack("apgd-t", "apgd-t", {"steps": 100, "targets": 9, "restarts": 1}),
        SuiteAttack("fab-t", "fab-t", {"steps": 100, "targets": 9, "restarts": 1}),
    ),
    # AutoAttack's `rand` version, for randomised models: gradients averaged over 20 passes
    "rand": (
        SuiteAttack("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 1, "eot": 20}),
        SuiteAttack("apgd-dlr", "apgd", {"loss": "dlr", "steps": 100, "restarts": 1, "eot": 20}),
    ),
    # the same chain at a tenth of the budget: for CI-sized runs, never for reported figures
    "quick": (
        SuiteAttack("apgd-ce", "apgd", {"loss": "ce", "steps": 20, "restarts": 1}),
        SuiteAttack("apgd-t", "apgd-t", {"steps": 20, "targets": 3, "restarts": 1}),
        SuiteAttack("fab-t", "fab-t", {"steps": 20, "targets": 3}),
        SuiteAttack("square", "square", {"queries": 500, "p_init": 0.8}),
    ),
}


def resolve_suite(
    suite: str | Sequence[SuiteAttack | Mapping[str, Any]], registered: Mapping[str, type[Attack]], *, norm: str | None = None
) -> tuple[list[SuiteAttack], list[str]]:
    """(the attacks to run, the labels of named-suite attacks not registered in this build).

    A user suite must name registered attacks only; a named suite skips unregistered ones and
    reports them, so that the report can say what the chain lacked. Every entry is checked
    before any work: a fixed-budget attack (a minimal-norm one such as DeepFool cannot run at a
    budget), supporting `norm` when given, with parameters the attack declares, typed and
    within the caps of `advlab.attacks.params` (the checker `-p` uses).
    """
    if isinstance(suite, str):
        if suite not in SUITES:
            raise UnknownNameError(f"unknown suite {suite!r}; known suites: {', '.join(sorted(SUITES))}")
        entries = list(SUITES[suite])
        missing = [e.label for e in entries if e.attack not in registered]
        entries = [e for e in entries if e.attack in registered]
    elif isinstance(suite, Sequence):
        entries, missing = [_entry(item, i) for i, item in enumerate(suite)], []
        if not entries:
            raise InputError("a suite needs at least one attack")
        for entry in entries:
            if entry.attack not in registered:
                raise UnknownNameError(f"suite attack {entry.label!r}: unknown attack {entry.attack!r}; known attacks: {', '.join(sorted(registered))}")
    else:
        raise InputError(f"a suite is a name or a list of attacks, got {type(suite).__name__}")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise InputError(f"suite labels must be distinct, got {labels}")
    return [_checked(e, registered[e.attack], norm) for e in entries], missing


def suite_attacks(entries: Sequence[SuiteAttack], registered: Mapping[str, type[Attack]], model: nn.Module, *, eps: float,
                  norm: str, bounds: Bounds, seed: int, batch_size: int, progress: bool) -> list[Attack]:
    """The suite's attacks built at the evaluation's budget (an attack with one norm fixes it itself)."""
    attacks = []
    for entry in entries:
        cls = registered[entry.attack]
        shared = {"eps": eps, "bounds": bounds, "seed": seed, "batch_size": batch_size, "progress": progress}
        if "norm" in declared_params(cls):
            shared["norm"] = norm
        attacks.append(cls(model, **entry.params, **shared))
    return attacks


def _checked(entry: SuiteAttack, cls: type[Attack], norm: str | None) -> SuiteAttack:
    """The entry with its parameters typed and range-checked; an attack that cannot run in a suite refused."""
    where = f"suite attack {entry.label!r}"
    if not issubclass(cls, FixedBudgetAttack):
        raise InputError(f"{where}: {entry.attack} finds minimal perturbations, it has no eps budget; a suite runs "
                         "attacks within eps only (apgd, apgd-t, fab-t, square, pgd, bim, ...)")
    if norm is not None and norm not in cls.norms:
        raise InputError(f"{where}: {entry.attack} supports --norm {', '.join(cls.norms)}, not {norm}")
    reserved = {name: "the evaluation" for name in RESERVED}
    return SuiteAttack(entry.label, entry.attack, check_params(entry.attack, cls, entry.params, reserved=reserved, where=where))


def _entry(item: SuiteAttack | Mapping[str, Any], position: int) -> SuiteAttack:
    if isinstance(item, SuiteAttack):
        return item
    if not (isinstance(item, Mapping) and isinstance(item.get("attack"), str)):
        raise InputError(f"suite entry {position} must be a SuiteAttack or a mapping with an 'attack' name, got {item!r:.200}")
    unknown = set(item) - {"attack", "params", "label"}
    if unknown:
        raise InputError(f"suite entry {position}: unknown keys {sorted(unknown)} (expected attack, params, label)")
    params = item.get("params", {})
    if not isinstance(params, Mapping):
        raise InputError(f"suite entry {position}: params must be a mapping, got {type(params).__name__}")
    label = item.get("label", item["attack"])
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_TEXT:
        raise InputError(f"suite entry {position}: label must be a short non-empty string, got {label!r:.200}")
    return SuiteAttack(label, item["attack"], dict(params))
