"""The findings of a real-data check (MNIST IDX files, the adaptive paper's Fig. 5 set-up): the
stable-step warning for logistic regression, F* cached on disk, MNIST rows chosen before they
become float64, and a too-small m named as such. (Git LFS / git-annex stand-ins: test_data.py;
the curvature bound itself: test_problems.py.)"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from fastk_jax import data
from fastk_jax.core import problems
from fastk_jax.errors import DataError
from fastk_jax.study import fstar_cache as cache
from fastk_jax.study.build import check_step_size
from fastk_jax.study.definition import Study
from fastk_jax.study.model import MLP, Logistic, _load_images


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTK_CACHE_DIR", str(tmp_path / "cache"))


def mnist_files(folder, count=300, side=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, side, side), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    data.write_idx(folder / "images.idx", images)
    data.write_idx(folder / "labels.idx", labels, compress=True)
    return str(folder / "images.idx"), str(folder / "labels.idx")


def study(problem: dict, eta: float) -> Study:
    return Study.from_table(
        {
            "name": "t",
            "problem": problem,
            "delays": {"law": "exponential", "rate": 1.0},
            "run": {"eta": eta, "time_horizon": 2.0, "seeds": 2},
            "policy": [{"kind": "fixed", "k": 1}],
        }
    )


# ---------------------------------------------------------------- (a) the stable-step warning


def test_logistic_eta_above_the_stable_limit_warns(tmp_path):
    images, labels = mnist_files(tmp_path)
    table = {"kind": "logistic", "n_workers": 5, "dataset": "mnist", "images": images, "labels": labels, "m": 200}
    problem = study(table, 0.1).problem.build()
    limit = problems.stable_step_limit(problem)
    assert limit == pytest.approx(2 / problems.logistic_curvature(np.asarray(problem.x), 0.01, 10).max())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_step_size(study(table, 0.5 * limit), problem) == limit  # below: silent
    with pytest.warns(UserWarning, match=r"run.eta=.* is above the stable limit 2/max_i L_i = .*runs may diverge"):
        check_step_size(study(table, 2.3 * limit), problem)


def test_no_limit_known_for_an_mlp_is_no_warning():
    pytest.importorskip("sklearn")
    problem = MLP(n_workers=4, m=40, hidden=(4,), test_fraction=None).build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = study({"kind": "mlp", "n_workers": 4, "m": 40, "hidden": [4]}, 100.0)
        assert check_step_size(s, problem) is None


# ---------------------------------------------------------------- (b) F* cached on disk


def _counting(monkeypatch):
    calls = []
    real = cache.logistic_optimum

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "logistic_optimum", counted)
    return calls


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 4))
    return x, np.eye(3)[rng.integers(0, 3, size=80)]


def test_f_star_is_computed_once_and_reused_bit_for_bit(monkeypatch):
    calls = _counting(monkeypatch)
    x, t = _data()
    first = cache.optimum(x, t, 0.05)
    assert cache.optimum(x, t, 0.05) == first and len(calls) == 1  # a hit: the same bits
    assert first == problems.logistic_optimum(x, t, 0.05)[0]
    cache.optimum(x, t, 0.06)  # another reg, other data, other targets: misses
    cache.optimum(x + 1e-9, t, 0.05)
    cache.optimum(x, t[:, [1, 0, 2]], 0.05)
    assert len(calls) == 4 and len(list(cache.cache_dir().glob("f_star-*.json"))) == 4


def test_a_corrupt_or_unwritable_cache_never_fails_a_run(monkeypatch, tmp_path):
    calls = _counting(monkeypatch)
    x, t = _data()
    value = cache.optimum(x, t, 0.05)
    (entry,) = cache.cache_dir().glob("f_star-*.json")
    for garbage in ("", "{not json", '{"key": 3}', '["a"]', '{"key": "' + cache.optimum_key(x, t, 0.05) + '", "f_star": "nan"}'):
        entry.write_text(garbage)
        assert cache.optimum(x, t, 0.05) == value
    assert len(calls) == 6 and entry.read_text().startswith('{"key"')  # recomputed and rewritten
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("FASTK_CACHE_DIR", str(blocked / "cache"))  # cannot be created
    assert cache.optimum(x, t, 0.05) == value and len(calls) == 7


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert cache.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("FASTK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "fastk-jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "fastk-jax"


def test_a_long_computation_reports_progress(monkeypatch):
    x, t = _data()
    lines = []
    cache.optimum(x, t, 0.05, say=lines.append)
    assert lines == []  # under a second: quiet
    monkeypatch.setattr(cache, "QUIET_S", 0.0)
    cache.optimum(x, t, 0.07, say=lines.append)
    assert "computing F* by Newton's method on 80 x 4 rows, 3 classes" in lines[0]
    assert [line.split(" (")[0] for line in lines[1:]] == [f"  F*: class {u}/3" for u in (1, 2, 3)]
    assert "left" in lines[1] and "left" not in lines[-1]
    lines.clear()
    cache.optimum(x, t, 0.07, say=lines.append)  # a hit says nothing
    assert lines == []


def test_a_study_builds_from_the_cache(monkeypatch, tmp_path):
    calls = _counting(monkeypatch)
    images, labels = mnist_files(tmp_path)
    p = Logistic(n_workers=5, dataset="mnist", images=images, labels=labels, m=100)
    a, b = p.build(), p.build()
    assert len(calls) == 1 and float(a.f_star) == float(b.f_star)


# ---------------------------------------------------------------- (c) rows chosen before float64


def _old_route(p):
    """_load_images as it was: every image float64 first, then classes, test split, subsample."""
    x, y = data.load_mnist(p.images, p.labels) if p.dataset == "mnist" else data.load_digits()
    classes = tuple(p.classes) if p.classes else None
    x, y = data.select_classes(x, y, classes)
    test = None
    if p.test_fraction:
        (x, y), test = data.split_test(x, y, p.test_fraction, p.data_seed)
    x, y = data.subsample(x, y, p.m, p.data_seed)
    return x, y, test


@pytest.mark.parametrize(
    "fields",
    [{"m": 60}, {"m": 60, "classes": (1, 3, 7), "test_fraction": 0.2, "data_seed": 5}, {"classes": (2, 8)}, {}],
)
def test_the_study_path_picks_the_same_rows_and_values(tmp_path, fields):
    images, labels = mnist_files(tmp_path)
    for p in (
        Logistic(n_workers=5, dataset="mnist", images=images, labels=labels, **fields),
        *([Logistic(n_workers=5, **fields)] if _have_sklearn() else []),
    ):
        x, y, test, _ = _load_images(p)
        x0, y0, test0 = _old_route(p)
        assert x.dtype == np.float64 and np.array_equal(x, x0) and np.array_equal(y, y0)
        assert (test is None) == (test0 is None)
        if test is not None:
            assert np.array_equal(test[0], test0[0]) and np.array_equal(test[1], test0[1])


def _have_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_study_path_never_holds_every_image_as_float64(tmp_path):
    images, labels = mnist_files(tmp_path, count=3000, side=28)
    p = Logistic(n_workers=5, dataset="mnist", images=images, labels=labels, m=60)
    all_float = 3000 * 784 * 8
    tracemalloc.start()
    try:
        _load_images(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * all_float, peak  # the file's bytes and their uint8 copy, not 8 bytes a pixel


# ---------------------------------------------------------------- (e) m too small for the classes


def test_an_m_too_small_for_the_classes_says_so(tmp_path):
    images, labels = mnist_files(tmp_path)
    p = Logistic(n_workers=2, dataset="mnist", images=images, labels=labels, m=6)
    with pytest.raises(DataError) as info:
        p.build()
    message = str(info.value)
    assert "\n" not in message and message.startswith("problem.m: class ")
    assert "has no rows among the m=6 rows subsampled: m is too small for the 10 classes" in message
    assert "(use a larger m or fewer classes)" in message
    p = Logistic(n_workers=2, dataset="mnist", images=images, labels=labels, m=2, classes=(3, 8, 5))
    with pytest.raises(DataError, match=r"class [385] has no rows .* too small for the 3 classes"):
        p.build()  # the class is named by its label in the data, not its position in classes
