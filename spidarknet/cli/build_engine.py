"""``spidarknet build-engine``: build darknet with our patches into the user's cache.

``train`` does the same on first need; this command does it ahead of time (before going
offline, or for a GPU build) and says where the build and its logs are."""

from __future__ import annotations

import argparse
import time

from spidarknet import cli
from spidarknet.engine.build import SOURCE_ENV
from spidarknet.engine.locate import CACHE_ENV, describe
from spidarknet.jobs.engine import build_user_engine


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "build-engine",
        "Build the darknet engine (pjreddie/darknet 61c9d02e with spidarknet's patches: CPU training\n"
        "with OpenMP, reproducible seeds) into the user's cache, $" + CACHE_ENV + " or\n"
        "$XDG_CACHE_HOME/spidarknet (default ~/.cache/spidarknet).  'train' does this by itself on\n"
        "first need.  The source: $" + SOURCE_ENV + " (a folder or Debian's .orig.tar.xz), the\n"
        "checkout's darknet/ submodule or build/darknet-orig/, else 'apt-get source darknet'.\n"
        "Needs make and a C compiler (GPU builds: CUDA's nvcc, see --gpu).",
        "spidarknet build-engine        # then: spidarknet train ds/")
    parser.add_argument("--gpu", action="store_true",
                        help="a CUDA build (GPU=1; needs nvcc and cuBLAS/cuRAND headers under /usr/local/cuda) "
                             "into darknet-gpu/, which train and detect then prefer")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    found, out = build_user_engine(args.gpu, cli.Console(args.quiet))
    print(f"darknet engine: {describe(found)}, built in {time.perf_counter() - started:.0f} s "
          f"(compiler output: {out / 'build.log'})")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
