"""Tests for fastk_jax.data: synthetic data, digits, IDX files, MNIST, class/row selection."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastk_jax.data import (
    load_digits,
    load_mnist,
    read_idx,
    scale_pixels,
    select_classes,
    subsample,
    synthetic_linear,
    write_idx,
)
from fastk_jax.errors import DataError


def raises_one_line(match_name: str, func, *args):
    """Call func(*args), expect a DataError with a one-line message containing match_name."""
    with pytest.raises(DataError) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message
    assert match_name in message
    return message


# --------------------------------------------------------------------------- synthetic


def test_synthetic_linear_shapes_and_dtypes():
    x, y, w = synthetic_linear(50, 7, seed=0)
    assert x.shape == (50, 7) and y.shape == (50,) and w.shape == (7,)
    assert x.dtype == y.dtype == w.dtype == np.float64


def test_synthetic_linear_value_ranges():
    x, _, w = synthetic_linear(2000, 20, seed=1)
    assert np.all(x == np.round(x)) and x.min() == 1 and x.max() == 10
    assert set(np.unique(x)) == set(range(1, 11))
    assert np.all(w == np.round(w)) and w.min() >= 1 and w.max() <= 100


def test_synthetic_linear_w_bar_covers_range():
    _, _, w = synthetic_linear(1, 5000, seed=2)
    assert w.min() == 1 and w.max() == 100


def test_synthetic_linear_deterministic():
    a = synthetic_linear(30, 4, seed=5)
    b = synthetic_linear(30, 4, seed=5)
    c = synthetic_linear(30, 4, seed=6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_synthetic_linear_noise_is_standard_normal():
    m = 20000
    x, y, w = synthetic_linear(m, 10, seed=3)
    r = y - x @ w
    # mean has sd 1/sqrt(m), sample std has sd ~ 1/sqrt(2m); allow 4 standard errors.
    assert abs(r.mean()) < 4 / np.sqrt(m)
    assert abs(r.std(ddof=1) - 1.0) < 4 / np.sqrt(2 * m)


@pytest.mark.parametrize("m,d", [(0, 3), (3, 0), (-1, 2), (2, -5)])
def test_synthetic_linear_bad_sizes(m, d):
    raises_one_line("synthetic_linear", synthetic_linear, m, d, 0)


# --------------------------------------------------------------------------- digits


def test_load_digits_shape_and_range():
    pytest.importorskip("sklearn")
    images, labels = load_digits()
    assert images.shape == (1797, 64) and images.dtype == np.float64
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))


def test_load_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    message = raises_one_line("scikit-learn", load_digits)
    assert "fastk-jax[digits]" in message


# --------------------------------------------------------------------------- IDX round trips


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / "a.idx"
    write_idx(path, arr, compress)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress


def test_idx_big_endian_layout(tmp_path):
    path = tmp_path / "b.idx"
    write_idx(path, np.array([1, 256], dtype=np.int32), compress=False)
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">2i", 1, 256)


def test_idx_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = tmp_path / "raw.gz"
    write_idx(gz_named_raw, arr, compress=False)
    raw_named_gz = tmp_path / "data-ubyte"
    write_idx(raw_named_gz, arr, compress=True)
    np.testing.assert_array_equal(read_idx(gz_named_raw), arr)
    np.testing.assert_array_equal(read_idx(raw_named_gz), arr)


def test_idx_empty_dimension(tmp_path):
    path = tmp_path / "e.idx"
    write_idx(path, np.zeros((0, 28, 28), dtype=np.uint8), compress=False)
    assert read_idx(path).shape == (0, 28, 28)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    code=st.sampled_from(["u1", "i1", "i2", "i4", "f4", "f8"]),
    compress=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_idx_round_trip_property(tmp_path, shape, code, compress, seed):
    raw = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * int(code[1]))
    arr = np.frombuffer(raw.astype(np.uint8).tobytes(), dtype=code).reshape(shape)
    path = tmp_path / "p.idx"
    write_idx(path, arr, compress)
    out = read_idx(path)
    assert out.shape == arr.shape and out.dtype == arr.dtype
    assert out.tobytes() == arr.tobytes()  # bitwise, so NaN payloads compare too


def test_write_idx_rejects_unsupported(tmp_path):
    raises_one_line("x.idx", write_idx, tmp_path / "x.idx", np.zeros(3, dtype=np.int64), False)
    raises_one_line("x.idx", write_idx, tmp_path / "x.idx", np.float64(1.0), False)


# --------------------------------------------------------------------------- IDX errors


def header(code: int, *shape: int) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_read_idx_missing_file(tmp_path):
    message = raises_one_line("nope.idx", read_idx, tmp_path / "nope.idx")
    assert "no such file" in message


def test_read_idx_directory(tmp_path):
    raises_one_line(str(tmp_path), read_idx, tmp_path)


def test_read_idx_empty_file(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(b"")
    assert "empty" in raises_one_line("empty.idx", read_idx, path)


def test_read_idx_empty_gzip(tmp_path):
    path = tmp_path / "empty.gz"
    path.write_bytes(gzip.compress(b""))
    assert "empty" in raises_one_line("empty.gz", read_idx, path)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "magic.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    assert "magic" in raises_one_line("magic.idx", read_idx, path)


def test_read_idx_unknown_type(tmp_path):
    path = tmp_path / "type.idx"
    path.write_bytes(header(0x0A, 1) + b"\x00")
    assert "type code 0x0A" in raises_one_line("type.idx", read_idx, path)


def test_read_idx_zero_dimensions(tmp_path):
    path = tmp_path / "zero.idx"
    path.write_bytes(bytes([0, 0, 0x08, 0]) + b"\x05")
    assert "zero dimensions" in raises_one_line("zero.idx", read_idx, path)


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00\x08", header(0x08, 2, 3)[:9]])
def test_read_idx_truncated_header(tmp_path, data):
    path = tmp_path / "short.idx"
    path.write_bytes(data)
    assert "truncated" in raises_one_line("short.idx", read_idx, path)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated_data(tmp_path, compress):
    data = header(0x0C, 2, 3) + b"\x00" * 23  # needs 24 bytes
    path = tmp_path / "trunc.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    assert "truncated" in raises_one_line("trunc.idx", read_idx, path)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_trailing_bytes(tmp_path, compress):
    data = header(0x08, 2, 3) + b"\x00" * 7  # needs 6 bytes
    path = tmp_path / "trail.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    assert "1 trailing bytes" in raises_one_line("trail.idx", read_idx, path)


def test_read_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(header(0x08, 100) + bytes(range(100)))
    path = tmp_path / "bad.gz"
    path.write_bytes(good[:10] + b"\xff" * 8 + good[18:])
    assert "gzip" in raises_one_line("bad.gz", read_idx, path)


def test_read_idx_truncated_gzip(tmp_path):
    good = gzip.compress(header(0x08, 100) + bytes(range(100)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    assert "gzip" in raises_one_line("cut.gz", read_idx, path)


# --------------------------------------------------------------------------- MNIST


def write_mnist(tmp_path, images, labels, compress=False):
    ip, lp = tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"
    write_idx(ip, np.asarray(images), compress)
    write_idx(lp, np.asarray(labels), compress)
    return ip, lp


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.array([0, 9, 3, 3, 8], dtype=np.uint8)
    ip, lp = write_mnist(tmp_path, images, labels, compress)
    x, y = load_mnist(ip, lp)
    assert x.shape == (5, 12) and x.dtype == np.float64
    assert y.dtype == np.int64
    np.testing.assert_allclose(x, images.reshape(5, 12) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert x.min() == 0.0 and x.max() == 1.0


def test_load_mnist_images_not_3d(tmp_path):
    ip, lp = write_mnist(tmp_path, np.zeros((4, 12), np.uint8), np.zeros(4, np.uint8))
    assert "3 dimensions" in raises_one_line(ip.name, load_mnist, ip, lp)


def test_load_mnist_images_not_ubyte(tmp_path):
    ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.float32), np.zeros(4, np.uint8))
    raises_one_line(ip.name, load_mnist, ip, lp)


def test_load_mnist_labels_not_1d(tmp_path):
    ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.uint8), np.zeros((4, 1), np.uint8))
    assert "1 dimension" in raises_one_line(lp.name, load_mnist, ip, lp)


def test_load_mnist_count_mismatch(tmp_path):
    ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.uint8), np.zeros(3, np.uint8))
    message = raises_one_line(lp.name, load_mnist, ip, lp)
    assert "3 labels do not match 4 images" in message


def test_load_mnist_label_out_of_range(tmp_path):
    labels = np.array([1, 2, 10, 0], np.uint8)
    ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.uint8), labels)
    message = raises_one_line(lp.name, load_mnist, ip, lp)
    assert "label 10 at index 2" in message


def test_load_mnist_missing_and_truncated_files(tmp_path):
    ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.uint8), np.zeros(4, np.uint8))
    raises_one_line("missing-labels", load_mnist, ip, tmp_path / "missing-labels")
    ip.write_bytes(ip.read_bytes()[:-1])
    assert "truncated" in raises_one_line(ip.name, load_mnist, ip, lp)


# --------------------------------------------------------------------------- select_classes


def test_select_classes_keeps_and_relabels_in_order():
    images = np.arange(8, dtype=np.float64).reshape(8, 1)
    labels = np.array([3, 1, 8, 3, 5, 8, 8, 0])
    x, y = select_classes(images, labels, (8, 3))
    np.testing.assert_array_equal(x[:, 0], [0, 2, 3, 5, 6])
    np.testing.assert_array_equal(y, [1, 0, 1, 0, 0])
    assert y.dtype == np.int64


def test_select_classes_none_keeps_everything():
    images, labels = np.ones((4, 2)), np.array([0, 1, 2, 3])
    x, y = select_classes(images, labels, None)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_select_classes_errors():
    images, labels = np.ones((4, 2)), np.array([0, 1, 1, 3])
    assert "class 7" in raises_one_line("no rows", select_classes, images, labels, (1, 7))
    raises_one_line("repeat", select_classes, images, labels, (1, 1))
    raises_one_line("empty", select_classes, images, labels, ())
    raises_one_line("select_classes", select_classes, images, labels[:3], (1,))


# --------------------------------------------------------------------------- subsample


def test_subsample_seeded_and_aligned():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.arange(10)
    xs, ys = subsample(x, y, 4, seed=7)
    assert xs.shape == (4, 2) and ys.shape == (4,)
    np.testing.assert_array_equal(xs[:, 0], 2 * ys)  # rows stay aligned
    assert len(set(ys.tolist())) == 4
    order = np.random.default_rng(7).permutation(10)[:4]
    np.testing.assert_array_equal(ys, order)
    _, ys2 = subsample(x, y, 4, seed=7)
    np.testing.assert_array_equal(ys, ys2)


def test_subsample_none_is_full_permutation():
    x, y = np.arange(10.0)[:, None], np.arange(10)
    xs, ys = subsample(x, y, None, seed=1)
    assert sorted(ys.tolist()) == list(range(10))
    np.testing.assert_array_equal(xs[:, 0], ys)
    _, ym = subsample(x, y, 10, seed=1)
    np.testing.assert_array_equal(ym, ys)


@pytest.mark.parametrize("m", [0, -3, 11])
def test_subsample_bad_m(m):
    x, y = np.zeros((10, 2)), np.zeros(10)
    message = raises_one_line(f"m={m}", subsample, x, y, m, 0)
    assert "10" in message


def test_subsample_mismatched_rows():
    raises_one_line("subsample", subsample, np.zeros((3, 2)), np.zeros(4), 2, 0)


# --------------------------------------------------------------------------- real-data findings


def test_load_mnist_unscaled_keeps_bytes_and_scales_to_the_same_values(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(7, 3, 4), dtype=np.uint8)
    ip, lp = write_mnist(tmp_path, images, np.arange(7, dtype=np.uint8))
    x, y = load_mnist(ip, lp)
    raw, y_raw = load_mnist(ip, lp, scaled=False)
    assert raw.dtype == np.uint8 and raw.shape == (7, 12) and np.array_equal(y, y_raw)
    rows = np.array([5, 0, 3])
    assert np.array_equal(scale_pixels(raw[rows]), x[rows])  # bit for bit
    assert np.array_equal(x, images.reshape(7, 12).astype(np.float64) / 255.0)  # as before


def test_git_lfs_pointer_is_named(tmp_path):
    pointer = tmp_path / "train-images-idx3-ubyte"
    pointer.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 47040016\n"
    )
    message = raises_one_line(pointer.name, read_idx, pointer)
    assert "is a Git LFS pointer, not the data: run `git lfs pull`" in message
    _ip, lp = write_mnist(tmp_path, np.zeros((4, 2, 2), np.uint8), np.zeros(4, np.uint8))
    assert "git lfs pull" in raises_one_line(pointer.name, load_mnist, pointer, lp)


def test_unfetched_git_annex_link_is_named(tmp_path):
    link = tmp_path / "train-labels-idx1-ubyte.gz"
    link.symlink_to("../.git/annex/objects/Xk/9m/SHA256E-s28881--abc.gz/SHA256E-s28881--abc.gz")
    message = raises_one_line(link.name, read_idx, link)
    assert "is a git-annex link whose content is not here: run `git annex get`" in message
    dangling = tmp_path / "other"
    dangling.symlink_to(tmp_path / "nowhere")  # any other broken link is a missing file
    assert "no such file" in raises_one_line("other", read_idx, dangling)
