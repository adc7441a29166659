"""Szegedy et al. 2013, Sec. 4.2: training on a pool of adversarial examples.

"We have successfully trained a two layer 100-100-10 non-convolutional neural network with a
test error below 1.2% by keeping a pool of adversarial examples a random subset of which is
continuously replaced by newly generated adversarial examples and which is mixed into the
original training set all the time." It adds that it "only got improvements by generating
adversarial examples for each layer outputs which were used to train all the layers above",
"maintaining and updating a pool of adversarial examples for each layer separately".

`AdversarialPool` holds input examples only, regenerated whole on a schedule (below);
`LayerPool` is the paper's: one pool per chosen layer (the input and/or hidden activations), a
random subset of each continuously replaced (see its docstring).

`AdversarialPool` is that objective for `train_model`: every `every` updates (counted from the
start of each epoch) it draws `pool_size` training images and a random wrong target for each,
runs the targeted box-constrained L-BFGS attack of Sec. 4.1 (cross-entropy loss, T = 1) on the
current model, and keeps the examples that reached their target, with their true labels. Each
minibatch of n clean examples is trained together with round(fraction * n) examples drawn from
the pool: the loss is the mean cross-entropy over both.

Randomness (which images, which targets, which pool examples) is drawn from torch's global RNG,
which `train_model` forks from the seed and checkpoints every epoch; the pool is regenerated at
the start of every epoch, so a resumed run (which starts at an epoch boundary) continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks import LBFGS
from advlab.data.dataset import Dataset
from advlab.errors import InputError
from advlab.models.inference import frozen_eval
from advlab.models.layers import as_multiclass_logits

INPUT = "input"  # LayerPool's name for the network's input


@dataclass
class AdversarialPool:
    """An `Objective`: cross-entropy on each minibatch mixed with a regenerated pool of targeted
    L-BFGS adversarial examples (see the module docstring).

    data: the training set (the pool's images come from it); batch_size: the training batch size
    (with len(data), it fixes where epochs start); attack: keyword arguments of `LBFGS`.
    """

    data: Dataset = field(repr=False)
    batch_size: int
    pool_size: int = 100
    every: int = 100
    fraction: float = 0.5
    attack: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0, "search_steps": 10, "max_iter": 50})
    seed: int = 0
    regenerations: int = field(default=0, init=False)  # how many pools this objective has made
    kept: list[int] = field(default_factory=list, init=False)  # examples kept in each pool (targets reached)
    _calls: int = field(default=0, init=False, repr=False)
    _pool: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.pool_size < 1 or self.every < 1:
            raise InputError(f"batch_size, pool_size and every must be >= 1, got {self.batch_size}, {self.pool_size}, {self.every}")
        if not 0 < self.fraction <= 10 or not math.isfinite(self.fraction):
            raise InputError(f"fraction must be in (0, 10], got {self.fraction}")
        if len(self.data) < 1:
            raise InputError("the pool needs a non-empty training set")

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "szegedy_pool", "pool_size": self.pool_size, "every": self.every, "fraction": self.fraction,
                "attack": dict(self.attack), "seed": self.seed}

    def regenerate(self, model: nn.Module) -> None:
        """A new pool: targeted L-BFGS on pool_size random training images of the current model."""
        index = torch.randperm(len(self.data))[: self.pool_size]
        x, y = self.data.images[index], self.data.labels[index]
        classes = int(self.data.labels.max()) + 1
        targets = (y + torch.randint(1, classes, y.shape)) % classes
        device = next(model.parameters()).device
        result = LBFGS(model, seed=self.seed + self.regenerations, **self.attack)(x.to(device), y.to(device), targets=targets.to(device))
        reached = result.success.cpu() & result.clean_correct.cpu()
        self._pool = (result.x_adv.detach().cpu()[reached], y[reached])
        self.regenerations += 1
        self.kept.append(int(reached.sum()))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if (self._calls % self.steps_per_epoch) % self.every == 0:
            self.regenerate(model)
        self._calls += 1
        assert self._pool is not None  # made above on the first call
        pool_x, pool_y = self._pool
        m = round(self.fraction * len(x))
        if len(pool_y) and m:
            pick = torch.randint(len(pool_y), (m,))
            x = torch.cat([x, pool_x[pick].to(x.device, x.dtype)])
            y = torch.cat([y, pool_y[pick].to(y.device)])
        return F.cross_entropy(as_multiclass_logits(model(x)), y)


def split_at(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """(lower, upper) of a sequential model cut after its child `layer` (INPUT: before the first),
    sharing the model's parameters: upper(lower(x)) = model(x).

    The activation between them must lie in [0, 1] (the attack's box): the input, or the output of
    a sigmoid layer (Szegedy et al.'s networks)."""
    if not isinstance(model, nn.Sequential):
        raise InputError(f"a per-layer pool needs a sequential model, got {type(model).__name__}")
    names = [name for name, _ in model.named_children()]
    if layer == INPUT:
        return nn.Identity(), model
    if layer not in names:
        raise InputError(f"the model has no layer {layer!r}; its layers: {', '.join([INPUT, *names])}")
    if not isinstance(getattr(model, layer), nn.Sigmoid):
        raise InputError(f"layer {layer!r} is a {type(getattr(model, layer)).__name__}, not a sigmoid: its outputs have no [0, 1] box")
    children = list(model.children())
    cut = names.index(layer) + 1
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])


def sigmoid_layers(model: nn.Module) -> tuple[str, ...]:
    """INPUT and every sigmoid child of a sequential model, bottom up: the layers a pool can hold."""
    return (INPUT, *(name for name, child in model.named_children() if isinstance(child, nn.Sigmoid)))


@dataclass
class LayerPool:
    """An `Objective`: each minibatch's cross-entropy mixed with adversarial examples from one pool
    per layer in `layers` (Szegedy et al. 2013, Sec. 4.2, as the paper did it).

    The pool of layer k holds `pool_size // len(layers)` slots, each (h', y): a training image's
    activation h_k = lower_k(x) perturbed by the targeted box-constrained L-BFGS of Sec. 4.1 (on
    the sub-network upper_k above layer k, towards a random wrong label, minimising c |r|^2 +
    loss) until upper_k(h') outputs the target; y is the image's true label. A slot whose attack
    did not reach its target (or whose image upper_k . lower_k misclassified) stays empty.

    Schedule, counted in updates over the whole training: at its first update every slot of every
    pool is generated on the current model; then every `refresh_every` updates a random
    `refresh_fraction` of each pool's slots (round, at least 1) is replaced by new examples, so the
    pools are refreshed continuously, across epochs, as the paper's.
    Loss of a minibatch of n images with m = round(fraction * n) slots drawn uniformly among the
    filled ones (all layers together):

        (sum_i CE(f(x_i), y_i) + sum_j CE(upper_k(j)(h'_j), y_j)) / (n + m),

    so a pool example of layer k trains the layers above k only (h' is a constant).

    Randomness (images, targets, slots replaced, slots drawn) comes from torch's global RNG, which
    `train_model` forks from its seed and checkpoints every epoch; the pools, the update count and
    the counters are checkpointed with it (`state`, `load_state`), so a resumed run continues
    exactly. `attacked` and `reached` count, per layer, the examples attacked and kept over the run.
    """

    REFRESH: ClassVar[str] = "continuous: a random subset replaced"  # the schedule below, in Sec. 4.2's words

    data: Dataset = field(repr=False)
    batch_size: int
    layers: tuple[str, ...] = (INPUT,)
    pool_size: int = 300
    refresh_every: int = 50
    refresh_fraction: float = 0.1
    fraction: float = 0.5
    attack: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0, "search_steps": 6, "max_iter": 30})
    seed: int = 0
    attacked: dict[str, int] = field(default_factory=dict, init=False)
    reached: dict[str, int] = field(default_factory=dict, init=False)
    _calls: int = field(default=0, init=False, repr=False)
    _pools: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise InputError(f"layers must be distinct and at least one, got {list(self.layers)}")
        if self.batch_size < 1 or self.refresh_every < 1 or self.pool_size < len(self.layers):
            raise InputError(f"batch_size and refresh_every must be >= 1 and pool_size >= the number of layers, "
                             f"got {self.batch_size}, {self.refresh_every}, {self.pool_size}")
        for name in ("refresh_fraction", "fraction"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0 < value <= (1 if name == "refresh_fraction" else 10):
                raise InputError(f"{name} must be in (0, {1 if name == 'refresh_fraction' else 10}], got {value}")
        if len(self.data) < 1:
            raise InputError("the pool needs a non-empty training set")
        self.attacked = dict.fromkeys(self.layers, 0)
        self.reached = dict.fromkeys(self.layers, 0)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    @property
    def slots(self) -> int:
        """Slots per layer."""
        return self.pool_size // len(self.layers)

    @property
    def refreshed(self) -> int:
        """Slots of each layer replaced at every refresh."""
        return max(1, round(self.refresh_fraction * self.slots))

    def to_dict(self) -> dict[str, Any]:
        return {"name": "szegedy_layer_pool", "layers": list(self.layers), "pool_size": self.pool_size,
                "refresh": self.REFRESH, "refresh_every": self.refresh_every, "refresh_fraction": self.refresh_fraction,
                "fraction": self.fraction, "attack": dict(self.attack), "seed": self.seed}

    def pool(self, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer's pool: (perturbed activations, true labels, filled mask), one row per slot."""
        return self._pools[layer]

    def generate(self, model: nn.Module, layer: str, slots: torch.Tensor) -> None:
        """New examples of `layer` for `slots` (indices into its pool), on the current model."""
        index = torch.randint(len(self.data), (len(slots),))
        x, y = self.data.images[index], self.data.labels[index]
        classes = int(self.data.labels.max()) + 1
        targets = (y + torch.randint(1, classes, y.shape)) % classes
        device = next(model.parameters()).device
        lower, upper = split_at(model, layer)
        with frozen_eval(model), torch.no_grad():
            h = lower(x.to(device))
        attack = LBFGS(upper, seed=self.seed, batch_size=len(slots), progress=False, **self.attack)
        result = attack(h, y.to(device), targets=targets.to(device))
        kept = (result.success & result.clean_correct).cpu()
        if layer not in self._pools:
            self._pools[layer] = (torch.zeros(self.slots, *h.shape[1:]), torch.zeros(self.slots, dtype=torch.long),
                                  torch.zeros(self.slots, dtype=torch.bool))
        features, labels, filled = self._pools[layer]
        features[slots] = result.x_adv.detach().cpu().to(features.dtype)
        labels[slots] = y
        filled[slots] = kept
        self.attacked[layer] += len(slots)
        self.reached[layer] += int(kept.sum())

    def refresh(self, model: nn.Module, *, whole: bool = False) -> None:
        """Replace a random `refreshed` slots of every layer's pool (all of them with `whole`)."""
        for layer in self.layers:
            slots = torch.arange(self.slots) if whole else torch.randperm(self.slots)[: self.refreshed]
            self.generate(model, layer, slots)

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds so that a resumed training continues exactly: the update count, and
        per layer its pool and counters."""
        out = {"updates": torch.tensor(self._calls)}
        for layer, (features, labels, filled) in self._pools.items():
            out |= {f"{layer}/features": features, f"{layer}/labels": labels, f"{layer}/filled": filled,
                    f"{layer}/counts": torch.tensor([self.attacked[layer], self.reached[layer]])}
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state()` of the same pool settings (a ValueError for anything else)."""
        calls = int(state["updates"])
        pools, counts = {}, {}
        for layer in self.layers if calls else ():
            features, labels, filled = (state[f"{layer}/{name}"] for name in ("features", "labels", "filled"))
            if len(features) != self.slots or labels.shape != (self.slots,) or filled.shape != (self.slots,) \
                    or labels.dtype != torch.long or filled.dtype != torch.bool or not features.is_floating_point():
                raise ValueError(f"the pool of layer {layer!r} does not have {self.slots} slots")
            pools[layer] = (features.clone(), labels.clone(), filled.clone())
            counts[layer] = [int(c) for c in state[f"{layer}/counts"]]
        if calls < 0 or set(k.split("/")[0] for k in state) - {"updates", *self.layers}:
            raise ValueError("the pool state holds other layers or a negative update count")
        self._calls, self._pools = calls, pools
        for layer, (attacked, reached) in counts.items():
            self.attacked[layer], self.reached[layer] = attacked, reached

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self._pools:
            self.refresh(model, whole=True)
        elif self._calls % self.refresh_every == 0:
            self.refresh(model)
        self._calls += 1
        losses = [F.cross_entropy(as_multiclass_logits(model(x)), y, reduction="sum")]
        filled = torch.cat([self._pools[layer][2] for layer in self.layers])
        m = round(self.fraction * len(x))
        if m and bool(filled.any()):
            pick = filled.nonzero().flatten()[torch.randint(int(filled.sum()), (m,))]
            for k, layer in enumerate(self.layers):
                mine = pick[(pick >= k * self.slots) & (pick < (k + 1) * self.slots)] - k * self.slots
                if len(mine):
                    features, labels, _ = self._pools[layer]
                    upper = split_at(model, layer)[1]
                    logits = as_multiclass_logits(upper(features[mine].to(x.device, x.dtype)))
                    losses.append(F.cross_entropy(logits, labels[mine].to(y.device), reduction="sum"))
        else:
            m = 0
        return torch.stack(losses).sum() / (len(x) + m)
