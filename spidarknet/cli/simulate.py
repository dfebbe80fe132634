"""``spidarknet simulate``: write a simulated, labelled SPI data set as one CXI file."""

from __future__ import annotations

import argparse
import sys
import os

from spidarknet import cli
from spidarknet.core.defaults import FRAME_COMPRESSION, SIMULATE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, OutputError
from spidarknet.simulate.writer import COMPRESSIONS

EXAMPLE = ("python -m spidarknet simulate sim.cxi --count 2000 --seed 1 --half-detector\n"
           "  python -m spidarknet simulate pr772.cxi --count 2000 --half-detector --photons 1500 "
           "--shape 512 512 --binning 4 --centre-jitter 5\n"
           "      (128 x 128 frames of 300 µm pixels, a median labelled single of 1,500 photons)\n"
           "  python -m spidarknet simulate pretrain.cxi --count 5000 --like r0123.cxi\n"
           "      (the shape, geometry, mask, photon level and background of your own run)\n"
           "  python -m spidarknet simulate measured.cxi --count 400 --half-detector --photons 1500 "
           "--measured-like\n"
           "      (read noise, common mode, bad and saturating pixels, stray light, a drifting beam)")

def _fractions(text: str) -> dict:
    """Parse ``single=0.5,empty=0.5`` into a dict (kinds left out get none)."""
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        kind, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KIND=FRACTION, got {item!r}")
        try:
            out[kind.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"fraction of {kind.strip()!r} is not a number: {value!r}")
    if not out:
        raise argparse.ArgumentTypeError("give at least one KIND=FRACTION")
    return out


def build_parser() -> argparse.ArgumentParser:
    from spidarknet.simulate.settings import DEFAULT_SETTINGS as d

    parser = cli.new_parser(
        "simulate",
        "Simulate pnCCD diffraction frames of single particles, multiples, empty shots,\n"
        "aggregates, water droplets and tiny particles (by default 1.7 keV, 125 mm, 1024 x 1024\n"
        "pixels of 75 µm), with Poisson noise and the truth (label: one particle of 60-75 nm)\n"
        "under /truth.  Every option below is recorded in the attributes of /truth.\n"
        "--binning sums detector pixels into the written ones: all other pixel quantities\n"
        "(--shape, --pixel-size, --background, --centre-jitter) are those of the detector.",
        EXAMPLE)
    parser.add_argument("output", metavar="OUT.cxi", help="CXI file to write")
    parser.add_argument("--count", "-n", type=int, required=True, help="number of frames")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same "
                        "seed and options give identical files")
    parser.add_argument("--half-detector", action="store_true",
                        help="one pnCCD half dead (masked, zero), as in the 2018 PR772 run")
    parser.add_argument("--compression", choices=(*COMPRESSIONS, "none"), default=None,
                        help=f"HDF5 compression of the frames (default {FRAME_COMPRESSION}, which h5py reads "
                        "without plugins: ~24 kB a frame instead of 2.1 MB): "
                        + "; ".join(f"{k}: {v}" for k, v in COMPRESSIONS.items())
                        + "; none.  Reading the last three needs the hdf5plugin package")
    parser.add_argument("--fractions", type=_fractions, default=None, metavar="KIND=F,...",
                        help="share of each kind, e.g. single=0.5,empty=0.5 (kinds: single, "
                        "multiple, empty, aggregate, droplet, tiny; others get none)")
    parser.add_argument("--chunk-frames", type=int, default=SIMULATE_CHUNK_FRAMES,
                        help=f"frames generated and written at a time (default {SIMULATE_CHUNK_FRAMES})")
    parser.add_argument("--force", "-f", action="store_true", help="overwrite OUT.cxi if it exists")
    agipd = parser.add_argument_group("a European XFEL AGIPD run (--detector agipd1m OUT_DIR; docs/euxfel.md)")
    agipd.add_argument("--detector", choices=("pnccd", "agipd1m"), default="pnccd",
                       help="pnccd: one CXI file (default); agipd1m: a run folder in the facility's layout (16 "
                            "module files, 6 keV and 0.705 m unless --energy-ev/--distance say, the geometry as "
                            "agipd1m.geom, the truth in spidarknet-truth.hdf5; --adu-per-photon sets its keV-like "
                            "ADU, default the photon energy in keV)")
    agipd.add_argument("--cells", type=int, default=352, help="agipd1m: frames per train (default 352)")
    agipd.add_argument("--legacy-names", action="store_true",
                       help="agipd1m: the older source names SPB_DET_AGIPD1M-1/DET/{N}CH0:xtdf")
    agipd.add_argument("--modules", metavar="LIST", help="agipd1m: the modules written, e.g. 0-3,8 (default all)")
    _add_sample_args(parser, d)
    _add_geometry_args(parser, d)
    _add_like_args(parser)
    _add_measured_args(parser, d)
    cli.add_common_args(parser)
    return parser


def _add_sample_args(parser: argparse.ArgumentParser, d) -> None:
    """Photons and sample: fluence, background, beam-centre jitter, particle sizes and shapes."""
    beam = parser.add_argument_group("photons and sample")
    beam.add_argument("--photons", type=float, metavar="N",
                      help="median photons of a labelled single hit on the valid pixels, "
                      "background excluded; sets the mean fluence (default: a fluence of "
                      f"{d.mean_fluence_photons_per_m2:g} photons/m², ≈ 2,500 photons on the "
                      "full pnCCD)")
    beam.add_argument("--fluence", type=float, metavar="PHOTONS_PER_M2",
                      help="mean fluence at the particle instead of --photons, e.g. 1.1e22: the "
                      "same sample and beam at another distance or beam stop (--photons counts "
                      "photons on the valid pixels, which then hold another share of the pattern)")
    beam.add_argument("--fluence-sigma", type=float, metavar="S",
                      help=f"σ of the log-normal shot-to-shot fluence factor (default {d.fluence_sigma:g})")
    beam.add_argument("--background", type=float, metavar="B",
                      help="uniform background, photons per detector pixel "
                      f"(default {d.background_photons_per_pixel:g})")
    beam.add_argument("--centre-jitter", type=float, metavar="PX",
                      help="σ of the per-frame beam-centre offset in x and y, detector pixels "
                      f"(default {d.centre_jitter_px:g})")
    beam.add_argument("--size-range", type=float, nargs=2, metavar=("LO", "HI"),
                      help="diameters of the sample's particles in nm, singles and multiples "
                      "(default %g %g)" % d.size_range_nm)
    beam.add_argument("--label-range", type=float, nargs=2, metavar=("LO", "HI"),
                      help="diameters in nm of a single that is labelled 1 "
                      "(default %g %g)" % d.label_range_nm)
    beam.add_argument("--off-size-fraction", type=float, metavar="F",
                      help="share of singles drawn outside the label range (default: as a "
                      "uniform draw over --size-range falls, 0.4 with the defaults)")
    beam.add_argument("--particle-shape", choices=("mixed", "sphere", "icosahedron"),
                      help="shape of the particles: a sphere or a randomly oriented "
                      "icosahedron, half and half (mixed, the default), or only one of them")
    beam.add_argument("--separation", type=float, nargs=2, metavar=("LO", "HI"),
                      help="centre distance of neighbours in a multiple, in diameters "
                      "(default %g %g)" % d.separation_diameters)


def _add_geometry_args(parser: argparse.ArgumentParser, d) -> None:
    """Detector distance, pixel size, photon energy, shape and binning."""
    geom = parser.add_argument_group("geometry")
    geom.add_argument("--distance", type=float, metavar="M",
                      help=f"detector distance in metres (default {d.distance_m:g})")
    geom.add_argument("--pixel-size", type=float, metavar="M",
                      help=f"detector pixel size in metres, before binning (default {d.pixel_size_m:g})")
    geom.add_argument("--energy-ev", type=float, metavar="EV",
                      help=f"photon energy in eV (default {d.photon_energy_eV:g})")
    geom.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                      help="detector shape before binning, two halves with the gap between "
                      "(default %d %d)" % d.shape)
    geom.add_argument("--binning", type=int, metavar="B",
                      help="write frames of B x B summed detector pixels: pixel size x B, a "
                      "written pixel is masked if any of its pixels is (default 1)")


def _add_like_args(parser: argparse.ArgumentParser) -> None:
    """--like: a simulation shaped after a run of the user's."""
    like = parser.add_argument_group("like a run of yours")
    like.add_argument("--like", metavar="FILE.cxi",
                      help="copy frame shape, distance, pixel size, wavelength, beam centre and "
                      "mask from FILE, and its photon level as --photons: the median, over "
                      "its hits (frames > 6σ above the background), of the photons above the "
                      "background; its background as --background.  Frames must be photon "
                      "counts; options given explicitly win; --binning B: FILE's pixels are "
                      "B x B detector pixels")
    like.add_argument("--like-dataset", metavar="PATH",
                      help="frame dataset inside the --like file (default: the CXI locations)")
    like.add_argument("--like-geom", metavar="FILE",
                      help="--like a European XFEL run folder: its CrystFEL geometry (default: the .geom "
                           "file in the folder); the frames are written assembled, as detect reads them")
    like.add_argument("--like-adu-per-photon", type=float, metavar="X",
                      help="--like a European XFEL run whose corrected data are in ADU: photons = round(x / X)")


#: measured-like options: (flag, setting, type, metavar, help)
MEASURED_OPTIONS = (
    ("--adu-per-photon", "adu_per_photon", float, "ADU",
     "ADU of one photon: turns on the readout chain (raw ADU, the facility's common-mode "
     "correction, photon conversion); 0: ideal photon counts"),
    ("--read-noise", "read_noise_adu", float, "ADU", "σ of each pixel's read noise"),
    ("--common-mode", "common_mode_adu", float, "ADU",
     "σ of the per-frame offset of each row of a readout block (128 detector columns)"),
    ("--column-offsets", "column_offset_adu", float, "ADU",
     "σ of the per-frame offset of each column of a detector half"),
    ("--common-mode-residual", "common_mode_residual_adu", float, "ADU",
     "σ of the error the median common-mode correction leaves on each row of a block"),
    ("--photon-threshold", "photon_threshold", float, "F",
     "share of a photon at which a corrected pixel counts one"),
    ("--gain-sigma", "gain_sigma", float, "S", "relative σ of the pixels' gain (uncorrected)"),
    ("--hot-pixels", "hot_pixels", int, "N", "pixels lit in every frame (2-50 photons' worth)"),
    ("--dead-pixels", "dead_pixels", int, "N", "pixels without response"),
    ("--bad-pixels-masked", "bad_pixels_masked", float, "F",
     "share of the hot and dead pixels the mask flags (the rest stay unmasked)"),
    ("--saturation", "saturation_adu", float, "ADU",
     "ADC full scale: raw values clip here and the per-frame mask flags them 0x2; 0: none"),
    ("--beamline-photons", "beamline_photons", float, "N",
     "mean photons per frame of beamline scatter about the beam, falling as q^-4"),
    ("--ring-photons", "ring_photons", float, "N",
     "mean photons per frame of the injector's gas and water: a diffuse ring"),
    ("--ring-q", "ring_q_inv_nm", float, "Q", "the ring's centre in nm^-1 (|q| = 4π sin θ/λ)"),
    ("--ring-width", "ring_width_inv_nm", float, "Q", "the ring's σ in q, nm^-1"),
    ("--ring-sigma", "ring_sigma", float, "S", "σ of the ring's log-normal shot-to-shot strength"),
    ("--centre-drift", "centre_drift_px", float, "PX",
     "amplitude of the beam centre's slow drift (detector pixels); the file keeps the nominal "
     "centre, the truth the true one"),
    ("--centre-drift-frames", "centre_drift_frames", float, "N", "period of that drift in frames"),
)


def _add_measured_args(parser: argparse.ArgumentParser, d) -> None:
    """--measured-like and the effects it turns on, each also on its own."""
    from spidarknet.simulate.settings import MEASURED_LIKE

    group = parser.add_argument_group(
        "a measured-like detector and beamline (all off by default: ideal photon counts)")
    group.add_argument("--measured-like", action="store_true",
                       help="turn on a realistic mix of what measured pnCCD frames have: "
                       + ", ".join(f"{flag} {MEASURED_LIKE[name]:g}" for flag, name, *_ in MEASURED_OPTIONS
                                   if name in MEASURED_LIKE)
                       + " (options given explicitly win)")
    for flag, name, kind, metavar, text in MEASURED_OPTIONS:
        group.add_argument(flag, dest=name, type=kind, metavar=metavar,
                           help=f"{text} (default {getattr(d, name):g})".replace("%", "%%"))


def settings_from_args(args: argparse.Namespace) -> dict:
    """The simulation options the user gave (``None`` where not given)."""
    from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C

    energy = args.energy_ev
    return {"photons": args.photons, "mean_fluence_photons_per_m2": args.fluence,
            "fluence_sigma": args.fluence_sigma,
            "background_photons_per_pixel": args.background,
            "centre_jitter_px": args.centre_jitter,
            "size_range_nm": tuple(args.size_range) if args.size_range else None,
            "label_range_nm": tuple(args.label_range) if args.label_range else None,
            "off_size_fraction": args.off_size_fraction,
            "separation_diameters": tuple(args.separation) if args.separation else None,
            "particle_shape": args.particle_shape,
            "distance_m": args.distance, "pixel_size_m": args.pixel_size,
            "photon_energy_J": None if energy is None else energy * ELEMENTARY_CHARGE_C,
            "shape": tuple(args.shape) if args.shape else None, "binning": args.binning,
            "half_detector": args.half_detector or None,
            **{name: getattr(args, name) for _, name, *_ in MEASURED_OPTIONS}}


def run_agipd(args: argparse.Namespace) -> int:
    """``--detector agipd1m``: a labelled AGIPD run folder."""
    from spidarknet.simulate.agipd import AgipdRunSettings, simulate_agipd_run
    from spidarknet.simulate.settings import option_name
    if args.like or args.measured_like or args.compression is not None or args.binning or args.half_detector:
        raise ConfigError("--like, --measured-like, --compression, --binning and --half-detector are pnCCD options; "
                          "--detector agipd1m writes the facility's corrected layout")
    options = settings_from_args(args)
    extra = [name for _, name, *_ in MEASURED_OPTIONS if name != "adu_per_photon" and options.get(name) is not None]
    if extra:
        raise ConfigError(f"{option_name(extra[0])} is a pnCCD readout option; not used with --detector agipd1m")
    for _, name, *_ in MEASURED_OPTIONS:
        options.pop(name, None)
    if os.path.exists(args.output) and not args.force:
        raise OutputError(f"{args.output} exists; use --force to overwrite it or choose another name")
    from spidarknet.frames.options import parse_modules
    modules = parse_modules(args.modules)
    run = AgipdRunSettings(cells=args.cells, adu_per_photon=args.adu_per_photon, legacy_names=args.legacy_names,
                           **({} if modules is None else {"modules": modules}))
    with cli.progress(total=args.count, desc="simulate", quiet=args.quiet) as bar:
        summary = simulate_agipd_run(args.output, args.count, seed=args.seed, run=run, fractions=args.fractions,
                                     progress=bar.update, **options)
    print(summary.line())
    return 0


def _like_run_options(args: argparse.Namespace) -> dict | None:
    """The reading options of a --like European XFEL run (None when none given)."""
    options = {"geom": args.like_geom, "adu_per_photon": args.like_adu_per_photon}
    if any(v is not None for v in options.values()) and not args.like:
        raise ConfigError("--like-geom and --like-adu-per-photon go with --like RUN_FOLDER")
    return {k: v for k, v in options.items() if v is not None} or None


def run(args: argparse.Namespace) -> int:
    from spidarknet.simulate import DEFAULT_SETTINGS, MEASURED_LIKE_SETTINGS, simulate_file
    if args.detector == "agipd1m":
        return run_agipd(args)

    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, got {args.count}")
    if args.photons is not None and args.fluence is not None:
        raise ConfigError("give the photon level as --photons (photons of a single on the valid pixels) or "
                          "as --fluence (photons/m² at the particle), not both")
    if args.energy_ev is not None and not args.energy_ev > 0:
        raise ConfigError(f"--energy-ev must be > 0, got {args.energy_ev:g}")
    if args.like_dataset and not args.like:
        raise ConfigError("--like-dataset names the frames of the --like file: give --like FILE too")
    options = settings_from_args(args)
    base = MEASURED_LIKE_SETTINGS if args.measured_like else DEFAULT_SETTINGS
    if not args.like:
        base.with_options(**options)  # a bad value fails before anything is read
    if os.path.exists(args.output) and not args.force:
        raise OutputError(f"{args.output} exists; use --force to overwrite it "
                          "or choose another name")
    chosen = FRAME_COMPRESSION if args.compression is None else args.compression
    compression = None if chosen == "none" else chosen
    if args.like:
        _check_like_geometry(args)
    with cli.progress(total=args.count, desc="simulate", quiet=args.quiet) as bar:
        summary = simulate_file(args.output, args.count, seed=args.seed, like=args.like, settings=base,
                                like_dataset=args.like_dataset, compression=compression,
                                like_run_options=_like_run_options(args),
                                chunk_frames=args.chunk_frames, fractions=args.fractions,
                                progress=bar.update, **options)
    if summary.like_line:
        print(summary.like_line)
    print(summary.line())
    return 0


#: frames of a --like file read, and the brightest of them fitted, to check its geometry
LIKE_CHECK_FRAMES, LIKE_CHECK_FITS = 400, 30


def _check_like_geometry(args: argparse.Namespace) -> None:
    """Fit spheres to the brightest frames of the --like file and warn where the fits
    contradict its geometry (a simulation copying a wrong geometry would teach it)."""
    import numpy as np

    from spidarknet.frames.source import FrameSource
    from spidarknet.selection.features import geometry_warnings
    from spidarknet.sizing import estimate_sizes
    from spidarknet.core.errors import SpidarknetError
    try:
        source = FrameSource([args.like], dataset=args.like_dataset)
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
    for line in geometry_warnings(results, source.files, size_range=args.size_range):
        print(f"warning: {line}", file=sys.stderr)


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
