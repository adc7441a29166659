"""`-p KEY=VALUE` attack parameters on the command line: read from text by the parameter's kind
and checked by the one checker suites use too (`advlab.attacks.params`: types and the caps),
refused when unknown or reserved."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from advlab.attacks import ATTACKS
from advlab.attacks.base import declared_params
from advlab.attacks.params import check_value, kind_of
from advlab.errors import InputError, UnknownNameError


# ---- attack parameters (-p KEY=VALUE) ------------------------------------------------------------
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _read_bool(text: str) -> bool:
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise ValueError(f"expected true or false, got {text!r}")


def _read_int(text: str) -> int:
    return int(text)


def _read_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _read_pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"expected two numbers LOW,HIGH, got {text!r}")
    low, high = (_read_float(p) for p in parts)
    return low, high


_READERS: dict[str, Callable[[str], Any]] = {"bool": _read_bool, "int": _read_int, "float": _read_float, "str": str, "pair": _read_pair}


def accepted_params(method: str) -> dict[str, inspect.Parameter]:
    """The parameters attack `method` declares (`advlab.attacks.base.declared_params`)."""
    try:
        cls = ATTACKS[method]
    except KeyError:
        raise UnknownNameError(f"unknown attack {method!r}; known attacks: {', '.join(sorted(ATTACKS))}") from None
    return declared_params(cls)


def requires_eps(method: str) -> bool:
    parameter = accepted_params(method).get("eps")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def attack_params(method: str, pairs: Sequence[str], *, reserved: dict[str, str] | None = None) -> dict[str, Any]:
    """KEY=VALUE strings -> keyword arguments typed strictly by the attack's constructor.

    reserved: keys set by dedicated options of the command (key -> the option), refused here."""
    accepted = accepted_params(method)
    reserved = reserved or {}
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--param takes KEY=VALUE, got {pair!r}")
        if key not in accepted:
            raise InputError(f"attack {method!r} has no parameter {key!r}; it takes {', '.join(sorted(accepted))}")
        if key in reserved:
            raise InputError(f"--param {key}: set by {reserved[key]}, not by -p")
        if key in params:
            raise InputError(f"--param {key} given twice")
        kind, optional = kind_of(accepted[key])
        value = value.strip()
        try:
            params[key] = check_value(key, accepted[key], None if optional and value.lower() == "none" else _READERS[kind](value))
        except ValueError as exc:
            raise InputError(f"--param {key}={value}: {exc}") from None
    return params


def grouped_params(attacks: Sequence[str], pairs: Sequence[str], *, reserved: dict[str, str]) -> dict[str, dict[str, Any]]:
    """-p ATTACK.KEY=VALUE strings -> {attack: typed keyword arguments}."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or name not in attacks:
            raise InputError(f"--param takes ATTACK.KEY=VALUE for an evaluated attack ({', '.join(attacks)}), got {pair!r}")
        grouped.setdefault(name, []).append(rest)
    return {name: attack_params(name, items, reserved=reserved) for name, items in grouped.items()}
