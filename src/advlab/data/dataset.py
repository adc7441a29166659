"""An in-memory labelled image set: float32 images in [0, 1] and int64 labels."""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from advlab.errors import InputError


def check_classes(classes: Sequence[int]) -> list[int]:
    """At least two distinct non-negative integer class labels."""
    try:
        if any(isinstance(c, bool) for c in classes):
            raise TypeError
        classes = [operator.index(c) for c in classes]
    except TypeError:
        raise InputError(f"classes must be integers, got {list(classes)}") from None
    if any(c < 0 for c in classes):
        raise InputError(f"classes must be non-negative, got {classes}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise InputError(f"need at least two distinct classes, got {classes}")
    return classes


def relabelled_map(class_to_idx: Mapping[str, int] | None, classes: Sequence[int], relabel: bool) -> dict[str, int] | None:
    """The class map after keeping only `classes` (label classes[i] -> i when relabelled)."""
    if class_to_idx is None:
        return None
    return {name: classes.index(label) if relabel else label for name, label in class_to_idx.items() if label in classes}


@dataclass(frozen=True)
class Dataset:
    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64
    name: str
    class_to_idx: Mapping[str, int] | None = None  # class name -> label (image folders; None: labels are the classes)

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise InputError(
                f"{self.name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.images[0].numel())

    def fingerprint(self) -> str:
        """sha256 of the images and labels: names the data whatever folder it was read from."""
        digest = hashlib.sha256(self.images.detach().cpu().contiguous().numpy().tobytes())
        digest.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        return f"{len(self)} examples, sha256 {digest.hexdigest()[:16]}"

    def take(self, n: int | None) -> Dataset:
        """The first n examples (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        return Dataset(self.images[:n], self.labels[:n], f"{self.name}[:{n}]", self.class_to_idx)

    def select_classes(self, classes: Sequence[int], *, relabel: bool = True) -> Dataset:
        """Keep only `classes`; with relabel, class classes[i] becomes label i (3 vs 7 -> 0 vs 1)."""
        classes = check_classes(classes)
        wanted = torch.tensor(classes, dtype=self.labels.dtype)
        keep = torch.isin(self.labels, wanted)
        labels = self.labels[keep]
        if relabel:
            labels = (labels.unsqueeze(1) == wanted.unsqueeze(0)).int().argmax(dim=1).long()
        tag = "v".join(str(c) for c in classes)
        return Dataset(self.images[keep], labels, f"{self.name}:{tag}", relabelled_map(self.class_to_idx, classes, relabel))


@dataclass(frozen=True)
class Splits:
    train: Dataset
    test: Dataset
    source: str  # a human-readable description of where the data came from

    @property
    def class_to_idx(self) -> Mapping[str, int] | None:
        """Class name -> label (image folders, like torchvision's ImageFolder.class_to_idx); None
        when the labels are the classes themselves (MNIST, .npz)."""
        return self.train.class_to_idx

    def select_classes(self, classes: Sequence[int]) -> Splits:
        """Both splits restricted to `classes`, each of which must occur in each split."""
        classes = check_classes(classes)
        present = {name: set(split.labels.unique().tolist()) for name, split in (("train", self.train), ("test", self.test))}
        everywhere = present["train"] | present["test"]
        for c in classes:
            if c not in everywhere:
                raise InputError(f"class {c} does not occur in the data (its classes: {sorted(everywhere)})")
            absent = [name for name, labels in present.items() if c not in labels]
            if absent:
                raise InputError(f"class {c} does not occur in the {absent[0]} split (its classes: {sorted(present[absent[0]])})")
        return Splits(
            self.train.select_classes(classes), self.test.select_classes(classes), self.source
        )
