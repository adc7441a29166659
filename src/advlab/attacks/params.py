"""An attack's declared parameters, typed and range-checked in one place, for `-p KEY=VALUE` on
the command line and for suite files alike.

The declared parameters are those of `advlab.attacks.base.declared_params` (the keyword-only
arguments of `Attack` and of the attack's own constructor). Each has a kind, from its annotation (else its default): bool, int,
float, str or a pair of floats; None is accepted where the annotation allows it. Values are
checked strictly: a bool is true or false, an int an integer (not 2.5, not true), a float a
finite number >= 0 (every float parameter of an attack is a size, a rate or a tolerance), a str
at most `MAX_TEXT` characters. Every integer parameter lies in its range in `COUNT_RANGES` (the
caps keep one typo from asking for 10^12 steps); the constructors check the finer limits
(p_init <= 1, a known loss name, ...) before any work as well.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from advlab.attacks.base import Attack, declared_params
from advlab.errors import InputError

COUNT_RANGES: dict[str, tuple[int, int]] = {  # name -> (smallest, largest) for every integer parameter
    "steps": (1, 100_000),
    "search_steps": (1, 1_000),
    "max_iter": (1, 100_000),
    "restarts": (0, 1_000),
    "targets": (1, 1_000),
    "candidates": (2, 1_000),
    "queries": (1, 1_000_000),
    "discard_after": (0, 1_000_000),
    "square_checkpoint": (0, 1_000_000),
    "flat_restarts": (0, 1_000),
    "flat_queries": (1, 1_000_000),
    "eot": (1, 1_000),
    "batch_size": (1, 1_000_000),
    "seed": (0, 2**63 - 1),
}
MAX_TEXT = 100  # characters of a str parameter
KINDS = ("bool", "int", "float", "str", "pair")
_ANNOTATIONS = {"bool": "bool", "int": "int", "float": "float", "str": "str", "Bounds": "pair", "tuple[float, float]": "pair"}


def kind_of(parameter: inspect.Parameter) -> tuple[str, bool]:
    """(one of KINDS, whether None is allowed), from the annotation, else the default."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else getattr(parameter.annotation, "__name__", "")
    kinds = [k.strip() for k in annotation.split("|")] if annotation else []
    for kind in kinds:
        if kind in _ANNOTATIONS:
            return _ANNOTATIONS[kind], "None" in kinds
    for kind in (bool, int, float, str):
        if type(parameter.default) is kind:
            return kind.__name__, False
    raise InputError(f"parameter {parameter.name!r} has no kind advlab can check")


def check_value(name: str, parameter: inspect.Parameter, value: Any) -> Any:
    """The value, typed and range-checked for the parameter; ValueError saying what is wrong."""
    kind, optional = kind_of(parameter)
    if value is None:
        if optional:
            return None
        raise ValueError("may not be none")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        low, high = COUNT_RANGES.get(name, (0, 1_000_000))
        if not low <= value <= high:
            raise ValueError(f"expected an integer in {low}..{high:,}, got {value:,}")
        return value
    if kind == "float":
        return _number(value, nonnegative=True)
    if kind == "str":
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ValueError(f"expected a short string, got {value!r:.{MAX_TEXT}}")
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"expected two numbers LOW,HIGH, got {value!r}")
    low, high = (_number(v, nonnegative=False) for v in value)
    if not low < high:
        raise ValueError(f"expected LOW < HIGH, got {low:g},{high:g}")
    return low, high


def _number(value: Any, *, nonnegative: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return float(value)


def check_params(method: str, cls: type[Attack], params: Mapping[str, Any], *, reserved: Mapping[str, str], where: str) -> dict[str, Any]:
    """A mapping of parameters (a suite entry's, the API's) checked by `check_value`; an unknown
    or reserved name is refused, naming it. reserved: name -> what sets it instead. where: the
    message's prefix."""
    declared = declared_params(cls)
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if name not in declared:
            raise InputError(f"{where}: attack {method!r} has no parameter {name!r}; it takes {', '.join(sorted(set(declared) - set(reserved)))}")
        if name in reserved:
            raise InputError(f"{where}: {name} is set by {reserved[name]}, not here")
        try:
            checked[name] = check_value(name, declared[name], value)
        except ValueError as exc:
            raise InputError(f"{where}: parameter {name}={value!r}: {exc}") from None
    return checked
