"""What a command's frame options ask for, typed: :class:`FrameOptions`, and the frames they open.

Every command that reads frames takes the same inputs, dataset, frame range, geometry and mask
options, and those of European XFEL runs; :func:`open_source` turns them into a
:class:`~spidarknet.frames.source.FrameSource` (CXI/HDF5 files) or an
:class:`~spidarknet.frames.euxfel.EuXFELRun`.  The errors name the command-line options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from spidarknet.core.errors import ConfigError


@dataclass
class FrameOptions:
    """The frames to read and how (SI units: metres; ``centre_px`` as (column, row))."""

    inputs: Sequence[str] = ()
    dataset: str | None = None
    frames: str | None = None                    # a range as on the command line, "0:1000"
    centre_px: tuple[float, float] | None = None
    distance_m: float | None = None
    pixel_size_m: float | None = None
    wavelength_m: float | None = None
    energy_ev: float | None = None               # instead of wavelength_m
    mask: str | None = None                      # FILE[:DATASET]
    mask_invert: bool = False
    use_file_mask: bool = True
    bad_pixels: bool = True                      # mask the hot and dead pixels the frames show
    # European XFEL runs
    geom: str | None = None
    quad_positions: Sequence[float] | None = None  # x y of each quadrant, mm (8 numbers)
    modules: str | None = None                   # "0-3,8"
    run_data: str = "proc"
    detector_name: str = "SPB_DET_AGIPD1M-1"
    adu_per_photon: float | None = None          # of runs' corrected data (the reader rounds photons)


def parse_modules(text: str | None):
    """``0-3,8`` -> (0, 1, 2, 3, 8); None stays None."""
    if text is None:
        return None
    modules = []
    try:
        for item in text.split(","):
            lo, _, hi = item.strip().partition("-")
            modules += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"--modules {text!r}: give module numbers and ranges, e.g. 0-3,8") from None
    return tuple(modules)


def _run_source(options: FrameOptions, inputs: Sequence[str], wavelength):
    """The European XFEL runs ``inputs`` with the run options (their adu_per_photon is the
    reader's: photons rounded)."""
    from spidarknet.frames.euxfel import EuXFELRun
    if options.centre_px or options.pixel_size_m or options.dataset or options.mask or options.mask_invert:
        raise ConfigError("--centre, --pixel-size, --dataset and --mask are for CXI/HDF5 files; a run's geometry "
                          "is --geom or --quad-positions (and --distance, --energy-ev)")
    return EuXFELRun(list(inputs), _run_options(options, wavelength), data=options.run_data)


def _run_options(options: FrameOptions, wavelength):
    """How the runs of ``options`` are read (:class:`~spidarknet.frames.euxfel.RunOptions`)."""
    from spidarknet.frames.euxfel import RunOptions
    from spidarknet.frames.source import parse_frame_range
    frames = parse_frame_range(options.frames)
    quads = options.quad_positions
    return RunOptions(detector=options.detector_name, modules=parse_modules(options.modules), geom=options.geom,
                      quad_positions=None if quads is None else tuple(zip(quads[0::2], quads[1::2])),
                      distance_m=options.distance_m, wavelength_m=wavelength,
                      adu_per_photon=options.adu_per_photon, use_file_mask=options.use_file_mask,
                      frames=None if frames is None else (frames.start, frames.stop, frames.step))


def run_inputs(options: FrameOptions) -> dict | None:
    """The European XFEL runs ``options`` names, as a worker opens them while this process does
    (:func:`~spidarknet.frames.euxfel.open_early`): inputs, run options and data; None where
    the inputs are not all runs (or the options are wrong: :func:`open_source` says how)."""
    from spidarknet.frames.euxfel import is_run_input
    if not options.inputs or not all(is_run_input(p) for p in options.inputs):
        return None
    try:
        return {"inputs": list(options.inputs), "options": _run_options(options, _wavelength(options)).to_dict(),
                "data": options.run_data}
    except ConfigError:
        return None


def _wavelength(options: FrameOptions) -> float | None:
    """The wavelength in metres, from ``wavelength_m`` or ``energy_ev``; the geometry checked."""
    from spidarknet.frames.source import EV_J, LIGHT_M_S, PLANCK_J_S
    wavelength = options.wavelength_m
    if options.energy_ev is not None:
        if wavelength is not None:
            raise ConfigError("give --wavelength or --energy-ev, not both")
        if options.energy_ev <= 0:
            raise ConfigError("--energy-ev must be positive")
        wavelength = PLANCK_J_S * LIGHT_M_S / (options.energy_ev * EV_J)
    for name, value in (("distance", options.distance_m), ("pixel-size", options.pixel_size_m),
                        ("wavelength", options.wavelength_m)):
        if value is not None and not value > 0:
            raise ConfigError(f"--{name} must be positive (SI units: metres)")
    return wavelength


def is_runs(options: FrameOptions) -> bool:
    """Whether the inputs are European XFEL runs (their adu_per_photon is the reader's)."""
    from spidarknet.frames.euxfel import is_run_input
    return any(is_run_input(p) for p in options.inputs)


def open_source(options: FrameOptions, extra_inputs: Sequence[str] = ()):
    """The frames ``options`` name (with ``extra_inputs`` added): a FrameSource, or an
    EuXFELRun where the inputs are runs."""
    from spidarknet.frames.euxfel import is_run_input
    from spidarknet.frames.source import FrameSource, GeometryOverrides, parse_frame_range
    wavelength = _wavelength(options)
    inputs = list(options.inputs) + list(extra_inputs)
    runs = [is_run_input(p) for p in inputs]
    if any(runs):
        if not all(runs):
            raise ConfigError("give European XFEL runs or CXI/HDF5 files, not both in one command")
        return _run_source(options, inputs, wavelength)
    overrides = GeometryOverrides(centre_px=tuple(options.centre_px) if options.centre_px else None,
                                  distance_m=options.distance_m, pixel_size_m=options.pixel_size_m,
                                  wavelength_m=wavelength)
    return FrameSource(inputs, dataset=options.dataset, frames=parse_frame_range(options.frames),
                       geometry=overrides, mask=options.mask, mask_invert=options.mask_invert,
                       use_file_mask=options.use_file_mask, bad_pixels=options.bad_pixels)

