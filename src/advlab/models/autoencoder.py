"""An autoencoder's code under a softmax classifier: Szegedy et al. 2013's AE400-10 (Sec. 4.1).

images -> sigmoid(W_e x + b_e) (the code, `hidden` units) -> W_c h + b_c (logits).
`advlab.training.pretraining.pretrain_autoencoder` first fits the autoencoder x ~ sigmoid(W_d h + b_d)
by binary cross-entropy (plus the weight decay, and with `sparsity` rho a sparse autoencoder's
penalty: `sparsity_weight` times the mean over code units j of KL(rho || rho_j), rho_j unit j's mean
activation over the minibatch); `train_model` then fits the classifier and, with `fine_tune`,
the encoder with it (the usual "pretrain, then fine-tune" of 2013). The paper's AE400-10 is "a single
layer sparse autoencoder" whose layer "was not fine-tuned": `fine_tune=False` keeps the pretrained
encoder fixed while the classifier trains. The decoder is kept as pretraining left it (it is part
of the trained model, but not on the path from images to logits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advlab.errors import InputError


class AutoencoderClassifier(nn.Module):
    """Sigmoid autoencoder (in_features -> hidden -> in_features) with a softmax classifier on the code."""

    def __init__(self, in_features: int = 784, hidden: int = 400, num_classes: int = 10, *, sparsity: float | None = None,
                 sparsity_weight: float = 0.0, fine_tune: bool = True) -> None:
        super().__init__()
        if min(in_features, hidden, num_classes) < 1:
            raise InputError(f"widths must be positive, got {in_features}, {hidden}, {num_classes}")
        if sparsity is not None and not 0 < sparsity < 1:
            raise InputError(f"sparsity (the target mean activation) must lie in (0, 1), got {sparsity}")
        if not (math.isfinite(sparsity_weight) and sparsity_weight >= 0) or (sparsity_weight > 0 and sparsity is None):
            raise InputError(f"sparsity_weight must be a finite number >= 0, and > 0 only with a sparsity, got {sparsity_weight}")
        self.sparsity, self.sparsity_weight, self.fine_tune = sparsity, float(sparsity_weight), bool(fine_tune)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Sigmoid())
        self.decoder = nn.Linear(hidden, in_features)  # reconstruction logits; sigmoid gives pixels
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x))).view_as(x)

    def sparsity_penalty(self, code: torch.Tensor) -> torch.Tensor:
        """sparsity_weight * mean_j KL(rho || rho_j), rho_j the mean of code unit j over the minibatch (0 without a sparsity)."""
        if self.sparsity is None or self.sparsity_weight == 0:
            return code.new_zeros(())
        rho, mean = self.sparsity, code.mean(0).clamp(1e-6, 1 - 1e-6)
        divergence = rho * torch.log(rho / mean) + (1 - rho) * torch.log((1 - rho) / (1 - mean))
        return self.sparsity_weight * divergence.mean()
