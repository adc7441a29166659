"""advlab's command line (`advlab ...`, `python -m advlab`): `main(argv)` parses, checks, calls the API, prints."""

from advlab.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
