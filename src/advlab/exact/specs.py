"""Specifications: an input box and a counterexample region of linear output constraints.

A `Property` (`advlab.formats.vnnlib`, which also reads them from VNN-LIB files) holds
lower/upper bounds per (flattened) input and disjuncts (C_i, d_i): the property is violated
where some x in the box has C_i f(x) <= d_i (every row). Robustness of x with label y at
L-inf radius eps is the case box = B(eps) intersected with the data bounds, one disjunct per
class k != y with the single row z_y - z_k <= 0 (`robustness_property`).
"""

from __future__ import annotations

import torch

from advlab.exact.bounds import box
from advlab.formats.vnnlib import Property


def robustness_property(x: torch.Tensor, label: int, eps: float, bounds: tuple[float, float], num_classes: int) -> Property:
    """The counterexamples to "label beats every other class on B(eps) around x" as a Property."""
    xl, xu = box(x.double().reshape(1, -1), eps, bounds)
    eye = torch.eye(num_classes, dtype=torch.float64)
    disjuncts = tuple(((eye[label] - eye[k]).unsqueeze(0), torch.zeros(1, dtype=torch.float64))
                      for k in range(num_classes) if k != label)
    return Property(xl[0], xu[0], disjuncts, num_classes)


def goals(prop: Property, keep: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The disjuncts (those in `keep`, all by default) as padded tensors: rows (G, R, C) and
    offsets (G, R), a short disjunct's first row repeated (which changes no max over rows)."""
    chosen = [prop.disjuncts[i] for i in (keep if keep is not None else range(len(prop.disjuncts)))]
    width = max(len(d) for _, d in chosen)
    rows = torch.stack([torch.cat([c, c[:1].expand(width - len(c), -1)]) for c, _ in chosen])
    offsets = torch.stack([torch.cat([d, d[:1].expand(width - len(d))]) for _, d in chosen])
    return rows, offsets
