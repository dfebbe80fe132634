"""pip users train too: spidarknet installed from a built sdist into a fresh virtual
environment, run outside the repository, builds the darknet engine into the user's cache on
first need (with the patches shipped in the package) and trains; without a compiler the error
names --darknet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spidarknet.engine import locate
from spidarknet.engine.build import ORIG_NAME, SOURCE_ENV

REPO = Path(__file__).resolve().parents[1]


def _clean_env(**extra) -> dict:
    """The environment of a user who never saw the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPIDARKNET_") and k not in ("PYTHONPATH", "XDG_CACHE_HOME", "MAKEFLAGS")}
    return {**env, **extra}


def _source_already_fetched() -> dict:
    """Darknet's pristine source as 'make darknet' left it in the checkout, to spare the test a
    download; without it the installed package fetches it itself (apt-get source)."""
    for candidate in (REPO / "darknet", REPO / "build" / "darknet-orig" / ORIG_NAME):
        if (candidate / "Makefile").is_file() or candidate.is_file():
            return {SOURCE_ENV: str(candidate)}
    return {}


def _run(command, cwd, env, timeout=600):
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done


def _lend_site_packages(python: Path, cwd: Path, env: dict) -> None:
    """Let the venv of ``python`` see this interpreter's site folders, after its own."""
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    own = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd, env).stdout.strip()
    (Path(own) / "lent-site-packages.pth").write_text(f"import site; list(map(site.addsitedir, {sites!r}))\n")


@pytest.mark.slow
def test_an_sdist_in_a_fresh_venv_builds_the_engine_on_first_need_and_trains(tmp_path):
    started = time.perf_counter()
    dist, venv, work, cache = (tmp_path / name for name in ("dist", "venv", "work", "cache"))
    work.mkdir()
    env = _clean_env(SPIDARKNET_CACHE=str(cache), **_source_already_fetched())
    _run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", tmp_path, "sdist", "--dist-dir", dist],
         REPO, env)
    sdist, = dist.glob("spidarknet-*.tar.gz")
    # the project's dependencies come from this Python's site folders (make test runs in a venv
    # of its own: a .pth file lends them); spidarknet itself only from the sdist
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], work, env)
    python = venv / "bin" / "python"
    _lend_site_packages(python, work, env)
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", sdist], work, env)
    where = _run([python, "-c", "import spidarknet.engine.build as b; print(b.__file__); print(b.recipe_dir())"],
                 work, env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where   # the installed copy and its recipe
    installed = time.perf_counter() - started
    sk = venv / "bin" / "spidarknet"
    _run([sk, "simulate", "run.cxi", "--count", "40", "--seed", "3", "-q"], work, env)
    _run([sk, "export-dataset", "run.cxi", "--labels-dataset", "/truth/label", "--out", "ds",
          "--max-batches", "20", "-q"], work, env)
    t0 = time.perf_counter()
    done = _run([sk, "train", "ds", "-q"], work, env)
    trained = time.perf_counter() - t0
    engine = cache / "darknet"
    source = str(Path(env[SOURCE_ENV]).resolve()) if SOURCE_ENV in env else "Debian"
    assert f"building the darknet engine from {source}" in done.stderr
    assert "darknet engine built in" in done.stderr and str(engine / "darknet") in done.stderr
    assert (engine / "darknet").is_file() and (engine / "libdarknet.so").is_file()
    assert "0002-region-layer-cpu-backward.patch" in (engine / "make.log").read_text()
    assert " -c " in (engine / "build.log").read_text()                 # the compiler's output, kept
    assert "trained 20 iterations" in done.stdout
    assert (work / "ds" / "backup" / "yolov2-tiny-spi_final.weights").is_file()
    # a second training finds the build in the cache and builds nothing
    again = _run([sk, "train", "ds", "--force", "-q"], work, env)
    assert "building" not in again.stderr and f"{engine / 'darknet'} (user build" in again.stderr
    print(f"sdist built and installed in {installed:.0f} s; first train (engine build + 20 iterations) "
          f"{trained:.0f} s; in all {time.perf_counter() - started:.0f} s")


def test_without_a_compiler_train_names_darknet_option(small_cxi, tmp_path, monkeypatch, capsys):
    """As installed outside a checkout (no repository build), with no make or compiler on PATH:
    one error line that says how to go on, --darknet among the ways."""
    from spidarknet.cli import export_dataset, train
    assert export_dataset.main([str(small_cxi), "--frames", "0:20", "--labels-dataset", "/truth/label",
                                "--out", str(tmp_path / "ds"), "-q"]) == 0
    monkeypatch.setattr(locate, "BUILD_DIRS", ())
    monkeypatch.setenv("SPIDARKNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("SPIDARKNET_DARKNET", raising=False)
    assert train.main([str(tmp_path / "ds"), "-q"]) == 1
    err = capsys.readouterr().err
    line, = [line for line in err.splitlines() if line.startswith("error:")]
    assert "darknet engine not found" in line and "cannot be built here" in line
    assert "make" in line and "cc" in line and "--darknet PATH" in line and "build-engine" in line
    assert not (tmp_path / "cache" / "darknet").exists()
