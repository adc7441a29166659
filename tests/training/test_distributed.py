"""Training under a 2-process gloo group (DistributedDataParallel): the ranks agree exactly, and
the weights equal the single-process run's up to float rounding."""


import gc

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advlab.data import Dataset
from advlab.training import AdversarialObjective, TrainConfig, train_model


def _setup():
    gen = torch.Generator().manual_seed(0)
    data = Dataset(torch.rand(30, 1, 4, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen), "toy")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return model, data, TrainConfig(epochs=2, lr=0.05, batch_size=8, weight_decay=1e-3, optimizer="sgd", seed=1)


def _train(model, data, config, seen=None):
    fgsm = AdversarialObjective("fgsm", eps=0.1, alpha=0.5)

    def objective(net, x, y):
        if seen is not None:
            seen.append(len(x))
        return fgsm(net, x, y)

    train_model(model, data, config, progress=False, objective=objective)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank, world, tmp, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        seen = []
        state = _train(*_setup(), seen)
        results.put((rank, {k: v.numpy() for k, v in state.items()}, seen))  # numpy: no shared-memory handles
        gc.collect()  # DDP's reducer and its pending gloo work go before the group (an abort at exit otherwise)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    single = _train(*_setup())
    results = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_worker, args=(2, str(tmp_path), results), nprocs=2, start_method="spawn")
    got = [results.get() for _ in range(2)]
    ranks = {rank: {k: torch.from_numpy(v) for k, v in state.items()} for rank, state, _ in got}
    assert all(seen == [4, 4, 4, 3] * 2 for _, _, seen in got)  # each rank took its half of every minibatch of 8, 8, 8, 6
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.allclose(ranks[0][key], value, atol=1e-6), (key, (ranks[0][key] - value).abs().max())
