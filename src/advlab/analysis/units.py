"""Units versus directions (Szegedy et al. 2013, Sec. 3).

For a layer with activations phi(x), the paper compares the images x' of a held-out set that
maximise <phi(x'), e_i> for a unit (natural basis vector e_i) with those that maximise
<phi(x'), v> for a random direction v, and finds both sets equally "semantically" coherent:
the meaning lives in the space of the layer, not in single units. Here a set's coherence is its
label purity: the fraction of its k images that carry its most common label, compared with the
purity of k images drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.errors import InputError
from advlab.models.inference import frozen_eval

CHANCE_DRAWS = 500


@torch.no_grad()
def layer_activations(model: nn.Module, layer: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """phi(x): the output of `layer` (a submodule of `model`) on every image, flattened to (N, d)."""
    if not any(m is layer for m in model.modules()):
        raise InputError(f"{type(layer).__name__} is not a submodule of the model")
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().flatten(1).cpu()))
    device = next(model.parameters()).device
    try:
        with frozen_eval(model):
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size].to(device))
    finally:
        handle.remove()
    if len(outputs) != -(-len(images) // batch_size):
        raise InputError(f"{type(layer).__name__} ran {len(outputs)} times for {len(images)} images; it must run once per forward")
    return torch.cat(outputs)


def top_images(activations: torch.Tensor, directions: torch.Tensor, k: int) -> torch.Tensor:
    """(D, k) indices of the images with the largest <phi(x), v> for each row v of `directions` (D, d)."""
    return (activations.double() @ directions.double().T).topk(k, dim=0).indices.T


def label_purity(labels: torch.Tensor) -> torch.Tensor:
    """For (D, k) labels: the fraction of each row that carries the row's most common label."""
    counts = torch.nn.functional.one_hot(labels).sum(1)
    return counts.amax(1).double() / labels.shape[1]


@dataclass
class UnitsVsDirections:
    """Top-k images along `units` (basis vectors) and along random unit-norm directions."""

    layer: str
    width: int
    k: int
    units: list[int]
    unit_top: list[list[int]]  # per unit, indices of its k top images
    random_top: list[list[int]]  # per random direction
    unit_purity: list[float]
    random_purity: list[float]
    chance_purity: float  # mean purity of k images drawn uniformly without replacement

    @property
    def mean_unit_purity(self) -> float:
        return sum(self.unit_purity) / len(self.unit_purity)

    @property
    def mean_random_purity(self) -> float:
        return sum(self.random_purity) / len(self.random_purity)


def units_vs_directions(
    activations: torch.Tensor,
    labels: torch.Tensor,
    *,
    layer: str,
    n_units: int,
    n_random: int,
    k: int,
    generator: torch.Generator,
) -> UnitsVsDirections:
    """Compare `n_units` basis directions (drawn without replacement) with `n_random` random
    directions (Gaussian, normalised) of the activations (N, d) of images with `labels`."""
    n, width = activations.shape
    if not 1 <= k <= n or not 1 <= n_units <= width or n_random < 1:
        raise InputError(f"need 1 <= k <= {n} images, 1 <= n_units <= {width} units and n_random >= 1")
    units = torch.randperm(width, generator=generator)[:n_units]
    random = torch.randn(n_random, width, generator=generator, dtype=torch.float64)
    random = random / random.norm(dim=1, keepdim=True)
    unit_top = top_images(activations, torch.eye(width, dtype=torch.float64)[units], k)
    random_top = top_images(activations, random, k)
    draws = torch.rand(CHANCE_DRAWS, n, generator=generator).topk(k, dim=1).indices
    return UnitsVsDirections(
        layer=layer,
        width=width,
        k=k,
        units=units.tolist(),
        unit_top=unit_top.tolist(),
        random_top=random_top.tolist(),
        unit_purity=label_purity(labels[unit_top]).tolist(),
        random_purity=label_purity(labels[random_top]).tolist(),
        chance_purity=float(label_purity(labels[draws]).mean()),
    )
