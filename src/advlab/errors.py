"""Errors advlab raises for bad input. Each message names the problem in one line."""


class AdvlabError(Exception):
    """Base class: the CLI prints these as one line and exits with code 2."""


class InputError(AdvlabError, ValueError):
    """Bad tensors or parameters given to the API (shape, dtype, NaN, bounds, eps, labels)."""


class DataError(AdvlabError):
    """A data file or directory that is missing, corrupt or truncated."""


class CheckpointError(AdvlabError):
    """A checkpoint that is corrupt, or belongs to another architecture."""


class UnknownNameError(AdvlabError, KeyError):
    """A model, attack or experiment name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SolverError(AdvlabError):
    """An exact solver that could not certify its answer (it never returns an uncertified one)."""
