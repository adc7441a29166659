"""advlab's command line: parse, call the API, print, exit (0 ok, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

import torch.distributed as dist

from advlab.cli import checks
from advlab.cli.parser import build_parser
from advlab.data.shard import PeerFailed, Shard, join_process_group, launched, settle, tell_launcher
from advlab.errors import AdvlabError
from advlab.progress import set_progress


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check everything that can be checked before the work, run; 0 ok, 2 bad input,
    1 a system error while working (one line too), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    Under torchrun every rank joins the group first, and a failure on any rank ends them all
    with one code and one line, printed by rank 0 (`advlab.data.shard`)."""
    stdout = sys.stdout
    shard = join_process_group()
    working = False
    try:
        args = build_parser().parse_args(argv)
        checks.validate(args)
        set_progress(args.progress_mode)
        args.json_stream = stdout  # `--json -` writes the result here; everything else goes to stderr
        with checks.run_settings(args.threads), contextlib.redirect_stdout(sys.stderr if getattr(args, "json", None) == "-" else stdout):
            working = True
            code = args.func(args)
    except AdvlabError as exc:
        return _stop(shard, 2, str(exc), checks=not working)  # always one line
    except OSError as exc:  # the machine, not the input: a full disk, a file removed under us
        return _stop(shard, 1, str(exc))
    except PeerFailed as exc:
        return _stop(shard, exc.failure.code, exc.failure.message)
    except KeyboardInterrupt:
        return _stop(shard, 130, "interrupted", prefix="advlab: ", checks=True)
    except checks.Terminated:  # under torchrun: also when a peer failed and torchrun stops the others
        failure = shard.recorded_failure()
        if failure is not None:
            return _stop(shard, failure.code, failure.message, wait=False)
        return _stop(shard, 143, "terminated", prefix="advlab: ", checks=True, wait=False)
    except Exception as exc:  # under torchrun: tell the other ranks, and show the traceback of a bug
        if shard.world == 1:
            raise
        failure = shard.recorded_failure()
        if failure is not None and failure.rank != shard.rank:  # a collective broken by the failed rank
            return _stop(shard, failure.code, failure.message)
        if isinstance(exc, dist.DistError) or "gloo" in str(exc):
            return _stop(shard, 1, f"lost contact with another process ({str(exc).splitlines()[0]})")
        shard.record_failure(1, f"{type(exc).__name__}: {exc}")
        raise
    shard.stop_together(wait=0)
    return code


def _stop(shard: Shard, code: int, message: str, *, prefix: str = "advlab: error: ", **how: bool) -> int:
    """Print the one line (on rank 0 only, under torchrun) and return the exit code."""
    code, line = settle(shard, code, " ".join(message.split()), **how)
    if shard.is_root:
        print(prefix + line, file=sys.stderr)
    if launched():
        tell_launcher(prefix + line)
    return code
