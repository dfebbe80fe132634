"""``simulate`` as a library function: a simulated, labelled SPI data set as one CXI file (or an AGIPD run).

:func:`simulate_to_file` checks the options, simulates (``like`` a file of the user's, whose
geometry it checks against sphere fits of its brightest frames, or a European XFEL run) and
returns the simulator's summary (its ``line()`` and ``like_line`` for people).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from spidarknet.core.defaults import FRAME_COMPRESSION, SIMULATE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, OutputError
from spidarknet.core.feedback import SILENT, Feedback

#: frames of a --like file read, and the brightest of them fitted, to check its geometry
LIKE_CHECK_FRAMES, LIKE_CHECK_FITS = 400, 30


@dataclass
class SimulateSettings:
    """What ``spidarknet simulate`` is asked to do (its options, by the same names)."""

    output: str
    count: int
    seed: int = 0
    #: the simulation's settings given (names of :class:`~spidarknet.simulate.settings.SimulationSettings`;
    #: None: not given), and those of the measured-like readout and beamline apart
    options: dict = field(default_factory=dict)
    readout: dict = field(default_factory=dict)
    energy_ev: float | None = None
    detector: str = "pnccd"                    # or agipd1m: a run folder
    measured_like: bool = False
    like: str | None = None                    # a file (or run) of the user's to copy
    like_dataset: str | None = None
    like_geom: str | None = None
    like_adu_per_photon: float | None = None
    compression: str | None = None             # default FRAME_COMPRESSION; "none"
    chunk_frames: int = SIMULATE_CHUNK_FRAMES
    fractions: dict | None = None              # kind -> share
    force: bool = False
    cells: int = 352                           # agipd1m: memory cells per train
    legacy_names: bool = False
    modules: str | None = None                 # "0-3,8"


def simulate_to_file(settings: SimulateSettings, feedback: Feedback = SILENT):
    """Run ``spidarknet simulate``; the simulator's summary."""
    from spidarknet.simulate import DEFAULT_SETTINGS, MEASURED_LIKE_SETTINGS, simulate_file
    if settings.detector == "agipd1m":
        return _simulate_agipd(settings, feedback)
    options = _options(settings)
    base = MEASURED_LIKE_SETTINGS if settings.measured_like else DEFAULT_SETTINGS
    if not settings.like:
        base.with_options(**options)  # a bad value fails before anything is read
    if os.path.exists(settings.output) and not settings.force:
        raise OutputError(f"{settings.output} exists; use --force to overwrite it "
                          "or choose another name")
    chosen = FRAME_COMPRESSION if settings.compression is None else settings.compression
    compression = None if chosen == "none" else chosen
    if settings.like:
        _check_like_geometry(settings, feedback)
    with feedback.bar(total=settings.count, desc="simulate") as bar:
        return simulate_file(settings.output, settings.count, seed=settings.seed, like=settings.like, settings=base,
                             like_dataset=settings.like_dataset, compression=compression,
                             like_run_options=_like_run_options(settings),
                             chunk_frames=settings.chunk_frames, fractions=settings.fractions,
                             progress=bar.update, **options)


def _options(settings: SimulateSettings) -> dict:
    """The simulation options, checked; the energy in joules."""
    if settings.count < 1:
        raise ConfigError(f"--count must be at least 1, got {settings.count}")
    options = {**settings.options, **settings.readout}
    if options.get("photons") is not None and options.get("mean_fluence_photons_per_m2") is not None:
        raise ConfigError("give the photon level as --photons (photons of a single on the valid pixels) or "
                          "as --fluence (photons/m² at the particle), not both")
    if settings.energy_ev is not None and not settings.energy_ev > 0:
        raise ConfigError(f"--energy-ev must be > 0, got {settings.energy_ev:g}")
    if settings.like_dataset and not settings.like:
        raise ConfigError("--like-dataset names the frames of the --like file: give --like FILE too")
    options["photon_energy_J"] = _energy_j(settings.energy_ev)
    return options


def _simulate_agipd(settings: SimulateSettings, feedback: Feedback):
    """``--detector agipd1m``: a labelled AGIPD run folder."""
    from spidarknet.frames.options import parse_modules
    from spidarknet.simulate.agipd import AgipdRunSettings, simulate_agipd_run
    from spidarknet.simulate.settings import option_name
    options = {**settings.options, "photon_energy_J": _energy_j(settings.energy_ev)}
    if settings.like or settings.measured_like or options.get("binning") or options.get("half_detector"):
        raise ConfigError("--like, --measured-like, --binning and --half-detector are pnCCD options; "
                          "--detector agipd1m writes the facility's corrected layout")
    extra = [name for name, value in settings.readout.items() if name != "adu_per_photon" and value is not None]
    if extra:
        raise ConfigError(f"{option_name(extra[0])} is a pnCCD readout option; not used with --detector agipd1m")
    if os.path.exists(settings.output) and not settings.force:
        raise OutputError(f"{settings.output} exists; use --force to overwrite it or choose another name")
    modules = parse_modules(settings.modules)
    run = AgipdRunSettings(cells=settings.cells, adu_per_photon=settings.readout.get("adu_per_photon"),
                           legacy_names=settings.legacy_names, **({} if modules is None else {"modules": modules}),
                           compression=None if settings.compression in (None, "none") else settings.compression)
    with feedback.bar(total=settings.count, desc="simulate") as bar:
        return simulate_agipd_run(settings.output, settings.count, seed=settings.seed, run=run,
                                  fractions=settings.fractions, progress=bar.update, **options)


def _energy_j(energy_ev: float | None) -> float | None:
    from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C
    return None if energy_ev is None else energy_ev * ELEMENTARY_CHARGE_C


def _like_run_options(settings: SimulateSettings) -> dict | None:
    """The reading options of a --like European XFEL run (None when none given)."""
    options = {"geom": settings.like_geom, "adu_per_photon": settings.like_adu_per_photon}
    if any(v is not None for v in options.values()) and not settings.like:
        raise ConfigError("--like-geom and --like-adu-per-photon go with --like RUN_FOLDER")
    return {k: v for k, v in options.items() if v is not None} or None


def _check_like_geometry(settings: SimulateSettings, feedback: Feedback) -> None:
    """Fit spheres to the brightest frames of the --like file and warn where the fits
    contradict its geometry (a simulation copying a wrong geometry would teach it)."""
    import numpy as np

    from spidarknet.core.errors import SpidarknetError
    from spidarknet.frames.source import FrameSource
    from spidarknet.selection.features import geometry_warnings
    from spidarknet.sizing import estimate_sizes
    try:
        source = FrameSource([settings.like], dataset=settings.like_dataset)
        source.files[0].geometry.require_scattering()
    except SpidarknetError:  # no geometry of its own (given as options): nothing to check it by
        return
    keys, sums = [], []
    for chunk in source.chunks(64):
        photons = np.where(chunk.valid, chunk.data, 0).reshape(len(chunk), -1).sum(axis=1)
        keys += chunk.keys
        sums += photons.tolist()
        if len(keys) >= LIKE_CHECK_FRAMES:
            break
    brightest = [keys[i] for i in np.argsort(sums)[::-1][:LIKE_CHECK_FITS]]
    results = estimate_sizes(source.select_keys(brightest))
    for line in geometry_warnings(results, source.files, size_range=settings.options.get("size_range_nm")):
        feedback.warn(line)
