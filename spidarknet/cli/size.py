"""``spidarknet size``: a Poisson sphere fit per frame -> particle diameter table."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.defaults import SIZE_CHUNK_FRAMES
from spidarknet.jobs.size import SizeSettings, size_to_file
from spidarknet.sizing import SizingSettings, summary_line


def build_parser() -> argparse.ArgumentParser:
    d = SizingSettings()
    parser = cli.new_parser(
        "size",
        "Particle diameter per frame: a Poisson likelihood fit of the photons of every usable\n"
        "pixel (one pnCCD half is enough) to a sphere form factor with a free scale, flat\n"
        "background and beam centre, q = 4π sin(θ)/λ with 2θ = atan(r/D); diameters searched on\n"
        "a grid, then refined.  One row per frame: diameter_nm; diameter_err_nm (1σ: the\n"
        "likelihood's curvature and a shape term); fit_quality (reduced χ² of the ring sums, ≈1\n"
        "for a sphere); misfit (excess χ² per signal photon: ≈0 sphere, <0.4 icosahedron, more:\n"
        "not one particle); second_particle_z (σ of the fringes a second particle would add:\n"
        "≈3 for one particle, above 5 several); ok; reason; ...; second_particle_cut (the z above\n"
        "which a size window drops the fit).  Frames without a size (too few photons, no usable\n"
        "pixels, a size outside --d-range) keep their row, with the reason.",
        "spidarknet size run1.cxi --hits hits.csv --out sizes.csv")
    cli.add_input_args(parser)
    parser.add_argument("--hits", metavar="CSV", help="size only the selected frames (hit=1) of this hit list")
    parser.add_argument("--all-frames", action="store_true",
                        help="with --hits: size every frame the hit list scored, not only its hits")
    parser.add_argument("--out", required=True, metavar="CSV", help="size table to write")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    fit = parser.add_argument_group("fit")
    fit.add_argument("--d-range", nargs=2, type=float, metavar=("MIN", "MAX"),
                     default=(d.d_min_nm, d.d_max_nm),
                     help=f"diameters searched, nm (default {d.d_min_nm:g} {d.d_max_nm:g})")
    fit.add_argument("--q-range", nargs=2, type=float, metavar=("MIN", "MAX"),
                     default=(d.q_min_inv_nm, d.q_max_inv_nm),
                     help=f"q range fitted, nm⁻¹ (default {d.q_min_inv_nm:g} {d.q_max_inv_nm:g}; "
                          "the mask removes the beam stop)")
    fit.add_argument("--no-background", action="store_true", help="fit no flat background")
    fit.add_argument("--no-centre-refinement", action="store_true",
                     help="use the file's beam centre as it is")
    fit.add_argument("--centre-search", type=float, default=d.centre_search_px, metavar="PX",
                     help=f"how far the centre may move from the file's, in pnCCD pixels of 75 µm, a distance "
                          f"on the detector (default {d.centre_search_px:g}: 1.1 mm; binned frames search "
                          "as far)")
    fit.add_argument("--centre-step", type=float, default=d.centre_step_px, metavar="PX",
                     help=f"grid step of the first centre search, pnCCD pixels of 75 µm (default {d.centre_step_px:g}; "
                          "smaller is slower and safer for particles above ~150 nm)")
    fit.add_argument("--min-photons", type=float, default=d.min_signal_photons,
                     help=f"signal photons a fit needs in the q range (default {d.min_signal_photons:g})")
    fit.add_argument("--adu-per-photon", type=float, help="detector units per photon (default: data are photons)")
    parser.add_argument("--chunk", type=int, default=SIZE_CHUNK_FRAMES,
                        help=f"frames read at a time (default {SIZE_CHUNK_FRAMES})")
    parser.add_argument("--jobs", "-j", type=int,
                        help="processes fitting in parallel (default: one per core; the sizes do not "
                             "depend on it)")
    cli.add_common_args(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> SizingSettings:
    return SizingSettings(d_min_nm=args.d_range[0], d_max_nm=args.d_range[1],
                          q_min_inv_nm=args.q_range[0], q_max_inv_nm=args.q_range[1],
                          background=not args.no_background,
                          refine_centre=not args.no_centre_refinement,
                          centre_search_px=args.centre_search, centre_step_px=args.centre_step,
                          min_signal_photons=args.min_photons,
                          adu_per_photon=args.adu_per_photon).check()


def run(args: argparse.Namespace) -> int:
    settings = SizeSettings(frames=cli.frame_options(args), out=args.out, force=args.force, hits=args.hits,
                            all_frames=args.all_frames, sizing=settings_from_args(args), chunk=args.chunk,
                            jobs=args.jobs)
    results = size_to_file(settings, cli.Console(args.quiet))
    print(f"{summary_line(results)}; wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
