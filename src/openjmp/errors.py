"""The error types openjmp raises for bad input, each naming where the problem is."""

from __future__ import annotations


class OpenJMPError(Exception):
    """Base class of every error openjmp raises on purpose."""


class DataError(OpenJMPError, ValueError):
    """A structure or a data file is wrong.

    The message always names the source (a file path or a description), the record
    (an index or key within the source) and the problem, so a user can find and fix it.
    """

    def __init__(self, source: object, index: object, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.index = index
        self.problem = problem
        where = self.source if self.source is not None else "<in memory>"
        rec = "" if index is None else f", record {index}"
        super().__init__(f"{where}{rec}: {problem}")


class ConfigError(OpenJMPError, ValueError):
    """A configuration file or an override is wrong; the message names the file and field path."""


class CheckpointError(OpenJMPError, ValueError):
    """A checkpoint cannot be loaded; the message names the file and the problem."""
