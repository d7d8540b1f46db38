"""Reliability under faults, class by class, with real processes, real signals and a real full
disk (a small tmpfs, where the machine lets the tests mount one):

* output paths that refuse files, names too long, a full disk while checkpointing or saving:
  one line, exit 2 (the input's fault) or 1 (the machine's), the last checkpoint still usable;
* the results folder replaced whole, and a commit killed between its renames recovered;
* two runs into one folder: the second refused while the first lives, a dead one's lock taken over;
* Ctrl-C during start-up, compilation or the swap: exit 130, no traceback, a true message;
* damaged or foreign checkpoint state: a warning and a fresh start, or one line;
* silent misreporting: legends with diverged seeds, the checkpoint cadence, raw warnings,
  ``python -W error``; an unavailable JAX platform.

The fuzz of kills at random instants through a whole run is ``test_fuzz.py``'s
``test_kill_at_random_instants``. Subprocesses share a persistent compilation cache, so that
only the first of them compiles.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint import _interrupted, _same, _setup
from test_cli import base, toml

from fastk_jax import cli, engine
from fastk_jax.analysis import plotting, results
from fastk_jax.engine import checkpoint
from fastk_jax.errors import ConfigError, FastkError, ResourceError, from_os_error
from fastk_jax.io import files, run_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of every subprocess: this checkout, and one compilation cache."""
    cache = tmp_path_factory.mktemp("jax-cache")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "FASTK_CHECKPOINT_EVERY_S": "0",
    }


def command(*args) -> list[str]:
    return [sys.executable, "-m", "fastk_jax", *map(str, args)]


def study_file(folder: Path, name: str = "tiny.toml", **run) -> Path:
    doc = base()
    doc["run"].update(run)
    path = folder / name
    path.write_text(toml(doc))
    return path


def one_line_error(proc_err: str, code: int, returncode: int) -> None:
    assert returncode == code, proc_err
    assert "Traceback" not in proc_err
    assert proc_err.count("\n") == 1 and proc_err.startswith("fastk-jax: error: "), proc_err


def digest(out: Path) -> str:
    return json.loads((out / "summary.json").read_text())["results_sha256"]


# ---------------------------------------------------------------- 1. writes that fail


@pytest.mark.parametrize("case", ["under /proc", "name too long", "OUT.partial a file", "parent a file"])
def test_output_paths_that_refuse_files_fail_in_one_line_before_running(tmp_path, capsys, case):
    cfg = study_file(tmp_path, "c.toml")
    out = {
        "under /proc": Path("/proc/fastk-jax-out"),
        "name too long": tmp_path / ("x" * 250),
        "OUT.partial a file": tmp_path / "out",
        "parent a file": tmp_path / "c.toml" / "out",
    }[case]
    if case == "OUT.partial a file":
        (tmp_path / "out.partial").write_text("not checkpoints")
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.monotonic()
    code = cli.main(["run", str(cfg), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    one_line_error(err, 2, code)
    assert time.monotonic() - started < 60  # before the simulation, not after it
    needle = {"under /proc": "refuses new files", "name too long": "too long", "OUT.partial a file": "out.partial"}
    assert needle.get(case, "not a folder") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_os_errors_map_to_the_input_or_the_machine():
    assert type(from_os_error(OSError(errno.EACCES, "Permission denied"), "cannot write x")) is FastkError
    full = from_os_error(OSError(errno.ENOSPC, "No space left on device"), "cannot write x", "kept")
    assert isinstance(full, ResourceError) and str(full) == "cannot write x: No space left on device; kept"


class Disk:
    """A small file system of its own (a tmpfs) at ``path``, resized with ``resize(bytes)``."""

    def __init__(self, path: Path):
        self.path = path

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs for a full disk here (needs root): {e}")
    try:
        yield Disk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, tmpfs, env):
    """Room for one checkpoint but not for the next beside it: the run stops with one line, exit
    1; the checkpoint on disk is the last complete one, with no temporary file beside it; once
    there is room the same command resumes from it and ends bit-identical."""
    cfg = study_file(tmp_path, time_horizon=400.0, chunk=10)
    clean = tmp_path / "clean"
    subprocess.run(
        command("run", cfg, "--out", clean, "--quiet"), env={**env, "FASTK_CHECKPOINT_EVERY_S": "off"}, check=True
    )
    out = tmpfs.path / "out"
    probe = tmp_path / "probe"  # how large is one checkpoint of this run?
    proc = subprocess.Popen(command("run", cfg, "--out", probe, "--quiet"), env=env, stderr=subprocess.DEVNULL)
    slot = tmp_path / "probe.partial" / "group-0.npz"
    while proc.poll() is None and not slot.exists():
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    size = slot.stat().st_size
    tmpfs.resize(int(1.6 * size) // 4096 * 4096)  # the next checkpoint's temporary file does not fit
    proc = subprocess.run(
        command("run", cfg, "--out", out, "--quiet"), env=env, capture_output=True, text=True, check=False
    )
    one_line_error(proc.stderr, 1, proc.returncode)
    assert "No space left on device" in proc.stderr and "resumes from them" in proc.stderr
    partial = tmpfs.path / "out.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["group-0.npz"]  # no temporary file
    kept = checkpoint.Slot(partial, "group-0")
    with np.load(kept.path, allow_pickle=False) as f:
        assert json.loads(str(f["manifest"]))["iterations"] > 0
    assert not out.exists() and sorted(p.name for p in tmpfs.path.iterdir()) == ["out.partial"]
    tmpfs.resize(8 << 20)
    done = subprocess.run(command("run", cfg, "--out", out), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "resuming from the checkpoints" in done.stderr
    assert digest(out) == digest(clean) and not partial.exists()


def test_full_disk_while_saving_keeps_the_old_results(tmp_path, tmpfs, env):
    cfg = study_file(tmp_path)
    out = tmpfs.path / "out"
    env = {**env, "FASTK_CHECKPOINT_EVERY_S": "off"}
    subprocess.run(command("run", cfg, "--out", out, "--quiet"), env=env, check=True)
    old = digest(out)
    used = sum(f.stat().st_size for f in out.iterdir())
    tmpfs.resize((used + (16 << 10)) // 4096 * 4096 + 4 * 4096)  # the old results fit, new ones do not
    cfg = study_file(tmp_path, eta=0.002)
    proc = subprocess.run(
        command("run", cfg, "--out", out, "--quiet"), env=env, capture_output=True, text=True, check=False
    )
    one_line_error(proc.stderr, 1, proc.returncode)
    assert "No space left on device" in proc.stderr and "nothing was replaced" in proc.stderr
    assert digest(out) == old and results.load(out).seeds == 3
    assert sorted(p.name for p in tmpfs.path.iterdir()) == ["out"]  # no staging folder, no lock


# ---------------------------------------------------------------- 2. the swap, and its recovery


def _results(folder: Path, seeds: int) -> Path:
    """Results of ``seeds`` seeds (of a fake study) saved into ``folder``."""
    from test_results import _arrays

    return files.save(folder, {**_arrays(), "seeds": np.asarray(seeds)}, {"name": "x"}, {"name": "x"})


@pytest.mark.parametrize("killed", ["before the swap", "between the renames", "before the clean-up", "in the clean-up"])
def test_a_commit_killed_at_any_step_is_finished_by_the_next_run(tmp_path, killed):
    """Lay out what a commit leaves when killed after each of its steps (``run_folder.commit``);
    the next claim of OUT leaves OUT with whole results, the old ones or the new, and nothing
    else beside it: no staging, no old copy, no orphaned OUT.partial of a finished run."""
    out = _results(tmp_path / "out", 3)
    new_src = _results(tmp_path / "src", 4)
    ready, aside, partial = tmp_path / ".out.fastk-new", tmp_path / ".out.fastk-old", tmp_path / "out.partial"
    partial.mkdir()
    (partial / "group-0.npz").write_bytes(b"a finished run's checkpoint")
    (partial / ".group-0.npz.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".out.ab12cd_9").mkdir()  # a staging folder being written
    if killed == "before the swap":
        new_src.rename(ready)
    elif killed == "between the renames":
        new_src.rename(ready)
        out.rename(aside)
    else:
        out.rename(aside)
        new_src.rename(out)
        if killed == "in the clean-up":
            partial_files = list(partial.iterdir())
            partial_files[0].unlink()
    with run_folder.claim(out):
        pass
    assert results.load(out).seeds == 4  # the new results, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_run_killed_before_its_swap_keeps_its_checkpoints(tmp_path):
    out = _results(tmp_path / "out", 3)
    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / "group-0.npz").write_bytes(b"checkpoint")
    (tmp_path / ".out.ab12cd_9").mkdir()
    with run_folder.claim(out):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.partial"]
    assert (partial / "group-0.npz").exists() and results.load(out).seeds == 3


def test_an_interrupted_process_never_starts_a_swap(tmp_path, monkeypatch):
    out = _results(tmp_path / "out", 3)
    old = digest(out)
    monkeypatch.setitem(run_folder._flags, "interrupted", True)
    from test_results import _arrays

    with pytest.raises(KeyboardInterrupt):
        files.save(out, _arrays(), {"name": "y"}, {"name": "y"})
    assert digest(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_figure_that_fails_costs_the_figure_only(tmp_path):
    from test_results import _arrays

    def broken(folder):
        (folder / "figure.png").write_bytes(b"half a figure")
        raise RuntimeError("no such font")

    with pytest.warns(UserWarning, match="a figure was not written .*no such font.*results are kept"):
        out = files.save(tmp_path / "out", _arrays(), {"name": "x"}, {"name": "x"}, figures=[broken])
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "results.npz", "summary.json"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~files._umask())  # as mkdir makes a folder


# ---------------------------------------------------------------- 3. two runs, one folder


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(tmp_path, env):
    cfg = study_file(tmp_path, time_horizon=2000.0, chunk=10)
    out = tmp_path / "out"
    first = subprocess.Popen(command("run", cfg, "--out", out, "--quiet"), env=env, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "out.lock"
    while first.poll() is None and not lock.exists():
        time.sleep(0.005)
    assert lock.read_text().strip() in ("", str(first.pid))
    second = subprocess.run(
        command("run", cfg, "--out", out, "--quiet"), env=env, capture_output=True, text=True, check=False
    )
    one_line_error(second.stderr, 2, second.returncode)
    assert "in use by another fastk-jax run" in second.stderr and "out.lock" in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    first.stderr.close()
    assert results.load(out).seeds == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]


def test_a_dead_runs_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False
    )
    (tmp_path / "out.lock").write_text(dead.stdout)  # its pid is gone
    _results(tmp_path / "out", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "out.lock").write_text("")  # a run killed between making the lock and writing its pid
    _results(tmp_path / "out", 3)
    holder = subprocess.Popen(  # a live run: holds the lock's flock
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
                "os.write(fd, str(os.getpid()).encode()); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                "time.sleep(60)"
            ),
            str(tmp_path / "out.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FastkError, match=f"in use by another fastk-jax run \\(pid {holder.pid}"):
            _results(tmp_path / "out", 4)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with run_folder.claim(tmp_path / "out"):
        with run_folder.claim(tmp_path / "out"):  # reentrant: files.save inside a run's claim
            assert (tmp_path / "out.lock").read_text().strip() == str(os.getpid())
        assert (tmp_path / "out.lock").exists()
    assert not (tmp_path / "out.lock").exists()


# ---------------------------------------------------------------- 4. Ctrl-C


def _interrupt(cmd, env, when) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``, send SIGINT once ``when(elapsed_s, stderr_so_far)`` is true; (result, seconds from
    the signal to the exit)."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    err, started = b"", time.monotonic()

    def read() -> bytes:
        try:
            return os.read(fd, 1 << 16)
        except BlockingIOError:
            return b""

    while proc.poll() is None and not when(time.monotonic() - started, err.decode(errors="replace")):
        time.sleep(0.01)
        err += read()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    took = time.monotonic() - sent
    os.set_blocking(fd, True)
    err += proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(cmd, proc.returncode, "", err.decode(errors="replace")), took


@pytest.mark.parametrize("at_s", [0.3, 0.8, 1.5])
def test_ctrl_c_during_start_up_is_exit_130_without_traceback(tmp_path, env, at_s):
    cfg = study_file(tmp_path)
    out = tmp_path / "out"
    proc, took = _interrupt(command("run", cfg, "--out", out), env, lambda t, err: t >= at_s)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fastk-jax: interrupted") and ("no results written" in last or "nothing written" in last)
    assert took < cli.GRACE_S + 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_ctrl_c_while_compiling_stops_in_seconds_and_says_nothing_was_written(tmp_path, env):
    cfg = study_file(tmp_path)
    out = tmp_path / "out"
    env = {**env, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "own-cache")}  # so that it really compiles
    proc, took = _interrupt(command("run", cfg, "--out", out), env, lambda t, err: "compiling" in err)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.splitlines()[-1]
        == f"fastk-jax: interrupted; no results written to {out}/ (it was not made); the same command starts it again"
    )
    assert took < cli.GRACE_S + 10
    assert not out.exists()  # (the watchdog's exit, if it came to that, leaves out.lock: the next run takes it over)
    done = subprocess.run(
        command("run", cfg, "--out", out, "--quiet"), env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr  # a lock left by the watchdog's exit is taken over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "own-cache", "tiny.toml"]


def test_ctrl_c_at_any_instant_in_process_never_lets_the_run_finish(tmp_path, capsys):
    """The handler only marks the process (``run_folder.interrupt``); the run stops at its next
    safe point, and nothing of a marked run is written: here the mark comes from inside a
    progress callback, the worst instant, after the last chunk."""
    cfg = study_file(tmp_path)
    original = cli._progress_printer

    def marking(quiet):
        def show(p):
            if p.fraction >= 1.0:
                run_folder.interrupt()

        return show

    cli._progress_printer = marking
    try:
        code = cli.main(["run", str(cfg), "--out", str(tmp_path / "out")])
    finally:
        cli._progress_printer = original
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("fastk-jax: interrupted; no results written to")
    assert not (tmp_path / "out").exists()
    assert not run_folder.interrupted()  # the mark ends with the command
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0


# ---------------------------------------------------------------- 6. damaged or foreign state


def test_a_checkpoint_edited_into_another_valid_zip_starts_over(tmp_path):
    prob, cfg, kwargs = _setup()
    slot = checkpoint.Slot(tmp_path, "g", every_s=0.0)
    _interrupted(prob, cfg, kwargs, slot, after=20)
    with np.load(slot.path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    name = next(k for k in arrays if k.startswith("b0_") and arrays[k].dtype.kind == "f" and arrays[k].size)
    arrays[name] = arrays[name] + 1  # same manifest and key, other numbers
    np.savez(slot.path, **arrays)
    with pytest.warns(UserWarning, match="does not match its content hash"):
        sim = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g"))
    assert sim.resumed_from == 0 and _same(sim.summary, engine.simulate(prob, cfg, **kwargs).summary)


def test_a_folder_where_a_checkpoint_belongs_starts_over_and_is_replaced(tmp_path):
    prob, cfg, kwargs = _setup()
    (tmp_path / "g.npz").mkdir()
    (tmp_path / "g.npz" / "x").write_text("not a checkpoint")
    with pytest.warns(UserWarning, match="is a folder, not a checkpoint"):
        sim = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g", every_s=0.0))
    assert sim.resumed_from == 0 and (tmp_path / "g.npz").is_file()
    again = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g"))
    assert again.resumed_from == sim.iterations and _same(again.summary, sim.summary)


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    slot = checkpoint.Slot(tmp_path, "g", every_s=0.0)
    slot.save("key", [[np.arange(3.0)]], {"iterations": 1, "run_s": 0.0})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(ResourceError, match="cannot write checkpoint .*No space left on device"):
        slot.save("key", [[np.arange(4.0)]], {"iterations": 2, "run_s": 0.0})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]
    batches, meta = slot.load("key")
    assert meta["iterations"] == 1 and np.array_equal(batches[0][0], np.arange(3.0))
    fresh = checkpoint.Slot(tmp_path / "new", "g")
    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(ResourceError):
        fresh.save("key", [[np.arange(3.0)]], {"iterations": 1, "run_s": 0.0})
    assert not (tmp_path / "new").exists()  # no empty checkpoint folder left


# ---------------------------------------------------------------- 7. silent misreporting


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-0.5", "soon"])
def test_checkpoint_cadence_refuses_nan_inf_and_negatives(tmp_path, capsys, monkeypatch, value):
    with pytest.raises(ConfigError, match="FASTK_CHECKPOINT_EVERY_S"):
        checkpoint.cadence(value)
    monkeypatch.setenv("FASTK_CHECKPOINT_EVERY_S", value)
    cfg = study_file(tmp_path)
    code = cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    one_line_error(err, 2, code)
    assert "FASTK_CHECKPOINT_EVERY_S" in err and repr(value) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]
    assert checkpoint.cadence("off") is None and checkpoint.cadence("0") == 0.0 and checkpoint.cadence(" 2.5 ") == 2.5


def test_legends_say_how_many_seeds_diverged(tmp_path):
    from test_results import _arrays

    a = _arrays()
    a["seeds"] = np.asarray(8)
    out = files.save(tmp_path / "out", a, {}, {})
    res = results.load(out)
    assert plotting.seeds_title(res) == "mean of 8 seeds, 95% bands"
    some = dataclasses.replace(res, diverged=np.asarray([5, 5]))
    assert plotting.seeds_title(some) == "mean of 3 of 8 seeds (5 diverged), 95% bands"
    mixed = dataclasses.replace(res, diverged=np.asarray([5, 0]))
    assert "less the diverged runs" in plotting.seeds_title(mixed)
    assert plotting.seeds_label(mixed, 0) == "a (3 of 8 seeds: 5 diverged)" and plotting.seeds_label(mixed, 1) == "b"
    fig = plotting.error_vs_time(mixed)
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == plotting.seeds_title(mixed)
    assert [t.get_text() for t in legend.get_texts()] == ["a (3 of 8 seeds: 5 diverged)", "b"]
    plotting.plt.close(fig)


def test_warnings_are_one_line_and_python_W_error_keeps_the_results(tmp_path, env):
    """A label with a glyph the font lacks makes matplotlib warn: the warning is one
    ``fastk-jax: warning:`` line; under ``python -W error`` it fails the figure, which is then
    a warning, and the results (computed first) are written and loadable."""
    doc = base()
    doc["policy"][0]["label"] = "k=3 \u4e2d"
    cfg = tmp_path / "cjk.toml"
    cfg.write_text(toml(doc))
    out = tmp_path / "out"
    proc = subprocess.run(
        command("run", cfg, "--out", out, "--quiet"), env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("fastk-jax: warning: ") for line in lines), proc.stderr
    assert any("Glyph" in line for line in lines)
    strict = tmp_path / "strict"
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "fastk_jax", "run", cfg, "--out", strict, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "a figure was not written" in proc.stderr
    assert all(line.startswith("fastk-jax: warning: ") for line in proc.stderr.splitlines()), proc.stderr
    assert sorted(p.name for p in strict.iterdir()) == ["config.json", "results.npz", "study.toml", "summary.json"]
    assert digest(strict) == digest(out) and results.load(strict).seeds == 3
    assert not (tmp_path / "strict.partial").exists()


# ---------------------------------------------------------------- 8. an unavailable platform


@pytest.mark.parametrize("platform", ["cuda", "no-such-platform"])
def test_an_unavailable_platform_is_one_line(tmp_path, env, platform):
    if platform == "cuda":
        import jax

        if any(d.platform == "gpu" for d in jax.devices()):
            pytest.skip("a GPU backend is installed here")
    cfg = study_file(tmp_path)
    proc = subprocess.run(
        command("run", cfg, "--out", tmp_path / "out"),
        env={**env, "JAX_PLATFORMS": platform},
        capture_output=True,
        text=True,
        check=False,
    )
    one_line_error(proc.stderr, 2, proc.returncode)
    assert f"JAX_PLATFORMS='{platform}'" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


# ---------------------------------------------------------------- Ctrl-C inside the swap


def test_ctrl_c_inside_the_swap_lets_it_finish_and_says_the_results_were_written(tmp_path, capsys, monkeypatch):
    """A real SIGINT to this process between the renames of the swap (Python's own handler, the
    Python API): the swap finishes, then KeyboardInterrupt; through the command (its handler
    marks the process): exit 130 and the line says the results were written."""
    if os.environ.get("FASTK_TEST_OWN_PROCESS") != "1":  # a stray SIGINT must not stop the test runner
        name = "test_ctrl_c_inside_the_swap_lets_it_finish_and_says_the_results_were_written"
        inner = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                "0",
                "-p",
                "no:cacheprovider",
                f"{__file__}::{name}",
                "--basetemp",
                str(tmp_path / "inner"),
            ],
            env={**os.environ, "FASTK_TEST_OWN_PROCESS": "1"},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert inner.returncode == 0, inner.stdout[-4000:] + inner.stderr[-2000:]
        return
    out = _results(tmp_path / "out", 3)
    real_rename = os.rename

    def rename_then_sigint(src, dst):
        real_rename(src, dst)
        if Path(dst).name == ".out.fastk-old":  # between OUT renamed aside and the new one renamed in
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs at the next bytecode

    monkeypatch.setattr(os, "rename", rename_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        _results(out, 4)
    monkeypatch.setattr(os, "rename", real_rename)
    assert results.load(out).seeds == 4 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    cfg = study_file(tmp_path)
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    cfg = study_file(tmp_path, eta=0.002)
    # in this process the watchdog's exit would end the test runner: give the main thread time
    monkeypatch.setattr(cli, "GRACE_S", 600.0)
    monkeypatch.setattr(os, "rename", rename_then_sigint)
    code = cli.main(["run", str(cfg), "--out", str(out), "--quiet"])
    monkeypatch.setattr(os, "rename", real_rename)
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert err.splitlines()[-1] == f"fastk-jax: interrupted after the results were written to {out}/"
    assert json.loads((out / "config.json").read_text())["run"]["eta"] == [0.002]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]
    assert not run_folder.interrupted() and _results(tmp_path / "after", 3)  # later saves are not refused


def test_theory_studies_and_sweeps_hold_the_lock_too(tmp_path, monkeypatch):
    """The three kinds of study file claim their output folder (``run_folder.claim``) and write
    through the swap: no lock, staging or checkpoint folder is left beside it."""
    from fastk_jax.runner import folder as registry
    from fastk_jax.study import library

    claimed = []
    real_claim = run_folder.claim

    def spy(out):
        claimed.append(Path(out))
        return real_claim(out)

    monkeypatch.setattr(run_folder, "claim", spy)
    registry.run_file(library.find("adaptive-fig1"), tmp_path / "theory", quick=True)
    sweep_file = study_file(tmp_path, "sweep.toml", time_horizon=5.0)
    sweep_file.write_text(
        sweep_file.read_text() + '[sweep]\neps = 1.0\ndeadline = 4.0\n[sweep.axes]\n"run.eta" = [0.001, 0.002]\n'
    )
    registry.run_file(sweep_file, tmp_path / "sweep")
    assert claimed[:2] == [tmp_path / "theory", tmp_path / "theory"]  # run_file's claim, then save's (reentrant)
    assert tmp_path / "sweep" in claimed
    for out in ("theory", "sweep"):
        files.read_arrays(tmp_path / out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep", "sweep.toml", "theory"]


def test_probes_of_killed_runs_are_removed_and_concurrent_probes_do_not_collide(tmp_path):
    (tmp_path / ".out.ab12cd_9-p").write_text("")  # a probe a killed run left
    (tmp_path / ".out.keep-p").write_text("")  # not one: left alone
    for _ in range(3):
        run_folder.check_writable(tmp_path / "out")
    _results(tmp_path / "out", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.keep-p", "out"]
