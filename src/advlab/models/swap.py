"""An attribute of many objects changed for the length of a `with` block, each restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any


@contextlib.contextmanager
def swapped(objects: Iterable[Any], name: str, new: Callable[[Any], Any]) -> Iterator[None]:
    """Inside, each object's attribute `name` is new(its value); after, even on error, its own value again."""
    saved = [(obj, getattr(obj, name)) for obj in objects]
    try:
        for obj, value in saved:
            setattr(obj, name, new(value))
        yield
    finally:
        for obj, value in saved:
            setattr(obj, name, value)
