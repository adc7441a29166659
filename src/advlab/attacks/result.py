"""AttackResult: what every attack returns, per example and in summary."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from advlab.errors import DataError, InputError
from advlab.io import write_npz_atomic

NORM_CHUNK = 4096  # rows per chunk when measuring perturbation norms
# Keys of a saved result that are not attack-specific `extra` arrays (norms are recomputed on load).
_STANDARD = frozenset({"x_adv", "labels", "targets", "success", "clean_logits", "adv_logits", "linf", "l2", "distortion", "meta"})


@dataclass
class AttackResult:
    """Adversarial examples with per-example success (from re-running the model) and norms.

    `success[i]` is True when the model's prediction on `x_adv[i]` is not `labels[i]`
    (untargeted) or equals `targets[i]` (targeted). An example the model already gets wrong
    counts as a success of an untargeted attack; `clean_correct` tells those apart.
    Norms are of r = x_adv - x: `linf`, `l2`, and Szegedy's `distortion` = sqrt(sum r^2 / n),
    computed on first access (an evaluation that needs only `success` never pays for them).
    """

    attack: str
    params: dict[str, Any]
    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    success: torch.Tensor
    clean_logits: torch.Tensor
    adv_logits: torch.Tensor
    seconds: float
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # attack-specific per-example data

    @cached_property
    def _norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L-inf, L2) norms of r = x_adv - x, computed in chunks: no full-size copy of r is kept."""
        linf, l2 = [], []
        for i in range(0, len(self), NORM_CHUNK):
            r = (self.x_adv[i : i + NORM_CHUNK] - self.x[i : i + NORM_CHUNK]).flatten(1)
            linf.append(torch.linalg.vector_norm(r, ord=math.inf, dim=1))
            l2.append(torch.linalg.vector_norm(r, ord=2, dim=1))
        return torch.cat(linf), torch.cat(l2)

    @property
    def linf(self) -> torch.Tensor:
        return self._norms[0]

    @property
    def l2(self) -> torch.Tensor:
        return self._norms[1]

    @cached_property
    def l1(self) -> torch.Tensor:
        """||x_adv - x||_1 per example."""
        return torch.cat([(self.x_adv[i : i + NORM_CHUNK] - self.x[i : i + NORM_CHUNK]).flatten(1).abs().sum(1)
                          for i in range(0, len(self), NORM_CHUNK)])

    @cached_property
    def distortion(self) -> torch.Tensor:
        """Szegedy et al. 2013, Sec. 4.2: sqrt(sum_i r_i^2 / n), n the number of inputs."""
        return self.l2 / math.sqrt(self.x[0].numel())

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    @property
    def clean_pred(self) -> torch.Tensor:
        return self.clean_logits.argmax(1)

    @property
    def adv_pred(self) -> torch.Tensor:
        return self.adv_logits.argmax(1)

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.clean_pred == self.labels

    @property
    def adv_correct(self) -> torch.Tensor:
        return self.adv_pred == self.labels

    @property
    def clean_confidence(self) -> torch.Tensor:
        """Softmax probability of the predicted class on the clean input."""
        return self.clean_logits.softmax(1).amax(1)

    @property
    def adv_confidence(self) -> torch.Tensor:
        """Softmax probability of the predicted class on the adversarial input."""
        return self.adv_logits.softmax(1).amax(1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def summary(self) -> dict[str, Any]:
        """Aggregates over the batch. Norm means are over successful examples (nan if none)."""
        ok = self.success

        def mean(t: torch.Tensor, mask: torch.Tensor | None = None) -> float:
            t = t.double() if mask is None else t[mask].double()
            return float(t.mean()) if t.numel() else float("nan")

        wrong = ~self.adv_correct
        return {
            "attack": self.attack,
            "n": len(self),
            "targeted": self.targeted,
            "clean_accuracy": mean(self.clean_correct),
            "adversarial_accuracy": mean(self.adv_correct),
            "adversarial_error": mean(wrong),
            "success_rate": mean(ok),
            "mean_linf": mean(self.linf, ok),
            "mean_l2": mean(self.l2, ok),
            "mean_distortion": mean(self.distortion, ok),
            "median_l2": float(self.l2[ok].double().median()) if bool(ok.any()) else float("nan"),
            "mean_clean_confidence": mean(self.clean_confidence),
            "mean_adv_confidence": mean(self.adv_confidence),
            "mean_confidence_on_errors": mean(self.adv_confidence, wrong),
            "seconds": self.seconds,
            "images_per_second": len(self) / self.seconds if self.seconds > 0 else float("inf"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "summary": self.summary()}

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-example arrays as numpy (x_adv in its own dtype)."""
        out = {
            "x_adv": self.x_adv.detach().cpu().numpy(),
            "labels": self.labels.cpu().numpy(),
            "success": self.success.cpu().numpy(),
            "clean_logits": self.clean_logits.cpu().numpy(),
            "adv_logits": self.adv_logits.cpu().numpy(),
            "linf": self.linf.cpu().numpy(),
            "l2": self.l2.cpu().numpy(),
            "distortion": self.distortion.cpu().numpy(),
        }
        if self.targets is not None:
            out["targets"] = self.targets.cpu().numpy()
        out.update({k: v.cpu().numpy() for k, v in self.extra.items()})
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the per-example arrays and, as JSON under `meta`, the attack's name, params and
        time, as a compressed .npz, atomically. `AttackResult.load(path, x)` reads it back."""
        meta = {"attack": self.attack, "params": self.params, "seconds": self.seconds}
        write_npz_atomic(path, **self.arrays(), meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], x: torch.Tensor) -> AttackResult:
        """The result `save` wrote, given the clean inputs `x` it was computed on (not stored).

        Per-example arrays come back bit for bit; no pickled object is ever loaded.
        """
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {k: torch.from_numpy(saved[k]) for k in saved.files if k != "meta"}
                meta = json.loads(str(saved["meta"])) if "meta" in saved.files else None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read attack result {os.fspath(path)}: {exc}") from None
        missing = {"x_adv", "labels", "success", "clean_logits", "adv_logits"} - set(arrays)
        if meta is None or missing:
            raise DataError(f"{os.fspath(path)} is not a saved AttackResult (missing {', '.join(sorted(missing)) or 'meta'})")
        if tuple(x.shape) != tuple(arrays["x_adv"].shape):
            raise InputError(f"x has shape {tuple(x.shape)} but the saved x_adv has {tuple(arrays['x_adv'].shape)}")
        return cls(
            attack=meta["attack"],
            params=meta["params"],
            x=x,
            x_adv=arrays["x_adv"].to(x.device),
            labels=arrays["labels"].to(x.device),
            targets=arrays["targets"].to(x.device) if "targets" in arrays else None,
            success=arrays["success"].to(x.device),
            clean_logits=arrays["clean_logits"].to(x.device),
            adv_logits=arrays["adv_logits"].to(x.device),
            seconds=float(meta["seconds"]),
            extra={k: v.to(x.device) for k, v in arrays.items() if k not in _STANDARD},
        )
