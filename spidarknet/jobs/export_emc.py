"""``export-emc`` as a library function: a hit list's selected frames -> Dragonfly's photons.emc,
detector file and blacklist."""

from __future__ import annotations

from dataclasses import dataclass

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import check_destination


@dataclass
class ExportEmcSettings:
    """What ``spidarknet export-emc`` is asked to do (its options, by the same names; SI units)."""

    hits: str
    out: str
    adu_per_photon: float | None = None
    all_frames: bool = False            # every frame, the others blacklisted
    distance_m: float | None = None
    pixel_size_m: float | None = None
    centre_px: tuple[float, float] | None = None
    mask: str | None = None
    mask_invert: bool = False
    use_file_mask: bool = True
    ewald_rad: float | None = None
    polarization: str = "x"
    binning: int = 1
    q_max_inv_nm: float | None = None
    force: bool = False


def export_emc_to_folder(settings: ExportEmcSettings, feedback: Feedback = SILENT):
    """Run ``spidarknet export-emc``; the export's result (its ``line()`` for people)."""
    from spidarknet.export.emc import export_emc
    from spidarknet.frames.source import GeometryOverrides
    from spidarknet.hits import read_selected
    s = settings
    for name, value in (("distance", s.distance_m), ("pixel-size", s.pixel_size_m),
                        ("adu-per-photon", s.adu_per_photon), ("ewald-rad", s.ewald_rad), ("q-max", s.q_max_inv_nm)):
        if value is not None and not value > 0:
            raise ConfigError(f"--{name} must be positive")
    if s.binning < 1:
        raise ConfigError(f"--binning must be a whole number >= 1, got {s.binning}")
    check_destination(s.out, s.force, "output folder")
    hits, flags = read_selected(s.hits, unique=True)
    overrides = GeometryOverrides(centre_px=tuple(s.centre_px) if s.centre_px else None,
                                  distance_m=s.distance_m, pixel_size_m=s.pixel_size_m)
    total = len(hits) if s.all_frames else int(flags.sum())
    with feedback.bar(total=total, desc="export-emc") as bar:
        return export_emc(hits, flags, s.out, adu_per_photon=s.adu_per_photon, all_frames=s.all_frames,
                          geometry=overrides, mask=s.mask, mask_invert=s.mask_invert, use_file_mask=s.use_file_mask,
                          ewald_rad=s.ewald_rad, polarization=s.polarization, binning=s.binning,
                          q_max_inv_nm=s.q_max_inv_nm, force=s.force, hit_list_name=str(s.hits),
                          on_frames=bar.update)
