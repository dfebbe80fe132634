"""Resolving file names written in lists to files, and matching frames by (file, index).

A hit list names files by absolute path, a hand-made selection or a truth CSV often by file
name only.  One rule (:class:`FileResolver`) decides which file a written name means:

1. a name whose real path (symbolic links followed, a relative name taken from the working
   folder) is that of a known file is that file;
2. otherwise, a name whose base name is that of exactly one known file (one real path) is
   that file;
3. a base name that several known files share is ambiguous: an :class:`InputError` naming
   the candidates, asking for the full path;
4. otherwise the name is unknown (``None``), for the caller to report.

Frames then match on (that file, index); the dataset path is not part of the match.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Iterable

from spidarknet.core.errors import InputError

MatchKey = tuple[str, int]


class FileResolver:
    """Which of ``paths`` a file name written in a list means (the rule of this module)."""

    def __init__(self, paths: Iterable[str]):
        self.paths = list(dict.fromkeys(paths))
        self._by_real: dict[str, str] = {}
        self._by_base: dict[str, dict[str, str]] = defaultdict(dict)
        for path in self.paths:
            real = os.path.realpath(path)
            self._by_real.setdefault(real, path)
            self._by_base[os.path.basename(path)].setdefault(real, path)

    def resolve(self, name: str) -> str | None:
        """The known path ``name`` means, as given to the constructor; ``None`` when none."""
        found = self._by_real.get(os.path.realpath(name))
        if found is not None:
            return found
        candidates = self._by_base.get(os.path.basename(name), {})
        if len(candidates) > 1:
            shown = ", ".join(sorted(candidates)[:3]) + (", ..." if len(candidates) > 3 else "")
            raise InputError(f"file name {name!r} is ambiguous: several files of that name are "
                             f"listed ({shown}); write the full path in that list")
        return next(iter(candidates.values()), None)


class Canon:
    """The name each file is matched by, for all file names of the lists to be matched.

    The known files are the names written with a folder; every name resolves among them
    (:class:`FileResolver`), a bare name that resolves to none stays as written.  Raises the
    resolver's :class:`InputError` for an ambiguous name.
    """

    def __init__(self, names: Iterable[str]):
        names = set(names)
        resolver = FileResolver(sorted(n for n in names if os.path.dirname(n)))
        self._map: dict[str, str] = {}
        for name in sorted(names):
            path = resolver.resolve(name)
            self._map[name] = name if path is None else os.path.realpath(path)

    def __call__(self, name: str, index: int) -> MatchKey:
        return self._map[name], int(index)


def match_keys(wanted: Iterable[tuple[str, int]], table: dict[tuple[str, int], object]
               ) -> tuple[list, list[MatchKey]]:
    """Look up frames named in one list among the entries of another.

    Returns the values of ``table`` for each of ``wanted`` (``None`` where absent) and
    the canonical keys that are missing, for an error message (:func:`describe_keys`).
    """
    wanted = list(wanted)
    canon = Canon([f for f, _ in wanted] + [f for f, _ in table])
    found = {canon(f, i): v for (f, i), v in table.items()}
    keys = [canon(f, i) for f, i in wanted]
    return [found.get(k) for k in keys], [k for k in keys if k not in found]


def describe_keys(keys: Iterable[MatchKey], limit: int = 3) -> str:
    """``name:index, name:index, ...`` for error messages (at most ``limit`` shown)."""
    keys = sorted(keys, key=lambda k: (os.path.basename(k[0]), k[1], k[0]))
    shown = ", ".join(f"{os.path.basename(f)}:{i}" for f, i in keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")
