from advlab.data.shard import Shard, current_shard


def test_batches_go_round_robin_by_index():
    shards = [Shard(rank, 3) for rank in range(3)]
    owners = [[s.rank for s in shards if s.owns(batch)] for batch in range(7)]
    assert owners == [[0], [1], [2], [0], [1], [2], [0]]  # each batch on exactly one rank, none twice


def test_single_process_outside_a_group():
    shard = current_shard()
    assert shard == Shard(0, 1) and shard.is_root
    assert shard.gather("x") == ["x"] and shard.broadcast(5) == 5
