"""``spidarknet detect``: frames + trained weights -> hit list (CSV + JSON), optionally a CXI."""

from __future__ import annotations

import argparse
import sys
import time

from spidarknet import cli
from spidarknet.core.defaults import DETECT_CHUNK_FRAMES, INFERENCE_BATCH
from spidarknet.detection.local import PREFILTER_SIGMA
from spidarknet.engine.backends import BACKENDS
from spidarknet.jobs.detect import DetectSettings, detect_to_file


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "detect",
        "Score every frame with trained weights, repeating the preprocessing recorded for them, and "
        "write a hit list: CSV (file,dataset,index,score,x,y,w,h,hit,status) plus a JSON summary.\n"
        "Frames whose crop leaves the detector are padded and marked 'padded'; frames without a valid "
        "pixel in the crop are marked 'no-valid-pixels' and never selected (one warning line each).",
        "spidarknet detect 'run*.cxi' --weights ds/backup/yolov2-tiny-spi_final.weights --out hits.csv\n"
        "  spidarknet detect run7.cxi --out hits.csv --expected-hit-rate 0.03   # the built-in model")
    cli.add_input_args(parser, adu_option=True)
    parser.add_argument("--weights", help="trained weights (their model card JSON beside them); default: the "
                                           "built-in model trained on simulation (see --expected-hit-rate)")
    parser.add_argument("--out", required=True, metavar="CSV", help="hit list to write")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (GPU darknet if built, else OpenCV), darknet (libdarknet via ctypes), "
                             "darknet-cli (images + 'darknet detector valid'), opencv (default auto)")
    parser.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    parser.add_argument("--expected-hit-rate", type=float, metavar="F",
                        help="set the threshold so that this share of the frames (0-1) is selected, e.g. 0.03 "
                             "for a run whose single-hit rate is about 3 %%: a threshold learnt on simulation "
                             "does not carry over to measured frames (or label a few frames and use "
                             "'evaluate --truth' for its max-F1 threshold)")
    parser.add_argument("--cfg", help="network cfg, for weights without a model card")
    parser.add_argument("--preprocess", metavar="JSON", help="preprocessing settings, for weights without a card")
    parser.add_argument("--batch", type=int, default=INFERENCE_BATCH,
                        help=f"frames per inference batch (default {INFERENCE_BATCH})")
    parser.add_argument("--jobs", "-j", type=int,
                        help="processes reading, preprocessing and detecting in parallel (default: one per "
                             "core for the CPU backends, 1 for a GPU or darknet-cli); also the processes "
                             "of the --size-range fits (default: one per core)")
    parser.add_argument("--gpu", type=int, help="GPU index for a GPU build of darknet")
    parser.add_argument("--darknet", metavar="PATH", help="darknet binary (darknet-cli backend)")
    parser.add_argument("--libdarknet", metavar="PATH", help="libdarknet.so (darknet backend)")
    parser.add_argument("--write-cxi", metavar="CXI", help="also copy the selected frames into this CXI file")
    parser.add_argument("--size-range", nargs=2, type=float, metavar=("MIN_NM", "MAX_NM"),
                        help="keep only hits whose sphere-fit diameter lies in [MIN, MAX] nm (e.g. 60 75)")
    _add_icosahedron_options(parser)
    parser.add_argument("--selector", metavar="JSON",
                        help="a selection learnt from your labels ('spidarknet learn'): the network screens at "
                             "its screen, the sphere fit measures, the selector decides; every row carries the "
                             "measurements and the probability")
    parser.add_argument("--mpi", action="store_true",
                        help="run as one rank of 'mpirun -n N': each rank scores its share, rank 0 writes "
                             "the one hit list (needs mpi4py)")
    parser.add_argument("--shard", metavar="K/N",
                        help="score only part K of N (1..N) of the frames, for job arrays; join the parts "
                             "with 'spidarknet merge'")
    parser.add_argument("--chunk", type=int, default=DETECT_CHUNK_FRAMES,
                        help=f"frames read at a time (default {DETECT_CHUNK_FRAMES})")
    _add_prefilter_args(parser)
    _add_follow_args(parser)
    cli.add_common_args(parser)
    return parser


def _add_icosahedron_options(parser: argparse.ArgumentParser) -> None:
    """--icosahedron / --no-icosahedron (the window's refinement near its edges; on by default)."""
    icosahedron = parser.add_mutually_exclusive_group()
    icosahedron.add_argument("--icosahedron", action="store_const", const=True, default=None,
                             help="with --size-range (the default there): where the sphere fit's diameter lies up to "
                                  "3 nm below one of the window's edges, fit an icosahedron too and take "
                                  "its diameter and centre where it fits better (icosahedral samples such as PR772: "
                                  "the sphere sizes them up to ~2 nm low); a few ms of CPU per such frame")
    icosahedron.add_argument("--no-icosahedron", dest="icosahedron", action="store_const", const=False,
                             help="with --size-range: keep the sphere fit's diameters near the window's edges "
                                  "(spherical samples; the default before the twelfth session)")


def _add_follow_args(parser: argparse.ArgumentParser) -> None:
    """--follow, and the monitor page beside it."""
    parser.add_argument("--follow", action="store_true",
                        help="classify a file while it is being written (HDF5 SWMR): rows are appended as "
                             "frames arrive, until none came for --idle seconds")
    parser.add_argument("--idle", type=float, default=30.0, metavar="SECONDS",
                        help="with --follow: stop after this long without new frames (default 30)")
    parser.add_argument("--monitor", action="store_true",
                        help="with --follow: also serve the monitor page of the hit list (spidarknet monitor) "
                             "in a process of its own, on --host/--port, until the following ends")
    cli.add_page_args(parser)


def _add_prefilter_args(parser: argparse.ArgumentParser) -> None:
    """The prefilter that keeps background-like frames from the network."""
    parser.add_argument("--no-prefilter", action="store_true",
                        help="send every frame to the network (default: frames whose crop holds no more photons "
                             "than their own background are given score 0 without it)")
    parser.add_argument("--prefilter-photons", type=float, metavar="N",
                        help="reject frames with fewer than N photons in the crop, instead of the background test")
    parser.add_argument("--prefilter-sigma", type=float, default=PREFILTER_SIGMA, metavar="Z",
                        help="the background test: a frame reaches the network when its inner crop holds more than "
                             f"Z standard deviations above its outer crop's background (default {PREFILTER_SIGMA:g}; "
                             "lower is more cautious)")
    parser.add_argument("--prefilter-litpixels", type=float, metavar="K",
                        help="instead: European XFEL's lit-pixel hit finder - a frame reaches the network when its "
                             "lit pixels (>= 1 photon, in the region read) exceed the median + K x IQR of its window "
                             "(the frames read together: up to --chunk frames, of one train for runs); e.g. 3")


def settings_from_args(args: argparse.Namespace) -> DetectSettings:
    """The job's settings from the options."""
    return DetectSettings(
        frames=cli.frame_options(args), out=args.out, weights=args.weights, force=args.force, backend=args.backend,
        threshold=args.threshold, expected_hit_rate=args.expected_hit_rate, cfg=args.cfg, preprocess=args.preprocess,
        batch=args.batch, jobs=args.jobs, gpu=args.gpu, darknet=args.darknet, libdarknet=args.libdarknet,
        write_cxi=args.write_cxi, size_range=args.size_range, icosahedron=args.icosahedron, selector=args.selector, mpi=args.mpi,
        shard=args.shard, chunk=args.chunk, no_prefilter=args.no_prefilter,
        prefilter_photons=args.prefilter_photons, prefilter_sigma=args.prefilter_sigma,
        prefilter_litpixels=args.prefilter_litpixels, follow=args.follow, idle=args.idle, monitor=args.monitor,
        host=args.host, port=args.port)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result = detect_to_file(settings_from_args(args), cli.Console(args.quiet))
    if result.followed is not None:
        print(f"followed {result.followed}: {result.selected} of {result.rows} frames selected at threshold "
              f"{result.threshold:.3g}; wrote {result.out}" + (" (interrupted)" if result.interrupted else ""))
        return cli.EXIT_INTERRUPTED if result.interrupted else 0
    if result.hits is None:  # an MPI rank other than 0
        return 0
    hits = result.hits
    screened = (f", {hits.meta['prefilter']['rejected']} background-like frames kept from the network"
                if result.prefilter else "")
    print(f"{hits.summary_line()}; {result.backend} backend, {result.workers}, "
          f"{result.frames_per_s:.0f} frames/s{screened}; wrote {result.out}")
    if result.cxi:
        print(f"wrote {result.cxi_frames} selected frames to {result.cxi}")
    seconds = time.perf_counter() - started
    if not args.quiet and sys.stderr.isatty():
        print(f"done in {seconds:.1f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
