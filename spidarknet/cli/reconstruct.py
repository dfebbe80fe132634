"""``spidarknet reconstruct``: Dragonfly's EMC on the selected frames -> a 3D intensity."""

from __future__ import annotations

import argparse
import sys

from spidarknet import cli

EXAMPLE = ("spidarknet reconstruct hits.csv --out recon/ --iterations 30\n"
           "  spidarknet reconstruct emc/ --out recon/ --binning 4 --q-max 0.8 --num-div 6 --halves\n"
           "  spidarknet reconstruct hits.csv --out recon/ --iterations 50 --resume   (continue to 50)")


def build_parser() -> argparse.ArgumentParser:
    from spidarknet.reconstruct.run import DEFAULTS
    parser = cli.new_parser(
        "reconstruct",
        "Reconstruct the 3D diffraction intensity of the selected frames with Dragonfly's EMC\n"
        "(the dragonfly-spi package: 'make build/dragonfly/.installed' or 'pip install\n"
        "dragonfly-spi').  The frames go onto a smaller detector first (EMC on full pnCCD\n"
        "frames is far too slow on a CPU): B x B pixels summed (--binning) and only pixels\n"
        "below --q-max kept.  By default B keeps 3 binned pixels per fringe of the sphere that\n"
        f"fits the frames' powder sum, and the detector spans at most {DEFAULTS['max_width_px']} binned pixels\n"
        "across, within the largest full ring; --num-div puts neighbouring orientations\n"
        f"~{DEFAULTS['edge_arc_voxels']:g} voxels apart at the model's edge (within {DEFAULTS['num_div_range']}).\n\n"
        "Writes the new folder OUT: intensity.h5 (/intensity, q = 0 at index n // 2,\n"
        "q_per_voxel_inv_nm), log.csv, reconstruct.json, frames.csv, slices.png,\n"
        "convergence.png, report.html, and Dragonfly's own files in dragonfly/.  While it runs\n"
        "the folder is OUT.partial; an interrupted run keeps its completed iterations there\n"
        "and --resume continues it (or a finished OUT, to more --iterations).",
        EXAMPLE)
    parser.add_argument("source", metavar="HITS.csv|EMC_DIR",
                        help="hit list (its selected frames are exported) or an 'export-emc' folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    reduce = parser.add_argument_group("the reduced detector (default: chosen from the data)")
    reduce.add_argument("--binning", type=int, metavar="B", help="sum B x B pixels into one")
    reduce.add_argument("--q-max", type=float, metavar="INV_NM", help="keep pixels with |q| below this (nm⁻¹)")
    reduce.add_argument("--adu-per-photon", type=float, metavar="X",
                        help="detector units per photon of a hit list's frames (default: photon counts)")
    emc = parser.add_argument_group("EMC")
    emc.add_argument("--iterations", type=int, default=DEFAULTS["iterations"], metavar="N",
                     help=f"EMC iterations in all (default {DEFAULTS['iterations']})")
    emc.add_argument("--num-div", type=int, metavar="N",
                     help="orientation sampling, 10 (5 N³ + N) orientations (default: from the model radius)")
    emc.add_argument("--threads", type=int, metavar="N", help="OpenMP threads (default: every core)")
    emc.add_argument("--no-scaling", action="store_true", help="no per-frame scale factor (need_scaling 0)")
    emc.add_argument("--beta", type=float, metavar="B",
                     help="start beta in (0, 1] (default: Dragonfly's per-frame value from its photons)")
    emc.add_argument("--beta-schedule", type=float, nargs=2, metavar=("JUMP", "PERIOD"),
                     default=DEFAULTS["beta_schedule"],
                     help="multiply beta by JUMP every PERIOD iterations (default %(default)s)")
    emc.add_argument("--seed", type=int, default=0, metavar="N",
                     help="seed of the random start model (default 0: Dragonfly's own fixed seed); the "
                          "same frames, settings and seed give the same volume")
    emc.add_argument("--halves", action="store_true",
                     help="also reconstruct the even and the odd selected frames (half1/, half2/)")
    emc.add_argument("--dragonfly", metavar="PATH",
                     help="Dragonfly's dragonfly.emc (default: $SPIDARKNET_DRAGONFLY, beside this Python, "
                          "PATH, the repository's build/dragonfly)")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT.partial (an interrupted run) or OUT to --iterations")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT (or OUT.partial)")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from spidarknet.reconstruct.run import reconstruct
    if args.beta_schedule[1] != int(args.beta_schedule[1]):
        from spidarknet.core.errors import ConfigError
        raise ConfigError("--beta-schedule PERIOD must be a whole number of iterations")
    try:
        result = reconstruct(args.source, args.out, binning=args.binning, q_max_inv_nm=args.q_max,
                             iterations=args.iterations, num_div=args.num_div, threads=args.threads,
                             halves=args.halves, resume=args.resume, force=args.force,
                             dragonfly=args.dragonfly, progress=not args.quiet,
                             need_scaling=not args.no_scaling, beta=args.beta,
                             beta_schedule=(args.beta_schedule[0], int(args.beta_schedule[1])),
                             adu_per_photon=args.adu_per_photon, seed=args.seed)
    except KeyboardInterrupt:
        print(f"interrupted: the completed iterations are in {args.out}.partial; continue with --resume",
              file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    print(result.line())
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
