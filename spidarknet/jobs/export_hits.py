"""``export-hits`` as a library function: a hit list -> CrystFEL/OM event list, CXI score sidecars,
and for European XFEL runs per-pulse hit flags and the event list of the run's virtual CXI."""

from __future__ import annotations

from dataclasses import dataclass

from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import check_destination


@dataclass
class ExportHitsSettings:
    """What ``spidarknet export-hits`` is asked to do (its options, by the same names)."""

    hits: str
    lst: str | None = None              # the event list
    cxi_scores: str | None = None       # the sidecars' folder
    hitflags: str | None = None         # a run's per-pulse flags (HDF5)
    vds: str | None = None              # a run's virtual CXI file, which the event list names
    force: bool = False


@dataclass
class ExportedHits:
    """What was written (counts of frames; None where that output was not asked for)."""

    frames: int
    unusable: int = 0                   # frames without a valid pixel: never selected
    listed: int | None = None           # frames in the event list
    sidecars: int | None = None
    tagged: int = 0                     # frames tagged single_hit in the sidecars
    flagged: int | None = None          # pulses flagged
    trains: int = 0
    run: bool = False                   # a hit list of European XFEL runs


def export_hits(settings: ExportHitsSettings) -> ExportedHits:
    """Run ``spidarknet export-hits``."""
    from spidarknet.export.interchange import inspect_datasets, write_event_list, write_score_sidecars
    from spidarknet.hits import read_selected
    if not settings.lst and not settings.cxi_scores and not settings.hitflags:
        raise ConfigError("nothing to write: give --lst FILE, --cxi-scores DIR and/or --hitflags FILE.h5")
    hits, flags = read_selected(settings.hits, unique=True)
    if "trainId" in hits.columns or settings.hitflags or settings.vds:
        return _export_runs(settings, hits, flags & ~hits.unusable)
    if settings.lst:
        check_destination(settings.lst, settings.force, "event list")
    if settings.cxi_scores:
        check_destination(settings.cxi_scores, settings.force, "sidecar folder")
    flags = flags & ~hits.unusable
    out = ExportedHits(len(hits), hits.n_unusable)
    # each frame file opened once: all of them for the sidecars, else the selected ones' files
    infos = inspect_datasets(hits.keys if settings.cxi_scores else [k for k, f in zip(hits.keys, flags) if f])
    if settings.lst:
        out.listed = write_event_list(hits, flags, settings.lst, force=settings.force, checked=True)
    if settings.cxi_scores:
        sidecars = write_score_sidecars(hits, flags, settings.cxi_scores, force=settings.force,
                                        hit_list_name=str(settings.hits), infos=infos)
        out.sidecars, out.tagged = len(sidecars), sum(s.n_tagged for s in sidecars)
    return out


def _export_runs(settings: ExportHitsSettings, hits, flags) -> ExportedHits:
    """A hit list of European XFEL runs: per-pulse flags, and the event list against the run's virtual CXI."""
    from spidarknet.export.euxfel import write_hit_flags, write_vds_event_list
    if settings.cxi_scores:
        raise ConfigError("--cxi-scores writes sidecars of CXI files; a run's hit list goes back as --hitflags "
                          "FILE.h5 (and --lst FILE --vds RUN.cxi)")
    if settings.lst and not settings.vds:
        raise ConfigError("the event list of a run names its virtual CXI file: give --vds RUN.cxi "
                          "(made by extra-data-make-virtual-cxi RUN -o RUN.cxi)")
    for path, what in ((settings.hitflags, "hit flags"), (settings.lst, "event list")):
        if path:
            check_destination(path, settings.force, what)
    out = ExportedHits(len(hits), run=True)
    if settings.hitflags:
        out.trains = write_hit_flags(hits, flags, settings.hitflags, force=settings.force)
        out.flagged = int(flags.sum())
    if settings.lst:
        out.listed = write_vds_event_list(hits, flags, settings.lst, settings.vds, force=settings.force)
    return out
