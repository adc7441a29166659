"""Streamed attacks: per-example results equal one tensor call, for any batching, and after a resume."""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advlab.attacks import PGD
from advlab.attacks.stream import ResultStore, stream_attack
from advlab.data.stream import IdxBatches, TensorBatches
from advlab.errors import InputError
from tests.data.test_sources import write_fake_mnist
from tests.invariance import ATOL, clear_rows


def make_problem(n=23):
    """A 4x4 -> 4-class ReLU net in float64, n images and its own predictions as labels (PGD at eps .1 fools about half)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4)).eval()
    with torch.no_grad():
        model[1].weight.mul_(4)
        model[3].weight.mul_(4)
        model[3].bias.copy_(torch.tensor([0.5, 0.0, -0.3, 0.2]))
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.double()  # float64: float32 BLAS blocking differs with the batch composition and can flip a near-zero gradient sign
    return model, x, model(x).argmax(1).detach()


@pytest.fixture(scope="module")
def problem():
    return make_problem()


def _pgd(model):  # random starts and restarts: every example's draws come from (seed, index)
    return PGD(model, eps=0.1, steps=3, random_start=True, restarts=2, seed=5, batch_size=4)


FLAGS = ("success", "adv_pred", "clean_pred")
COLUMNS = (*FLAGS, "linf", "l2")


@pytest.mark.invariance
def test_stream_equals_tensor_call_for_any_batching(tmp_path, problem):
    """Loader batches of 7 attacked in fours are other batch shapes than the tensor call's fours:
    equal as docs/guide/reproducibility.md promises (flags beyond near-ties, floats within ATOL)."""
    model, x, y = problem
    whole = _pgd(model)(x, y)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    streamed = stream_attack(_pgd(model), loader, tmp_path / "s", keep_adversarial=True, progress=False)
    store = streamed.store
    assert store.column("index").tolist() == list(range(23))
    clear = clear_rows(whole).numpy()
    for name in FLAGS:
        assert np.array_equal(store.column(name)[clear], getattr(whole, name).numpy()[clear]), name
    for name in ("linf", "l2", "x_adv"):
        assert np.abs(store.column(name)[clear] - getattr(whole, name).numpy()[clear]).max() <= ATOL, name
    summary, expected = streamed.summary(), whole.summary()
    assert summary["n"] == expected["n"]
    for key in ("success_rate", "adversarial_accuracy", "clean_accuracy", "mean_linf", "mean_l2"):
        assert summary[key] == pytest.approx(expected[key], rel=0, abs=ATOL), key


def _dies_after(batches, k):
    """The stream, interrupted (as by Ctrl-C) when batch k is due."""
    for i, batch in enumerate(batches):
        if i == k:
            raise KeyboardInterrupt
        yield batch


def test_killed_run_resumes_with_identical_results(tmp_path, problem):
    model, x, y = problem
    full = stream_attack(_pgd(model), TensorBatches(x, y, 5), tmp_path / "full", progress=False).store

    with pytest.raises(KeyboardInterrupt):
        stream_attack(_pgd(model), _dies_after(TensorBatches(x, y, 5), 2), tmp_path / "r", progress=False)
    assert ResultStore(tmp_path / "r", json.loads((tmp_path / "r" / "index.json").read_text())["config"]).done == 10
    resumed = stream_attack(_pgd(model), TensorBatches(x, y, 5), tmp_path / "r", progress=False).store
    for name in COLUMNS:
        assert np.array_equal(resumed.column(name), full.column(name)), name
    assert [p["file"] for p in resumed.parts] == [f"part-{i:06d}.npz" for i in range(5)]


def test_resume_refuses_other_settings_data_or_batching(tmp_path, problem):
    model, x, y = problem
    stream_attack(_pgd(model), TensorBatches(x[:10], y[:10], 5), tmp_path / "s", progress=False)
    with pytest.raises(InputError, match="other settings"):
        stream_attack(PGD(model, eps=0.2, steps=3), TensorBatches(x, y, 5), tmp_path / "s", progress=False)
    with pytest.raises(InputError, match="differs from the recorded one"):
        stream_attack(_pgd(model), TensorBatches(x, (y + 1) % 4, 5), tmp_path / "s", progress=False)
    with pytest.raises(InputError, match="same batch size"):
        stream_attack(_pgd(model), TensorBatches(x, y, 3), tmp_path / "s", progress=False)


def _idx_model():
    """A 784 -> 10 linear model on 28x28 images, weights from a seeded generator."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(10, 784, generator=torch.Generator().manual_seed(2)) * 0.1)
        model[1].bias.zero_()
    return model


def _idx_run(folder, out, batches=None):
    source = IdxBatches(folder, "train", 4)
    return stream_attack(_pgd(_idx_model()), source if batches is None else batches(source), out, keep_adversarial=True, progress=False)


def _shard_worker(rank, world, tmp, separate, threads, results):
    import advlab.data.stream as stream

    torch.set_num_threads(threads)  # the single process's: bit-identity is promised at one thread count
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        converted, decode = [], stream.decode_idx
        stream.decode_idx = lambda rows, shape: converted.append(len(rows)) or decode(rows, shape)
        _idx_run(f"{tmp}/data", f"{tmp}/out-{rank}" if separate else f"{tmp}/out")
        results.put((rank, len(converted)))  # small: the queue's pipe is read only after every process ended
    finally:
        dist.destroy_process_group()


@pytest.mark.invariance
@pytest.mark.parametrize(("world", "separate"), [(2, True), (3, False)])
def test_sharded_stream_is_bit_identical_and_converts_only_its_batches(tmp_path, world, separate):
    """22 examples in 6 batches over `world` gloo processes, resumed from a killed 1-process run
    that recorded batches 0 and 1 (in rank 1's folder when every rank has its own folder, as on
    machines without a shared file system): every rank converts only the batches it owns, and
    rank 0 ends with every part and columns identical to one process's."""
    write_fake_mnist(tmp_path / "data", 22, 2)
    single = _idx_run(tmp_path / "data", tmp_path / "single").store
    with pytest.raises(KeyboardInterrupt):
        _idx_run(tmp_path / "data", tmp_path / ("out-1" if separate else "out"), lambda s: _dies_after(s, 2))
    results = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_shard_worker, args=(world, str(tmp_path), separate, torch.get_num_threads(), results), nprocs=world,
                       start_method="spawn")
    assert sorted(results.get() for _ in range(world)) == [(rank, len(range(rank, 6, world))) for rank in range(world)]
    root = tmp_path / ("out-0" if separate else "out")
    assert sorted(p.name for p in root.glob("part-*.npz")) == [f"part-{k:06d}.npz" for k in range(6)]
    store = ResultStore(root, single.config)
    for name in (*COLUMNS, "x_adv"):
        assert np.array_equal(store.column(name), single.column(name)), name
