"""Errors that fastk-jax reports to users as one line, without a traceback."""

from __future__ import annotations

import errno


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``, ``\\x00``),
    so that it prints as one line: field names and paths come from the user's files."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class FastkError(ValueError):
    """Bad input: a configuration, data file, argument or output path that cannot be used.

    The message is one line that names the offending field or file. The CLI prints it and
    exits with status 2; the Python API raises it. (``ResourceError``, a subclass, is the
    one fault that is not the input's.)
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


class ResourceError(FastkError):
    """The machine failed, not the input: a full disk, an exceeded quota, an I/O error. The
    message is one line; the CLI exits with status 1 (not 2: running again elsewhere, or once
    there is room, can succeed with the same input)."""


# errnos that say the machine, not the path the user chose, is at fault
_RESOURCE_ERRNOS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EIO", "ENOMEM", "EMFILE", "ENFILE", "EFBIG", "ESTALE", "ENOLCK")
    if hasattr(errno, name)
}


def from_os_error(e: OSError, doing: str, after: str = "") -> FastkError:
    """``e`` as a one-line error: ``ResourceError`` for a fault of the machine (a full disk...),
    else ``FastkError`` (a path that cannot be written: the input's fault). ``doing`` says what
    failed ("cannot write checkpoint X"), ``after`` what is left ("the checkpoints so far are kept")."""
    reason = e.strerror or str(e) or type(e).__name__
    message = f"{doing}: {reason}" + (f"; {after}" if after else "")
    return (ResourceError if e.errno in _RESOURCE_ERRNOS else FastkError)(message)
