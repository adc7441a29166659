import math

import pytest
import torch

from advlab.data import Dataset
from advlab.errors import InputError
from advlab.models import AutoencoderClassifier, MLP, SoftmaxRegression, build_model, get_spec
from advlab.training import TrainConfig, train_model
from advlab.training import loops
from advlab.training.loops import weight_penalty
from advlab.training.pretraining import pretrain_autoencoder


@pytest.mark.parametrize(
    "name, cls, widths",
    [("fc10-1e-4", SoftmaxRegression, None), ("fc10-1", SoftmaxRegression, None), ("fc100-100-10", MLP, (100, 100)),
     ("fc200-200-10", MLP, (200, 200)), ("fc123-456-10", MLP, (123, 456)), ("ae400-10", AutoencoderClassifier, None)],
)
def test_zoo_models_build_and_map_images_to_ten_logits(name, cls, widths):
    model = build_model(name)
    assert isinstance(model, cls)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    if widths:
        assert model.hidden == widths and model.activation == "sigmoid"
        assert get_spec(name).training["weight_decay"] == (1e-5, 1e-5, 1e-6)


def test_fc10_weight_decays_are_the_papers_lambdas():
    assert [get_spec(f"fc10-{lam}").training["weight_decay"] for lam in ("1e-4", "1e-2", "1")] == [1e-4, 1e-2, 1.0]


def test_per_matrix_weight_decay():
    model = MLP(4, (3,), 2)
    w1, w2 = model.fc1.weight, model.out.weight
    expected = 0.5 * (0.1 * w1.pow(2).sum() + 2.0 * w2.pow(2).sum())
    assert torch.allclose(weight_penalty(model, (0.1, 2.0)), expected)
    assert torch.allclose(weight_penalty(model, 0.3), 0.15 * (w1.pow(2).sum() + w2.pow(2).sum()))
    with pytest.raises(InputError, match="3 coefficients but the model has 2"):
        weight_penalty(model, (1.0, 1.0, 1.0))
    assert TrainConfig(weight_decay=[1e-5, 1e-6]).weight_decay == (1e-5, 1e-6)
    with pytest.raises(InputError):
        TrainConfig(weight_decay=(1e-5, -1.0))


def test_autoencoder_is_pretrained_then_fine_tuned(embedded, monkeypatch):
    data = Dataset(embedded.train.images[:300], embedded.train.labels[:300], "small")
    torch.manual_seed(0)
    model = build_model("ae400-10", hidden=32)
    x = data.images.flatten(1)
    before = torch.nn.functional.binary_cross_entropy(model.reconstruct(data.images).flatten(1), x)
    encoder = model.encoder[1].weight.detach().clone()
    losses = pretrain_autoencoder(model, data, TrainConfig(epochs=3, lr=3e-3), progress=False)
    after = torch.nn.functional.binary_cross_entropy(model.reconstruct(data.images).flatten(1), x)
    assert losses[-1] < losses[0] and after < before
    assert not torch.equal(encoder, model.encoder[1].weight)

    calls = []
    torch.manual_seed(0)
    model = build_model("ae400-10", hidden=32)
    monkeypatch.setattr(loops, "pretrain_autoencoder", lambda *a, **k: calls.append(1) or pretrain_autoencoder(*a, **k))
    train_model(model, data, TrainConfig(epochs=1, lr=3e-3), progress=False)
    assert calls == [1] and all(p.requires_grad for p in model.parameters())


def test_a_sparse_autoencoders_penalty_is_the_mean_kl_divergence():
    model = AutoencoderClassifier(4, 2, 3, sparsity=0.1, sparsity_weight=2.0)
    code = torch.tensor([[0.1, 0.5], [0.1, 0.3]])  # unit means 0.1 (on target) and 0.4
    kl = 0.1 * math.log(0.1 / 0.4) + 0.9 * math.log(0.9 / 0.6)
    assert float(model.sparsity_penalty(code)) == pytest.approx(2.0 * (0 + kl) / 2)
    assert float(AutoencoderClassifier(4, 2, 3).sparsity_penalty(code)) == 0.0
    for bad in ({"sparsity": 1.0}, {"sparsity": 0.0}, {"sparsity_weight": 1.0}, {"sparsity": 0.1, "sparsity_weight": -1.0},
                {"sparsity": 0.1, "sparsity_weight": float("nan")}):
        with pytest.raises(InputError):
            AutoencoderClassifier(4, 2, 3, **bad)


def test_sparse_pretraining_lowers_the_mean_code_activation(embedded):
    data = Dataset(embedded.train.images[:300], embedded.train.labels[:300], "small")
    means = []
    for architecture in ({"sparsity_weight": 0.0}, {"sparsity": 0.05, "sparsity_weight": 1.0}):
        model = build_model("ae400-10", hidden=32, **architecture)
        pretrain_autoencoder(model, data, TrainConfig(epochs=3, lr=3e-3), progress=False)
        with torch.no_grad():
            means.append(float(model.encoder(data.images).mean()))
    assert means[1] < means[0] / 2


@pytest.mark.parametrize("fine_tune", [False, True])
def test_the_classifiers_training_keeps_what_pretraining_made(embedded, fine_tune):
    """After pretraining, the decoder is never trained again (only the weight decay would move it), and the
    encoder only with fine_tune (the paper's AE400-10: its layer "was not fine-tuned"); the classifier trains,
    and gradients still reach the input."""
    data = Dataset(embedded.train.images[:300], embedded.train.labels[:300], "small")
    config = TrainConfig(epochs=2, lr=3e-3, seed=3, weight_decay=1e-3)
    pretrained = build_model("ae400-10", seed=config.seed, hidden=32, fine_tune=fine_tune)
    model = build_model("ae400-10", seed=config.seed, hidden=32, fine_tune=fine_tune)
    classifier = model.classifier.weight.detach().clone()
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # train_model pretrains under its fork of the RNG seeded so
        pretrain_autoencoder(pretrained, data, config, progress=False)
    train_model(model, data, config, progress=False)
    assert torch.equal(model.decoder.weight, pretrained.decoder.weight) and torch.equal(model.decoder.bias, pretrained.decoder.bias)
    assert torch.equal(model.encoder[1].weight, pretrained.encoder[1].weight) is not fine_tune
    assert not torch.equal(model.classifier.weight, classifier)
    x = data.images[:4].clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
