"""``spidarknet simulate``: write a simulated, labelled SPI data set as one CXI file."""

from __future__ import annotations

import argparse
import os

from spidarknet import cli
from spidarknet.errors import ConfigError, OutputError
from spidarknet.simulate.writer import COMPRESSIONS

EXAMPLE = "python -m spidarknet simulate sim.cxi --count 2000 --seed 1 --half-detector"


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
    parser = cli.new_parser(
        "simulate",
        "Simulate pnCCD diffraction frames of single particles, multiples, empty shots,\n"
        "aggregates, water droplets and tiny particles (1.7 keV, 125 mm, 75 µm pixels),\n"
        "with Poisson noise and the truth (label: one particle of 60-75 nm) under /truth.",
        EXAMPLE)
    parser.add_argument("output", metavar="OUT.cxi", help="CXI file to write")
    parser.add_argument("--count", "-n", type=int, required=True, help="number of frames")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same "
                        "seed and options give identical files")
    parser.add_argument("--half-detector", action="store_true",
                        help="one pnCCD half dead (masked, zero), as in the 2018 PR772 run")
    parser.add_argument("--compression", choices=(*COMPRESSIONS, "none"), default="none",
                        help="HDF5 compression of the frames (default none): "
                        + "; ".join(f"{k}: {v}" for k, v in COMPRESSIONS.items())
                        + ".  Reading the last three needs the hdf5plugin package")
    parser.add_argument("--fractions", type=_fractions, default=None, metavar="KIND=F,...",
                        help="share of each kind, e.g. single=0.5,empty=0.5 (kinds: single, "
                        "multiple, empty, aggregate, droplet, tiny; others get none)")
    parser.add_argument("--chunk-frames", type=int, default=16,
                        help="frames generated and written at a time (default 16)")
    parser.add_argument("--force", "-f", action="store_true", help="overwrite OUT.cxi if it exists")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from spidarknet.simulate import simulate_file

    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, got {args.count}")
    if os.path.exists(args.output) and not args.force:
        raise OutputError(f"{args.output} exists; use --force to overwrite it "
                          "or choose another name")
    compression = None if args.compression == "none" else args.compression
    with cli.progress(total=args.count, desc="simulate", quiet=args.quiet) as bar:
        summary = simulate_file(args.output, args.count, seed=args.seed,
                                half_detector=args.half_detector, compression=compression,
                                chunk_frames=args.chunk_frames, fractions=args.fractions,
                                progress=bar.update)
    print(summary.line())
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
