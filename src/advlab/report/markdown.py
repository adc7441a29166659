"""Small Markdown helpers shared by every report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advlab.experiments.text import number, percent

__all__ = ["number", "percent", "table"]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
