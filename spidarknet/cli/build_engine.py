"""``spidarknet build-engine``: build darknet with our patches into the user's cache.

``train`` does the same on first need; this command does it ahead of time (before going
offline, or for a GPU build) and says where the build and its logs are."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spidarknet import cli
from spidarknet.engine.build import SOURCE_ENV, build_engine, pristine_source, trainable_darknet
from spidarknet.engine.locate import CACHE_ENV, Found, describe, user_build_dir


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
    out = user_build_dir(args.gpu)
    _announce(out)
    found = build_engine(gpu=args.gpu, on_progress=_progress_bar(args.quiet))
    print(f"darknet engine: {describe(found)}, built in {time.perf_counter() - started:.0f} s "
          f"(compiler output: {out / 'build.log'})")
    return 0


def _announce(out: Path) -> None:
    source = pristine_source()
    where = source if source is not None else "Debian's source package (apt-get source darknet)"
    print(f"building the darknet engine from {where} with spidarknet's patches into {out} "
          f"(compiler output: {out / 'build.log'}) ...", file=sys.stderr, flush=True)


def _progress_bar(quiet: bool):
    """A bar of the files compiled (drawn from the first report on); on_progress for
    :func:`build_engine`."""
    bars = []

    def on_progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(cli.progress(total=total, desc="compile darknet", quiet=quiet, unit="file"))
        bar = bars[0]
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()
        if total and done >= total:
            bar.close()
    return on_progress


def engine_for_training(explicit: str | None, quiet: bool) -> Found:
    """The darknet binary ``train`` runs: a patched build found, else one built now into the
    user's cache, with a line saying so and a bar of the files compiled."""
    started = time.perf_counter()
    built = []
    found = trainable_darknet(explicit, on_build=lambda out: (built.append(out), _announce(out)),
                              on_progress=_progress_bar(quiet))
    if built:
        print(f"darknet engine built in {time.perf_counter() - started:.0f} s: {describe(found)}",
              file=sys.stderr)
    return found


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
