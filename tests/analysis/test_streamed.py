"""A streamed evaluation equals the in-memory one, resumes, and is bit-identical over 1, 2, 3 processes."""

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advlab.analysis import evaluate_robustness
from advlab.analysis.streamed import stream_robustness
from advlab.data.stream import TensorBatches
from tests.attacks.test_stream import make_problem
from tests.invariance import ATOL

SETTINGS = {"attacks": ["fgsm", "pgd"], "eps": [0.0, 0.1, 0.3], "attack_params": {"pgd": {"steps": 3, "restarts": 2, "random_start": True}},
            "seed": 3, "batch_size": 4, "progress": False}


def problem():
    return make_problem(21)


def _same(a, b):
    assert (a.n, a.clean_accuracy, a.eps, a.attacks, a.worst_case) == (b.n, b.clean_accuracy, b.eps, b.attacks, b.worst_case)
    for p, q in zip(a.points, b.points, strict=True):
        assert (p.attack, p.eps, p.accuracy, p.success_rate) == (q.attack, q.eps, q.accuracy, q.success_rate)
        # logits of a differently composed batch can differ in the last bits (BLAS blocking)
        assert math.isclose(p.mean_confidence_on_errors, q.mean_confidence_on_errors, rel_tol=0, abs_tol=ATOL) or (
            math.isnan(p.mean_confidence_on_errors) and math.isnan(q.mean_confidence_on_errors))
    assert [(c.name, c.status) for c in a.checks] == [(c.name, c.status) for c in b.checks]


@pytest.mark.invariance
def test_streamed_equals_in_memory_and_resumes(tmp_path):
    model, x, y = problem()
    expected = evaluate_robustness(model, x, y, **SETTINGS)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    _same(stream_robustness(model, loader, tmp_path / "a", **SETTINGS), expected)
    again = stream_robustness(model, loader, tmp_path / "a", **SETTINGS)  # everything recorded: nothing re-run
    _same(again, expected)


def _worker(rank, world, tmp, threads, results):
    torch.set_num_threads(threads)  # the single process's: bit-identity is promised at one thread count
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        model, x, y = problem()
        evaluation = stream_robustness(model, TensorBatches(x, y, 5), f"{tmp}/out", **SETTINGS)
        if rank == 0:
            results.put((evaluation.to_dict(), {k: np.load(f"{tmp}/out/{p}")["pgd@0.1:correct"].tolist()
                                                 for k, p in enumerate(sorted(os.listdir(f"{tmp}/out"))) if p.endswith(".npz")}))
        else:
            assert evaluation is None
    finally:
        dist.destroy_process_group()


@pytest.mark.invariance
@pytest.mark.parametrize("world", [2, 3])
def test_bit_identical_over_processes(tmp_path, world):
    model, x, y = problem()
    single = stream_robustness(model, TensorBatches(x, y, 5), tmp_path / "one", **SETTINGS)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_worker, args=(world, str(tmp_path), torch.get_num_threads(), results), nprocs=world, start_method="spawn")
    shared, parts = results.get()
    local = single.to_dict()
    for key in ("n", "clean_accuracy", "worst_case", "checks"):
        assert repr(shared[key]) == repr(local[key]), key  # repr: bit-identical floats, nan included
    timeless = [[{k: v for k, v in p.items() if k != "seconds"} for p in d["points"]] for d in (shared, local)]
    assert repr(timeless[0]) == repr(timeless[1])
    assert [parts[k] for k in sorted(parts)] == [np.load(tmp_path / "one" / f"part-{k:06d}.npz")["pgd@0.1:correct"].tolist() for k in range(5)]
