"""Command-line plumbing shared by every command.

Each command module defines ``build_parser()`` and ``run(args) -> int``: ``run`` builds the
typed settings of the command's job (:mod:`spidarknet.jobs`), calls that one function with a
:class:`Console` (its progress bars and stderr lines) and prints the result; the parsed
``args`` never leave this package.  Its ``main(argv=None) -> int`` is
``cli.run_main(build_parser, run, argv)``, which turns
:class:`~spidarknet.core.errors.SpidarknetError` and operating-system errors into one
``error: ...`` line on stderr (exit status 1), and anything else, a bug, into one
``error: internal error (...)`` line (exit status 70); ``--verbose`` logs its traceback.

Exit statuses: 0 done, 1 an error of the user's input, settings or environment (the line
says what to do), 2 a usage error argparse found, 70 an internal error (please report it),
130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from typing import Callable, Sequence

from spidarknet.core.errors import ConfigError, SpidarknetError
from spidarknet.core.feedback import Feedback

#: command name -> (module, one-line help)
COMMANDS = {
    "simulate": ("spidarknet.cli.simulate", "write a simulated, labelled SPI data set as CXI"),
    "export-dataset": ("spidarknet.cli.export_dataset",
                       "turn CXI frames into a Darknet training data set"),
    "train": ("spidarknet.cli.train", "train the network on an exported data set with darknet"),
    "detect": ("spidarknet.cli.detect", "score frames with trained weights and write a hit list"),
    "evaluate": ("spidarknet.cli.evaluate", "judge a hit list against the truth: P/R/F1, PR curve, thresholds"),
    "compare": ("spidarknet.cli.compare", "set selections side by side: counts, intersections, Jaccard"),
    "size": ("spidarknet.cli.size", "radial profiles and sphere fits: particle diameter per frame"),
    "select": ("spidarknet.cli.select", "re-threshold a hit list and keep hits in a size window"),
    "learn": ("spidarknet.cli.learn", "learn the run's selection from a few labelled frames (detect --selector)"),
    "propose": ("spidarknet.cli.propose", "which frames to label next: uncertain and representative ones"),
    "report": ("spidarknet.cli.report", "an HTML report with figures of a selection"),
    "export-hits": ("spidarknet.cli.export_hits",
                    "hit list -> CrystFEL/OM event list (.lst), CXI score/tags sidecar"),
    "export-emc": ("spidarknet.cli.export_emc", "selected frames -> Dragonfly photons.emc, detector file, blacklist"),
    "reconstruct": ("spidarknet.cli.reconstruct", "Dragonfly EMC on the selected frames -> 3D intensity, figures"),
    "monitor": ("spidarknet.cli.monitor", "a page that shows a run's hit list as detect --follow writes it"),
    "label": ("spidarknet.cli.label", "a page to label the frames propose ranks, one at a time (learn inside)"),
    "merge": ("spidarknet.cli.merge", "join the hit lists of a SLURM job array (detect --shard K/N)"),
    "seed-questions": ("spidarknet.cli.seed_questions",
                       "the seed's three questions on a simulated beamtime: F1 per run, table, structure"),
    "bench": ("spidarknet.cli.bench", "throughput benchmark: detect end to end per backend vs the naive way"),
    "build-engine": ("spidarknet.cli.build_engine",
                     "build the darknet engine with spidarknet's patches into the user's cache"),
}

EXIT_USAGE = 2
EXIT_ERROR = 1
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h: a bug, not the user's mistake
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)


def dispatch(argv: Sequence[str]) -> int:
    """Run ``spidarknet CMD ARGS...``; prints the command list on ``-h`` or no command."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_command_list(sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        from spidarknet.core.version import __version__
        print(f"spidarknet {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"error: unknown command {name!r}{hint}; run 'spidarknet --help' for the list",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name != COMMANDS[name][0]:
            raise
        print(f"error: command {name!r} is not available in this version of spidarknet", file=sys.stderr)
        return EXIT_USAGE
    return module.main(argv[1:])


def console_main() -> None:
    """Entry point of the ``spidarknet`` console script."""
    sys.exit(dispatch(sys.argv[1:]))


def _print_command_list(stream) -> None:
    print("usage: spidarknet COMMAND [options]   (or: python -m spidarknet COMMAND)\n", file=stream)
    print("commands:", file=stream)
    for name, (_, help_text) in COMMANDS.items():
        print(f"  {name:<16} {help_text}", file=stream)
    print("\nrun 'spidarknet COMMAND --help' for the options of one command", file=stream)


def run_main(build_parser: Callable[[], argparse.ArgumentParser],
             run: Callable[[argparse.Namespace], int],
             argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and call ``run``; user errors become one line on stderr."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return int(exc.code or 0)
    # the experiments call the library's jobs, never a command's main: no command runs inside another
    configure_logging(getattr(args, "verbose", False))
    try:
        return run(args)
    except SpidarknetError as exc:
        foreign = getattr(exc, "worker_type", None)
        if foreign and not foreign.startswith("spidarknet."):
            # a worker process raised something not of the project's own: a bug there
            from spidarknet.core.pool import TRACEBACK_HINT
            return _internal_error(exc, str(exc).replace(TRACEBACK_HINT, ""))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        # the operating system refused (disk full, permission denied, a file gone mid-run):
        # one line naming the file, like the project's own errors (outputs are staged under
        # temporary names, so nothing half-written is left under the real one)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, and its traceback for the report
        return _internal_error(exc, f"{type(exc).__name__}: {exc}")


def _internal_error(exc: BaseException, what: str) -> int:
    """One ``error: internal error (...)`` line; the traceback goes to the debug log."""
    log.debug("internal error; its traceback:", exc_info=exc)
    if getattr(exc, "worker_traceback", None):
        log.debug("the worker's traceback:\n%s", exc.worker_traceback)
    first = what.strip().splitlines()[0] if what.strip() else type(exc).__name__
    print(f"error: internal error ({first[:300]}) - please report it; --verbose shows the traceback",
          file=sys.stderr)
    return EXIT_INTERNAL


def configure_logging(verbose: bool) -> None:
    """spidarknet's loggers at DEBUG with ``--verbose`` (else WARNING), on stderr as
    ``LEVEL logger: message``; other libraries' loggers stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("spidarknet").setLevel(logging.DEBUG if verbose else logging.WARNING)


class Parser(argparse.ArgumentParser):
    """argparse without abbreviated options (``--size-rang`` is not ``--size-range``), whose
    usage errors are one line; an unknown option is named first (before a missing one),
    with the option meant."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)
        self._given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        known = {name for action in self._actions for name in action.option_strings}
        given = self._given[:self._given.index("--")] if "--" in self._given else self._given
        unknown = [word for word in given if word.startswith("--") and word.split("=", 1)[0] not in known]
        if unknown:
            named = [option + (f" (did you mean {close}?)" if (close := self._nearest(option)) else "")
                     for option in unknown]
            message = f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(named)}"
        self.exit(EXIT_USAGE, f"error: {message}; '{self.prog} --help' lists the options\n")

    def _nearest(self, option: str) -> str | None:
        """The option meant by ``option``: the one it abbreviates, else the most similar."""
        typed = option.split("=", 1)[0]
        known = [name for action in self._actions for name in action.option_strings if name.startswith("--")]
        longer = [name for name in known if name.startswith(typed)]
        if len(longer) == 1:
            return longer[0]
        close = difflib.get_close_matches(typed.lstrip("-"), [name[2:] for name in known], n=1)
        return f"--{close[0]}" if close else None


def new_parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """A parser whose help ends with a worked example (see :class:`Parser`)."""
    return Parser(
        prog=f"spidarknet {prog}", description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def add_page_args(parser: argparse.ArgumentParser) -> None:
    """--host and --port of the pages (monitor, label)."""
    from spidarknet.serve.server import DEFAULT_HOST, DEFAULT_PORT
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port of the page (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only); any other "
                             "address lets other machines see the page, without a password, and is warned about")


def page_settings(args: argparse.Namespace):
    """The :class:`~spidarknet.jobs.pages.PageSettings` of --host and --port."""
    from spidarknet.jobs.pages import PageSettings
    return PageSettings(host=args.host, port=args.port)


class Console(Feedback):
    """A job's feedback as the commands give it: tqdm bars and notes on stderr unless
    ``quiet``, warnings as ``warning: ...`` lines, said lines always; shown lines on stdout."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def bar(self, total=None, desc=None, unit="frame"):
        return progress(total=total, desc=desc, quiet=self.quiet, unit=unit)

    def say(self, line: str) -> None:
        print(line, file=sys.stderr)

    def note(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stderr)

    def show(self, line: str) -> None:
        print(line, flush=True)

    def warn(self, line: str) -> None:
        print(f"warning: {line}", file=sys.stderr)

    def hushed(self) -> "Console":
        return Console(quiet=True)


def progress(iterable=None, *, total=None, desc=None, quiet=False, unit="frame"):
    """A tqdm bar on stderr, silent when ``quiet`` or when stderr is not a terminal."""
    from tqdm import tqdm
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                dynamic_ncols=True, file=sys.stderr)


# -- options shared by every command that reads frames --------------------------------------

def add_input_args(parser: argparse.ArgumentParser, adu_option: bool = False) -> None:
    """INPUT..., --dataset, --frames, geometry and mask options, and those of European XFEL runs
    (with ``adu_option`` their --adu-per-photon, for commands that have none of their own)."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="CXI/HDF5 files (globs allowed, quote them: 'run*.cxi')")
    group = parser.add_argument_group("frames and geometry")
    group.add_argument("--dataset", metavar="PATH",
                       help="frame dataset inside the files (default: /entry_1/data_1/data, "
                            "then /entry_1/instrument_1/detector_1/data)")
    group.add_argument("--frames", metavar="START:STOP",
                       help="frame range applied to every file, Python slice rules (e.g. 0:1000)")
    group.add_argument("--centre", nargs=2, type=float, metavar=("X", "Y"),
                       help="beam centre in pixels (column, row); default: from the file's geometry")
    group.add_argument("--distance", type=float, metavar="M", help="detector distance in metres")
    group.add_argument("--pixel-size", type=float, metavar="M", help="pixel size in metres")
    group.add_argument("--wavelength", type=float, metavar="M", help="X-ray wavelength in metres")
    group.add_argument("--energy-ev", type=float, metavar="EV", help="photon energy in eV (instead of --wavelength)")
    group.add_argument("--mask", metavar="FILE[:DATASET]",
                       help="extra mask (.npy or HDF5); non-zero pixels are excluded, as in CXI")
    group.add_argument("--mask-invert", action="store_true",
                       help="the --mask file marks good pixels with non-zero (Cheetah/CrystFEL style)")
    group.add_argument("--no-file-mask", action="store_true", help="ignore the mask stored in the files")
    group.add_argument("--keep-bad-pixels", action="store_true",
                       help="do not mask the hot and dead pixels each file's own frames show (by default 32 "
                            "frames per file are read first: a pixel lit in most of them and far more often "
                            "than its neighbours is hot, one never lit where its neighbours are is dead)")
    add_run_args(parser, adu_option)


def add_run_args(parser: argparse.ArgumentParser, adu_option: bool) -> None:
    """Options of European XFEL AGIPD runs (an INPUT that is a run folder or PROPOSAL/RUN)."""
    group = parser.add_argument_group(
        "European XFEL runs (INPUT a run folder, or p2304/r107 as open_run finds it; docs/euxfel.md)")
    group.add_argument("--geom", metavar="FILE", help="CrystFEL geometry of the AGIPD 1M: module positions, and "
                       "the distance (clen) and photon energy where it gives them (default: the .geom file in "
                       "the run folder, if it holds one)")
    group.add_argument("--quad-positions", type=float, nargs=8, metavar="MM",
                       help="instead of --geom: x y of each of the 4 quadrants in mm (EXtra-geom's "
                            "from_quad_positions)")
    group.add_argument("--modules", metavar="LIST", help="modules to use, e.g. 0-3,8 (default all 16; only "
                       "those the model's q range reaches are read)")
    group.add_argument("--run-data", choices=("proc", "raw"), default="proc",
                       help="with PROPOSAL/RUN: the proc (corrected, default) or raw folder")
    group.add_argument("--detector-name", default="SPB_DET_AGIPD1M-1", metavar="NAME",
                       help="the detector's source prefix (default SPB_DET_AGIPD1M-1)")
    if adu_option:
        group.add_argument("--adu-per-photon", type=float, metavar="X",
                           help="corrected data in ADU (keV-like: X = the photon energy in keV): photons = "
                                "round(value / X) (default: the data are photons)")


def frame_options(args: argparse.Namespace):
    """The :class:`~spidarknet.frames.options.FrameOptions` of the input options."""
    from spidarknet.frames.options import FrameOptions
    return FrameOptions(
        inputs=tuple(args.inputs), dataset=args.dataset, frames=args.frames,
        centre_px=tuple(args.centre) if args.centre else None, distance_m=args.distance,
        pixel_size_m=args.pixel_size, wavelength_m=args.wavelength, energy_ev=args.energy_ev, mask=args.mask,
        mask_invert=args.mask_invert, use_file_mask=not args.no_file_mask,
        bad_pixels=not getattr(args, "keep_bad_pixels", False), geom=args.geom,
        quad_positions=args.quad_positions, modules=args.modules, run_data=args.run_data,
        detector_name=args.detector_name, adu_per_photon=getattr(args, "adu_per_photon", None))


def add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    from spidarknet.preprocess import (COLORMAPS, DEFAULT_CROP, DEFAULT_Q_MAX_INV_NM, MAX_UPSAMPLING, SCALES,
                                       Preprocessing)
    d = Preprocessing()
    group = parser.add_argument_group("preprocessing (saved with the data set; detection repeats it)")
    group.add_argument("--size", type=int, default=d.size,
                       help=f"image side in pixels = network input, a multiple of 32 (default {d.size})")
    group.add_argument("--q-max", type=float, metavar="INV_NM",
                       help="half-width of the crop around the beam centre in scattering vector q, nm⁻¹: the "
                            "crop and binning in pixels follow each file's distance, pixel size and wavelength, "
                            "so the model applies to other geometries whose detector reaches this q and whose "
                            f"pixels are at most {MAX_UPSAMPLING:g}x an image pixel (default "
                            f"{DEFAULT_Q_MAX_INV_NM:g}: the {DEFAULT_CROP}-pixel crop on the pnCCD at 1.7 keV, "
                            "125 mm, 75 µm; files without that geometry, or that it does not fit, fall back to "
                            f"--crop {DEFAULT_CROP} with a warning)")
    group.add_argument("--q-min", type=float, metavar="INV_NM",
                       help="pixels nearer the beam than this q, nm⁻¹, are blanked like masked ones (default "
                            "with the crop in q: the q of the input files' usable pixel nearest the beam, i.e. "
                            "their beam stop, so that frames whose beam stop is smaller in q look the same; "
                            "0: none)")
    group.add_argument("--crop", type=int, metavar="PIXELS",
                       help="side of the square cut around the beam centre in detector pixels instead of "
                            "--q-max: the model then fits only frames of the same geometry (as before q; "
                            "--centre is then saved with the settings)")
    group.add_argument("--adu-per-photon", type=float, help="detector units per photon (default: data are photons)")
    group.add_argument("--scale", choices=SCALES, default=d.scale, help=f"intensity scale (default {d.scale})")
    group.add_argument("--vmax", type=float,
                       help="photons per bin shown as full scale (default: each frame's "
                            f"{d.vmax_percentile} percentile, at least {d.vmax_floor})")
    group.add_argument("--colormap", choices=COLORMAPS, default=d.colormap,
                       help=f"grey or a colour map for the 3 channels (default {d.colormap})")


def preprocess_options(args: argparse.Namespace):
    """The :class:`~spidarknet.jobs.export_dataset.PreprocessOptions` of the preprocessing options."""
    from spidarknet.jobs.export_dataset import PreprocessOptions
    return PreprocessOptions(size=args.size, q_max_inv_nm=args.q_max, q_min_inv_nm=args.q_min, crop=args.crop,
                             centre_px=tuple(args.centre) if args.centre else None,
                             adu_per_photon=args.adu_per_photon, scale=args.scale, vmax=args.vmax,
                             colormap=args.colormap)
