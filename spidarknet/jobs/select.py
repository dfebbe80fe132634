"""``select`` as a library function: re-threshold a hit list and keep the hits in a size window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import check_destination
from spidarknet.hits import read_selected, write_selected
from spidarknet.jobs.detect_settings import check_size_range
from spidarknet.sizing import select_size_window


@dataclass
class SelectSettings:
    """What ``spidarknet select`` is asked to do (its options, by the same names)."""

    hits: str                                  # the hit list to select from
    out: str
    threshold: float | None = None             # default: the hit list's
    size_range: Sequence[float] | None = None  # nm
    sizes: str | None = None                   # a size table (default: fit the sizes now)
    force: bool = False


@dataclass
class SelectResult:
    """What the selection kept, and why the others were left."""

    out: str
    frames: int
    threshold: float
    above: int                                 # frames at or above the threshold
    unusable: int                              # frames without a valid pixel (never selected)
    selected: int
    counts: dict | None = None                 # the size window's: inside, outside, failed, second_particle


def select_to_file(settings: SelectSettings, feedback: Feedback = SILENT) -> SelectResult:
    """Run ``spidarknet select``: the frames at or above the threshold, narrowed to those whose
    fitted diameter lies in the size range, written as a hit list."""
    if settings.threshold is None and settings.size_range is None:
        raise ConfigError("nothing to select by: give --threshold and/or --size-range")
    if settings.sizes and not settings.size_range:
        raise ConfigError("--sizes goes with --size-range MIN MAX")
    check_size_range(settings.size_range)
    check_destination(settings.out, settings.force, "hit list")
    hits, _ = read_selected(settings.hits)
    threshold = hits.threshold if settings.threshold is None else settings.threshold
    if not math.isfinite(threshold):
        raise ConfigError(f"{settings.hits} records no usable threshold; give --threshold")
    above = (hits.scores >= threshold) & ~hits.unusable  # frames without a valid pixel: never
    flags, counts = above.copy(), None
    meta = {"selected_from": settings.hits}
    if settings.size_range:
        lo, hi = settings.size_range
        bar = (feedback.hushed() if settings.sizes else feedback).bar(total=int(above.sum()), desc="size")
        try:
            flags, counts = select_size_window(hits, above, settings.size_range, settings.sizes, on_frames=bar.update)
        finally:
            bar.close()
        meta.update(size_range_nm=[lo, hi], sizes=settings.sizes or "fitted by select")
    hits.threshold = threshold
    write_selected(hits, flags, settings.out, force=settings.force, meta=meta)
    return SelectResult(settings.out, len(hits), threshold, int(above.sum()), hits.n_unusable, int(flags.sum()),
                        counts)
