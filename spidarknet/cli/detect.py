"""``spidarknet detect``: frames + trained weights -> hit list (CSV + JSON), optionally a CXI."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from spidarknet import cli
from spidarknet.core.version import __version__
from spidarknet.detection.local import (PREFILTER_SIGMA, FrameChecks, PartialResult, Prefilter, PrefilterGate,
                                        detect_frames)
from spidarknet.core.defaults import DETECT_CHUNK_FRAMES, INFERENCE_BATCH
from spidarknet.core.errors import ConfigError, EngineError, InputError, SpidarknetError
from spidarknet.core.outputs import check_destination, write_json
from spidarknet.core.pool import core_count
from spidarknet.detection.parallel import DetectionJob, detect_parallel, join_shards, worker_count
from spidarknet.detection.shards import file_digest, mpi_launch, parse_shard, ranges
from spidarknet.engine.backends import BACKENDS, OpenedDetector, resolve_auto
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.hits import HitList

log = logging.getLogger(__name__)


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


def run(args: argparse.Namespace) -> int:
    _check_mpi_launch(args)
    if args.expected_hit_rate is not None:
        if not 0 < args.expected_hit_rate < 1:
            raise ConfigError(f"--expected-hit-rate {args.expected_hit_rate:g} must lie between 0 and 1")
        if args.threshold is not None:
            raise ConfigError("--threshold and --expected-hit-rate exclude each other: choose one")
        if args.follow or args.shard:
            raise ConfigError("--expected-hit-rate needs every frame's score at once: it cannot be used with "
                              "--follow or --shard (set --threshold instead)")
    if args.weights is None:
        if args.cfg or args.preprocess:
            raise ConfigError("--cfg and --preprocess describe weights you give: add --weights")
        args.weights = str(builtin_weights())
        args.builtin_model = True  # said once the inputs are found (_say_builtin_model)
    if args.monitor and not args.follow:
        raise ConfigError("--monitor shows a hit list as it is written: add --follow (for a finished hit "
                          "list, 'spidarknet report' draws a page)")
    if args.follow:
        _check_follow_options(args)
        return run_follow(args)
    if not args.mpi:
        return run_local(args)
    try:
        from mpi4py import MPI
    except ImportError:
        raise InputError("--mpi needs mpi4py: pip install mpi4py (with an MPI library such as Debian's "
                         "openmpi-bin)") from None
    comm = MPI.COMM_WORLD
    try:
        return run_local(args, comm)
    except BaseException as exc:  # one rank failing must stop all, never leave a short hit list
        if comm.Get_size() > 1:
            what = str(exc) if isinstance(exc, SpidarknetError) else f"{type(exc).__name__}: {exc}"
            print(f"error: rank {comm.Get_rank()} of {comm.Get_size()}: {what}", file=sys.stderr, flush=True)
            comm.Abort(1)
        raise


def _check_mpi_launch(args: argparse.Namespace) -> None:
    """Refuse to run as one of several MPI ranks without --mpi: each would score every frame."""
    launch = mpi_launch()
    if launch is not None and not args.mpi:
        rank, size = launch
        raise ConfigError(f"started by mpirun/mpiexec as rank {rank} of {size} without --mpi: every rank would score "
                          f"every frame and write {args.out}; add --mpi to share the frames among the ranks "
                          "(rank 0 writes the hit list), or run one process without mpirun")


def _say_builtin_model(args: argparse.Namespace, comm) -> None:
    """Name the built-in model when no --weights were given: after the inputs were checked
    (an input error comes alone), once per run (rank 0 of MPI ranks)."""
    if getattr(args, "builtin_model", False) and (comm is None or comm.Get_rank() == 0):
        print(f"using the built-in model {args.weights} (trained on simulated frames)", file=sys.stderr)


def apply_decision(hits: HitList, args: argparse.Namespace, source, times=None, fits=None) -> None:
    """Narrow the selection by --size-range or --selector: the frames the network let through
    are fitted (those ``fits`` lacks: the detection's own fits; in --jobs processes, default
    one per core), the window or the selector decides, and every row gets the measurements;
    the fit's seconds go into ``times``."""
    from spidarknet.selection.decide import decide
    bar = cli.progress(total=hits.n_hits, desc="fit", quiet=args.quiet)
    started, n_hits = time.perf_counter(), hits.n_hits
    try:
        counts = decide(hits, source, size_range=args.size_range, selector=getattr(args, "selector_obj", None),
                        jobs=args.jobs, on_frames=bar.update, fitted=fits.by_key() if fits is not None else None)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for line in hits.meta.get("geometry_warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    if times is not None:
        times.fit += seconds
        times.total += seconds
        times.fitted += counts["fitted_frames"]
        times.fit_cpu += counts["cpu_s"]["fit"]
        times.second_particle_cpu += counts["cpu_s"]["second_particle"]
    if args.size_range:
        hits.meta.update(size_range_nm=list(args.size_range), size_fit_failed=counts["failed"],
                         size_second_particle=counts["second_particle"])
    else:
        hits.meta.update(selector={"path": os.path.abspath(args.selector), "screen": args.selector_obj.screen,
                                   "threshold": args.selector_obj.threshold, "fitted": counts["fitted"]})
    log.debug("fitted %d screened frames in %.2f s: %d selected", n_hits, seconds, hits.n_hits)


def threshold_for_rate(scores: np.ndarray, rate: float) -> float:
    """The threshold that selects the ``rate`` share of the highest-scoring frames (ties
    at the threshold are all selected; frames scored 0, e.g. by the prefilter, never are)."""
    if len(scores) == 0:
        return 1.0
    k = max(1, int(round(rate * len(scores))))
    kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
    return max(kth, float(np.nextafter(np.float32(0), np.float32(1))))


def prefilter_from_args(args: argparse.Namespace) -> Prefilter | None:
    """The prefilter the options ask for (None: every frame goes to the network)."""
    if args.no_prefilter:
        if args.prefilter_photons is not None or args.prefilter_litpixels is not None:
            raise ConfigError("--no-prefilter and --prefilter-photons or --prefilter-litpixels exclude each other: "
                              "choose one")
        return None
    return Prefilter(min_photons=args.prefilter_photons, sigma=args.prefilter_sigma, lit_k=args.prefilter_litpixels)


def run_local(args: argparse.Namespace, comm=None) -> int:
    prefilter = _check_local_options(args, comm)
    model = _model_from_args(args)
    check_destination(args.out, args.force, "hit list")
    if args.write_cxi:
        check_destination(args.write_cxi, args.force, "CXI file")
    inputs = _open_inputs(args, comm)  # all the inputs' frames, for --write-cxi (select() leaves it as it is)
    _say_builtin_model(args, comm)
    source, shard_meta = _share_of(args, inputs, comm)
    started = time.perf_counter()
    backend = resolve_auto(args.libdarknet) if args.backend == "auto" else args.backend
    jobs = args.jobs or (1 if backend == "darknet-cli" or (backend == "darknet" and gpu_build(args)) else core_count())
    if jobs < 1:
        raise InputError("--jobs must be at least 1")
    jobs = worker_count(jobs, len(source), args.chunk)
    fits = _screened_fits(args, comm)
    hits, times = _score(args, source, model, backend, prefilter, jobs, comm, fits)
    if comm is not None:
        parts = comm.gather(hits, root=0)  # each rank's hit list, frame checks and prefilter counts
        if comm.Get_rank() != 0:
            return 0
        hits = join_shards(parts, model.threshold, prefilter.to_dict() if prefilter is not None else None)
        times.total = time.perf_counter() - started
        jobs = f"{comm.Get_size()} MPI ranks"
    hits = _finished(args, hits, model, source, backend, jobs, times, shard_meta, inputs, fits)
    hits.write_csv(args.out, force=args.force)
    warn_frame_checks(hits.meta["frame_checks"])
    warn_missing_modules(hits)
    rate = len(hits) / times.total if times.total > 0 else float("inf")
    workers = jobs if isinstance(jobs, str) else f"{jobs} process{'es' if jobs > 1 else ''}"
    screened = (f", {hits.meta['prefilter']['rejected']} background-like frames kept from the network"
                if prefilter is not None else "")
    print(f"{hits.summary_line()}; {backend} backend, {workers}, "
          f"{rate:.0f} frames/s{screened}; wrote {args.out}")
    if args.write_cxi:
        n = write_cxi(args, hits, inputs)
        print(f"wrote {n} selected frames to {args.write_cxi}")
    seconds = time.perf_counter() - started
    if not args.quiet and sys.stderr.isatty():
        print(f"done in {seconds:.1f} s", file=sys.stderr)
    return 0


def _check_local_options(args: argparse.Namespace, comm) -> Prefilter | None:
    """The option checks of a detection that is not --follow; returns the prefilter asked for."""
    if args.batch < 1 or args.chunk < 1:
        raise ConfigError("--batch and --chunk must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    prefilter = prefilter_from_args(args)
    cli.check_size_range(args.size_range)
    if args.selector and (args.size_range or args.expected_hit_rate is not None):
        raise ConfigError("--selector decides by itself: leave out --size-range and --expected-hit-rate")
    if comm is not None and args.shard:
        raise ConfigError("--mpi and --shard exclude each other: MPI ranks already share the frames")
    return prefilter


def _model_from_args(args: argparse.Namespace):
    """The model of --weights (or --cfg/--preprocess), with --centre put into its preprocessing.
    With --size-range and no threshold given, the threshold is the card's screening one
    (the network keeps 98 % of its validation singles; the size fit decides)."""
    model = load_model(args.weights, cfg=args.cfg, preprocess=args.preprocess, threshold=args.threshold)
    if args.centre:
        model.preprocessing.centre_px = tuple(args.centre)
    if args.selector:
        return _screen_for_selector(args, model)
    screen = model.validation.get("screening_threshold")
    if (args.size_range and args.threshold is None and args.expected_hit_rate is None
            and screen is not None):
        recall = model.validation.get("screening_recall")
        if not args.quiet:
            print(f"--size-range: the network screens at threshold {screen:.3g} (it kept {recall:.0%} of its "
                  f"validation singles), the size fit decides; --threshold sets another", file=sys.stderr)
        model.threshold = float(screen)
        args.threshold_from = {"screening_recall": recall}
    return model


def _screen_for_selector(args: argparse.Namespace, model):
    """The model screening at the --selector's screen (or --threshold), after checking that
    the selector was learnt with these weights."""
    from spidarknet.selection.selector import Selector
    selector = Selector.load(args.selector)
    selector.check_weights(args.weights, file_digest(args.weights))
    args.selector_obj = selector
    if args.threshold is None:
        model.threshold = selector.screen
        args.threshold_from = {"selector_screen": args.selector}
    return model


def _open_inputs(args: argparse.Namespace, comm):
    """Every input's frames; under MPI, rank 0 opens the files and hands the result to all."""
    if comm is not None and comm.Get_size() > 1:
        # rank 0 inspects the files (shapes, geometry, masks) and hands the result to all,
        # so a large run does not open every file's metadata once per rank
        return comm.bcast(cli.frame_source_from_args(args) if comm.Get_rank() == 0 else None, root=0)
    return cli.frame_source_from_args(args)


def _share_of(args: argparse.Namespace, source, comm):
    """The frames this process scores (its --shard, its MPI rank's share) and the shard's record."""
    shard_meta = None
    if args.shard:
        k, n = parse_shard(args.shard)
        part = source.shards(n)[k - 1]
        source = source.select(part)
        shard_meta = {"index": k, "count": n, "expected": {p: ranges(v) for p, v in part.items()}}
    if comm is not None:
        source = source.select(source.shards(comm.Get_size())[comm.Get_rank()])
        if args.jobs is None:
            args.jobs = 1
        args.quiet = args.quiet or comm.Get_rank() != 0
    return source, shard_meta


def _screened_fits(args: argparse.Namespace, comm):
    """Where --size-range or --selector will fit the frames at the model's threshold, the
    detection fits them as it scores them (:mod:`spidarknet.detection.fits`); not with
    --expected-hit-rate (the threshold comes after) nor MPI ranks (fitted afterwards)."""
    if not (args.size_range or args.selector) or args.expected_hit_rate is not None or comm is not None:
        return None
    from spidarknet.detection.fits import ScreenedFits
    return ScreenedFits()


def _score(args: argparse.Namespace, source, model, backend: str, prefilter: Prefilter | None, jobs: int, comm,
           fits=None):
    """Score ``source`` in ``jobs`` processes, or in this one (fitting the screened frames
    into ``fits``); a failure after some frames leaves those in ``OUT.partial``."""
    bar = cli.progress(total=len(source), desc=f"detect ({backend})", quiet=args.quiet)
    try:
        if jobs > 1 and backend in ("opencv", "darknet"):
            job = shard_job(args, model, backend, prefilter, fits.settings if fits is not None else None)
            return detect_parallel(source, job, jobs, on_chunk=bar.update, fits=fits)
        threads = 1 if comm is not None and comm.Get_size() > 1 else None  # one core per MPI rank
        with OpenedDetector(model, backend, batch=args.batch, gpu=args.gpu, darknet=args.darknet,
                            libdarknet=args.libdarknet, threads=threads) as detector:
            return detect_frames(source, model.preprocessing, detector, model.threshold, prefilter=prefilter,
                                 chunk_frames=args.chunk, on_chunk=bar.update, fits=fits)
    except PartialResult as exc:
        bar.close()
        if len(exc.hits):
            partial = f"{args.out}.partial"
            exc.hits.meta.update(partial=True, weights=str(args.weights))
            exc.hits.write_csv(partial, force=True)
            raise EngineError(f"{exc}\n{len(exc.hits)} frames scored before the failure are in {partial}") from None
        raise
    finally:
        bar.close()


def _finished(args: argparse.Namespace, hits: HitList, model, source, backend: str, jobs, times,
              shard_meta: dict | None, inputs=None, fits=None) -> HitList:
    """The hit list with its record of the run, sorted, thresholded and narrowed to --size-range."""
    hits.meta.update({
        "backend": backend, "jobs": jobs, "weights": os.path.abspath(args.weights), "model": model.origin,
        "preprocessing": model.preprocessing.to_dict(), "inputs": [f.path for f in source.files],
        "timing": times.as_dict(len(hits)), "spidarknet_version": __version__,
        "weights_sha256": file_digest(args.weights),
    })
    if shard_meta is not None:
        hits.meta["shard"] = shard_meta
    hits = hits.sorted()
    if args.expected_hit_rate is not None:
        hits.threshold = threshold_for_rate(hits.scores[~hits.unusable], args.expected_hit_rate)
        hits.meta["threshold_from"] = {"expected_hit_rate": args.expected_hit_rate}
    elif getattr(args, "threshold_from", None):
        hits.meta["threshold_from"] = args.threshold_from
    if args.size_range or args.selector:
        # the fits read the frames of the files this run opened, with its geometry and mask options
        apply_decision(hits, args, inputs, times, fits)
        hits.meta["timing"] = times.as_dict(len(hits))
    return hits


def warn_missing_modules(hits) -> None:
    """One warning line where frames of European XFEL runs were scored with modules missing
    from their train (their pixels masked; the hit list's ``missing_modules`` column)."""
    missing = hits.columns.get("missing_modules")
    if missing is None or not np.any(np.asarray(missing) > 0):
        return
    short = np.asarray(missing) > 0
    trains = np.unique(np.asarray(hits.columns["trainId"])[short])
    print(f"warning: {int(np.count_nonzero(short))} frames of {len(trains)} trains (first trainId "
          f"{int(trains[0])}) lack up to {int(np.max(missing))} modules: scored with those modules masked "
          "(column missing_modules of the hit list)", file=sys.stderr)


def warn_frame_checks(values: dict) -> None:
    """The run's one warning line per kind of frame the model does not fit (stderr)."""
    for line in FrameChecks.from_dicts([values]).warnings():
        print(f"warning: {line}", file=sys.stderr)


def run_follow(args: argparse.Namespace) -> int:
    """detect --follow: one file, one process, rows appended as frames arrive."""
    from spidarknet.detection.follow import RowAppender, append_scored, follow_chunks
    from spidarknet.preprocess import Preprocessor
    if len(args.inputs) != 1 or args.mpi or args.shard or args.write_cxi:
        raise InputError("--follow takes exactly one input file, without --mpi, --shard or --write-cxi")
    if args.idle <= 0:
        raise InputError("--idle must be positive")
    from spidarknet.frames.euxfel import is_run_input
    if is_run_input(args.inputs[0]):
        raise InputError("--follow reads one growing CXI/HDF5 file; a European XFEL run is scored once written "
                         "(detect RUN without --follow)")
    prefilter = prefilter_from_args(args)
    model = _model_from_args(args)
    start = _follow_start(args.frames)
    if os.path.exists(args.out):
        if not args.force:
            raise InputError(f"hit list {args.out} already exists; use --force to replace it")
        os.unlink(args.out)
    check_destination(args.out, False, "hit list")
    args.frames = None
    info = cli.frame_source_from_args(args).files[0]
    _say_builtin_model(args, None)
    pre = Preprocessor(model.preprocessing)
    gate = PrefilterGate(prefilter, model.preprocessing) if prefilter is not None else None
    checks = FrameChecks()
    rejected = 0
    backend = resolve_auto(args.libdarknet) if args.backend == "auto" else args.backend
    decider, roi = _follow_decision(args, info, pre)
    appender = RowAppender(args.out, model.threshold, decider.columns if decider is not None else ())
    page = _start_monitor(args, appender) if args.monitor else None
    started = time.perf_counter()
    interrupted = False
    bar = cli.progress(desc=f"follow ({backend})", quiet=args.quiet)
    try:
        with OpenedDetector(model, backend, batch=args.batch, gpu=args.gpu, darknet=args.darknet,
                            libdarknet=args.libdarknet) as detector:
            for chunk in follow_chunks(info, roi, args.chunk, start=start, idle_s=args.idle):
                rejected += append_scored(chunk, pre, gate, detector, checks, appender, decider)
                bar.update(len(chunk))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        appender.close()
        if page is not None:
            _stop_monitor(page)
    _write_follow_summary(args, model, info, backend, appender, checks, prefilter, rejected, interrupted,
                          time.perf_counter() - started)
    print(f"followed {info.path}: {appender.hits} of {appender.rows} frames selected at threshold "
          f"{model.threshold:.3g}; wrote {args.out}" + (" (interrupted)" if interrupted else ""))
    return cli.EXIT_INTERRUPTED if interrupted else 0


def _check_follow_options(args: argparse.Namespace) -> None:
    """The option checks of detect --follow."""
    if len(args.inputs) != 1 or args.mpi or args.shard or args.write_cxi:
        raise ConfigError("--follow takes exactly one input file, without --mpi, --shard or --write-cxi")
    if args.idle <= 0:
        raise ConfigError("--idle must be positive")


def _start_monitor(args: argparse.Namespace, appender):
    """The monitor page of the hit list being written, in a process of its own (its drawing
    never holds this one up); returns once the page listens, having printed its address.
    When it cannot start, the hit list just begun is removed."""
    try:
        return _monitor_process(args)
    except BaseException:
        appender.close()
        os.unlink(args.out)
        raise


def _monitor_process(args: argparse.Namespace):
    import subprocess
    command = [sys.executable, "-m", "spidarknet", "monitor", str(args.out), "--port", str(args.port),
               "--host", args.host, "--title", f"detect --follow {os.path.basename(args.inputs[0])}"]
    page = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = page.stdout.readline()  # "monitor at URL ...", or nothing when it failed (its error is on stderr)
    if not line:
        page.wait()
        raise ConfigError("the monitor page did not start (its error is above); choose another --port, "
                          "or leave out --monitor")
    print(line.rstrip(), flush=True)
    return page


def _stop_monitor(page) -> None:
    page.terminate()
    try:
        page.wait(timeout=10)
    except Exception:
        page.kill()
        page.wait()
    page.stdout.close()


def _follow_decision(args: argparse.Namespace, info, pre):
    """(the --size-range or --selector decision applied to each followed chunk, or None; the
    region to read: the network's crop, with the fit's region where there is a decision)."""
    roi = pre.roi(info)
    if not (args.size_range or args.selector):
        return None, roi
    from spidarknet.selection.decide import ChunkDecider
    from spidarknet.sizing import fit_roi
    decider = ChunkDecider(size_range=args.size_range, selector=getattr(args, "selector_obj", None))
    fit = fit_roi(info, decider.settings)
    union = (min(roi[0], fit[0]), max(roi[1], fit[1]), min(roi[2], fit[2]), max(roi[3], fit[3]))
    return decider, union


def _follow_start(frames_option: str | None) -> int:
    """The first frame --follow scores: --frames may give only a start (e.g. 100:)."""
    from spidarknet.frames.source import parse_frame_range
    frames = parse_frame_range(frames_option)
    if frames is not None and (frames.stop is not None or (frames.step or 1) != 1):
        raise ConfigError("with --follow, --frames takes only a start (e.g. 100:)")
    return (frames.start or 0) if frames is not None else 0


def _write_follow_summary(args: argparse.Namespace, model, info, backend: str, appender, checks: FrameChecks,
                          prefilter: Prefilter | None, rejected: int, interrupted: bool, seconds: float) -> None:
    """The followed hit list's JSON summary, and the warnings of its frame checks."""
    from spidarknet.hits import summary_path
    summary = {"threshold": model.threshold, "frames": appender.rows, "hits": appender.hits, "backend": backend,
               "weights": os.path.abspath(args.weights), "model": model.origin, "follow": True,
               "idle_s": args.idle, "interrupted": interrupted, "preprocessing": model.preprocessing.to_dict(),
               "inputs": [info.path], "seconds": round(seconds, 3), "spidarknet_version": __version__,
               "weights_sha256": file_digest(args.weights), "frame_checks": checks.to_dict()}
    if prefilter is not None:
        summary["prefilter"] = {**prefilter.to_dict(), "rejected": rejected}
    write_json(summary, summary_path(args.out), True, "hit list summary")
    warn_frame_checks(summary["frame_checks"])


def gpu_build(args: argparse.Namespace) -> bool:
    from spidarknet.engine.locate import find_libdarknet
    return find_libdarknet(args.libdarknet).gpu


def shard_job(args: argparse.Namespace, model, backend: str, prefilter: Prefilter | None = None,
              fit=None) -> DetectionJob:
    """What each worker of detect_parallel needs to repeat this detection (``fit``: the
    sizing settings of the screened frames' fits)."""
    libdarknet = gpu = None
    if backend == "darknet":
        from spidarknet.engine.locate import find_libdarknet
        libdarknet, gpu = str(find_libdarknet(args.libdarknet).path), args.gpu
    return DetectionJob(cfg=model.cfg.dumps(), weights=str(Path(args.weights).resolve()),
                        preprocessing=model.preprocessing.to_dict(), threshold=model.threshold,
                        backend=backend, batch=args.batch, chunk=args.chunk,
                        prefilter=prefilter.to_dict() if prefilter is not None else None,
                        libdarknet=libdarknet, gpu=gpu, fit=fit)


def write_cxi(args: argparse.Namespace, hits, source) -> int:
    """Copy the hits' frames of ``source`` (the inputs, as opened for detection) into --write-cxi."""
    from spidarknet.export.cxi import write_selected_cxi
    bar = cli.progress(total=hits.n_hits, desc="write CXI", quiet=args.quiet)
    try:
        return write_selected_cxi(hits, source, args.write_cxi, force=args.force, on_frames=bar.update)
    finally:
        bar.close()


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
