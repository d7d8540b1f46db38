"""Result files: ``results.npz`` with its manifest and content hash, written into a run folder
atomically, and read back verified.

Files are written into a fresh temporary folder beside the output folder, the arrays first and
the figures last, and the folder is swapped in whole once all of them are complete
(``run_folder.commit``), so an interrupted or failed run never leaves half a result or a mix
of two runs' files. A figure that fails to draw is a warning, not a lost run.

``results.npz`` carries its own manifest, the array ``fastk_manifest`` (a JSON string): the
resolved configuration, the versions (``versions.versions``), and ``sha256``, a hash of every
other array (``content_hash``: name, dtype, shape and bytes, in name order); ``summary.json``
repeats the hash as ``results_sha256``. ``read_arrays`` recomputes it and refuses, with one
line, a file that is truncated, corrupt, edited, or does not belong with the folder's
summary.json and config.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..errors import FastkError, from_os_error
from ..versions import versions
from . import run_folder

MANIFEST = "fastk_manifest"  # the array of results.npz that holds its manifest


FORMAT = "fastk-jax results 1"


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, so that the file is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def check_writable(out_dir: str | Path) -> None:
    """Raise FastkError unless ``out_dir`` is, or can be created as, a writable folder (probed
    by creating a file: ``run_folder.check_writable``): called before a run, so that a bad --out
    fails in a second, not after the simulation."""
    run_folder.check_writable(Path(out_dir))


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of ``arrays`` in a canonical order: for each name in sorted order, the name, the
    dtype, the shape and the C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(
    out_dir: str | Path,
    arrays: dict[str, np.ndarray],
    config: dict[str, Any],
    summary: dict[str, Any],
    figures=(),
    checkpoints: Path | None = None,
    texts: dict[str, str] | None = None,
) -> Path:
    """Write ``arrays`` as results.npz (with its manifest), config.json, summary.json (with
    ``results_sha256`` and ``versions``) and ``figures`` (callables taking a folder and writing
    files into it) atomically into ``out_dir``, then remove ``checkpoints`` (the run's
    checkpoint folder, no longer needed). Under ``jax.distributed`` only process 0 writes
    (every process holds the same results), as only it writes checkpoints."""
    out_dir = Path(out_dir)
    if jax.process_index() != 0:
        return out_dir
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.hasobject or name == MANIFEST:  # object arrays would need pickle
            raise ValueError(f"results array {name!r} cannot be saved (dtype {a.dtype})")
    digest = content_hash(arrays)
    config = finite_json(config)
    summary = {**summary, "versions": summary.get("versions", versions()), "results_sha256": digest}
    manifest = {"format": FORMAT, "sha256": digest, "versions": summary["versions"], "config": config}
    with run_folder.claim(out_dir):
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
            os.chmod(staging, 0o777 & ~_umask())  # it becomes OUT: a folder as mkdir makes it, not mkdtemp's 0700
        except OSError as e:
            raise from_os_error(e, f"cannot write output folder {out_dir}") from None
        try:
            np.savez(staging / "results.npz", **arrays, **{MANIFEST: np.asarray(json.dumps(manifest, allow_nan=False))})
            for name, obj in (("config.json", config), ("summary.json", summary)):
                (staging / name).write_text(json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")
            for name, text in (texts or {}).items():  # e.g. study.toml, the study as run
                (staging / name).write_text(text, encoding="utf-8")
            for draw in figures:  # after the arrays: a figure that fails costs the figure only
                _draw(draw, staging)
            run_folder.commit(out_dir, staging, checkpoints)
        except OSError as e:
            raise from_os_error(
                e, f"cannot write output folder {out_dir}", "nothing was replaced; the checkpoints are kept"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _draw(draw, folder: Path) -> None:
    """Run the figure writer ``draw`` into ``folder``; if it fails (a plotting error, a warning
    that ``-W error`` made an error), remove what it wrote and warn, whatever the warning filters."""
    before = set(folder.iterdir())
    try:
        draw(folder)
    except Exception as e:  # noqa: BLE001 (any failure of a figure: the results are worth more)
        for f in set(folder.iterdir()) - before:
            shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)
        reason = str(e).splitlines()[0] if str(e) else "no message"
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(
                f"a figure was not written ({type(e).__name__}: {reason}); the results are kept", stacklevel=3
            )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_remove_stale_staging = run_folder.remove_stale_staging  # the name before run_folder existed


def read_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """results.npz's arrays (a folder or the file itself), without pickle, checked against its
    manifest (returned; None for files written before manifests) and, for a folder, against its
    summary.json and config.json. Raises FastkError naming the problem."""
    path = Path(path)
    folder = path if path.is_dir() else None
    if folder is not None:
        path = path / "results.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            a = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FastkError(f"no results at {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FastkError(
            f"{path} is not a readable results file (truncated or corrupt?): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if MANIFEST not in a:
        return a, None
    try:
        manifest = json.loads(str(a.pop(MANIFEST)))
        recorded = manifest["sha256"]
    except (ValueError, KeyError, TypeError):
        raise FastkError(f"{path} has an unreadable manifest: not a fastk-jax results file") from None
    if content_hash(a) != recorded:
        raise FastkError(f"{path} does not match its content hash: the file is corrupt or was edited")
    if folder is not None:
        for name, field, want in (
            ("summary.json", "results_sha256", recorded),
            ("config.json", None, manifest.get("config")),
        ):
            try:
                doc = json.loads((folder / name).read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                raise FastkError(f"{folder / name} is unreadable: {type(e).__name__}") from None
            got = doc.get(field) if field and isinstance(doc, dict) else doc
            if field and field not in doc:
                continue
            if got != want:
                raise FastkError(f"{path} does not match {folder / name}: they come from different runs")
    return a, manifest


def status(out_dir: str | Path, fingerprint: str) -> str:
    """What ``out_dir`` holds: ``"absent"`` (no results.npz), ``"complete"`` (results whose
    summary.json has this ``fingerprint`` and that pass ``load``'s checks), ``"other"`` (results
    of something else) or ``"unreadable"`` (results that fail the checks)."""
    out_dir = Path(out_dir)
    if not (out_dir / "results.npz").exists():
        return "absent"
    try:
        read_arrays(out_dir)
        summary = json.loads((out_dir / "summary.json").read_text())
    except (FastkError, OSError, ValueError):
        return "unreadable"
    return "complete" if isinstance(summary, dict) and summary.get("fingerprint") == fingerprint else "other"
