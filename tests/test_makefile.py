"""The Makefile's Python: the project's own venv unless PYTHON names an interpreter.  Read from
'make -n' (what make would run) on a copy of the Makefile, so nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dry_run(tmp_path: Path, *args: str) -> list[str]:
    for name in ("Makefile", "setup.py", "mk/darknet.mk"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    done = subprocess.run(["make", "-n", "-C", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_install_uses_a_venv_of_its_own(tmp_path):
    lines = _dry_run(tmp_path, "install")
    assert "python3 -m venv --system-site-packages build/venv" in lines
    assert any(line.startswith("build/venv/bin/python -m pip install") and '-e ".[test]"' in line for line in lines)
    assert not any(line.startswith("python3 -m pip") for line in lines)


def test_python_given_installs_into_that_interpreter(tmp_path):
    lines = _dry_run(tmp_path, "install", "PYTHON=/opt/py/bin/python3")
    assert not any("venv" in line for line in lines)
    assert any(line.startswith("/opt/py/bin/python3 -m pip install") for line in lines)
    # one marker per interpreter: the venv's install does not count for another Python
    assert "touch build/.installed-_opt_py_bin_python3" in " ".join(lines)


def test_dragonfly_venv_sees_the_projects_packages(tmp_path):
    lines = " ".join(_dry_run(tmp_path, "build/dragonfly/.installed", "SYSTEM_DEPS=make"))
    assert "build/venv/bin/python -m venv --system-site-packages build/dragonfly" in lines
    assert "project=$(build/venv/bin/python -c" in lines and "spidarknet-project.pth" in lines
