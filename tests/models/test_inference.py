"""Eval-mode batched inference and the frozen context attacks run in."""

import pytest
import torch
from torch import nn

from advlab.models.inference import frozen_eval, logits, predict, set_mode


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.invariance
def test_logits_are_eval_mode_and_batch_size_independent():
    model, x = _net().train(), torch.rand(10, 2, 2)
    whole = logits(model, x, batch_size=1000)
    torch.testing.assert_close(logits(model, x, batch_size=3), whole, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(whole, model.eval()(x), rtol=0, atol=1e-6)
    assert torch.equal(predict(model, x, batch_size=4), whole.argmax(1))


def test_single_logit_model_reads_as_two_classes():
    model = nn.Linear(3, 1)
    out = logits(model, torch.rand(5, 3))
    assert out.shape == (5, 2) and bool((out[:, 0] == 0).all())


def test_modes_and_flags_restored_even_on_error():
    model = _net().train()
    model[2].eval()  # a mixed state must come back as it was
    model[1].weight.requires_grad_(False)
    before = [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]
    predict(model, torch.rand(3, 2, 2))
    try:
        with frozen_eval(model):
            assert not any(m.training for m in model.modules()) and not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with set_mode(model, True):
        assert all(m.training for m in model.modules())
    assert ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]) == before
