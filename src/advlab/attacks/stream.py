"""Attacks over a stream of batches, with per-example results in a store that grows on disk.

`ResultStore(directory, config)` keeps one `.npz` per batch (`part-000000.npz`, ...) and an
`index.json` naming the batches done and the run's settings; both are written atomically (a
part first, then the index), so a killed run loses at most the batch in progress. Reopening
the store with the same settings resumes after its last recorded batch; other settings are
refused. Memory holds one batch of inputs and results at a time; the per-example columns the
summary needs (a few numbers per example) are read back one column at a time.

`stream_attack(attack, batches, out)` runs an attack over any iterable of (x, y) batches (a
DataLoader, `advlab.data.stream.IdxBatches`, ...), numbering examples in stream order: the
attack sees each batch's global indices, so every random draw is a function of (seed, index)
and the per-example results equal those of one call on the whole tensor, for any batch size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advlab.attacks.base import Attack
from advlab.data.shard import Shard, current_shard
from advlab.data.stream import Batch, stream_length
from advlab.errors import InputError
from advlab.io import progress_bar, write_json_atomic, write_npz_atomic

FORMAT = "advlab-stream/1"


def labels_digest(labels: np.ndarray) -> str:
    """A short hash of a batch's labels: a resumed run checks it is fed the same data."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


class ResultStore:
    """Per-example results on disk, batch by batch (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.config = json.loads(json.dumps(dict(config)))  # as it reads back from JSON
        self.index_path = self.directory / "index.json"
        self.parts: list[dict[str, Any]] = []
        if self.index_path.is_file():
            index = json.loads(self.index_path.read_text())
            if index.get("format") != FORMAT:
                raise InputError(f"{self.index_path}: not an advlab result store")
            if index.get("config") != self.config:
                raise InputError(f"{self.directory} holds results of a run with other settings; use another output folder or delete it")
            self.parts = index["parts"]

    @property
    def done(self) -> int:
        """Examples recorded so far (the stream position a resumed run starts at)."""
        return sum(p["n"] for p in self.parts)

    def check_part(self, start: int, labels: np.ndarray) -> bool:
        """True when the batch at `start` is already recorded (and matches); raise if it straddles."""
        for part in self.parts:
            if part["start"] == start:
                if part["n"] != len(labels):
                    raise InputError(f"{self.directory}: the batch at example {start} holds {len(labels)} examples, the recorded one "
                                     f"{part['n']}; resume with the same batch size")
                if part["labels"] != labels_digest(labels):
                    raise InputError(f"{self.directory}: the batch at example {start} differs from the recorded one (other data)")
                return True
        if start < self.done:
            raise InputError(f"{self.directory}: example {start} falls inside a recorded batch; resume with the same batch size")
        return False

    def append(self, start: int, columns: Mapping[str, np.ndarray], seconds: float) -> None:
        if start != self.done:
            raise InputError(f"{self.directory}: batch at example {start}, expected {self.done}")
        name = f"part-{len(self.parts):06d}.npz"
        n = len(columns["labels"])
        write_npz_atomic(self.directory / name, **columns)
        self.parts.append({"file": name, "start": start, "n": n, "labels": labels_digest(columns["labels"]), "seconds": seconds})
        write_json_atomic(self.index_path, {"format": FORMAT, "config": self.config, "parts": self.parts})

    def column(self, name: str) -> np.ndarray:
        """One per-example column over all recorded batches, in stream order."""
        arrays = []
        for part in self.parts:
            with np.load(self.directory / part["file"], allow_pickle=False) as data:
                arrays.append(data[name])
        return np.concatenate(arrays) if arrays else np.zeros(0)

    @property
    def seconds(self) -> float:
        return float(sum(p["seconds"] for p in self.parts))


Work = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[dict[str, np.ndarray], float]]
"""work(x, y, global indices) -> (per-example columns as numpy arrays, seconds)."""


def run_stream(batches: Iterable[Batch], store: ResultStore, work: Work, *, desc: str, progress: bool, shard: Shard | None = None) -> None:
    """Apply `work` to every batch the store does not hold yet and record the results in stream
    order. Under a process group, batch k runs on rank k mod world and rank 0 records the
    results after every round (see `advlab.data.shard`). A progress bar on rank 0 counts all
    examples, those already recorded included."""
    shard = shard or current_shard()
    store.parts = shard.broadcast(store.parts)  # rank 0's record of what is done
    bar = progress_bar(stream_length(batches), desc, enabled=progress and shard.is_root)
    start, mine, batch = 0, None, -1
    with bar:
        for batch, (x, y) in enumerate(batches):
            y = torch.as_tensor(y)
            n = int(y.shape[0])
            if shard.owns(batch) and not store.check_part(start, y.cpu().numpy()):
                mine = (start, *work(torch.as_tensor(x), y, torch.arange(start, start + n)))
            start += n
            if shard.ends_round(batch):
                _record(store, shard, mine)
                mine = None
            bar.update(n)
        if not shard.ends_round(batch):
            _record(store, shard, mine)


def _record(store: ResultStore, shard: Shard, mine: tuple[int, dict[str, np.ndarray], float] | None) -> None:
    """Gather this round's results on rank 0 and append them there in stream order."""
    for item in sorted((i for i in shard.gather(mine) if i is not None), key=lambda i: i[0]):
        if shard.is_root:
            store.append(*item)


@dataclass
class StreamedAttack:
    """The summary of a streamed attack; per-example columns stay in `store`."""

    attack: str
    params: dict[str, Any]
    store: ResultStore

    def summary(self) -> dict[str, Any]:
        """The same aggregates as `AttackResult.summary()`, read from the store."""
        col = self.store.column
        ok, labels = col("success").astype(bool), col("labels")
        adv_correct, clean_correct = col("adv_pred") == labels, col("clean_pred") == labels

        def mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
            values = values.astype(np.float64) if mask is None else values[mask].astype(np.float64)
            return float(values.mean()) if values.size else float("nan")

        l2 = col("l2")
        seconds = self.store.seconds
        return {
            "attack": self.attack, "n": int(labels.size), "targeted": self.store.config.get("targets") is not None,
            "clean_accuracy": mean(clean_correct), "adversarial_accuracy": mean(adv_correct), "adversarial_error": mean(~adv_correct),
            "success_rate": mean(ok), "mean_linf": mean(col("linf"), ok), "mean_l2": mean(l2, ok),
            "mean_distortion": mean(col("distortion"), ok), "median_l2": float(np.median(l2[ok].astype(np.float64))) if ok.any() else float("nan"),
            "mean_clean_confidence": mean(col("clean_confidence")), "mean_adv_confidence": mean(col("adv_confidence")),
            "mean_confidence_on_errors": mean(col("adv_confidence"), ~adv_correct),
            "seconds": seconds, "images_per_second": labels.size / seconds if seconds > 0 else math.inf,
        }


def stream_attack(
    attack: Attack,
    batches: Iterable[Batch],
    out: str | os.PathLike[str],
    *,
    targets: str | None = None,
    keep_adversarial: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> StreamedAttack:
    """Run `attack` over `batches`, writing per-example results to the store in `out`
    (resuming a killed run there). targets: None, "random" or "least-likely" (drawn per example
    from its global index). keep_adversarial: also store x_adv (float32)."""
    if targets not in (None, "random", "least-likely"):
        raise InputError(f"a streamed attack takes targets None, 'random' or 'least-likely', got {targets!r}")
    config = {"attack": attack.name, "params": attack.params(), "targets": targets, "keep_adversarial": keep_adversarial}
    store = ResultStore(out, config)

    def work(x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor) -> tuple[dict[str, np.ndarray], float]:
        result = attack(x, y, targets=targets, indices=indices)
        columns = {k: v for k, v in result.arrays().items() if v.ndim == 1 or (k == "x_adv" and keep_adversarial)}
        columns.update(
            index=indices.numpy(), clean_pred=result.clean_pred.cpu().numpy(), adv_pred=result.adv_pred.cpu().numpy(),
            clean_confidence=result.clean_confidence.cpu().numpy(), adv_confidence=result.adv_confidence.cpu().numpy(),
        )
        return columns, result.seconds

    run_stream(batches, store, work, desc=attack.name, progress=progress, shard=shard)
    return StreamedAttack(attack.name, attack.params(), store)
