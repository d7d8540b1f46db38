"""A plain (non-editable) install: the built wheel, in a fresh virtual environment, runs every
named study from outside any source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# without PYTHONPATH: a checkout on it (its fastk_jax.egg-info) would make pip take the wheel for installed already
OUTSIDE = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(*cmd, cwd, env=OUTSIDE, timeout=600):
    return subprocess.run([str(c) for c in cmd], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this tree, installed without its dependencies into a new venv that
    sees this environment's packages (jax, numpy, ...) through a path file: so the test
    installs nothing from the network, and fastk_jax itself comes only from the wheel."""
    where = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", where / "dist", ROOT, cwd=where)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (where / "dist").glob("fastk_jax-*.whl")
    env_dir = where / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).stdout.strip())
    # paths listed in a .pth file join sys.path without their own .pth files being run, so this
    # environment's editable install of fastk_jax does not come along
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = run(python, "-m", "pip", "--version", cwd=where)
    assert pip.returncode == 0, pip.stderr[-2000:]
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=where)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return env_dir


def test_the_wheel_lists_and_runs_the_named_studies(installed, tmp_path):
    env = OUTSIDE
    exe = installed / "bin" / "fastk-jax"
    where = run(installed / "bin" / "python", "-c", "import fastk_jax; print(fastk_jax.__file__)", cwd=tmp_path, env=env)
    assert str(installed) in where.stdout, where.stdout + where.stderr  # the wheel's copy, not the checkout
    listed = run(exe, "studies", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(list((ROOT / "fastk_jax" / "studies").glob("*.toml")))
    assert "adaptive-fig3" in listed.stdout
    done = run(exe, "study", "stale-fig5", "--quick", "--out", tmp_path / "out", "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert {"results.npz", "summary.json", "config.json", "figure.png"} <= {p.name for p in (tmp_path / "out").iterdir()}
    simulated = run(exe, "study", "adaptive-fig3", "--quick", "--seeds", "1", "--out", tmp_path / "sim", "--quiet",
                    cwd=tmp_path, env=env)
    assert simulated.returncode == 0, simulated.stderr
    assert (tmp_path / "sim" / "study.toml").is_file()
    exported = run(exe, "study", "adaptive-fig3", "--export", tmp_path / "mine.toml", cwd=tmp_path, env=env)
    shipped = (ROOT / "fastk_jax" / "studies" / "adaptive-fig3.toml").read_text()
    assert exported.returncode == 0 and (tmp_path / "mine.toml").read_text() == shipped
    again = run(exe, "study", "adaptive-fig3", "--export", tmp_path / "mine.toml", cwd=tmp_path, env=env)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_the_wheel_ships_the_gpu_check_script_and_it_refuses_a_folder_it_cannot_make(installed, tmp_path):
    """``studies/gpu-check.sh`` comes with a plain install (the README's way to find it) and
    says in one line, exit code 2, when its output folder cannot be made (before any work)."""
    found = run(installed / "bin" / "python", "-c",
                "import fastk_jax, pathlib; print(pathlib.Path(fastk_jax.__file__).parent / 'studies' / 'gpu-check.sh')",
                cwd=tmp_path)
    script = Path(found.stdout.strip())
    assert str(installed) in str(script) and script.is_file(), found.stdout + found.stderr
    (tmp_path / "a-file").write_text("")
    refused = run("bash", script, tmp_path / "a-file" / "out", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == f"gpu-check: cannot make the folder {tmp_path / 'a-file' / 'out'}"
