"""`torchrun -m advlab evaluate`, end to end with gloo on this machine: a refusal or a failure on one
rank is one line from rank 0 and the same exit code on every rank; a rank killed with SIGKILL
under `--max-restarts 1` resumes from the parts already written, bit for bit; two torchrun agents
(two "nodes", c10d rendezvous on 127.0.0.1) give the one-process results. (docs/guide/distributed.md)

The model is a test module that can refuse the data or SIGKILL itself on one rank, set by the
environment the test gives torchrun; advlab itself holds no test hook."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import advlab
from advlab.cli import main

SRC = Path(advlab.__file__).resolve().parents[1]
MODEL = '''
"""A linear model for the torchrun tests; on the rank named by the environment it refuses its
input (REFUSE_RANK) or, in torchrun's first attempt, SIGKILLs itself once it has written
KILL_AFTER_PARTS parts (KILL_RANK), after noting which parts existed (KILL_MARKER)."""
import json, os, signal
from pathlib import Path

import torch


def build():
    return torch.nn.Sequential(torch.nn.Flatten(), Probe(), torch.nn.Linear(784, 10))


class Probe(torch.nn.Module):
    def forward(self, x):
        rank = os.environ.get("RANK", "none")
        if rank == os.environ.get("REFUSE_RANK"):
            raise ValueError("refused on this rank")
        if rank == os.environ.get("KILL_RANK") and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
            parts = sorted(Path(os.environ["KILL_DIR"]).glob("part-*.npz"))
            own = [p for p in parts if int(p.stem[5:]) % int(os.environ["WORLD_SIZE"]) == int(rank)]
            if len(own) >= int(os.environ["KILL_AFTER_PARTS"]):
                Path(os.environ["KILL_MARKER"]).write_text(json.dumps({p.name: p.stat().st_ino for p in parts}))
                os.kill(os.getpid(), signal.SIGKILL)
        return x
'''
BATCH, N, LIMIT = 10, 60, 50  # 5 batches: 3 + 2 over 2 ranks, 2 + 2 + 1 over 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory, embedded):
    """(folder with the model module, its weights and the data; the common evaluate arguments)."""
    folder = tmp_path_factory.mktemp("torchrun")
    (folder / "trmodel.py").write_text(MODEL)
    torch.manual_seed(0)
    linear = torch.nn.Linear(784, 10)
    x, y = embedded.train.images[:2000].flatten(1), embedded.train.labels[:2000]
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.5)
    for _ in range(30):  # a few full-batch steps: an accurate enough model for attacks to matter
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(x), y).backward()
        optimizer.step()
    save_file({f"2.{k}": v.detach().contiguous() for k, v in linear.state_dict().items()}, folder / "net.safetensors")
    images, labels = embedded.test.images[:N].numpy(), embedded.test.labels[:N].numpy()
    np.savez(folder / "good.npz", x=images, y=labels)
    bad = images.copy()
    bad[BATCH + 5, 0, 0, 0] = np.nan  # in batch 1: rank 1's
    np.savez(folder / "bad.npz", x=bad, y=labels)
    args = ["evaluate", "--model", "trmodel:build", "--weights", str(folder / "net.safetensors"), "--batch-size", str(BATCH),
            "--attacks", "fgsm,pgd", "--eps", "0,0.1", "-p", "pgd.steps=3", "--no-progress"]
    return folder, args


def good(folder: Path) -> list[str]:
    return ["--data", f"npz:{folder / 'good.npz'}", "--limit", str(LIMIT)]


def torchrun(folder: Path, launcher: list[str], args: list[str], env: dict[str, str] | None = None, *,
             runner: str = "torch.distributed.run") -> subprocess.Popen:
    """`torchrun LAUNCHER -m advlab ARGS` (runner "advlab.cli.torchrun": `advlab-torchrun`)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(folder)]), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", runner, *launcher, "-m", "advlab", *args], cwd=folder,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def standalone(nproc: int) -> list[str]:
    return ["--standalone", "--nproc-per-node", str(nproc)]


def worker_codes(stderr: str) -> list[int]:
    """The exit code of each rank, in rank order, from torchrun's failure report."""
    found = re.findall(r"rank\s*:\s*(\d+) \(local_rank.*\n\s*exitcode\s*:\s*(-?\d+)", stderr)
    return [code for _, code in sorted((int(r), int(c)) for r, c in found)]


def advlab_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("advlab:")]


def assert_no_worker_noise(stderr: str) -> None:
    """No worker traceback and no gloo message: what remains is torchrun's own report."""
    assert "[rank" not in stderr and "gloo" not in stderr and "Connection" not in stderr, stderr


def outcomes(out: Path) -> tuple[dict, dict]:
    """(every per-example column of every part, the report's numbers), timings left out."""
    parts = {}
    for path in sorted((out / "examples").glob("part-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            parts[path.name] = {k: data[k] for k in data.files if k != "_meta" and not k.endswith(":seconds")}
    report = json.loads((out / "robustness.json").read_text())
    numbers = {k: report[k] for k in ("n", "clean_accuracy", "worst_case", "data")}
    numbers["points"] = [(p["attack"], p["eps"], p["accuracy"], p["success_rate"], p["mean_confidence_on_errors"]) for p in report["points"]]
    return parts, numbers


def assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    assert a[1] == b[1]
    assert a[0].keys() == b[0].keys() and len(a[0]) == LIMIT // BATCH
    for name, columns in a[0].items():
        assert columns.keys() == b[0][name].keys()
        for key, value in columns.items():
            assert np.array_equal(value, b[0][name][key]), (name, key)


@pytest.fixture(scope="module")
def single(setup, tmp_path_factory):
    """One process, streamed (the reference every torchrun run must equal, bit for bit)."""
    folder, args = setup
    out = tmp_path_factory.mktemp("single")
    sys.path.insert(0, str(folder))
    try:
        assert main([*args, *good(folder), "--stream", "--out", str(out)]) == 0
    finally:
        sys.path.remove(str(folder))
    return outcomes(out)


def test_a_refusal_is_one_line_and_exit_2_on_every_rank(setup):
    folder, args = setup
    code, _, err = finish(torchrun(folder, standalone(2), [*args[:-5], "--eps", "nan", "--data", "npz:bad.npz", "--out", "o"]))
    assert advlab_lines(err) == ["advlab: error: --eps 'nan': every number must be finite"]
    assert worker_codes(err) == [2, 2] and code == 1  # torchrun itself exits 1 whenever a worker fails
    assert_no_worker_noise(err)
    assert not (folder / "o").exists()


def test_bad_data_on_one_rank_ends_every_rank_with_one_line(setup):
    folder, args = setup
    code, _, err = finish(torchrun(folder, standalone(2), [*args, "--data", "npz:bad.npz", "--out", "bad"]))
    assert advlab_lines(err) == ["advlab: error: rank 1: bad.npz: x contains NaN or inf"]
    assert worker_codes(err) == [2, 2] and code == 1
    assert_no_worker_noise(err)


def test_a_model_refused_on_one_rank_ends_every_rank_with_one_line(setup):
    folder, args = setup
    code, _, err = finish(torchrun(folder, standalone(3), [*args, *good(folder), "--out", "refused"], {"REFUSE_RANK": "2"}))
    lines = advlab_lines(err)
    assert len(lines) == 1 and lines[0].startswith("advlab: error: rank 2: the model cannot take"), err
    assert "ValueError: refused on this rank" in lines[0]
    assert worker_codes(err) == [2, 2, 2] and code == 1
    assert_no_worker_noise(err)


@pytest.mark.parametrize("case", ["refusal", "bad data on rank 1"])
def test_advlab_torchrun_prints_only_the_one_line_and_exits_with_the_workers_code(setup, case):
    """advlab-torchrun: torchrun's own log lines and ChildFailedError traceback stay off stderr."""
    folder, args = setup
    argv = ([*args[:-5], "--eps", "nan", "--data", "npz:bad.npz", "--out", "o2"] if case == "refusal"
            else [*args, "--data", "npz:bad.npz", "--out", "bad2"])
    code, out, err = finish(torchrun(folder, standalone(2), argv, runner="advlab.cli.torchrun"))
    line = ("advlab: error: --eps 'nan': every number must be finite" if case == "refusal"
            else "advlab: error: rank 1: bad.npz: x contains NaN or inf")
    assert (code, out, err) == (2, "", line + "\n")


def test_one_process_streams_and_names_the_limit(setup, single):
    folder, args = setup
    code, out, err = finish(torchrun(folder, standalone(1), [*args, *good(folder), "--out", "one"]))
    assert code == 0, err
    got = outcomes(folder / "one")
    assert got[1]["data"] == f"npz:{folder / 'good.npz'}-test[:{LIMIT}]"
    assert_same(got, single)


@pytest.mark.parametrize("world", [2, 3])
def test_a_killed_rank_restarts_and_resumes_bit_identical(setup, single, world):
    folder, args = setup
    out = folder / f"killed{world}"
    env = {"KILL_RANK": "1", "KILL_AFTER_PARTS": "1", "KILL_DIR": str(out / "examples"), "KILL_MARKER": str(folder / f"marker{world}")}
    code, _, err = finish(torchrun(folder, [*standalone(world), "--max-restarts", "1"],
                                   [*args, *good(folder), "--out", str(out)], env))
    assert code == 0, err
    before = json.loads((folder / f"marker{world}").read_text())  # the parts written before the kill
    assert "part-000001.npz" in before  # rank 1's first part (other ranks' parts too, as far as they got)
    for name, inode in before.items():  # kept, not written again (a rewrite renames a new file into place)
        assert (out / "examples" / name).stat().st_ino == inode, name
    assert_same(outcomes(out), single)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_on_one_machine_equal_one_process(setup, single):
    folder, args = setup
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                  f"127.0.0.1:{_free_port()}", "--rdzv-id", "two-nodes"]
    run = [*args, *good(folder), "--out", "nodes"]
    agents = [torchrun(folder, [*rendezvous, "--node-rank", str(node)], run) for node in (0, 1)]
    results = [finish(agent) for agent in agents]
    assert all(code == 0 for code, _, _ in results), results
    assert_same(outcomes(folder / "nodes"), single)


def test_the_launchers_line_for_each_kind_of_failure():
    """advlab-torchrun's summary of torchrun's failures (rank -> failure): nothing more to print
    when rank 0 wrote advlab's line (it printed it), that line when only another rank wrote it,
    else the first failure's signal or code."""
    from types import SimpleNamespace

    from advlab.cli.torchrun import failure_line

    def failure(code: int, message: object = "") -> SimpleNamespace:
        return SimpleNamespace(exitcode=code, message=message, signal_name=lambda: "SIGKILL")

    line = {"message": "advlab: error: rank 1: bad", "extraInfo": {"timestamp": "0"}}
    assert failure_line({0: failure(2, line), 1: failure(2, line)}) == (2, None)
    assert failure_line({1: failure(2, line), 0: failure(-9)}) == (2, "advlab: error: rank 1: bad")
    assert failure_line({0: failure(-9), 1: failure(-15)}) == (1, "advlab: error: rank 0 was stopped by SIGKILL")
    assert failure_line({1: failure(3, "Traceback ...")}) == (3, "advlab: error: rank 1 exited with code 3")
