"""`advlab models`: the registered models."""

from __future__ import annotations

import argparse

from advlab.models import get_spec, model_names
from advlab.report.markdown import table


def cmd_models(args: argparse.Namespace) -> int:
    rows = [(name, get_spec(name).description, get_spec(name).training) for name in model_names()]
    print(table(["model", "description", "training defaults"], rows))
    return 0
