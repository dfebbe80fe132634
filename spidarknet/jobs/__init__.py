"""What each command does, as a library function: typed settings in, a result out.

A command of :mod:`spidarknet.cli` parses its options into the settings dataclass of its job
here, calls the job's one function with a :class:`~spidarknet.core.feedback.Feedback` (its
progress bars and stderr lines), and prints the result.  The experiments and scripts call the
same functions; nothing here sees an ``argparse.Namespace`` or prints.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Mapping

from spidarknet.core.errors import ConfigError


def option_names(settings) -> list[str]:
    """The names :func:`with_options` takes for ``settings``: its fields, and those of the
    settings it holds (``frames``, ``preprocessing``), by their own names."""
    names = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        names += option_names(value) if dataclasses.is_dataclass(value) else [f.name]
    return names


def with_options(settings, options: Mapping[str, object]):
    """A copy of ``settings`` (a job's settings dataclass) with ``options`` set: each a name of
    its fields or of a field of the settings it holds, e.g. ``{"max_batches": 3000,
    "scale": "linear"}`` for :class:`~spidarknet.jobs.export_dataset.ExportSettings`.  A name
    that several of them hold is set in each (``centre_px``: the frames' geometry and the
    preprocessing's centre, as ``--centre`` sets both)."""
    changes, used = {}, set()
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            inner = {k: v for k, v in options.items() if k in option_names(value)}
            if inner:
                changes[f.name] = with_options(value, inner)
                used |= set(inner)
        elif f.name in options:
            changes[f.name] = options[f.name]
            used.add(f.name)
    unknown = [name for name in options if name not in used]
    if unknown:
        close = difflib.get_close_matches(unknown[0], option_names(settings), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{type(settings).__name__} has no option {unknown[0]!r}{hint}")
    return dataclasses.replace(settings, **changes)
