"""Sharding a stream of batches over the processes of a torch.distributed group, by index;
and how the processes of a group stop together when one of them fails.

Batch k of the stream belongs to rank k mod world: every rank walks the same stream, reads and
converts only its own batches (`advlab.data.stream.select`), and works on them without waiting
for the others; the results meet on rank 0 once, at the end (`advlab.attacks.stream`). The
batches themselves do not depend on the number of processes, and every random draw of an
attack is a function of (seed, global example index), so the results are bit-identical for 1,
2 or 3 processes. (DistributedSampler is not used: it pads the last shard with duplicates.)
Outside an initialised process group this is the single process: rank 0 of 1.

Failures: a rank that fails records (rank, exit code, message) under one key of the group's
key-value store (the first record wins). The other ranks look for it between batches
(`Shard.check_peers`), while they wait for each other (`Shard.meet`, a barrier in the store
that precedes every collective of a stream, so no rank is left inside a collective its peer
will never join) and when torchrun terminates them; they then stop with the same exit code.
Rank 0 alone prints the one line (`stop`).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

STOP_WAIT_SECONDS = 5.0  # how long a stopping rank waits for the others to stop too
_meetings = itertools.count()  # every rank meets in the same order: the n-th meeting has the same key everywhere


@dataclass(frozen=True)
class Failure:
    """The first failure recorded in a group: on which rank, its exit code, its one-line message."""

    rank: int
    code: int
    message: str


class PeerFailed(Exception):
    """Raised on a rank when another rank of its group has failed."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"rank {failure.rank}: {failure.message}")
        self.failure = failure


def _store() -> Any:
    """The default group's key-value store (the rendezvous store under torchrun)."""
    return dist.distributed_c10d._get_default_store()


def _key(name: str) -> str:
    return f"advlab/{name}"


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

    # ---- failures ------------------------------------------------------------------------------
    def recorded_failure(self) -> Failure | None:
        """The failure recorded in the group, if any (None in one process or when the store is gone)."""
        if self.world == 1:
            return None
        try:
            store = _store()
            if not store.check([_key("failed")]):
                return None
            return Failure(**json.loads(store.get(_key("failed"))))
        except (RuntimeError, ValueError, TypeError):
            return None

    def check_peers(self) -> None:
        """Raise `PeerFailed` when another rank has recorded a failure."""
        failure = self.recorded_failure()
        if failure is not None and failure.rank != self.rank:
            raise PeerFailed(failure)

    def record_failure(self, code: int, message: str) -> Failure:
        """Record this rank's failure unless one is recorded already; the failure that counts (the first)."""
        mine = Failure(self.rank, code, message)
        if self.world == 1:
            return mine
        try:
            first = _store().compare_set(_key("failed"), "", json.dumps(vars(mine)))
            return Failure(**json.loads(first))
        except (RuntimeError, ValueError, TypeError):
            return mine

    def meet(self) -> None:
        """Wait until every rank is here (a barrier in the store, not a collective), or raise
        `PeerFailed` as soon as a rank records a failure."""
        if self.world == 1:
            return
        key, store = _key(f"meeting-{next(_meetings)}"), _store()
        store.add(key, 1)
        while store.add(key, 0) < self.world:
            self.check_peers()
            time.sleep(0.02)
        self.check_peers()

    def stop_together(self, wait: float = STOP_WAIT_SECONDS) -> None:
        """Count this rank as stopped and wait (at most `wait` seconds) for the others to stop,
        so that the ranks of a failed run exit at once, with the same code. torchrun's SIGTERM,
        sent when the first of them exits, is ignored from here on: the exit code is decided."""
        if self.world == 1:
            return
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            store = _store()
            store.add(_key("stopped"), 1)
            deadline = time.monotonic() + wait
            while store.add(_key("stopped"), 0) < self.world and time.monotonic() < deadline:
                time.sleep(0.02)
        except RuntimeError:
            pass


def current_shard() -> Shard:
    """This process's place in the default process group (rank 0 of 1 outside one)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def launched() -> bool:
    """Whether a launcher (torchrun) started this process, with any number of processes (1 too)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def join_process_group(device: torch.device | None = None) -> Shard:
    """Under torchrun (WORLD_SIZE > 1 in the environment), join the default process group once
    (gloo for CPU tensors, and NCCL for CUDA tensors where CUDA is available); then, or when one
    is already initialised, this process's shard. On a CUDA `device`, each process takes the GPU
    of its local rank. A plain run is rank 0 of 1."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        store, rank, world = next(dist.rendezvous("env://"))
        # torchrun keeps one key-value store across restarts: the keys of a restarted group
        # (gloo's addresses among them) go under the attempt's name, never read stale.
        store = dist.PrefixStore(f"attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo",
                                store=store, rank=rank, world_size=world)
        atexit.register(_leave)
    if device is not None and device.type == "cuda" and launched():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return current_shard()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def settle(shard: Shard, code: int, message: str, *, checks: bool = False, wait: bool = True) -> tuple[int, str]:
    """How a rank of a group ends after a failure, its own or a peer's (`PeerFailed`): (exit
    code, the message rank 0 prints). The first failure recorded in the group sets
    the code and the message, which names its rank; a failure of the argument checks (the same
    on every rank) is printed as it is. The rank then waits briefly for the others to stop."""
    if shard.world == 1:
        return code, message
    first = shard.record_failure(code, message)
    if wait:
        shard.stop_together()
    if not checks:
        code, message = first.code, f"rank {first.rank}: {first.message}"
    return code, message


def tell_launcher(line: str) -> None:
    """Under torchrun, write `line` where torchrun looks for a failed worker's error
    ($TORCHELASTIC_ERROR_FILE): its failure report then shows the line instead of a pointer
    to its documentation."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError), open(path, "w") as handle:
            report = {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}
            json.dump({"message": report}, handle)
