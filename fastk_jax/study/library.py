"""The named studies: the TOML files shipped inside the package (``fastk_jax/studies/``).

They are package data, read through ``importlib.resources``, so a plain ``pip install`` runs
every named study; in a source checkout ``studies/`` at the top of the repository is the same
folder. ``export`` copies one out to edit.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

from ..errors import ConfigError, FastkError
from .fields import read_toml


def folder() -> Path:
    """The folder of the named studies inside the installed package."""
    return Path(str(importlib.resources.files("fastk_jax") / "studies"))


def study_files() -> dict[str, Path]:
    """Every named study: name -> its file."""
    where = folder()
    if not where.is_dir():
        raise ConfigError("study", f"no studies folder at {where}: the installation is incomplete")
    return {p.stem: p for p in sorted(where.glob("*.toml"))}


def describe() -> list[tuple[str, str]]:
    """(name, one-line description) of every named study."""
    return [(name, str(read_toml(path).get("description", ""))) for name, path in study_files().items()]


def find(name: str) -> Path:
    """The file of the study called ``name``."""
    files = study_files()
    if name not in files:
        raise ConfigError("study", f"no study named {name!r}; `fastk-jax studies` lists them")
    return files[name]


def export(name: str, dest: str | Path) -> Path:
    """Copy the study ``name`` to ``dest`` (a file, or a folder to put NAME.toml in), to edit and
    run with ``fastk-jax run``. Refuses to overwrite an existing file."""
    source = find(name)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists():
        raise FastkError(f"{dest} exists; remove it or choose another file")
    try:
        shutil.copyfile(source, dest)
    except OSError as e:
        raise FastkError(f"cannot write {dest}: {e.strerror or e}") from None
    return dest
