"""The shared attack machinery; each attack module holds only its paper's math.

`Attack.__call__(x, y, targets=..., indices=...)` validates the inputs, resolves the targets,
runs the attack batch by batch on the model's device with the model in eval mode and its
parameters frozen (both restored afterwards), constrains every result (to the box; to the
eps-ball as well for a `FixedBudgetAttack`), re-runs the model on every returned example to
set `success` (refusing NaN/inf logits), and measures the perturbation norms.

Batches and randomness: each batch's `_perturb` gets the global indices of its examples (by
default 0..N-1; pass `indices` when x is a shard or a stream of a larger set). Every random
choice is a function of (seed, global index, draw number) only (`geometry.random_start`,
`randomness.counter_uniform`), so results do not depend on the batch size, the device or how
the set is split.
"""

from __future__ import annotations

import abc
import inspect
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from advlab.attacks.geometry import Geometry, Region, geometry, random_start
from advlab.attacks.randomness import counter_uniform
from advlab.attacks.losses import cross_entropy
from advlab.attacks.result import AttackResult
from advlab.errors import InputError
from advlab.progress import progress_bar
from advlab.models.inference import frozen_eval, model_device
from advlab.models.layers import as_multiclass_logits
from advlab.validation import Bounds, as_tensor, check_bounds, check_count, check_eps, check_images, check_labels, check_norm

TargetSpec = torch.Tensor | np.ndarray | Sequence[int] | Literal["random", "least-likely"] | None
TARGET_DRAW = -1  # the counter-based draw number of `targets="random"` (random starts use 0, 1, ...)


class ProbabilityOutputWarning(UserWarning):
    """The model seems to output probabilities, whose gradients saturate; attacks want logits."""


@dataclass
class Perturbed:
    """What an attack's math returns for one batch."""

    x_adv: torch.Tensor
    clean_logits: torch.Tensor | None = None  # pass them when already computed, to save a pass
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def _keyword_params(init: Any) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(init).parameters.items() if p.kind is p.KEYWORD_ONLY}


def declared_params(cls: type[Attack]) -> dict[str, inspect.Parameter]:
    """The parameters a user may set on attack class `cls`, with their type hints and defaults:
    the keyword-only parameters of `Attack.__init__` and of `cls.__init__` (a subclass declares
    every other parameter it takes). The one source of the CLI's `-p` names, types and defaults."""
    return {**_keyword_params(Attack.__init__), **_keyword_params(cls.__init__)}


class Attack(abc.ABC):
    """Base of every attack: `attack(x, y, targets=None, indices=None) -> AttackResult`.

    x: (N, ...) floating tensor (or array) with values in `bounds`; y: (N,) true labels.
    targets: None (untargeted), a (N,) tensor of goal labels (each must differ from y),
    "random" (a uniformly drawn other class, from (seed, index)), or "least-likely" (the clean
    argmin). indices: the examples' global indices (default 0..N-1), from which every random
    choice is drawn; pass them when attacking a shard or a stream of a larger set.
    """

    name: ClassVar[str]
    fixed: ClassVar[Mapping[str, Any]] = {}  # settings the class pins rather than takes (reported with the parameters)

    def __init__(
        self, model: nn.Module, *, bounds: Bounds = (0.0, 1.0), batch_size: int = 1000, seed: int = 0, progress: bool = True
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.bounds = check_bounds(bounds)
        self.batch_size = check_count("batch_size", batch_size)
        self.seed = check_count("seed", seed, minimum=0)
        self.progress = bool(progress)  # a bar per call (images, rate, ETA), off when stderr is not a terminal
        self._bar: Any = None
        self._batch = (0, 0)  # (examples in the batch running, how many of them the bar shows done)

    # ---- what subclasses provide -------------------------------------------------------
    @abc.abstractmethod
    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        """Return adversarial candidates for one batch (the base constrains them, see `constrain`).

        goal: the labels to move away from (untargeted) or towards (targeted). indices: (B,)
        int64 CPU tensor, the global indices of the batch's examples (for random draws).
        """

    def params(self) -> dict[str, Any]:
        """The attack's parameters as set (defaults resolved), for reports: every keyword parameter
        of the constructors along the class's MRO (a subclass's pinned ones included), read from
        the attribute of the same name, then `fixed`; `progress` aside (it changes no result)."""
        names = dict.fromkeys(name for klass in reversed(type(self).__mro__) if "__init__" in vars(klass)
                              for name in _keyword_params(vars(klass)["__init__"]) if name != "progress")
        values = {name: getattr(self, name) for name in names}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in {**values, **self.fixed}.items()}

    def __repr__(self) -> str:
        """`PGD(bounds=[0.0, 1.0], ..., steps=40)`: the class and its parameters, as Foolbox prints an attack."""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def constrain(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """The feasible point the base returns for a candidate: here, clipped to the box."""
        return self.clip(x_adv)

    # ---- helpers for subclasses ---------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return as_multiclass_logits(self.model(x))

    def loss_gradient(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the attack objective (CE to goal, negated when targeted) and the logits.

        The objective is summed over the batch, so each row is that example's own gradient.
        CE is `losses.cross_entropy`, softplus(logsumexp_{j != t} z_j - z_t): the value of
        F.cross_entropy, with a goal-logit gradient that does not vanish in float32 for
        confident examples (FGSM used to leave them unmoved).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(x)
            require_gradient(logits)
            loss = cross_entropy(logits, goal, False).sum()
            (grad,) = torch.autograd.grad(-loss if targeted else loss, x)
        return grad, logits.detach()

    def ascent_gradient(
        self, x: torch.Tensor, objective: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of sum(objective(logits)) at x (one row per example) and the logits."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(x)
            require_gradient(logits)
            (grad,) = torch.autograd.grad(objective(logits).sum(), x)
        return grad, logits.detach()

    @staticmethod
    def is_adversarial(logits: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == goal if targeted else pred != goal

    def rounds(self, count: int, what: str, *, start: int = 0) -> Iterator[int]:
        """range(start, count), showing "what k/count" beside the progress bar of the call (for the
        restarts and search rounds of the long attacks) and moving the bar by the batch's share
        of each finished round, so that a call of one long batch shows progress and an ETA."""
        for k in range(start, count):
            if self._bar is not None:
                self._bar.set_postfix_str(f"{what} {k + 1}/{count}")
            yield k
            self._credit((k + 1 - start) / (count - start))

    def _credit(self, fraction: float) -> None:
        """Advance the bar to `fraction` of the current batch's examples (never backwards)."""
        if self._bar is not None:
            size, shown = self._batch
            due = int(size * min(fraction, 1.0))
            if due > shown:
                self._bar.update(due - shown)
                self._batch = (size, due)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.bounds[0], self.bounds[1])

    # ---- the shared driver ----------------------------------------------------------------
    def __call__(self, x: Any, y: Any, *, targets: TargetSpec = None, indices: Any = None) -> AttackResult:
        x = self._validate_x(x)
        n = x.shape[0]
        y = check_labels("y", y, n)
        indices = _check_indices(indices, n)
        device = self._device(x)
        out_device = x.device
        with frozen_eval(self.model):
            num_classes = self._probe(x[:1].to(device))
            if bool(((y < 0) | (y >= num_classes)).any()):
                raise InputError(f"labels must lie in 0..{num_classes - 1}")
            resolved = self._resolve_targets(targets, x, y, num_classes, device, indices)
            goal = y if resolved is None else resolved.to(y.device)
            targeted = resolved is not None
            start = time.perf_counter()
            x_adv = torch.empty_like(x)  # outputs written batch by batch: no list of parts, no cat
            clean_logits = adv_logits = None
            extra: dict[str, torch.Tensor] = {}
            self._bar = progress_bar(n, self.name, enabled=self.progress)
            for i in range(0, n, self.batch_size):
                rows = slice(i, i + self.batch_size)
                self._batch = (min(self.batch_size, n - i), 0)
                batch = self._run_batch(x[rows].to(device), goal[rows].to(device), targeted, indices[rows])
                if clean_logits is None:
                    clean_logits, adv_logits = (t.new_empty((n, t.shape[1]), device=out_device) for t in batch[1:3])
                    extra = {k: v.new_empty((n, *v.shape[1:]), device=out_device) for k, v in batch[3].items()}
                x_adv[rows], clean_logits[rows], adv_logits[rows] = batch[0], batch[1], batch[2]
                for key, value in batch[3].items():
                    extra[key][rows] = value
                del batch
                self._credit(1.0)
            self._bar.close()
            self._bar = None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        self._warn_if_probabilities(adv_logits)
        return AttackResult(
            attack=self.name,
            params=self.params(),
            x=x,
            x_adv=x_adv,
            labels=y.to(out_device),
            targets=None if resolved is None else resolved.to(out_device),
            success=self.is_adversarial(adv_logits, goal.to(out_device), targeted),
            clean_logits=clean_logits,
            adv_logits=adv_logits,
            seconds=seconds,
            extra=extra,
        )

    def craft(
        self, x: torch.Tensor, goal: torch.Tensor, *, targeted: bool = False, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The attack's constrained result for one batch, with no validation, no success check
        and the model left in its current mode: the inner loop of adversarial training."""
        indices = torch.arange(x.shape[0]) if indices is None else indices
        return self.constrain(x, self._perturb(x, goal, targeted, indices).x_adv.detach())

    def _run_batch(
        self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        found = self._perturb(x, goal, targeted, indices)
        x_adv = self.constrain(x, found.x_adv.detach())
        with torch.no_grad():
            adv_logits = self.logits(x_adv)
            clean_logits = found.clean_logits if found.clean_logits is not None else self.logits(x)
        if not bool(adv_logits.isfinite().all() & clean_logits.isfinite().all()):
            raise InputError(
                f"the model ({type(self.model).__name__}) returned NaN or inf logits; no attack result is "
                "meaningful on it (check its weights and inputs)"
            )
        return x_adv, clean_logits.detach(), adv_logits, found.extra

    def _probe(self, x: torch.Tensor) -> int:
        """The number of classes, from one example; a model that returns no tensor is refused."""
        with torch.no_grad():
            out = self.model(x)
        if not isinstance(out, torch.Tensor):
            raise InputError(
                f"the model ({type(self.model).__name__}) returned a {type(out).__name__}, not a tensor of "
                "logits; wrap it so that forward returns the logits alone"
            )
        return as_multiclass_logits(out).shape[1]

    def _validate_x(self, x: Any) -> torch.Tensor:
        x = check_images("x", x, self.bounds)
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if param is not None and param.dtype != x.dtype:
            raise InputError(
                f"x is {x.dtype} but the model's parameters are {param.dtype}; convert one to the other"
            )
        return x

    def _device(self, x: torch.Tensor) -> torch.device:
        return model_device(self.model, x.device)

    def _resolve_targets(
        self, targets: TargetSpec, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device,
        indices: torch.Tensor,
    ) -> torch.Tensor | None:
        if targets is None:
            return None
        if isinstance(targets, str):
            if targets == "random":  # a uniform other class, from (seed, index) only
                u = counter_uniform(self.seed, indices, TARGET_DRAW, 1)[:, 0]
                shift = 1 + (u * (num_classes - 1)).long().clamp_max(num_classes - 2)
                return (y.cpu() + shift) % num_classes
            if targets == "least-likely":
                with torch.no_grad():
                    logits = torch.cat(
                        [self.logits(x[i : i + self.batch_size].to(device)).cpu() for i in range(0, len(x), self.batch_size)]
                    )
                logits.scatter_(1, y.cpu().unsqueeze(1), float("inf"))
                return logits.argmin(1)
            raise InputError(f"targets must be a tensor of labels, 'random' or 'least-likely', got {targets!r}")
        resolved = check_labels("targets", targets, len(y)).to(y.device)
        if bool(((resolved < 0) | (resolved >= num_classes)).any()):
            raise InputError(f"targets must lie in 0..{num_classes - 1}")
        same = (resolved == y).nonzero().flatten()
        if same.numel():
            raise InputError(
                f"targets equal the true labels at {same.numel()} example(s) (first: index {int(same[0])}); "
                "a targeted attack needs a class other than the true one"
            )
        return resolved

    @staticmethod
    def _warn_if_probabilities(logits: torch.Tensor) -> None:
        if logits.shape[1] > 1 and bool((logits >= 0).all()) and bool(
            torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4)
        ):
            warnings.warn(
                "the model's outputs are non-negative and sum to 1: it seems to output probabilities. "
                "Attacks need logits (gradients through softmax saturate); remove the final softmax.",
                ProbabilityOutputWarning,
                stacklevel=3,
            )


class FixedBudgetAttack(Attack):
    """An attack within a budget: ||x_adv - x|| <= eps in `norm`. It owns eps, norm and the
    norm's `geometry`; the base projects every result onto the eps-ball ∩ box.

    Subclasses name the norms they support in `norms` and call
    `super().__init__(model, eps=..., norm=..., ...)`. An attack whose every candidate is in
    the ball by construction (a unit step of length eps, or iterates of `Region.step`) sets
    `in_ball = True` and is only clipped to the box: the projection costs several passes over
    the batch (FGSM took 2x the floor's time with it). The contract test checks the ball for
    every fixed-budget attack either way.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    in_ball: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, eps: float, norm: str, bounds: Bounds = (0.0, 1.0), **kwargs: Any) -> None:
        super().__init__(model, bounds=bounds, **kwargs)
        self.norm = check_norm(norm, self.norms)
        self.geometry: Geometry = geometry(norm)
        self.eps = check_eps(eps, self.bounds, norm=norm)

    def constrain(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        if self.in_ball:
            return self.clip(x_adv)
        return self.geometry.project(x, x_adv, self.eps, self.bounds)

    def region(self, x: torch.Tensor) -> Region:
        """The batch's feasible set: eps-ball ∩ box."""
        return self.geometry.region(x, self.eps, self.bounds)

    def draw_start(self, region: Region, indices: torch.Tensor, draw: int) -> torch.Tensor:
        """A point drawn uniformly from each example's eps-ball (from seed, index, draw), in the region."""
        return region.project(random_start(self.geometry, region.x, region.eps, self.seed, indices, draw))


def require_gradient(logits: torch.Tensor) -> None:
    """Refuse a model whose output does not depend differentiably on its input."""
    if not logits.requires_grad:
        raise InputError("the model's output has no gradient with respect to its input")


def _check_indices(indices: Any, n: int) -> torch.Tensor:
    """(n,) int64 CPU global example indices, default 0..n-1."""
    if indices is None:
        return torch.arange(n)
    indices = as_tensor("indices", indices)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.shape != (n,):
        raise InputError(f"indices must be ({n},) integers, one per example, got {indices.dtype} {tuple(indices.shape)}")
    indices = indices.to(device="cpu", dtype=torch.int64)
    if bool((indices < 0).any()):
        raise InputError("indices must be >= 0")
    return indices
