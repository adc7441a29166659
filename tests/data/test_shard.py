from advlab.data.shard import Shard, current_shard


def test_batches_go_round_robin_by_index():
    shards = [Shard(rank, 3) for rank in range(3)]
    owners = [[s.rank for s in shards if s.owns(batch)] for batch in range(7)]
    assert owners == [[0], [1], [2], [0], [1], [2], [0]]  # each batch on exactly one rank, none twice


def test_single_process_outside_a_group():
    shard = current_shard()
    assert shard == Shard(0, 1) and shard.is_root
    assert shard.gather("x") == ["x"] and shard.broadcast(5) == 5


def _failing_worker(rank, tmp, results):
    import torch.distributed as dist

    from advlab.data.shard import PeerFailed, settle

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=3)
    shard = current_shard()
    try:
        if rank == 1:  # fails before the meeting; its peers wait there and learn it
            results.put((rank, settle(shard, 2, "bad batch", wait=True)))
            return
        shard.meet()
        results.put((rank, "met"))
    except PeerFailed as exc:
        results.put((rank, settle(shard, exc.failure.code, exc.failure.message)))
    finally:
        dist.destroy_process_group()


def test_a_failed_rank_stops_the_others_at_the_meeting(tmp_path):
    """One rank records its failure; the others, waiting for it at a store barrier, raise
    PeerFailed instead of waiting forever, and every rank ends with its code and message."""
    import torch.multiprocessing as mp

    results = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_failing_worker, args=(str(tmp_path), results), nprocs=3, start_method="spawn")
    got = dict(results.get() for _ in range(3))
    assert got == {rank: (2, "rank 1: bad batch") for rank in range(3)}
