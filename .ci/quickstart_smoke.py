"""A quickstart for the installed wheel: train a small network on the embedded data, print its
clean and robust accuracy. Run by .ci/wheel.sh in a fresh venv, from an empty folder (no source
tree), with nothing but the wheel and its dependencies installed.
"""

from __future__ import annotations

import torch
from torch import nn

import advlab
from advlab import make_attack
from advlab.data import load_mnist

torch.manual_seed(0)
splits = load_mnist()  # no --data-dir: the 5,000 MNIST images shipped inside the package
print(f"advlab {advlab.__version__} from {advlab.__file__}")
print(f"data: {splits.source}")

model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = splits.train.images, splits.train.labels
for epoch in range(5):
    for batch in torch.randperm(len(y)).split(100):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimiser.step()
model.eval()

result = make_attack("pgd", model, eps=0.1, steps=20)(splits.test.images, splits.test.labels)
clean = result.clean_correct.double().mean().item()
robust = result.adv_correct.double().mean().item()
print(f"clean accuracy {clean:.2%}; robust accuracy under PGD (L-inf, eps = 0.1): {robust:.2%}")
if not (clean > 0.8 and robust < clean):
    raise SystemExit(f"unexpected accuracies: clean {clean:.4f}, robust {robust:.4f}")
