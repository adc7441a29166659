"""An autoencoder's code under a softmax classifier: Szegedy et al. 2013's AE400-10 (Sec. 4.2).

images -> sigmoid(W_e x + b_e) (the code, `hidden` units) -> W_c h + b_c (logits).
`advlab.training.loops.pretrain_autoencoder` first fits the autoencoder x ~ sigmoid(W_d h + b_d)
by binary cross-entropy (plus the weight decay); `train_model` then fits the classifier and
fine-tunes the encoder with it, the usual
"pretrain, then fine-tune" of 2013 (a classifier on the frozen code of a 6,309-image autoencoder
errs on about 10% of the test set, against the paper's 1.9%). The decoder is kept (it is part of
the trained model) but is not on the path from images to logits.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.errors import InputError


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
