"""Building the patched darknet engine where pip put spidarknet: into the user's cache.

The recipe is the repository's own ``make darknet``: ``mk/darknet.mk`` with ``patches/`` and
``tools/darknet-{source,prepare}.sh``, shipped inside the package (``engine/darknet_build/``,
copied there by ``setup.py``) or read from the checkout an editable install runs from.  It is
run with its outputs in the cache (:func:`~spidarknet.engine.locate.cache_dir`):

- ``darknet/``: ``darknet``, ``libdarknet.so``, ``build.log`` (the compiler's output) and
  ``make.log`` (patching and fetching);
- ``darknet-src/``: the patched tree; ``darknet-orig/``: Debian's pristine tarball, once fetched.

The pristine source, first found: ``$SPIDARKNET_DARKNET_SOURCE`` (a folder holding the source, or
Debian's ``.orig.tar.xz``); the checkout's ``darknet/`` submodule or its
``build/darknet-orig/`` tarball; a tarball already in the cache; else ``apt-get source
darknet`` through ``tools/darknet-source.sh`` (a Debian or Ubuntu mirror must be reachable).
No network is needed when any of the others is there.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from spidarknet.core.errors import EngineError
from spidarknet.engine.locate import HOW_TO_BUILD, REPO, Found, cache_dir, describe, find_darknet, user_build_dir

#: a folder with darknet's source (pjreddie/darknet 61c9d02e) or Debian's .orig.tar.xz of it
SOURCE_ENV = "SPIDARKNET_DARKNET_SOURCE"
ORIG_NAME = "darknet_0.0.0+git20180914.61c9d02e.orig.tar.xz"
SHIPPED = Path(__file__).resolve().parent / "darknet_build"

#: (files compiled so far, files to compile or None while unknown)
OnProgress = Callable[[int, "int | None"], None]


def recipe_dir() -> Path:
    """The folder holding ``mk/darknet.mk``, ``patches/`` and ``tools/``: the package's copy,
    else the checkout's."""
    for root in (SHIPPED, REPO):
        if (root / "mk" / "darknet.mk").is_file() and (root / "tools" / "darknet-prepare.sh").is_file():
            return root
    raise EngineError(f"this installation of spidarknet lacks the engine's build recipe ({SHIPPED}); "
                      "reinstall it from a checkout or an sdist, or give a darknet build with --darknet PATH")


def pristine_source() -> Path | None:
    """The pristine darknet source to patch (a folder or the .orig.tar.xz); None: fetch it with
    ``apt-get source`` into the cache."""
    env = os.environ.get(SOURCE_ENV)
    if env:
        path = Path(env).expanduser()
        if not (path / "Makefile").is_file() and not (path.is_file() and path.name.endswith(".tar.xz")):
            raise EngineError(f"{SOURCE_ENV}={env} is neither a folder holding darknet's source (with its Makefile) "
                              f"nor Debian's {ORIG_NAME}")
        return path.resolve()
    for candidate in (REPO / "darknet", REPO / "build" / "darknet-orig" / ORIG_NAME,
                      cache_dir() / "darknet-orig" / ORIG_NAME):
        if (candidate / "Makefile").is_file() or candidate.is_file():
            return candidate
    return None


def missing_tools(source: Path | None) -> list[str]:
    """The programs the build needs that are not on ``PATH``."""
    needed = ["make", "cc", "patch", "tar", "sh"]
    if source is None or source.is_file():
        needed.append("xz")
    if source is None:
        needed.append("apt-get")
    return [name for name in needed if shutil.which(name) is None]


def _make_command(recipe: Path, out: Path, source: Path | None, gpu: bool) -> list[str]:
    cache = cache_dir()
    command = ["make", "-C", str(recipe), "-f", "mk/darknet.mk", "darknet", f"DARKNET_OUT={out}",
               f"DARKNET_SRC={cache / 'darknet-src'}", f"DARKNET_CACHE={cache / 'darknet-orig'}",
               f"GPU={int(gpu)}", f"DARKNET_JOBS={os.cpu_count() or 2}"]
    if source is not None and source.is_dir():
        command.append(f"DARKNET_SUBMODULE={source}")
    elif source is not None and source.parent != cache / "darknet-orig":
        (cache / "darknet-orig").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, cache / "darknet-orig" / ORIG_NAME)   # darknet-source.sh checks its SHA-256
    return command


def _files_to_compile(src: Path, gpu: bool) -> int | None:
    """How many objects darknet's Makefile lists (OBJ, EXECOBJA, and its GPU kernels)."""
    try:
        text = (src / "Makefile").read_text()
    except OSError:
        return None
    names = re.findall(r"^(OBJ\+?=|EXECOBJA=)(.*)$", text, flags=re.M)
    return sum(len(words.split()) for kind, words in names if gpu or kind != "OBJ+=") or None


def build_engine(gpu: bool = False, on_progress: OnProgress | None = None) -> Found:
    """Build darknet with our patches into the user's cache (or bring that build up to date)
    and return its binary.  Raises :class:`EngineError` naming the log when it fails."""
    source = pristine_source()
    missing = missing_tools(source)
    if missing:
        raise EngineError(_cannot_build(missing))
    out = user_build_dir(gpu)
    out.mkdir(parents=True, exist_ok=True)
    command = _make_command(recipe_dir(), out, source, gpu)
    with open(cache_dir() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # one build at a time (two trainings started at once)
        with open(out / "make.log", "w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            done = _run_watched(command, log, out, gpu, on_progress)
    if done != 0 or not (out / "darknet").is_file():
        tail = _tail(out / "make.log", 6)
        raise EngineError(f"building darknet failed (make exited with {done}); patching and fetching: "
                          f"{out / 'make.log'}, compiler: {out / 'build.log'}\n{tail}")
    return Found(out / "darknet", "user build")


def _run_watched(command: list[str], log, out: Path, gpu: bool, on_progress: OnProgress | None) -> int:
    """Run ``command`` with its output in ``log``; report the objects compiled twice a second."""
    env = {**os.environ, "LC_ALL": "C"}
    env.pop("MAKEFLAGS", None)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    total = None
    try:
        while process.poll() is None:
            time.sleep(0.5)
            if on_progress is not None:
                total = total or _files_to_compile(cache_dir() / "darknet-src", gpu)
                compiled = len(list((out / "obj").glob("*.o"))) if (out / "obj").is_dir() else 0
                on_progress(min(compiled, total or compiled), total)
    except BaseException:
        process.terminate()
        process.wait()
        raise
    return process.returncode


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _cannot_build(missing: list[str]) -> str:
    hint = ("install a C compiler and make (Debian/Ubuntu: apt-get install build-essential patch xz-utils)"
            if {"make", "cc", "patch", "xz"} & set(missing) else
            f"give darknet's source with {SOURCE_ENV}=PATH (a checkout of pjreddie/darknet 61c9d02e, or "
            f"Debian's {ORIG_NAME})")
    return (f"the darknet engine cannot be built here: {', '.join(missing)} not found on PATH; {hint} and run "
            "'spidarknet build-engine', or give a patched darknet build with --darknet PATH "
            "(or SPIDARKNET_DARKNET)")


def trainable_darknet(explicit: str | os.PathLike | None = None,
                      on_build: Callable[[Path], None] | None = None,
                      on_progress: OnProgress | None = None) -> Found:
    """The darknet binary that can train: an explicit or found patched build, else one built
    now into the user's cache (``on_build(folder)`` is called before it starts)."""
    chosen = bool(explicit or os.environ.get("SPIDARKNET_DARKNET"))
    try:
        found = find_darknet(explicit)
    except EngineError as exc:
        if chosen:
            raise
        found, why = None, str(exc).replace(f"; {HOW_TO_BUILD}", "")
    if found is not None:
        if found.trains_on_cpu or found.gpu:
            return found
        why = f"{describe(found)} cannot train YOLOv2 on the CPU (upstream's region layer has no CPU backward pass)"
        if chosen:
            raise EngineError(f"{why}; build the patched engine with 'spidarknet build-engine' "
                              "('make darknet OPENMP=1' in a checkout)")
    source = pristine_source()
    missing = missing_tools(source)
    if missing:
        raise EngineError(f"{why}; {_cannot_build(missing)}")
    if on_build is not None:
        on_build(user_build_dir(False))
    return build_engine(gpu=False, on_progress=on_progress)
