"""An autoencoder's code under a softmax classifier: Szegedy et al. 2013's AE400-10 (Sec. 4.2).

images -> sigmoid(W_e x + b_e) (the code, `hidden` units) -> W_c h + b_c (logits). `pretrain`
first fits the autoencoder x ~ sigmoid(W_d h + b_d) by binary cross-entropy (plus the weight
decay); `train_model` then fits the classifier and fine-tunes the encoder with it, the usual
"pretrain, then fine-tune" of 2013 (a classifier on the frozen code of a 6,309-image autoencoder
errs on about 10% of the test set, against the paper's 1.9%). The decoder is kept (it is part of
the trained model) but is not on the path from images to logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from advlab.data.dataset import Dataset
from advlab.errors import InputError

if TYPE_CHECKING:  # advlab.training imports the attacks, which import the models
    from advlab.training.loops import TrainConfig


class AutoencoderClassifier(nn.Module):
    """Sigmoid autoencoder (in_features -> hidden -> in_features) with a softmax classifier on the code."""

    def __init__(self, in_features: int = 784, hidden: int = 400, num_classes: int = 10) -> None:
        super().__init__()
        if min(in_features, hidden, num_classes) < 1:
            raise InputError(f"widths must be positive, got {in_features}, {hidden}, {num_classes}")
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Sigmoid())
        self.decoder = nn.Linear(hidden, in_features)  # reconstruction logits; sigmoid gives pixels
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x))).view_as(x)

    def pretrain(self, data: Dataset, config: TrainConfig, *, progress: bool = True) -> list[float]:
        """Fit encoder and decoder to reconstruct `data` (config's epochs, lr, batch size, seed and
        weight decay). Returns the mean loss per epoch."""
        weights = (self.encoder[1].weight, self.decoder.weight)
        decay = config.weight_decay[:2] if isinstance(config.weight_decay, tuple) else (config.weight_decay,) * 2
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        optimizer: torch.optim.Optimizer = (
            torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam" else torch.optim.SGD(params, lr=config.lr, momentum=0.9)
        )
        generator = torch.Generator().manual_seed(config.seed)
        device = next(self.parameters()).device
        losses = []
        self.train()
        for _ in tqdm(range(config.epochs), desc="pretrain", unit="epoch", disable=None if progress else True, leave=False):
            order = torch.randperm(len(data), generator=generator)
            total = torch.zeros((), device=device)
            for start in range(0, len(data), config.batch_size):
                x = data.images[order[start : start + config.batch_size]].to(device).flatten(1)
                loss = F.binary_cross_entropy_with_logits(self.decoder(self.encoder(x)), x)
                loss = loss + 0.5 * sum(d * w.pow(2).sum() for d, w in zip(decay, weights))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(x)
            losses.append(float(total) / len(data))
        self.eval()
        return losses
