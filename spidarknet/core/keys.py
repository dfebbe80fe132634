"""Matching frames named in different lists: by (file basename or absolute path, index).

A hit list names files by absolute path, a hand-made selection often by file name only.
Two names refer to the same file when their real paths agree or, failing that, when they
share a base name that no two different real paths use; frames then match on
(that name, index).  The dataset path is not part of the match.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Iterable

from spidarknet.core.errors import InputError

MatchKey = tuple[str, int]


class Canon:
    """The name each file is matched by, for all file names of the lists to be matched."""

    def __init__(self, names: Iterable[str]):
        names = set(names)
        real_paths: dict[str, set[str]] = defaultdict(set)
        for name in names:
            if os.path.dirname(name):
                real_paths[os.path.basename(name)].add(os.path.realpath(name))
        self._map: dict[str, str] = {}
        for name in names:
            base = os.path.basename(name)
            candidates = real_paths.get(base, set())
            if len(candidates) <= 1:
                self._map[name] = base
            elif os.path.dirname(name):
                self._map[name] = os.path.realpath(name)
            else:
                shown = ", ".join(sorted(candidates)[:3])
                raise InputError(f"file name {name!r} is ambiguous: several files of that name are "
                                 f"listed ({shown}); write the full path in that list")

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
    keys = sorted(keys)
    shown = ", ".join(f"{os.path.basename(f)}:{i}" for f, i in keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")
