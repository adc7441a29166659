"""Write one documentation page per registered attack, from the code.

Run from the repository root after changing an attack's constructor or docstrings:

    PYTHONPATH=src python docs/gen_attack_pages.py

Everything on a page comes from the attack itself: its registered name and class (the registry
`advlab.attacks.ATTACKS`), its parameters and defaults (the constructor signatures, followed
through `**kwargs` into the base classes), the norms it accepts (the constructor is asked,
one norm at a time), its module docstring (the math) and class docstring. Only the paper
citation is written here, once per attack. `tests/test_docs.py` checks that the committed pages
equal what this script writes.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import torch
from torch import nn

from advlab.attacks import ATTACKS, Attack, FixedBudgetAttack
from advlab.errors import InputError
from advlab.validation import NORMS

OUT = Path(__file__).resolve().parent / "attacks"

PAPERS: dict[str, tuple[str, str]] = {  # name -> (short citation, where exactly)
    "fgsm": ("Goodfellow, Shlens & Szegedy 2014", "*Explaining and Harnessing Adversarial Examples*, "
             "[arXiv:1412.6572](https://arxiv.org/abs/1412.6572), Sec. 4"),
    "fgm": ("Goodfellow, Shlens & Szegedy 2014", "[arXiv:1412.6572](https://arxiv.org/abs/1412.6572), "
            "the L2 variant of FGSM"),
    "lbfgs": ("Szegedy et al. 2013", "*Intriguing properties of neural networks*, "
              "[arXiv:1312.6199](https://arxiv.org/abs/1312.6199), Sec. 4.1"),
    "penalty": ("Szegedy et al. 2013", "[arXiv:1312.6199](https://arxiv.org/abs/1312.6199), Sec. 4.1, "
                "by gradient descent with Adam in place of L-BFGS"),
    "pgd": ("Madry et al. 2017", "*Towards Deep Learning Models Resistant to Adversarial Attacks*, "
            "[arXiv:1706.06083](https://arxiv.org/abs/1706.06083), Sec. 2.1 and App. A"),
    "bim": ("Kurakin, Goodfellow & Bengio 2016", "*Adversarial examples in the physical world*, "
            "[arXiv:1607.02533](https://arxiv.org/abs/1607.02533), Sec. 2.1"),
    "deepfool": ("Moosavi-Dezfooli, Fawzi & Frossard 2016", "*DeepFool*, "
                 "[arXiv:1511.04599](https://arxiv.org/abs/1511.04599), Alg. 2 and Sec. 3.3"),
    "cw": ("Carlini & Wagner 2017", "*Towards Evaluating the Robustness of Neural Networks*, "
           "[arXiv:1608.04644](https://arxiv.org/abs/1608.04644), Sec. V.A and VI"),
    "minpgd": ("advlab", "bisection over eps of margin PGD (Madry et al. 2017), warm-started by DeepFool"),
    "square": ("Andriushchenko et al. 2020", "*Square Attack*, [arXiv:1912.00049](https://arxiv.org/abs/1912.00049)"),
    "apgd": ("Croce & Hein 2020", "*Reliable evaluation of adversarial robustness with an ensemble of diverse "
             "parameter-free attacks*, [arXiv:2003.01690](https://arxiv.org/abs/2003.01690), Sec. 3; L1: Croce & Hein "
             "2021, *Mind the box*, [arXiv:2103.01208](https://arxiv.org/abs/2103.01208)"),
    "apgd-t": ("Croce & Hein 2020", "[arXiv:2003.01690](https://arxiv.org/abs/2003.01690), Sec. 4 (targeted DLR)"),
    "apgd-a": ("Liu et al. 2022; Melamed et al. 2024", "budget allocation after *Practical evaluation of adversarial "
               "robustness via adaptive auto attack* (CVPR 2022), on APGD-T with MALT targets "
               "([arXiv:2407.02240](https://arxiv.org/abs/2407.02240))"),
    "fab-t": ("Croce & Hein 2019", "*Minimally distorted adversarial examples with a fast adaptive boundary attack*, "
              "[arXiv:1907.02044](https://arxiv.org/abs/1907.02044), Sec. 3; targeted as in AutoAttack"),
    "fab": ("Croce & Hein 2019", "*Minimally distorted adversarial examples with a fast adaptive boundary attack*, "
            "[arXiv:1907.02044](https://arxiv.org/abs/1907.02044), Sec. 3 (untargeted)"),
}

NORM_NAMES = {"linf": "L-inf", "l2": "L2", "l1": "L1"}
COMMON = ("bounds", "batch_size", "seed", "progress")  # the `Attack` base's parameters, on every page once


def declared_parameters(cls: type[Attack]) -> list[inspect.Parameter]:
    """The constructor's keyword parameters, following `**kwargs` into the base classes.

    A base-class parameter counts only when the constructor accepts it (a subclass may set it
    itself, as FGSM sets `norm` and APGD-T `loss`): each is tried once with its default value.
    """
    seen: dict[str, inspect.Parameter] = {}
    for depth, klass in enumerate(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
        for p in params:
            if p.kind is p.KEYWORD_ONLY and p.name not in seen and (depth == 0 or _accepts(cls, p)):
                seen[p.name] = p
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(seen.values())


def _probe_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _required(cls: type[Attack]) -> dict[str, float]:
    """A value for each parameter the constructor requires (only `eps` is required today)."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    return {p.name: 0.1 for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}


def _accepts(cls: type[Attack], p: inspect.Parameter) -> bool:
    if p.default is p.empty:
        return p.name in _required(cls)
    try:
        cls(_probe_model(), **{**_required(cls), p.name: p.default})
    except (TypeError, InputError):  # set by the subclass, or its default does not hold here
        return False
    return True


def supported_norms(cls: type[Attack], params: list[inspect.Parameter]) -> tuple[str, ...]:
    """The norms the constructor accepts; attacks without a `norm` parameter minimise L2."""
    if "norm" not in {p.name for p in params}:
        return tuple(getattr(cls, "norms", ("l2",)))
    accepted = []
    for norm in NORMS:
        try:
            cls(_probe_model(), **{**_required(cls), "norm": norm})
        except InputError:
            continue
        accepted.append(norm)
    return tuple(accepted)


def _default(p: inspect.Parameter) -> str:
    return "required" if p.default is p.empty else f"`{p.default!r}`"


def _type(p: inspect.Parameter) -> str:
    # plain text, with the pipe of a union as an HTML entity: a bare one would end the table cell
    return str(p.annotation).replace("|", "&#124;") if p.annotation is not p.empty else ""


def page(name: str, cls: type[Attack]) -> str:
    """The Markdown page of one attack."""
    if name not in PAPERS:
        raise SystemExit(f"add the paper of attack {name!r} to PAPERS in {Path(__file__).name}")
    params = declared_parameters(cls)
    norms = supported_norms(cls, params)
    module = sys.modules[cls.__module__]
    fixed = issubclass(cls, FixedBudgetAttack)
    kind = "fixed budget: finds a point within `eps`" if fixed else "minimal perturbation: the smallest it finds"
    own = [p for p in params if p.name not in COMMON]
    rows = "\n".join(f"| `{p.name}` | {_type(p)} | {_default(p)} |" for p in own)
    eps = " --eps 0.1" if fixed else ""
    doc = inspect.cleandoc(cls.__doc__ or "")
    lines = [
        f"# {cls.__name__} (`{name}`)",
        "",
        "<!-- generated by docs/gen_attack_pages.py from the code; do not edit by hand -->",
        "",
        doc,
        "",
        "| | |",
        "| --- | --- |",
        f"| paper | {', '.join(PAPERS[name])} |",
        f"| registered name | `{name}`: `make_attack(\"{name}\", model, ...)`, `advlab attack ... --method {name}` |",
        f"| class | `{cls.__module__}.{cls.__name__}` |",
        f"| kind | {kind} |",
        f"| norms | {', '.join(NORM_NAMES[n] for n in norms)} |",
        "",
        "## Parameters",
        "",
        "| parameter | type | default |",
        "| --- | --- | --- |",
        rows,
        "",
        "Every attack also takes `bounds=(0.0, 1.0)`, `batch_size=1000`, `seed=0` and `progress=True`"
        " (see [the attack contract](index.md#the-attack-contract)). On the command line each parameter is"
        f" `-p KEY=VALUE`, for instance `advlab attack model.safetensors --method {name}{eps} --out out/`.",
        "",
        "## The math",
        "",
        "From the docstring of `" + cls.__module__ + "`:",
        "",
        inspect.cleandoc(module.__doc__ or "").replace("\n", "\n    ").join(["    ", ""]),
        "",
        "## API",
        "",
        f"::: {cls.__module__}.{cls.__name__}",
        "    options:",
        "      show_root_heading: false",
        "      members: false",
        "",
    ]
    return "\n".join(lines)


def index_table() -> str:
    """The table of every attack, for docs/attacks/index.md (between its markers)."""
    rows = ["| attack | name | kind | norms | paper |", "| --- | --- | --- | --- | --- |"]
    for name, cls in ATTACKS.items():
        params = declared_parameters(cls)
        norms = ", ".join(NORM_NAMES[n] for n in supported_norms(cls, params))
        kind = "fixed budget" if issubclass(cls, FixedBudgetAttack) else "minimal"
        paper = PAPERS[name][0]
        rows.append(f"| [{cls.__name__}]({page_name(name)}) | `{name}` | {kind} | {norms} | {paper} |")
    return "\n".join(rows)


def page_name(name: str) -> str:
    return f"{name}.md"


def pages() -> dict[Path, str]:
    """Every generated file and its content."""
    torch.manual_seed(0)  # the probe models' weights do not matter; keep the run quiet and fixed
    out: dict[Path, str] = {OUT / page_name(name): page(name, cls) for name, cls in ATTACKS.items()}
    index = (OUT / "index.md").read_text()
    start, end = "<!-- attacks table: start -->", "<!-- attacks table: end -->"
    head, rest = index.split(start)
    _, tail = rest.split(end)
    out[OUT / "index.md"] = f"{head}{start}\n{index_table()}\n{end}{tail}"
    return out


def main() -> None:
    for path, text in pages().items():
        path.write_text(text)
        print(path.relative_to(OUT.parent.parent))


if __name__ == "__main__":
    main()

