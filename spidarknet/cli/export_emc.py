"""``spidarknet export-emc``: selected frames as Dragonfly EMC input (photons.emc, detector.h5)."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.export_emc import ExportEmcSettings, export_emc_to_folder

EXAMPLE = "spidarknet export-emc hits.csv --out emc/ --adu-per-photon 31.5"


def build_parser() -> argparse.ArgumentParser:
    from spidarknet.export.emc import POLARIZATIONS
    parser = cli.new_parser(
        "export-emc",
        "Write the selected frames of a hit list (its 'hit' column) as input for Dragonfly's\n"
        "EMC reconstruction, into a new folder:\n\n"
        "  photons.emc    sparse photon counts (Dragonfly's binary format), frames converted to\n"
        "                 photons (--adu-per-photon, rounded to integers), masked pixels zero\n"
        "  detector.h5    Dragonfly's detector file: q per pixel from the frames' geometry,\n"
        "                 polarisation and solid-angle factor, mask (2 = bad pixel)\n"
        "  blacklist.dat  one 0/1 per frame of the hit list, 1 = not selected\n"
        "  frames.csv     each frame of the hit list and its row in photons.emc (-1: not there)\n"
        "  export.json    counts, settings and the matching Dragonfly config entries\n\n"
        "With --all-frames photons.emc holds every frame of the hit list and blacklist.dat lines\n"
        "up with it (Dragonfly's blacklist_file); without it photons.emc holds only the selected\n"
        "frames and needs no blacklist.\n\n"
        "--binning B sums B x B pixels and --q-max keeps only the (binned) pixels below that |q|:\n"
        "a smaller detector for EMC (full pnCCD frames are far too big for it on a CPU);\n"
        "'spidarknet reconstruct' chooses both by itself.\n\n"
        "A hit list of European XFEL runs: the frames are assembled with the geometry, modules and\n"
        "photon conversion detect used (its hit list records them; --adu-per-photon and --distance\n"
        "here replace them); frames.csv gains trainId, pulseId and cellId.",
        EXAMPLE)
    parser.add_argument("hits", metavar="HITS.csv", help="hit list (from detect, select or merge)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--adu-per-photon", type=float, metavar="X",
                        help="detector units per photon (default: the frames already count photons)")
    parser.add_argument("--all-frames", action="store_true",
                        help="write every frame of the hit list; the blacklist then selects")
    group = parser.add_argument_group("geometry and mask (default: from the files)")
    group.add_argument("--distance", type=float, metavar="M", help="detector distance in metres")
    group.add_argument("--pixel-size", type=float, metavar="M", help="pixel size in metres")
    group.add_argument("--centre", nargs=2, type=float, metavar=("X", "Y"),
                       help="beam centre in pixels (column, row)")
    group.add_argument("--mask", metavar="FILE[:DATASET]",
                       help="extra mask (.npy or HDF5); non-zero pixels are excluded, as in CXI")
    group.add_argument("--mask-invert", action="store_true",
                       help="the --mask file marks good pixels with non-zero (Cheetah/CrystFEL style)")
    group.add_argument("--no-file-mask", action="store_true", help="ignore the mask stored in the files")
    group.add_argument("--ewald-rad", type=float, metavar="VOXELS",
                       help="Ewald-sphere radius in voxels (default: the distance in pixels, as "
                            "Dragonfly's make_detector)")
    group.add_argument("--polarization", choices=POLARIZATIONS, default="x",
                       help="beam polarisation for the detector's correction factor (default x)")
    reduce = parser.add_argument_group("a smaller detector (default: every pixel as it is)")
    reduce.add_argument("--binning", type=int, default=1, metavar="B",
                        help="sum B x B pixels into one (a binned pixel is masked if any of its pixels is)")
    reduce.add_argument("--q-max", type=float, metavar="INV_NM",
                        help="keep only pixels whose |q| = 4π sin(θ)/λ lies below this, in nm⁻¹")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = ExportEmcSettings(
        hits=args.hits, out=args.out, adu_per_photon=args.adu_per_photon, all_frames=args.all_frames,
        distance_m=args.distance, pixel_size_m=args.pixel_size, centre_px=tuple(args.centre) if args.centre else None,
        mask=args.mask, mask_invert=args.mask_invert, use_file_mask=not args.no_file_mask, ewald_rad=args.ewald_rad,
        polarization=args.polarization, binning=args.binning, q_max_inv_nm=args.q_max, force=args.force)
    print(export_emc_to_folder(settings, cli.Console(args.quiet)).line())
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
