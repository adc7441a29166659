"""The CPU fast path: the same function and input gradients, the model restored exactly."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.models.fast import FEW_CHANNELS, _ColumnConv2d, cpu_fast_path
from advlab.models.inference import frozen_eval

GEOMETRIES = [  # (in channels, out channels, kernel, stride, padding, dilation, input size)
    (1, 16, (5, 5), (1, 1), (0, 0), (1, 1), (28, 28)),
    (3, 8, (3, 3), (1, 1), (1, 1), (1, 1), (12, 10)),
    (2, 4, (3, 5), (2, 1), (1, 2), (1, 1), (13, 11)),
    (1, 6, (3, 3), (2, 2), (0, 1), (2, 1), (15, 14)),
    (4, 5, (1, 1), (3, 3), (0, 0), (1, 1), (10, 10)),
]


@pytest.mark.parametrize(("c", "o", "k", "s", "p", "d", "hw"), GEOMETRIES)
def test_column_input_gradient_is_the_convolutions_adjoint(c, o, k, s, p, d, hw):
    """float64 against autograd's conv2d backward, channels-last and plain gradients alike."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, c, *hw, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(o, c, *k, dtype=torch.float64, generator=gen)
    bias = torch.randn(o, dtype=torch.float64, generator=gen)
    reference = F.conv2d(x, weight, bias, s, p, d)
    out = _ColumnConv2d.apply(x, weight, bias, s, p, d)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    seed = torch.randn(reference.shape, dtype=torch.float64, generator=gen)
    (expected,) = torch.autograd.grad(reference, x, seed)
    for layout in (torch.contiguous_format, torch.channels_last):
        (got,) = torch.autograd.grad(_ColumnConv2d.apply(x, weight, bias, s, p, d), x, seed.contiguous(memory_format=layout))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 12 * 12, 10))


def test_frozen_eval_gives_the_models_logits_and_input_gradients():
    model, x = _cnn().eval(), torch.rand(6, 1, 28, 28)

    def logits_and_gradient():
        xx = x.clone().requires_grad_(True)
        z = model(xx)
        (g,) = torch.autograd.grad(z.logsumexp(1).sum(), xx)
        return z.detach(), g

    z, g = logits_and_gradient()
    with frozen_eval(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last) and model[0].weight.stride(1) == 1
        z_fast, g_fast = logits_and_gradient()
    torch.testing.assert_close(z_fast, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fast, g, rtol=1e-4, atol=1e-6)


def test_the_model_comes_back_exactly_and_user_hooks_keep_running():
    model = _cnn()
    tensors = [(p, p.data_ptr(), p.stride()) for p in model.parameters()]
    calls = []
    model[0].register_forward_hook(lambda module, args, out: calls.append(out.shape))
    with cpu_fast_path(model):
        assert "forward" in vars(model[0]) and "forward" not in vars(model[3])  # 8 input channels > FEW_CHANNELS
        model(torch.rand(2, 1, 28, 28))
    assert calls == [torch.Size([2, 8, 24, 24])]
    assert all("forward" not in vars(m) for m in model.modules())
    assert all(p.data_ptr() == ptr and p.stride() == stride for p, ptr, stride in tensors)
    assert model[3].in_channels > FEW_CHANNELS


def test_nested_fast_paths_restore_the_model_once():
    model = _cnn()
    with frozen_eval(model):
        with frozen_eval(model):
            assert "forward" in vars(model[0])
        assert "forward" in vars(model[0]) and model[0].weight.stride(1) == 1
        model(torch.rand(2, 1, 28, 28))
    assert "forward" not in vars(model[0]) and model[0].weight.is_contiguous()


def test_trainable_weights_and_float64_keep_autograds_own_path():
    model = _cnn()
    with cpu_fast_path(model):  # weights still require grad: their gradient must flow
        model(torch.rand(2, 1, 28, 28)).sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    double = _cnn().double()
    with cpu_fast_path(double):
        assert "forward" not in vars(double[0]) and double[0].weight.is_contiguous()


def test_the_environment_can_turn_the_fast_path_off(monkeypatch):
    model = _cnn()
    monkeypatch.setenv("ADVLAB_CPU_FAST_PATH", "0")
    with frozen_eval(model):
        assert "forward" not in vars(model[0]) and model[0].weight.is_contiguous()
