"""Errors that fastk-jax reports to users as one line, without a traceback."""

from __future__ import annotations


class FastkError(ValueError):
    """Bad input: a configuration, data file or argument that cannot be used.

    The message is one line that names the offending field or file. The CLI prints it and
    exits with status 2; the Python API raises it.
    """


class ConfigError(FastkError):
    """A configuration field is missing, malformed or out of range."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


class DataError(FastkError):
    """A data file is missing, empty, truncated or inconsistent."""
