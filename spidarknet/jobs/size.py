"""``size`` as a library function: a Poisson sphere fit per frame -> particle diameter table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from spidarknet.core.defaults import SIZE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.keys import describe_keys, match_keys
from spidarknet.core.outputs import check_destination
from spidarknet.frames.options import FrameOptions, is_runs, open_source
from spidarknet.hits import read_selected
from spidarknet.selection.features import geometry_warnings
from spidarknet.sizing import SizeResult, SizingSettings, estimate_sizes, write_sizes_csv


@dataclass
class SizeSettings:
    """What ``spidarknet size`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    out: str
    force: bool = False
    hits: str | None = None            # size only this hit list's selected frames ...
    all_frames: bool = False           # ... or every frame it scored
    sizing: SizingSettings = field(default_factory=SizingSettings)
    chunk: int = SIZE_CHUNK_FRAMES
    jobs: int | None = None


def size_to_file(settings: SizeSettings, feedback: Feedback = SILENT) -> list[SizeResult]:
    """Run ``spidarknet size``: fit every frame (or the hit list's), write the table; the fits.
    Where the inputs are European XFEL runs, the sizing's ``adu_per_photon`` is the reader's
    (photons rounded)."""
    sizing = settings.sizing.check()  # a bad value fails before anything is read
    if settings.chunk < 1:
        raise ConfigError("--chunk must be at least 1")
    if settings.jobs is not None and settings.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if settings.all_frames and not settings.hits:
        raise ConfigError("--all-frames goes with --hits")
    check_destination(settings.out, settings.force, "size table")
    frames = replace(settings.frames, adu_per_photon=sizing.adu_per_photon)
    source = open_source(frames)
    if is_runs(frames):
        sizing = replace(sizing, adu_per_photon=None).check()
    keys = _keys(settings, source, feedback) if settings.hits else None
    bar = feedback.bar(total=len(keys) if settings.hits else len(source), desc="size")
    try:
        results = estimate_sizes(source, keys, sizing, chunk_frames=settings.chunk, on_frames=bar.update,
                                 jobs=settings.jobs)
    finally:
        bar.close()
    write_sizes_csv(results, settings.out, force=settings.force)
    for line in geometry_warnings(results, source.files, sizing):
        feedback.warn(line)
    return results


def _keys(settings: SizeSettings, source, feedback: Feedback) -> list:
    """The frames of the hit list to size (its selected ones, or all with ``all_frames``), as
    keys of the inputs; an error names those the inputs lack."""
    hits, flags = read_selected(settings.hits)
    keys = hits.keys if settings.all_frames else [k for k, f in zip(hits.keys, flags) if f]
    available = {(info.path, int(i)): info.key(i) for info in source.files for i in info.indices}
    found, missing = match_keys([(k.file, k.index) for k in keys], available)
    if missing:
        raise InputError(f"{len(missing)} of the {len(keys)} frames of {settings.hits} to size are not "
                         f"among the inputs ({describe_keys(missing)}); give the frame files the hit "
                         "list was made from (and the same --frames)")
    if not found:
        feedback.show(f"{settings.hits} selects no frame: nothing to size")
    return found
