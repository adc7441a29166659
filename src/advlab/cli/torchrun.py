"""`advlab-torchrun` (or `python -m advlab.cli.torchrun`): torchrun with advlab's contract.

It takes torchrun's own options and command (`advlab-torchrun --standalone --nproc-per-node 2
-m advlab evaluate ...`) and runs torchrun's launcher in this process, so that what torchrun
itself would print when a worker fails (its agent's log lines and its `ChildFailedError`
traceback) stays off the terminal: a refusal or a failure on any rank ends as the one line the
workers agreed on (`advlab.data.shard`) and the workers' exit code (2 bad input, 1 a system
error). Plain `torchrun` works too; it only adds its own report after that line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun on `argv` (default: this command's arguments); 0, or the failed workers'
    code with their one line on stderr."""
    os.environ.setdefault("LOGLEVEL", "CRITICAL")  # torchrun's agent reads it for its own loggers
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in ELASTIC_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(list(sys.argv[1:] if argv is None else argv)))
    except ChildFailedError as failed:
        code, line = failure_line(failed.failures)
        if line is not None:
            print(line, file=sys.stderr)
        return code
    return 0


def failure_line(failures: Mapping[int, Any]) -> tuple[int, str | None]:
    """(exit code, the line still to print) for the failed workers of torchrun's
    `ChildFailedError` (rank -> failure). Where rank 0 wrote advlab's line into torchrun's error
    file it has printed it already; else the first failure's code or signal, as one line."""
    lines = {rank: _line(failure.message) for rank, failure in failures.items()}
    for rank, failure in sorted(failures.items()):
        if lines[rank] is not None:
            code = failure.exitcode if failure.exitcode > 0 else 1
            return code, None if lines.get(0) is not None else lines[rank]
    rank, failure = min(failures.items())
    if failure.exitcode < 0:
        return 1, f"advlab: error: rank {rank} was stopped by {failure.signal_name()}"
    return failure.exitcode, f"advlab: error: rank {rank} exited with code {failure.exitcode}"


def _line(message: Any) -> str | None:
    """advlab's line from a failure's message (torchrun keeps the error file's JSON object)."""
    text = message.get("message") if isinstance(message, dict) else message
    return text if isinstance(text, str) and text.startswith("advlab:") else None


if __name__ == "__main__":
    sys.exit(main())
