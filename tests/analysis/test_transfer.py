import math

import torch
from torch import nn

from advlab.analysis.transfer import distortion, error_rate_on, transfer_table
from advlab.attacks import FGM


class Constant(nn.Module):
    """Always predicts `label`."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), self.label), 10).float() + 0 * self.dummy


def test_distortion_closed_form_and_matches_attack_result(softmax_model, embedded):
    x = torch.zeros(2, 1, 28, 28)
    x_adv = x.clone()
    x_adv[0] += 0.1
    x_adv[1, 0, 0, :4] = 0.5  # sqrt(4 * 0.25 / 784)
    assert torch.allclose(distortion(x, x_adv), torch.tensor([0.1, math.sqrt(1 / 784)], dtype=torch.float64))
    result = FGM(softmax_model, eps=1.0)(embedded.test.images[:20], embedded.test.labels[:20])
    assert torch.allclose(distortion(result.x, result.x_adv).float(), result.distortion)


def test_transfer_table_of_constant_models():
    images = torch.rand(8, 1, 28, 28)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    models = {"zero": Constant(0), "two": Constant(2)}
    table = transfer_table({"all": (images, labels), "ones": (images[3:5], labels[3:5])}, models)
    assert table == {"all": {"zero": 5 / 8, "two": 5 / 8}, "ones": {"zero": 1.0, "two": 1.0}}
    assert math.isnan(error_rate_on(models["zero"], images[:0], labels[:0]))
