"""advlab's command line (`advlab ...`, `python -m advlab`): `main(argv)` parses, checks before any
work, calls the API and prints. One module per command; `parser`, `checks` and `params` read the
command line; `common` holds what the commands share."""

from advlab.cli.main import main

__all__ = ["main"]
