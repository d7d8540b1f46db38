"""Result files: a manifest with the configuration, the versions and a content hash; loading
refuses, in one line, a file that is truncated, corrupt, edited or from another run."""

import json
import zipfile

import numpy as np
import pytest

from fastk_jax import FastkError
from fastk_jax.analysis import results
from fastk_jax.io import files


def _arrays():
    g, c = 4, 2
    out = {
        "labels": np.asarray(["a", "b"]),
        "n_workers": np.asarray(10),
        "mean_delay": np.ones(c),
        "time_grid": np.linspace(0, 1, g),
        "iteration_grid": np.arange(g),
        "diverged": np.zeros(c, np.int64),
        "seeds": np.asarray(3),
        "staleness": np.ones((c, 4), np.int64),
        "levels": np.logspace(0, -2, 3),
    }
    for name in (*results.BANDS, "time_per_iteration"):
        shape = (c, 3) if name.startswith("reach") else (c,) if name == "time_per_iteration" else (c, g)
        out[f"{name}_mean"] = np.full(shape, 0.5, np.float32)
        out[f"{name}_half_width"] = np.full(shape, np.nan, np.float32)
        out[f"{name}_runs"] = np.full(shape, 3, np.int32)
    return out


def _save(tmp_path, config=None):
    return files.save(tmp_path / "out", _arrays(), config or {"name": "x", "run": {"eta": [0.5]}}, {"name": "x"})


def _rewrite(npz, change):
    with np.load(npz, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    change(a)
    np.savez(npz, **a)


def test_save_writes_a_manifest_and_load_checks_it(tmp_path):
    out = _save(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    with np.load(out / "results.npz", allow_pickle=False) as f:
        manifest = json.loads(str(f[files.MANIFEST]))
    assert manifest["sha256"] == summary["results_sha256"] == files.content_hash(_arrays())
    assert manifest["config"] == {"name": "x", "run": {"eta": [0.5]}}
    assert {"fastk_jax", "jax", "numpy"} <= set(manifest["versions"]) and summary["versions"] == manifest["versions"]
    res = results.load(out)
    assert list(res.labels) == ["a", "b"] and res.seeds == 3
    assert results.load(out / "results.npz").n_workers == 10


def test_truncated_file_is_refused_in_one_line(tmp_path):
    npz = _save(tmp_path) / "results.npz"
    data = npz.read_bytes()
    for size in (len(data) - 100, len(data) // 2, 10, 0):
        npz.write_bytes(data[:size])
        with pytest.raises(FastkError, match="not a readable results file") as e:
            results.load(npz)
        assert "\n" not in str(e.value)


def test_flipped_byte_is_refused(tmp_path):
    npz = _save(tmp_path) / "results.npz"
    data = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as z:
        info = z.getinfo("error_mean.npy")
    data[info.header_offset + 200] ^= 1  # inside the array's bytes: the zip CRC no longer matches
    npz.write_bytes(bytes(data))
    with pytest.raises(FastkError, match="not a readable results file"):
        results.load(npz)


def test_edited_array_or_mixed_folder_is_refused(tmp_path):
    out = _save(tmp_path)

    def edit(a):
        a["error_mean"] = a["error_mean"] * 2

    _rewrite(out / "results.npz", edit)  # a consistent zip, but not what was saved
    with pytest.raises(FastkError, match="does not match its content hash"):
        results.load(out)
    other = _save(tmp_path / "other", config={"name": "y"})
    (out / "results.npz").write_bytes((other / "results.npz").read_bytes())
    with pytest.raises(FastkError, match="they come from different runs"):
        results.load(out)
    assert results.load(out / "results.npz").seeds == 3  # the file alone is consistent
    assert files.status(out, "anything") == "unreadable"
    assert files.status(tmp_path / "nowhere", "anything") == "absent"


def test_files_without_a_manifest_still_load(tmp_path):
    out = _save(tmp_path)
    _rewrite(out / "results.npz", lambda a: a.pop(files.MANIFEST))
    assert results.load(out / "results.npz").seeds == 3


def test_object_arrays_are_never_pickled(tmp_path):
    with pytest.raises(ValueError, match="cannot be saved"):
        files.save(tmp_path / "out", {"x": np.asarray([{}, 1], dtype=object)}, {}, {})
    assert not (tmp_path / "out").exists()


def test_a_killed_saves_staging_folder_is_removed_by_the_next_save(tmp_path):
    (tmp_path / ".out.ab12cd_9").mkdir()  # what mkdtemp made before a SIGKILL inside save
    (tmp_path / ".out.ab12cd_9" / "results.npz").write_bytes(b"half")
    (tmp_path / ".out.keep").mkdir()  # not a staging folder of this save: left alone
    (tmp_path / ".outer.ab12cd_9").mkdir()
    _save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.keep", ".outer.ab12cd_9", "out"]
