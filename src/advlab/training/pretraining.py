"""Pretraining an `AutoencoderClassifier` (Szegedy et al. 2013's AE400-10) before `train_model` fits its
classifier: the autoencoder x ~ sigmoid(W_d h + b_d) by binary cross-entropy, plus the weight decay and,
for a sparse autoencoder, its sparsity penalty (`AutoencoderClassifier.sparsity_penalty`)."""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from advlab.data.dataset import Dataset
from advlab.models.autoencoder import AutoencoderClassifier
from advlab.progress import progress_bar
from advlab.training.schedule import Optimized, make_optimizer, scheduled_lr, set_lr


class PretrainSettings(Optimized, Protocol):
    """What pretraining reads of a training's settings (`TrainConfig` has it)."""

    batch_size: int
    weight_decay: float | tuple[float, ...]
    seed: int


def pretrain_autoencoder(
    model: AutoencoderClassifier, data: Dataset, config: PretrainSettings, *, progress: bool = True
) -> list[float]:
    """Fit the model's encoder and decoder to reconstruct `data` (config's epochs, lr and its schedule,
    batch size, seed and weight decay), by binary cross-entropy on sigmoid(W_d h + b_d). Returns the mean
    loss per epoch; the model is left in eval mode."""
    weights = (model.encoder[1].weight, model.decoder.weight)
    decay = config.weight_decay[:2] if isinstance(config.weight_decay, tuple) else (config.weight_decay,) * 2
    params = [*model.encoder.parameters(), *model.decoder.parameters()]
    optimizer = make_optimizer(config, params)
    generator = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    losses = []
    model.train()
    bar = progress_bar(config.epochs, "pretrain", enabled=progress, unit="epoch")
    per_epoch = math.ceil(len(data) / config.batch_size)
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)
        total = torch.zeros((), device=device)
        for step, start in enumerate(range(0, len(data), config.batch_size)):
            set_lr(optimizer, scheduled_lr(config, epoch * per_epoch + step, per_epoch))
            x = data.images[order[start : start + config.batch_size]].to(device).flatten(1)
            code = model.encoder(x)
            loss = F.binary_cross_entropy_with_logits(model.decoder(code), x) + model.sparsity_penalty(code)
            loss = loss + 0.5 * sum(d * w.pow(2).sum() for d, w in zip(decay, weights))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(x)
        losses.append(float(total) / len(data))
        bar.update()
    bar.close()
    model.eval()
    return losses


def kept_as_pretrained(model: nn.Module) -> set[nn.Parameter]:
    """An autoencoder's parameters that the classifier's training leaves as pretraining left them: the decoder (not
    on the path to the logits: only the weight decay would move it) and, unless fine-tuned, the encoder."""
    if not isinstance(model, AutoencoderClassifier):
        return set()
    return {*model.decoder.parameters(), *(() if model.fine_tune else model.encoder.parameters())}
