"""Where and how the CLI writes: the user's umask, both of attack's files or neither, folders
meaning folders, no silent overwrite of a checkpoint, threads, and what --help promises."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from advlab import io
from advlab.cli import parser as cli_parser
from advlab.cli import main
from advlab.training import load_checkpoint, read_metadata


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_outputs_keep_the_users_umask(workspace, tmp_path, capsys, umask_027):
    assert main(["attack", str(workspace.logreg), "--data-dir", str(workspace.data), "--method", "fgsm", "--eps", ".1",
                 "--out", str(tmp_path / "a")]) == 0
    ckpt = tmp_path / "m.safetensors"
    assert main(["train", "logreg", "--classes", "3,7", "--data-dir", str(workspace.data), "--epochs", "1",
                 "--no-progress", "--out", str(ckpt)]) == 0
    for path in (tmp_path / "a" / "adversarial.npz", tmp_path / "a" / "summary.json", ckpt):
        assert _mode(path) == 0o640, (path, oct(_mode(path)))


def _attack(workspace, out, *extra):
    return main(["attack", str(workspace.logreg), "--data-dir", str(workspace.data), "--method", "fgsm",
                 "--out", str(out), *extra])


def test_attack_writes_both_files_or_keeps_the_old_pair(workspace, tmp_path, capsys, monkeypatch):
    out = tmp_path / "a"
    assert _attack(workspace, out, "--eps", ".1") == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(old) == {"adversarial.npz", "summary.json"}
    real_replace = os.replace

    failed = []

    def fail_on_summary(src, dst):  # the new summary.json cannot be renamed into place (once)
        if str(dst).endswith("summary.json") and ".tmp" in str(src) and not failed:
            failed.append(dst)
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", fail_on_summary)
    assert _attack(workspace, out, "--eps", ".2", "--force") == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # the old pair, no temporaries


def test_attack_failing_on_its_second_file_leaves_nothing(workspace, tmp_path, capsys, monkeypatch):
    calls = []
    real = io._create_temporary

    def second_fails(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path)

    monkeypatch.setattr(io, "_create_temporary", second_fails)
    assert _attack(workspace, tmp_path / "a", "--eps", ".1") == 1
    assert list((tmp_path / "a").iterdir()) == []


def test_bounds_and_booleans_are_read_from_the_command_line(workspace, tmp_path, capsys):
    assert _attack(workspace, tmp_path / "a", "--eps", ".1", "--limit", "5", "-p", "bounds=0,1") == 0
    code = main(["attack", str(workspace.logreg), "--data-dir", str(workspace.data), "--method", "pgd", "--eps", ".1",
                 "-p", "early_exit=TRUE", "-p", "steps=3", "-p", "step_size=none", "--limit", "5", "--out", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    params = json.loads((tmp_path / "b" / "summary.json").read_text())["params"]
    assert params["early_exit"] is True and params["steps"] == 3


def test_train_out_folder_means_a_folder(workspace, tmp_path, capsys):
    args = ["train", "logreg", "--classes", "3,7", "--data-dir", str(workspace.data), "--epochs", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "new") + "/"]) == 0
    assert (tmp_path / "new" / "logreg.safetensors").is_file()
    assert main([*args, "--out", str(tmp_path / "new")]) == 2  # the same file, now existing
    assert "already exists; pass --resume" in capsys.readouterr().err
    before = (tmp_path / "new" / "logreg.safetensors").read_bytes()
    assert main([*args, "--seed", "1", "--force", "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "logreg.safetensors").read_bytes() != before
    assert read_metadata(tmp_path / "new" / "logreg.safetensors")["training"]["seed"] == 1
    assert main([*args, "--seed", "1", "--epochs", "2", "--resume", "--out", str(tmp_path / "new")]) == 0
    assert read_metadata(tmp_path / "new" / "logreg.safetensors")["resumed_from_epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["logreg.safetensors"]


def test_threads_option_and_environment(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(cli_parser, "cmd_models", lambda args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    monkeypatch.delenv("ADVLAB_THREADS", raising=False)
    assert main(["models"]) == 0 and main(["models", "--threads", "2"]) == 0
    monkeypatch.setenv("ADVLAB_THREADS", "3")
    assert main(["models"]) == 0 and main(["models", "--threads", "1"]) == 0
    assert seen == [1, 2, 3, 1]
    assert torch.get_num_threads() == before  # restored after the command


def test_every_subcommand_takes_threads():
    parser = cli_parser.build_parser()
    leaves = []

    def walk(p):
        subs = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            leaves.append(p)
        for action in subs:
            for child in set(action.choices.values()):
                walk(child)

    walk(parser)
    assert len(leaves) >= 8
    assert all(any("--threads" in a.option_strings for a in p._actions) for p in leaves)


def test_help_says_which_attacks_need_eps(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "required by apgd, apgd-a, apgd-t, bim, fab, fab-t, fgm, fgsm, pgd, square" in text


def test_checkpoint_written_by_train_loads(workspace):
    checkpoint = load_checkpoint(workspace.mlp)
    assert checkpoint.model_name == "mlp-20-20" and checkpoint.metadata["data"]["classes"] is None
