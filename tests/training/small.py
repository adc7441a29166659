"""Small shared pieces of the training tests: a seeded maxout and exact state comparison."""

import torch

from advlab.models import MaxoutNet


def small_maxout() -> MaxoutNet:
    torch.manual_seed(0)
    return MaxoutNet(hidden=16, pieces=2)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
