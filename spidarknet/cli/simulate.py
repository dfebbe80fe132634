"""``spidarknet simulate``: write a simulated, labelled SPI data set as one CXI file."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.defaults import FRAME_COMPRESSION, SIMULATE_CHUNK_FRAMES
from spidarknet.jobs.simulate import SimulateSettings, simulate_to_file
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
                        + "; none.  Reading the last three needs the hdf5plugin package.  --detector agipd1m: "
                        "uncompressed by default, as the facility writes; gzip-1 keeps about 30 %% of the bytes "
                        "(values held to 1/64 ADU, byte shuffle, deflate level 1; docs/euxfel.md)")
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


def settings_from_args(args: argparse.Namespace) -> SimulateSettings:
    """The job's settings: the simulation options the user gave (``None`` where not given)."""
    options = {"photons": args.photons, "mean_fluence_photons_per_m2": args.fluence,
               "fluence_sigma": args.fluence_sigma,
               "background_photons_per_pixel": args.background,
               "centre_jitter_px": args.centre_jitter,
               "size_range_nm": tuple(args.size_range) if args.size_range else None,
               "label_range_nm": tuple(args.label_range) if args.label_range else None,
               "off_size_fraction": args.off_size_fraction,
               "separation_diameters": tuple(args.separation) if args.separation else None,
               "particle_shape": args.particle_shape,
               "distance_m": args.distance, "pixel_size_m": args.pixel_size,
               "shape": tuple(args.shape) if args.shape else None, "binning": args.binning,
               "half_detector": args.half_detector or None}
    return SimulateSettings(
        output=args.output, count=args.count, seed=args.seed, options=options,
        readout={name: getattr(args, name) for _, name, *_ in MEASURED_OPTIONS}, energy_ev=args.energy_ev,
        detector=args.detector, measured_like=args.measured_like, like=args.like, like_dataset=args.like_dataset,
        like_geom=args.like_geom, like_adu_per_photon=args.like_adu_per_photon, compression=args.compression,
        chunk_frames=args.chunk_frames, fractions=args.fractions, force=args.force, cells=args.cells,
        legacy_names=args.legacy_names, modules=args.modules)


def run(args: argparse.Namespace) -> int:
    summary = simulate_to_file(settings_from_args(args), cli.Console(args.quiet))
    if getattr(summary, "like_line", None):
        print(summary.like_line)
    print(summary.line())
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
