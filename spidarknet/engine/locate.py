"""Finding the darknet engine: the ``darknet`` binary and ``libdarknet.so``.

Order: an explicit path → ``$SPIDARKNET_DARKNET`` / ``$SPIDARKNET_LIBDARKNET`` → the
repository's own build (``build/darknet/``, made by ``make darknet``) → the user's build in the
cache (``~/.cache/spidarknet/darknet-gpu/``, then ``darknet/``, made by ``spidarknet
build-engine`` or by ``train`` on first need, see :mod:`spidarknet.engine.build`) → ``PATH``
and Debian's ``/usr/lib/darknet/``.  Debian's binary is CPU-only and cannot train YOLOv2
(its region layer has no CPU backward pass); :func:`describe` says which one was found.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from spidarknet.core.errors import EngineError

REPO = Path(__file__).resolve().parents[2]
BUILD_DIRS = (REPO / "build" / "darknet", REPO / "darknet")
SYSTEM_LIBS = (Path("/usr/lib/darknet/libdarknet.so"), Path("/usr/lib/libdarknet.so"))
HOW_TO_BUILD = ("build it with 'spidarknet build-engine' (into the user's cache; 'make darknet' in a "
                "checkout), or give an existing build with --darknet PATH (detect: --libdarknet PATH) or "
                "SPIDARKNET_DARKNET / SPIDARKNET_LIBDARKNET")
#: where spidarknet keeps what it builds for this user (default ``$XDG_CACHE_HOME/spidarknet``,
#: ``~/.cache/spidarknet``)
CACHE_ENV = "SPIDARKNET_CACHE"


def cache_dir() -> Path:
    """The user's spidarknet cache: ``$SPIDARKNET_CACHE``, else ``$XDG_CACHE_HOME/spidarknet``,
    else ``~/.cache/spidarknet``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "spidarknet"


def user_build_dir(gpu: bool = False) -> Path:
    """The folder of the engine built into the cache (``darknet-gpu`` for a GPU build)."""
    return cache_dir() / ("darknet-gpu" if gpu else "darknet")


def _build_dirs() -> list[tuple[Path, str]]:
    return ([(folder, "repository build") for folder in BUILD_DIRS]
            + [(user_build_dir(gpu), "user build") for gpu in (True, False)])


@dataclass(frozen=True)
class Found:
    path: Path
    origin: str  # "argument", "environment", "repository build", "user build", "system"

    @property
    def gpu(self) -> bool:
        return is_gpu_build(self.path)

    @property
    def trains_on_cpu(self) -> bool:
        """Only our patched build learns with a [region] head on the CPU."""
        return self.origin != "system"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_darknet(explicit: str | os.PathLike | None = None) -> Found:
    """The darknet command-line binary."""
    tried = []
    if explicit:
        path = Path(explicit)
        if not _executable(path):
            raise EngineError(f"darknet binary {path} does not exist or is not executable")
        return Found(path, "argument")
    env = os.environ.get("SPIDARKNET_DARKNET")
    if env:
        if not _executable(Path(env)):
            raise EngineError(f"SPIDARKNET_DARKNET={env} is not an executable file")
        return Found(Path(env), "environment")
    for folder, origin in _build_dirs():
        candidate = folder / "darknet"
        tried.append(str(candidate))
        if _executable(candidate):
            return Found(candidate, origin)
    on_path = shutil.which("darknet")
    tried.append("darknet on PATH")
    if on_path:
        return Found(Path(on_path), "system")
    raise EngineError(f"darknet engine not found (tried {', '.join(tried)}); {HOW_TO_BUILD}")


def find_libdarknet(explicit: str | os.PathLike | None = None) -> Found:
    """The shared library ``libdarknet.so``."""
    tried = []
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise EngineError(f"libdarknet {path} does not exist")
        return Found(path, "argument")
    env = os.environ.get("SPIDARKNET_LIBDARKNET")
    if env:
        if not Path(env).is_file():
            raise EngineError(f"SPIDARKNET_LIBDARKNET={env} does not exist")
        return Found(Path(env), "environment")
    for folder, origin in _build_dirs():
        candidate = folder / "libdarknet.so"
        tried.append(str(candidate))
        if candidate.is_file():
            return Found(candidate, origin)
    for candidate in SYSTEM_LIBS:
        tried.append(str(candidate))
        if candidate.is_file():
            return Found(candidate, "system")
    raise EngineError(f"libdarknet.so not found (tried {', '.join(tried)}); {HOW_TO_BUILD}")


def is_gpu_build(path: Path) -> bool:
    """True when the binary or library links the CUDA runtime."""
    try:
        with open(path, "rb") as handle:
            return b"libcudart.so" in handle.read()
    except OSError:
        return False


def describe(found: Found) -> str:
    kind = "GPU" if found.gpu else "CPU"
    return f"{found.path} ({found.origin}, {kind} build)"
