"""Attacks over a stream of batches, with per-example results in a store that grows on disk.

`ResultStore(directory, config)` keeps one `.npz` per batch of the stream (`part-000000.npz`
for batch 0, ...), each written atomically and describing itself (its batch number, first
example, size, a digest of its labels and its seconds, under the key `_meta`), and an
`index.json` with the run's settings. A killed run loses at most the batches in progress:
reopening the store with the same settings skips every recorded batch (and checks it is fed
the same data with the same batch size); other settings are refused. Memory holds one batch
of inputs and results at a time; the per-example columns the summary needs (a few numbers per
example) are read back one column at a time.

`stream_attack(attack, batches, out)` runs an attack over any iterable of (x, y) batches (a
DataLoader, `advlab.data.stream.IdxBatches`, ...), numbering examples in stream order: the
attack sees each batch's global indices, so every random draw is a function of (seed, index)
and the per-example results equal those of one call on the whole tensor, for any batch size.

Under a process group (`advlab.data.shard`) each rank writes the parts of its own batches
without waiting for the others; the ranks meet twice (each time first at a barrier that a failed
rank breaks), before the work (to agree on what is recorded) and after it, when rank 0 receives the parts it cannot see in its folder (ranks on
other machines without a shared file system) and alone reports.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advlab.attacks.base import Attack
from advlab.data.shard import Shard, current_shard
from advlab.data.stream import Batch, select, stream_length
from advlab.errors import InputError
from advlab.io import write_bytes_atomic, write_json_atomic, write_npz_atomic
from advlab.progress import progress_bar

FORMAT = "advlab-stream/2"
PART = re.compile(r"^part-(\d{6,})\.npz$")


def labels_digest(labels: np.ndarray) -> str:
    """A short hash of a batch's labels: a resumed run checks it is fed the same data."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


class ResultStore:
    """Per-example results on disk, batch by batch (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.config = json.loads(json.dumps(dict(config)))  # as it reads back from JSON
        self.index_path = self.directory / "index.json"
        if self.index_path.is_file():
            index = json.loads(self.index_path.read_text())
            if index.get("format") != FORMAT:
                raise InputError(f"{self.index_path}: not an advlab result store of this version ({FORMAT})")
            if index.get("config") != self.config:
                raise InputError(f"{self.directory} holds results of a run with other settings; use another output folder or delete it")
        else:  # every rank of a group may write it (the same bytes, atomically)
            write_json_atomic(self.index_path, {"format": FORMAT, "config": self.config})
        self.recorded: dict[int, dict[str, Any]] = self.scan()  # batch -> meta, in any rank's folder

    def path(self, batch: int) -> Path:
        return self.directory / f"part-{batch:06d}.npz"

    def scan(self) -> dict[int, dict[str, Any]]:
        """The parts in this folder: batch number -> its meta (file, start, n, labels, seconds)."""
        found = {}
        for entry in os.scandir(self.directory):
            if PART.match(entry.name):
                with np.load(entry.path, allow_pickle=False) as data:
                    meta = json.loads(str(data["_meta"]))
                found[int(meta["batch"])] = {"file": entry.name, **meta}
        return dict(sorted(found.items()))

    @property
    def parts(self) -> list[dict[str, Any]]:
        """The recorded parts, in stream order (after a run: those in this folder, all of them on rank 0)."""
        return list(self.recorded.values())

    @property
    def done(self) -> int:
        """Examples recorded so far."""
        return sum(p["n"] for p in self.recorded.values())

    def check(self, batch: int, start: int, n: int) -> bool:
        """True when batch `batch` (examples start..start+n-1) is recorded; raise when the
        record was cut with another batch size."""
        part = self.recorded.get(batch)
        if part is not None and (part["start"], part["n"]) != (start, n):
            raise InputError(f"{self.directory}: batch {batch} holds examples {start}..{start + n - 1}, the recorded one "
                             f"{part['start']}..{part['start'] + part['n'] - 1}; resume with the same batch size")
        return part is not None

    def check_labels(self, batch: int, labels: np.ndarray) -> None:
        if self.recorded[batch]["labels"] != labels_digest(labels):
            raise InputError(f"{self.directory}: the batch at example {self.recorded[batch]['start']} differs from the recorded one (other data)")

    def write(self, batch: int, start: int, columns: Mapping[str, np.ndarray], seconds: float) -> None:
        labels = columns["labels"]
        meta = {"batch": batch, "start": start, "n": len(labels), "labels": labels_digest(labels), "seconds": seconds}
        write_npz_atomic(self.path(batch), **columns, _meta=np.array(json.dumps(meta)))
        self.recorded[batch] = {"file": self.path(batch).name, **meta}

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

    def agree(self, shard: Shard) -> None:
        """Every rank learns what any rank's folder holds (one gather and one broadcast)."""
        held = shard.gather(self.recorded)
        union = {k: meta for rank_held in reversed(held) for k, meta in rank_held.items()}  # rank 0's own record wins
        self.recorded = shard.broadcast(dict(sorted(union.items())))

    def collect(self, shard: Shard) -> None:
        """Rank 0 receives every part it cannot see in its folder from a rank that holds it
        (nothing moves when the ranks share the folder)."""
        held = shard.gather(sorted(self.scan()))
        wanted: dict[int, int] = {}
        if shard.is_root:
            have = set(held[0])
            for rank, batches in enumerate(held):
                wanted.update({k: rank for k in batches if k not in have and k not in wanted})
        for batch, holder in shard.broadcast(sorted(wanted.items())):
            sent = shard.gather(self.path(batch).read_bytes() if shard.rank == holder else None)
            if shard.is_root:
                write_bytes_atomic(self.path(batch), sent[holder])
        self.recorded = self.scan()


Work = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[dict[str, np.ndarray], float]]
"""work(x, y, global indices) -> (per-example columns as numpy arrays, seconds)."""


def run_stream(batches: Iterable[Batch], store: ResultStore, work: Work, *, desc: str, progress: bool, shard: Shard | None = None) -> None:
    """Apply `work` to every batch the store does not hold yet and record the results. Under a
    process group, batch k runs on rank k mod world and only that rank converts it; no rank
    waits for another until all are done (see the module docstring). A progress bar on rank 0
    counts the examples it has passed, those already recorded and other ranks' included."""
    shard = shard or current_shard()
    shard.meet()  # every rank has opened the data, the model and the store (or one failed: PeerFailed)
    store.agree(shard)
    bar = progress_bar(stream_length(batches), desc, enabled=progress and shard.is_root)
    start, count = 0, 0
    with bar:
        for count, (n, batch) in enumerate(select(batches, shard.owns), start=1):
            shard.check_peers()  # another rank failed: stop now
            recorded = store.check(count - 1, start, n)
            if batch is not None:
                x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
                if recorded:
                    store.check_labels(count - 1, y.cpu().numpy())
                else:
                    store.write(count - 1, start, *work(x, y, torch.arange(start, start + n)))
            start += n
            bar.update(n)
    extra = [k for k in store.recorded if k >= count]
    if extra:
        raise InputError(f"{store.directory} holds results for batch {extra[0]}, past the end of this stream ({count} batches): "
                         "other data; use another output folder")
    shard.meet()
    store.collect(shard)


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
