"""Reading the fields of a study's tables: each value checked for its type and range, every
problem a one-line ``ConfigError`` naming the field (``policy[2].k: must be >= 1, got 0``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


INT_MAX = 2**31 - 1  # counts, sizes and iterations live in int32 on the device


TIME_RANGE = (1e-30, 1e30)  # times are float32 on the device


MAX_DATA_ENTRIES = 500_000_000  # synthetic data is generated in float64 on the host


def number(
    table: dict,
    key: str,
    where: str,
    default: Any = ...,
    *,
    integer: bool = False,
    low=None,
    strict_low=None,
    high: float | None = None,
):
    """A number from a table; integers are bounded by ``low`` and ``high`` (default int32's range)."""
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}", "missing")
        return default
    value = table[key]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"{where}.{key}", f"must be {'an integer' if integer else 'a number'}, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}.{key}", f"must be finite, got {value!r}")
    if integer and low is None and strict_low is None:
        low = -INT_MAX - 1
    if low is not None and value < low:
        raise ConfigError(f"{where}.{key}", f"must be >= {low}, got {show(value)}")
    if strict_low is not None and value <= strict_low:
        raise ConfigError(f"{where}.{key}", f"must be > {strict_low}, got {show(value)}")
    if high is None and integer:
        high = INT_MAX
    if high is not None and value > high:
        raise ConfigError(f"{where}.{key}", f"must be <= {high}, got {show(value)}")
    if not is_number(value):  # TOML integers are unbounded
        raise ConfigError(f"{where}.{key}", f"is too large for a float, got {show(value)}")
    return value


def show(value: Any) -> str:
    """``repr(value)``, shortened for a message (TOML integers may have thousands of digits)."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's int-to-text limit
        return "an integer with too many digits to print"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def string(table: dict, key: str, where: str, default: Any = ..., choices=None) -> str:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}", "missing")
        return default
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}", f"must be a string, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def table(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ConfigError(key, "missing [" + key + "] table" if value is None else "must be a table")
    return value


def no_extra(table: dict, allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(allowed))})")


def is_number(x: Any) -> bool:
    """An int or float that a float can hold (TOML integers are unbounded)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, float) or abs(x) <= sys.float_info.max


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing, empty or malformed file is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"cannot read {path}: {e}") from None
    if not text.strip():
        raise ConfigError("config", f"{path} is empty")
    try:
        return tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, or an integer too long for Python's int()
        raise ConfigError("config", f"{path} is not valid TOML: {str(e).splitlines()[0]}") from None
