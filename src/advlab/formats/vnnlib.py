"""VNN-LIB properties (the subset the VNN-COMP benchmarks use) as an input box and a linear
counterexample region.

A VNN-LIB file declares the network's flattened inputs X_0..X_{n-1} and outputs
Y_0..Y_{m-1} and asserts constraints; the assertions describe the *counterexample*: the
property is violated ("sat") when some x in the input box has outputs y = f(x) meeting them.
Accepted (anything else is one `InputError` naming the line):

    ; comments
    (declare-const X_i Real)  (declare-const Y_j Real)     indices 0..n-1 and 0..m-1, all declared
    (assert (<= X_i c))  (assert (>= X_i c))               and the mirrored (<= c X_i) forms: the box
    (assert (<= T1 T2))  (assert (>= T1 T2))               T linear in the Y: a number, Y_j,
                                                           (+ T ...), (- T ...), (* c T)
    (assert (or (and A ...) ...))                          A as above; (and ...) may hold one A,
                                                           and an `or` may hold bare atoms

Every X_i needs a lower and an upper bound (the tightest one given wins). The top-level Y
assertions are one conjunction, each `or` a disjunction; the result is put in disjunctive
normal form: `Property.disjuncts` holds, per disjunct i, (C_i, d_i) meaning C_i y <= d_i
(every row), and the property is violated at x iff some disjunct holds at f(x).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from advlab.errors import InputError

MAX_DISJUNCTS = 100_000  # the normal form of several top-level `or`s is their product
_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s();]+))")
_VARIABLE = re.compile(r"^([XY])_(\d+)$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Property:
    """lower, upper: (n,) float64, the input box (flattened inputs); disjuncts: per disjunct
    (C (rows, m), d (rows,)) float64; the counterexample region is the union over disjuncts of
    {x in box : C f(x) <= d}. A disjunct with no rows holds everywhere."""

    lower: torch.Tensor
    upper: torch.Tensor
    disjuncts: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    num_outputs: int

    @property
    def num_inputs(self) -> int:
        return self.lower.numel()

    def violated(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per output row y (B, m): whether some disjunct's C y <= d holds (B,) bool."""
        hits = [((outputs.double() @ c.T) <= d).all(1) for c, d in self.disjuncts]
        return torch.stack(hits, 1).any(1)

    def slack(self, outputs: torch.Tensor) -> torch.Tensor:
        """min over disjuncts of max over rows of (C y - d): <= 0 exactly where violated (B,)."""
        per = [((outputs.double() @ c.T) - d).amax(1) if len(d) else outputs.new_zeros(len(outputs), dtype=torch.float64)
               for c, d in self.disjuncts]
        return torch.stack(per, 1).amin(1)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Per flat input row x (B, n): whether it lies in the box."""
        x = x.double().reshape(len(x), -1)
        return ((x >= self.lower) & (x <= self.upper)).all(1)


class _Expr(list):
    """A parenthesised expression with the line it starts on."""

    line: int = 0


def _parse(text: str, name: str) -> list[_Expr]:
    """The top-level s-expressions of the text (atoms are (string, line) pairs)."""
    stack: list[_Expr] = [_Expr()]
    line, position = 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.lastindex is None:
            if text[position:].strip() == "":
                break
            raise InputError(f"{name}:{line}: cannot read {text[position:position + 20]!r}")
        line += text.count("\n", position, match.start(match.lastindex))
        if match.group(2):
            expr = _Expr()
            expr.line = line
            stack[-1].append(expr)
            stack.append(expr)
        elif match.group(3):
            if len(stack) == 1:
                raise InputError(f"{name}:{line}: ')' without a matching '('")
            stack.pop()
        elif match.group(4):
            stack[-1].append((match.group(4), line))
        line += text.count("\n", match.start(match.lastindex), match.end())
        position = match.end()
    if len(stack) > 1:
        raise InputError(f"{name}:{stack[-1].line}: '(' is never closed")
    top = stack[0]
    for item in top:
        if not isinstance(item, _Expr):
            raise InputError(f"{name}:{item[1]}: {item[0]!r} outside any (...) expression")
    return list(top)


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        self.lower: dict[int, float] = {}
        self.upper: dict[int, float] = {}
        self.conjunction: list[tuple[dict[int, float], float]] = []  # sum coef_j Y_j <= d
        self.disjunctions: list[list[list[tuple[dict[int, float], float]]]] = []

    def error(self, line: int, message: str) -> InputError:
        return InputError(f"{self.name}:{line}: {message}")

    def atom(self, item: object, line: int) -> str:
        if isinstance(item, _Expr):
            raise self.error(item.line, "expected a name or a number, got an expression")
        return item[0]

    def statement(self, expr: _Expr) -> None:
        if not expr:
            raise self.error(expr.line, "empty expression ()")
        head = self.atom(expr[0], expr.line)
        if head == "declare-const":
            self.declare(expr)
        elif head == "assert":
            if len(expr) != 2 or not isinstance(expr[1], _Expr):
                raise self.error(expr.line, "(assert ...) takes one expression")
            self.assertion(expr[1])
        else:
            raise self.error(expr.line, f"unsupported statement {head!r} (advlab reads declare-const and assert)")

    def declare(self, expr: _Expr) -> None:
        if len(expr) != 3 or self.atom(expr[2], expr.line) != "Real":
            raise self.error(expr.line, "expected (declare-const X_i Real) or (declare-const Y_j Real)")
        match = _VARIABLE.match(self.atom(expr[1], expr.line))
        if not match:
            raise self.error(expr.line, f"variable {self.atom(expr[1], expr.line)!r}: names must be X_i or Y_j")
        self.declared[match.group(1)].add(int(match.group(2)))

    def term(self, item: object, line: int) -> tuple[str, dict[int, float], float]:
        """A linear term: (variable kind "X"/"Y"/"", coefficients, constant)."""
        if not isinstance(item, _Expr):
            text, line = item
            if _NUMBER.match(text):
                return "", {}, float(text)
            match = _VARIABLE.match(text)
            if not match:
                raise self.error(line, f"unknown name {text!r}")
            kind, index = match.group(1), int(match.group(2))
            if index not in self.declared[kind]:
                raise self.error(line, f"{text} is used before its declare-const")
            return kind, {index: 1.0}, 0.0
        if not item:
            raise self.error(item.line, "empty expression ()")
        op = self.atom(item[0], item.line)
        parts = [self.term(a, item.line) for a in item[1:]]
        if op not in ("+", "-", "*") or not parts:
            raise self.error(item.line, f"unsupported term ({op} ...): terms are numbers, X_i/Y_j, +, -, *")
        kinds = {k for k, _, _ in parts if k}
        if len(kinds) > 1:
            raise self.error(item.line, "a term mixes X and Y variables")
        kind = kinds.pop() if kinds else ""
        if op == "*":
            variable = [p for p in parts if p[0]]
            if len(variable) > 1:
                raise self.error(item.line, "a product of variables is not linear")
            factor = 1.0
            for k, _, c in parts:
                if not k:
                    factor *= c
            if not variable:
                return "", {}, factor
            _, coef, const = variable[0]
            return kind, {j: factor * v for j, v in coef.items()}, factor * const
        sign = [1.0] + [(-1.0 if op == "-" else 1.0)] * (len(parts) - 1)
        if op == "-" and len(parts) == 1:
            sign = [-1.0]
        coef: dict[int, float] = {}
        const = 0.0
        for s, (_, c, k) in zip(sign, parts):
            for j, v in c.items():
                coef[j] = coef.get(j, 0.0) + s * v
            const += s * k
        return kind, coef, const

    def comparison(self, expr: _Expr) -> tuple[str, dict[int, float], float]:
        """(kind, coef, d) meaning sum coef_j V_j <= d."""
        if not expr or isinstance(expr[0], _Expr):
            raise self.error(expr.line, "expected a comparison (<= a b) or (>= a b)")
        op = self.atom(expr[0], expr.line)
        if op not in ("<=", ">=") or len(expr) != 3:
            raise self.error(expr.line, f"unsupported constraint ({op} ...): advlab reads (<= a b) and (>= a b)")
        (ka, ca, da), (kb, cb, db) = self.term(expr[1], expr.line), self.term(expr[2], expr.line)
        if ka and kb and ka != kb:
            raise self.error(expr.line, "a constraint mixes X and Y variables")
        if op == ">=":
            (ca, da), (cb, db) = (cb, db), (ca, da)
        coef = dict(ca)
        for j, v in cb.items():
            coef[j] = coef.get(j, 0.0) - v
        return ka or kb, coef, db - da

    def assertion(self, expr: _Expr) -> None:
        op = self.atom(expr[0], expr.line) if expr and not isinstance(expr[0], _Expr) else ""
        if op == "or":
            self.disjunctions.append([self.block(e) for e in expr[1:]])
            if not self.disjunctions[-1]:
                raise self.error(expr.line, "(or) with no alternatives")
            return
        if op == "and":
            self.conjunction.extend(self.block(expr))
            return
        kind, coef, d = self.comparison(expr)
        if kind == "X":
            self.bound(expr.line, coef, d)
        else:
            self.conjunction.append((coef, d))

    def block(self, expr: object) -> list[tuple[dict[int, float], float]]:
        if not isinstance(expr, _Expr):
            raise self.error(expr[1], f"expected (and ...) or a constraint, got {expr[0]!r}")
        if expr and self.atom(expr[0], expr.line) == "and":
            atoms = [self.comparison(e) if isinstance(e, _Expr) else self.comparison(_Expr()) for e in expr[1:]]
        else:
            atoms = [self.comparison(expr)]
        if any(kind == "X" for kind, _, _ in atoms):
            raise self.error(expr.line, "input constraints inside (or ...) are not supported (only a box on the X)")
        return [(coef, d) for _, coef, d in atoms]

    def bound(self, line: int, coef: dict[int, float], d: float) -> None:
        coef = {j: v for j, v in coef.items() if v != 0}
        if len(coef) != 1:
            raise self.error(line, "input constraints must bound one X_i by a number")
        (j, v), = coef.items()
        if v > 0:
            self.upper[j] = min(self.upper.get(j, float("inf")), d / v)
        else:
            self.lower[j] = max(self.lower.get(j, float("-inf")), d / v)

    def result(self) -> Property:
        n, m = len(self.declared["X"]), len(self.declared["Y"])
        for kind, count in (("X", n), ("Y", m)):
            if self.declared[kind] != set(range(count)):
                raise InputError(f"{self.name}: the {kind} variables declared are not {kind}_0..{kind}_{count - 1}")
        if n == 0 or m == 0:
            raise InputError(f"{self.name}: declares {n} inputs and {m} outputs; both must be at least 1")
        missing = [j for j in range(n) if j not in self.lower or j not in self.upper]
        if missing:
            raise InputError(f"{self.name}: X_{missing[0]} has no {'lower' if missing[0] not in self.lower else 'upper'} bound")
        lower = torch.tensor([self.lower[j] for j in range(n)], dtype=torch.float64)
        upper = torch.tensor([self.upper[j] for j in range(n)], dtype=torch.float64)
        empty = (lower > upper).nonzero().flatten()
        if len(empty):
            j = int(empty[0])
            raise InputError(f"{self.name}: X_{j} has lower bound {float(lower[j])} above its upper bound {float(upper[j])}")
        if not torch.isfinite(torch.cat([lower, upper])).all():
            raise InputError(f"{self.name}: the input bounds must be finite numbers")
        blocks: list[list[tuple[dict[int, float], float]]] = [list(self.conjunction)]
        for alternatives in self.disjunctions:
            if len(blocks) * len(alternatives) > MAX_DISJUNCTS:
                raise InputError(f"{self.name}: the output constraints expand to more than {MAX_DISJUNCTS} disjuncts")
            blocks = [b + a for b in blocks for a in alternatives]
        disjuncts = []
        for block in blocks:
            c = torch.zeros(len(block), m, dtype=torch.float64)
            for r, (coef, _) in enumerate(block):
                for j, v in coef.items():
                    c[r, j] += v
            d = torch.tensor([dd for _, dd in block], dtype=torch.float64)
            disjuncts.append((c, d))
        return Property(lower, upper, tuple(disjuncts), m)


def parse_vnnlib(text: str, name: str = "<vnnlib>") -> Property:
    """The property stated by VNN-LIB `text` (module docstring); errors name `name`:line."""
    reader = _Reader(name)
    for expr in _parse(text, name):
        reader.statement(expr)
    return reader.result()


def read_vnnlib(path: str | os.PathLike[str]) -> Property:
    """`parse_vnnlib` on a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such VNN-LIB file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({type(exc).__name__})") from None
    return parse_vnnlib(text, str(path))


def format_counterexample(x: torch.Tensor, y: torch.Tensor) -> str:
    """The VNN-COMP counterexample text: ((X_0 v) ... (Y_0 v) ...), values repr'd exactly."""
    entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x.double().reshape(-1).tolist())]
    entries += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y.double().reshape(-1).tolist())]
    return "(" + "\n ".join(entries) + ")\n"
