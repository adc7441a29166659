"""Sharding a stream of batches over the processes of a torch.distributed group, by index.

Batch k of the stream belongs to rank k mod world: every rank walks the same stream, reads and
converts only its own batches (`advlab.data.stream.select`), and works on them without waiting
for the others; the results meet on rank 0 once, at the end (`advlab.attacks.stream`). The
batches themselves do not depend on the number of processes, and every random draw of an
attack is a function of (seed, global example index), so the results are bit-identical for 1,
2 or 3 processes. (DistributedSampler is not used: it pads the last shard with duplicates.)
Outside an initialised process group this is the single process: rank 0 of 1.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def owns(self, batch: int) -> bool:
        return batch % self.world == self.rank

    def gather(self, item: Any) -> list[Any]:
        """Every rank's `item`, in rank order, on rank 0 ([] elsewhere); [item] in one process."""
        if self.world == 1:
            return [item]
        items: list[Any] | None = [None] * self.world if self.is_root else None
        dist.gather_object(item, items, dst=0)
        return items or []

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of `value` over the ranks, on every rank."""
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def broadcast(self, item: Any) -> Any:
        """Rank 0's `item` on every rank."""
        if self.world == 1:
            return item
        box = [item if self.is_root else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_shard() -> Shard:
    """This process's place in the default process group (rank 0 of 1 outside one)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def join_process_group(device: torch.device) -> Shard:
    """Under torchrun (WORLD_SIZE > 1 in the environment), join the default process group
    (NCCL on CUDA, gloo on the CPU) once; then, or when one is already initialised, this
    process's shard. A plain run is rank 0 of 1."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        atexit.register(_leave)
    return current_shard()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
