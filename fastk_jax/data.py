"""Data sets for the fastest-k SGD experiments (NumPy only, no network).

* :func:`synthetic_linear`: the linear-regression generator of the adaptive fastest-k SGD
  paper (Sec. V-A).
* :func:`load_digits`: scikit-learn's bundled 8x8 handwritten digits (optional dependency).
* :func:`read_idx` / :func:`write_idx` / :func:`load_mnist`: the MNIST IDX file format, raw
  or gzip-compressed (a Git LFS pointer or an unfetched git-annex link is named as such).
* :func:`select_classes` / :func:`subsample`: reduce a data set to some classes or rows.
* :func:`read_trace` / :func:`load_trace`: measured worker times from a CSV file, for the
  ``trace`` delay law.

Every bad input raises :class:`fastk_jax.errors.DataError` with a one-line message that names
the file or the problem.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from typing import NamedTuple

import numpy as np

from fastk_jax.errors import DataError, one_line

PathLike = str | os.PathLike[str]

# IDX type byte -> big-endian NumPy dtype of the stored elements.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Native dtype (by kind and size) -> IDX type byte, for writing.
_IDX_CODES: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _IDX_TYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"


def _name(path: PathLike) -> str:
    """The path as text that stays on one line in an error message."""
    return one_line(os.fspath(path))


# --------------------------------------------------------------------------- synthetic


def synthetic_linear(m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic linear-regression data of the adaptive fastest-k SGD paper, Sec. V-A.

    Each of the ``m`` rows of ``X`` is drawn independently and uniformly from the integers
    ``{1, ..., 10}^d``; the true model ``w_bar`` has ``d`` entries drawn uniformly from the
    integers ``{1, ..., 100}``; the labels are ``y_l ~ N(<x_l, w_bar>, 1)`` (unit-variance
    Gaussian noise). All quantities are dimensionless.

    Draws, in this order, ``X``, ``w_bar`` and the noise from
    ``np.random.default_rng(seed)``, so the same arguments give the same arrays.

    Returns ``(X, y, w_bar)`` as float64 arrays of shapes ``(m, d)``, ``(m,)`` and ``(d,)``.
    Raises :class:`DataError` if ``m < 1`` or ``d < 1``.
    """
    for name, value in (("m", m), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"synthetic_linear: {name} must be an integer, got {value!r}")
        if value < 1:
            raise DataError(f"synthetic_linear: {name} must be >= 1, got {value}")
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 10, size=(int(m), int(d)), endpoint=True).astype(np.float64)
    w_bar = rng.integers(1, 100, size=int(d), endpoint=True).astype(np.float64)
    y = x @ w_bar + rng.standard_normal(int(m))
    return x, y, w_bar


# --------------------------------------------------------------------------- digits


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits that scikit-learn ships (no download).

    Returns ``(images, labels)``: ``images`` float64 of shape ``(1797, 64)``, pixel
    intensities scaled from scikit-learn's 0..16 to ``[0, 1]`` (divided by 16); ``labels``
    int64 of shape ``(1797,)`` with values in ``0..9``.

    scikit-learn is an optional dependency; without it this raises :class:`DataError`.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install 'fastk-jax[digits]'") from None
    bunch = _sk_load_digits()
    images = np.asarray(bunch.data, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target).astype(np.int64)
    if images.ndim != 2 or labels.shape != (images.shape[0],):
        raise DataError(f"scikit-learn digits: unexpected shapes {images.shape} and {labels.shape}")
    return images, labels


# --------------------------------------------------------------------------- IDX


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    The format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte with the number of dimensions ``n``, ``n``
    big-endian uint32 sizes, then the elements, big-endian, in C order. Gzip compression is
    detected by the magic bytes ``1f 8b``, not by the file name.

    Returns the array with the stored shape and a native-byte-order dtype of the stored
    type (``uint8`` for MNIST pixels and labels). Raises :class:`DataError`, naming the
    path, if the file is missing or unreadable, empty, corrupt gzip, has a bad magic number,
    an unknown type code, zero dimensions, or holds fewer (truncated) or more (trailing
    bytes) data bytes than its header says.
    """
    name = _name(path)
    raw = _read_bytes(path, "idx file")
    if not raw:
        raise DataError(f"idx file {name}: empty file")
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            detail = str(exc).replace("\n", " ") or type(exc).__name__
            raise DataError(f"idx file {name}: corrupt gzip data ({detail})") from None
        if not raw:
            raise DataError(f"idx file {name}: empty file (after gzip decompression)")
    return _parse_idx(raw, name)


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode the bytes of an uncompressed IDX file; ``name`` is used in error messages."""
    if len(raw) < 4:
        raise DataError(f"idx file {name}: truncated header ({len(raw)} bytes, need at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"idx file {name}: bad magic number 0x{raw[:4].hex()} (an IDX file starts with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataError(
            f"idx file {name}: unknown type code 0x{code:02X} (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)"
        )
    if ndim == 0:
        raise DataError(f"idx file {name}: zero dimensions in header")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"idx file {name}: truncated header ({len(raw)} bytes, {ndim} dimensions need {header_len})")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header_len
    if actual < expected:
        raise DataError(
            f"idx file {name}: truncated: header says shape {shape} "
            f"({expected} data bytes) but only {actual} data bytes follow"
        )
    if actual > expected:
        raise DataError(
            f"idx file {name}: {actual - expected} trailing bytes after the {expected} data bytes of shape {shape}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_len)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` to ``path`` as an IDX file, gzip-compressed if ``compress``.

    The inverse of :func:`read_idx`. The array must have at least one dimension (at most
    255, each of size < 2**32) and dtype uint8, int8, int16, int32, float32 or float64 (any
    byte order). Raises :class:`DataError` for other arrays.
    """
    arr = np.asarray(array)
    name = _name(path)
    code = _IDX_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DataError(
            f"idx file {name}: cannot write dtype {arr.dtype} (IDX holds uint8, int8, int16, int32, float32 or float64)"
        )
    if not 1 <= arr.ndim <= 255:
        raise DataError(f"idx file {name}: cannot write a {arr.ndim}-dimensional array (need 1..255)")
    if any(size >= 2**32 for size in arr.shape):
        raise DataError(f"idx file {name}: dimension sizes {arr.shape} do not fit in uint32")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = np.ascontiguousarray(arr, dtype=_IDX_TYPES[code]).tobytes()
    payload = header + body
    if compress:
        payload = gzip.compress(payload, mtime=0)
    with open(path, "wb") as fh:
        fh.write(payload)


# --------------------------------------------------------------------------- MNIST


def load_mnist(images_path: PathLike, labels_path: PathLike, *, scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST-style images and labels from two IDX files (raw or gzip).

    The images file must be 3-D uint8 (count x rows x cols, pixel values 0..255); the
    labels file must be 1-D integers with values in ``0..9`` and the same count.

    Returns ``(images, labels)``: ``images`` float64 of shape ``(count, rows * cols)``,
    pixels scaled to ``[0, 1]`` (divided by 255); ``labels`` int64 of shape ``(count,)``.
    With ``scaled=False`` the images stay the file's uint8 pixels, flattened: pick the rows
    first, then ``scale_pixels`` them (the same float64 values, without 8 bytes a pixel for
    every image of the file: 376 MB for MNIST's 60,000 training images).
    Raises :class:`DataError`, naming the file, for any unreadable or inconsistent file.
    """
    img_name, lab_name = _name(images_path), _name(labels_path)
    images = read_idx(images_path)
    if images.ndim != 3:
        raise DataError(
            f"mnist images {img_name}: expected 3 dimensions (count x rows x cols), got shape {images.shape}"
        )
    if images.dtype != np.uint8:
        raise DataError(f"mnist images {img_name}: expected unsigned bytes, got {images.dtype}")
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise DataError(f"mnist labels {lab_name}: expected 1 dimension, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"mnist labels {lab_name}: expected integer labels, got {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"mnist labels {lab_name}: {labels.shape[0]} labels do not match {images.shape[0]} images in {img_name}"
        )
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"mnist labels {lab_name}: label {int(labels[i])} at index {i} is outside 0..9")
    count, rows, cols = images.shape
    if rows * cols == 0:
        raise DataError(f"mnist images {img_name}: the images have no pixels (shape {images.shape})")
    flat = images.reshape(count, rows * cols)
    return (scale_pixels(flat) if scaled else flat), labels.astype(np.int64)


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 as float64 in ``[0, 1]`` (divided by 255, in place of one copy)."""
    out = np.asarray(pixels).astype(np.float64)
    out /= 255.0
    return out


# --------------------------------------------------------------------------- reductions


def select_classes(
    images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the rows whose label is in ``classes``; relabel them ``0..len(classes)-1``.

    The new label of a row is the position of its old label in ``classes`` (so
    ``classes=(3, 8)`` maps 3 -> 0 and 8 -> 1, for binary logistic regression). Row order is
    preserved. ``None`` returns the inputs unchanged. Labels are returned as int64.

    Raises :class:`DataError` if ``classes`` is empty or repeats a class, if a requested
    class has no rows, or if images and labels have different numbers of rows.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.shape[:1] != labels.shape[:1] or labels.ndim != 1:
        raise DataError(f"select_classes: {labels.shape} labels do not match images of shape {images.shape}")
    if classes is None:
        return images, labels
    classes = tuple(classes)
    if not classes:
        raise DataError("select_classes: classes must not be empty")
    if len(set(classes)) != len(classes):
        raise DataError(f"select_classes: classes {classes} repeat a class")
    new_labels = np.full(labels.shape, -1, dtype=np.int64)
    for new, old in enumerate(classes):
        hit = labels == old
        if not hit.any():
            raise DataError(f"select_classes: class {old} of {classes} has no rows")
        new_labels[hit] = new
    keep = new_labels >= 0
    return images[keep], new_labels[keep]


def subsample(x: np.ndarray, y: np.ndarray, m: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of ``m`` rows of ``(x, y)`` (all rows, shuffled, if ``None``).

    Permutes the rows with ``np.random.default_rng(seed).permutation`` and keeps the first
    ``m``; ``x`` and ``y`` stay aligned. Raises :class:`DataError` if ``m < 1``, if ``m``
    exceeds the number of rows, or if ``x`` and ``y`` have different numbers of rows.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"subsample: x of shape {x.shape} and y of shape {y.shape} differ in rows")
    n = x.shape[0]
    if m is not None:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
            raise DataError(f"subsample: m must be an integer or None, got {m!r}")
        if m < 1 or m > n:
            raise DataError(f"subsample: m={m} must be between 1 and the {n} rows available")
    order = np.random.default_rng(seed).permutation(n)
    if m is not None:
        order = order[: int(m)]
    return x[order], y[order]


def split_test(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train rows, labels), (test rows, labels)): a seeded random ``fraction`` of the rows held
    out (rounded, at least one row on each side). The permutation is drawn from a generator of
    its own (seed and a fixed offset), so it does not repeat ``subsample``'s."""
    x, y = np.asarray(x), np.asarray(y)
    if not 0 < fraction < 1:
        raise DataError(f"the test fraction must lie strictly between 0 and 1, got {fraction}")
    m = x.shape[0]
    held = round(fraction * m)
    if not 1 <= held <= m - 1:
        raise DataError(f"a test fraction of {fraction} of {m} rows leaves no rows on one side")
    order = np.random.default_rng([seed, 7919]).permutation(m)
    test, train = order[:held], order[held:]
    return (x[train], y[train]), (x[test], y[test])


# --------------------------------------------------------------------------- traces

MAX_TRACE_CELLS = 50_000_000  # rows x columns of a trace table (float64 on the host)


class TraceTable(NamedTuple):
    """A trace file's times: column j's ``counts[j]`` measurements in the first rows of
    ``table[:, j]``, the rest padded with its first measurement (read-only arrays)."""

    table: np.ndarray  # (R, c) float64, R = max(counts)
    counts: np.ndarray  # (c,) int64
    sha256: str  # of the file's bytes
    header: tuple[str, ...] | None  # the column names, if the file has a header row


def _cell_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def read_trace(path: PathLike) -> TraceTable:
    """Read a CSV file of measured times, one column per worker or a single column.

    The format: comma-separated UTF-8 text; lines starting with ``#`` and blank lines are
    skipped; the first row is a header (column names) if none of its cells is a number; every
    other row has one cell per column, a time > 0 (any unit) or an empty cell (no measurement,
    so that columns may hold different numbers of times). Raises :class:`DataError`, naming
    the path and where possible the line and column, if the file is missing, unreadable, empty,
    not UTF-8, has a row of another length, a cell that is not a number, a time that is not
    finite and > 0, a column without times, or more than ``MAX_TRACE_CELLS`` cells.
    """
    raw = _read_bytes(path, "trace file")
    return _parse_trace(raw, _name(path))


_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def _read_bytes(path: PathLike, what: str) -> bytes:
    """The bytes of a data file. A data set kept in git often arrives as a stand-in for its
    content: a Git LFS pointer (a small text file) or a git-annex link (a symlink into
    ``.git/annex/objects`` that does not resolve until the content is fetched); both are
    refused with the command that fetches the data, not as a corrupt or missing file."""
    name = _name(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        if _annex_link(path):
            raise DataError(f"{what} {name}: is a git-annex link whose content is not here: run `git annex get`") from None
        raise DataError(f"{what} {name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{what} {name}: is a directory, not a file") from None
    except OSError as exc:
        raise DataError(f"{what} {name}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # open() refuses a path with a NUL byte
        raise DataError(f"{what} {name}: cannot read: {exc}") from None
    if raw.startswith(_LFS_POINTER):
        raise DataError(f"{what} {name}: is a Git LFS pointer, not the data: run `git lfs pull`")
    return raw


def _annex_link(path: PathLike) -> bool:
    """Whether ``path`` is a symlink into a git-annex object store (``.git/annex/objects``)."""
    try:
        target = os.readlink(path)
    except (OSError, ValueError):
        return False
    return "annex/objects/" in target.replace(os.sep, "/")


def _parse_trace(raw: bytes, name: str) -> TraceTable:
    where = f"trace file {name}"
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    header, columns, width = None, [], 0
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            at = f"{where}: line {reader.line_num}"
            if not width:
                width = len(cells)
                columns = [[] for _ in range(width)]
                if all(_cell_number(c) is None for c in cells):
                    header = tuple(cells)
                    continue
            if len(cells) != width:
                raise DataError(f"{at}: {len(cells)} cells, but the file has {width} columns")
            for j, cell in enumerate(cells):
                if not cell:
                    continue
                value = _cell_number(cell)
                if value is None:
                    raise DataError(f"{at}, column {j + 1}: {cell!r} is not a number")
                if not math.isfinite(value) or value <= 0:
                    raise DataError(f"{at}, column {j + 1}: times must be finite and > 0, got {cell!r}")
                columns[j].append(value)
    except csv.Error as exc:
        raise DataError(f"{where}: line {reader.line_num}: not valid CSV ({exc})") from None
    if not width:
        raise DataError(f"{where}: empty file (no rows)")
    counts = np.array([len(c) for c in columns], dtype=np.int64)
    for j, count in enumerate(counts):
        if not count:
            label = f" ({header[j]!r})" if header else ""
            raise DataError(f"{where}: column {j + 1}{label} has no times")
    rows = int(counts.max())
    if rows * width > MAX_TRACE_CELLS:
        raise DataError(f"{where}: {rows} x {width} cells exceed {MAX_TRACE_CELLS:.0e}")
    table = np.empty((rows, width), np.float64)
    for j, column in enumerate(columns):
        table[: len(column), j] = column
        table[len(column) :, j] = column[0]  # padding, never drawn
    table.setflags(write=False)
    counts.setflags(write=False)
    return TraceTable(table, counts, digest, header)


_TRACE_CACHE: dict[tuple[str, str], TraceTable] = {}
_TRACE_CACHE_SIZE = 8


def load_trace(path: PathLike, sha256: str | None = None) -> TraceTable:
    """``read_trace``, parsed once per file content: later calls read and hash the bytes and
    reuse the table. With ``sha256`` (a resolved study's), a file whose content changed since
    raises :class:`DataError`."""
    raw = _read_bytes(path, "trace file")
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"trace file {_name(path)}: changed since the study was resolved (sha256 {digest[:12]}..., expected {sha256[:12]}...)"
        )
    key = (os.path.realpath(path), digest)
    if key not in _TRACE_CACHE:
        while len(_TRACE_CACHE) >= _TRACE_CACHE_SIZE:
            _TRACE_CACHE.pop(next(iter(_TRACE_CACHE)))
        _TRACE_CACHE[key] = _parse_trace(raw, _name(path))
    return _TRACE_CACHE[key]
