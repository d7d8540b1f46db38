"""Errors that fastk-jax reports to users as one line, without a traceback."""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``, ``\\x00``),
    so that it prints as one line: field names and paths come from the user's files."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class FastkError(ValueError):
    """Bad input: a configuration, data file or argument that cannot be used.

    The message is one line that names the offending field or file. The CLI prints it and
    exits with status 2; the Python API raises it.
    """

    def __init__(self, message: str = "", *args):
        super().__init__(one_line(str(message)), *args)


class ConfigError(FastkError):
    """A configuration field is missing, malformed or out of range."""

    def __init__(self, field: str, problem: str):
        self.field = one_line(field)
        self.problem = one_line(problem)
        super().__init__(f"{self.field}: {self.problem}")


class DataError(FastkError):
    """A data file is missing, empty, truncated or inconsistent."""
