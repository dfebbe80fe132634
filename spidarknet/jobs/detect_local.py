"""``detect`` in this process and its workers: one MPI rank's share, one --shard, or every frame;
the decision of a size window or a selector; the hit list written; the selected frames copied."""

from __future__ import annotations

import sys

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from spidarknet.core.errors import ConfigError, EngineError, InputError, SpidarknetError
from spidarknet.core.outputs import check_destination
from spidarknet.core.pool import Pool, core_count
from spidarknet.core.version import __version__
from spidarknet.detection.local import PartialResult, Prefilter, detect_frames
from spidarknet.detection.parallel import DetectionJob, detect_parallel, join_shards, start_workers, worker_count
from spidarknet.detection.shards import file_digest, parse_shard, ranges
from spidarknet.engine.backends import OpenedDetector, resolve_auto
from spidarknet.frames.euxfel import EuXFELRun
from spidarknet.frames.options import open_source, run_inputs
from spidarknet.hits import HitList
from spidarknet.jobs.detect_settings import (DetectResult, DetectSettings, RunState, check_size_range, model_of,
                                             prefilter_of, say_builtin_model, warn_frame_checks,
                                             warn_missing_modules)

log = logging.getLogger(__name__)


def run_mpi(settings: DetectSettings, state: RunState) -> DetectResult:
    """One rank of ``mpirun -n N``; a rank that fails stops them all."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise InputError("--mpi needs mpi4py: pip install mpi4py (with an MPI library such as Debian's "
                         "openmpi-bin)") from None
    comm = MPI.COMM_WORLD
    try:
        return run_local(settings, state, comm)
    except BaseException as exc:  # one rank failing must stop all, never leave a short hit list
        if comm.Get_size() > 1:
            what = str(exc) if isinstance(exc, SpidarknetError) else f"{type(exc).__name__}: {exc}"
            # on stderr whatever the feedback: Abort ends every rank before a log is read
            print(f"error: rank {comm.Get_rank()} of {comm.Get_size()}: {what}", file=sys.stderr, flush=True)
            comm.Abort(1)
        raise


def apply_decision(hits: HitList, settings: DetectSettings, state: RunState, source, times=None,
                   fits=None) -> None:
    """Narrow the selection by the size range or the selector: the frames the network let
    through are fitted (those ``fits`` lacks: the detection's own fits; in ``jobs`` processes,
    default one per core), the window or the selector decides, and every row gets the
    measurements; the fit's seconds go into ``times``."""
    from spidarknet.selection.decide import decide
    bar = state.feedback.bar(total=hits.n_hits, desc="fit")
    started, n_hits = time.perf_counter(), hits.n_hits
    try:
        counts = decide(hits, source, size_range=settings.size_range, selector=state.selector,
                        jobs=settings.jobs, on_frames=bar.update, fitted=fits.by_key() if fits is not None else None,
                        icosahedron=settings.icosahedron)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for line in hits.meta.get("geometry_warnings", []):
        state.feedback.warn(line)
    if times is not None:
        times.fit += seconds
        times.total += seconds
        times.fitted += counts["fitted_frames"]
        times.fit_cpu += counts["cpu_s"]["fit"]
        times.second_particle_cpu += counts["cpu_s"]["second_particle"]
    if settings.size_range:
        hits.meta.update(size_range_nm=list(settings.size_range), size_fit_failed=counts["failed"],
                         size_second_particle=counts["second_particle"])
    else:
        hits.meta.update(selector={"path": os.path.abspath(settings.selector), "screen": state.selector.screen,
                                   "threshold": state.selector.threshold, "fitted": counts["fitted"]})
    log.debug("fitted %d screened frames in %.2f s: %d selected", n_hits, seconds, hits.n_hits)


def threshold_for_rate(scores: np.ndarray, rate: float) -> float:
    """The threshold that selects the ``rate`` share of the highest-scoring frames (ties
    at the threshold are all selected; frames scored 0, e.g. by the prefilter, never are)."""
    if len(scores) == 0:
        return 1.0
    k = max(1, int(round(rate * len(scores))))
    kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
    return max(kth, float(np.nextafter(np.float32(0), np.float32(1))))


def run_local(settings: DetectSettings, state: RunState, comm=None) -> DetectResult:
    """Score the frames in this process and its workers (one MPI rank's share under ``comm``)."""
    prefilter = _check_local_options(settings, comm)
    model = model_of(settings, state)
    check_destination(settings.out, settings.force, "hit list")
    if settings.write_cxi:
        check_destination(settings.write_cxi, settings.force, "CXI file")
    # all the inputs' frames, for write_cxi (select() leaves it as it is); their bad pixels
    # (a sample of frames) are found below, while the workers start (not under MPI: rank 0 finds them)
    later = comm is None and settings.frames.bad_pixels
    backend = resolve_auto(settings.libdarknet) if settings.backend == "auto" else settings.backend
    fits = _screened_fits(settings, comm)
    runs = run_inputs(settings.frames) if comm is None else None
    # runs: the workers start (and open them) while this process opens them
    early = _start_workers(settings, model, backend, prefilter, _job_count(settings, backend), fits, runs) \
        if runs is not None else None
    try:
        inputs = _open_inputs(settings, comm, bad_pixels=not later)
        source, shard_meta, settings, state = _share_of(settings, state, inputs, comm)
    except BaseException:
        if early is not None:
            _fewer(early, 0)
        raise
    started = time.perf_counter()
    jobs = worker_count(_job_count(settings, backend), len(source), settings.chunk)
    workers = (_fewer(early, jobs) if early is not None
               else _start_workers(settings, model, backend, prefilter, jobs, fits))
    try:
        if later and not isinstance(inputs, EuXFELRun):  # runs are read without a sample
            inputs.mask_bad_pixels()
            if source is not inputs:
                source.mask_bad_pixels(inputs.bad_pixels)
        say_builtin_model(settings, state, comm)
    except BaseException:
        if workers is not None:
            workers[1].close()
        raise
    hits, times = _score(settings, state, source, model, backend, prefilter, comm, fits, workers)
    if comm is not None:
        parts = comm.gather(hits, root=0)  # each rank's hit list, frame checks and prefilter counts
        if comm.Get_rank() != 0:
            return DetectResult(settings.out)
        hits = join_shards(parts, model.threshold, prefilter.to_dict() if prefilter is not None else None)
        times.total = time.perf_counter() - started
        jobs = f"{comm.Get_size()} MPI ranks"
    hits = _finished(settings, state, hits, model, source, backend, jobs, times, shard_meta, inputs, fits)
    hits.write_csv(settings.out, force=settings.force)
    warn_frame_checks(hits.meta["frame_checks"], state.feedback)
    warn_missing_modules(hits, state.feedback)
    result = DetectResult(settings.out, hits, backend, jobs if isinstance(jobs, str) else
                          f"{jobs} process{'es' if jobs > 1 else ''}",
                          len(hits) / times.total if times.total > 0 else float("inf"), prefilter is not None)
    if settings.write_cxi:
        result.cxi, result.cxi_frames = settings.write_cxi, write_cxi(settings, state, hits, inputs)
    return result


def _check_local_options(settings: DetectSettings, comm) -> Prefilter | None:
    """The option checks of a detection that is not --follow; returns the prefilter asked for."""
    if settings.batch < 1 or settings.chunk < 1:
        raise ConfigError("--batch and --chunk must be at least 1")
    if settings.jobs is not None and settings.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    prefilter = prefilter_of(settings)
    check_size_range(settings.size_range)
    if settings.selector and (settings.size_range or settings.expected_hit_rate is not None):
        raise ConfigError("--selector decides by itself: leave out --size-range and --expected-hit-rate")
    if comm is not None and settings.shard:
        raise ConfigError("--mpi and --shard exclude each other: MPI ranks already share the frames")
    return prefilter


def _open_inputs(settings: DetectSettings, comm, bad_pixels: bool = True):
    """Every input's frames (their bad pixels masked where the options ask and ``bad_pixels``);
    under MPI, rank 0 opens the files and hands the result to all."""
    options = settings.frames if bad_pixels else replace(settings.frames, bad_pixels=False)
    if comm is not None and comm.Get_size() > 1:
        # rank 0 inspects the files (shapes, geometry, masks) and hands the result to all,
        # so a large run does not open every file's metadata once per rank
        return comm.bcast(open_source(options) if comm.Get_rank() == 0 else None, root=0)
    return open_source(options)


def _job_count(settings: DetectSettings, backend: str) -> int:
    """The processes asked for: ``--jobs``, else one per core (one for darknet-cli or a GPU)."""
    jobs = settings.jobs or (1 if backend == "darknet-cli" or (backend == "darknet" and gpu_build(settings))
                             else core_count())
    if jobs < 1:
        raise InputError("--jobs must be at least 1")
    return jobs


def _start_workers(settings: DetectSettings, model, backend: str, prefilter: Prefilter | None, jobs: int,
                   fits, runs: dict | None = None) -> tuple[DetectionJob, Pool] | None:
    """The job and worker processes of a parallel detection, started before the frames' bad
    pixels are found (:func:`~spidarknet.detection.parallel.start_workers`), or with ``runs``
    (:func:`~spidarknet.frames.options.run_inputs`) before the runs are opened; None where this
    process scores the frames."""
    if not (jobs > 1 and backend in ("opencv", "darknet")):
        return None
    job = shard_job(settings, model, backend, prefilter, fits.settings if fits is not None else None, runs)
    return job, start_workers(job, jobs)


def _fewer(workers: tuple[DetectionJob, Pool], jobs: int) -> tuple[DetectionJob, Pool] | None:
    """The ``workers`` started before the frames were counted, ``jobs`` of them kept (the rest
    killed: they hold nothing yet); None, and none kept, where this process scores the frames."""
    job, pool = workers
    if jobs > 1:
        pool.keep(jobs)
        return workers
    pool.keep(0)
    pool.close()
    return None


def _share_of(settings: DetectSettings, state: RunState, source, comm):
    """The frames this process scores (its shard, its MPI rank's share), the shard's record,
    and the settings and state of this process (one job per MPI rank, quiet but on rank 0)."""
    shard_meta = None
    if settings.shard:
        k, n = parse_shard(settings.shard)
        part = source.shards(n)[k - 1]
        source = source.select(part)
        shard_meta = {"index": k, "count": n, "expected": {p: ranges(v) for p, v in part.items()}}
    if comm is not None:
        source = source.select(source.shards(comm.Get_size())[comm.Get_rank()])
        if settings.jobs is None:
            settings = replace(settings, jobs=1)
        if comm.Get_rank() != 0:
            state = replace(state, feedback=state.feedback.hushed())
    return source, shard_meta, settings, state


def _screened_fits(settings: DetectSettings, comm):
    """Where a size range or a selector will fit the frames at the model's threshold, the
    detection fits them as it scores them (:mod:`spidarknet.detection.fits`); not with an
    expected hit rate (the threshold comes after) nor MPI ranks (fitted afterwards)."""
    if not (settings.size_range or settings.selector) or settings.expected_hit_rate is not None or comm is not None:
        return None
    from spidarknet.detection.fits import ScreenedFits
    from spidarknet.selection.decide import check_icosahedron
    from spidarknet.sizing import SizingSettings
    # a size window alone judges the fits: they go only as far as it needs (SizingSettings.window_nm)
    return ScreenedFits(SizingSettings(window_nm=tuple(settings.size_range),
                                       icosahedron=check_icosahedron(settings.icosahedron, settings.size_range))
                        if settings.size_range else None)


def _score(settings: DetectSettings, state: RunState, source, model, backend: str, prefilter: Prefilter | None,
           comm, fits=None, workers: tuple[DetectionJob, Pool] | None = None):
    """Score ``source`` in the ``workers`` of :func:`_start_workers` (their job and pool), or
    in this process (fitting the screened frames into ``fits``); a failure after some frames
    leaves those in ``OUT.partial``."""
    bar = state.feedback.bar(total=len(source), desc=f"detect ({backend})")
    try:
        if workers is not None:
            return detect_parallel(source, workers[0], len(workers[1]), on_chunk=bar.update, fits=fits,
                                   pool=workers[1])
        threads = 1 if comm is not None and comm.Get_size() > 1 else None  # one core per MPI rank
        with OpenedDetector(model, backend, batch=settings.batch, gpu=settings.gpu, darknet=settings.darknet,
                            libdarknet=settings.libdarknet, threads=threads) as detector:
            return detect_frames(source, model.preprocessing, detector, model.threshold, prefilter=prefilter,
                                 chunk_frames=settings.chunk, on_chunk=bar.update, fits=fits)
    except PartialResult as exc:
        bar.close()
        if len(exc.hits):
            partial = f"{settings.out}.partial"
            exc.hits.meta.update(partial=True, weights=str(settings.weights))
            exc.hits.write_csv(partial, force=True)
            raise EngineError(f"{exc}\n{len(exc.hits)} frames scored before the failure are in {partial}") from None
        raise
    finally:
        bar.close()


def _finished(settings: DetectSettings, state: RunState, hits: HitList, model, source, backend: str, jobs, times,
              shard_meta: dict | None, inputs=None, fits=None) -> HitList:
    """The hit list with its record of the run, sorted, thresholded and narrowed to the size range."""
    hits.meta.update({
        "backend": backend, "jobs": jobs, "weights": os.path.abspath(settings.weights), "model": model.origin,
        "preprocessing": model.preprocessing.to_dict(), "inputs": [f.path for f in source.files],
        "timing": times.as_dict(len(hits)), "spidarknet_version": __version__,
        "weights_sha256": file_digest(settings.weights),
    })
    if isinstance(source, EuXFELRun):  # how the runs were read: report and export-emc open them so again
        hits.meta["run_options"] = source.recorded()
    if shard_meta is not None:
        hits.meta["shard"] = shard_meta
    hits = hits.sorted()
    if settings.expected_hit_rate is not None:
        hits.threshold = threshold_for_rate(hits.scores[~hits.unusable], settings.expected_hit_rate)
        hits.meta["threshold_from"] = {"expected_hit_rate": settings.expected_hit_rate}
    elif state.threshold_from:
        hits.meta["threshold_from"] = state.threshold_from
    if settings.size_range or settings.selector:
        # the fits read the frames of the files this run opened, with its geometry and mask options
        apply_decision(hits, settings, state, inputs, times, fits)
        hits.meta["timing"] = times.as_dict(len(hits))
    return hits


def gpu_build(settings: DetectSettings) -> bool:
    from spidarknet.engine.locate import find_libdarknet
    return find_libdarknet(settings.libdarknet).gpu


def shard_job(settings: DetectSettings, model, backend: str, prefilter: Prefilter | None = None,
              fit=None, runs: dict | None = None) -> DetectionJob:
    """What each worker of detect_parallel needs to repeat this detection (``fit``: the
    sizing settings of the screened frames' fits; ``runs``: the runs it may open before its
    share comes)."""
    libdarknet = gpu = None
    if backend == "darknet":
        from spidarknet.engine.locate import find_libdarknet
        libdarknet, gpu = str(find_libdarknet(settings.libdarknet).path), settings.gpu
    return DetectionJob(cfg=model.cfg.dumps(), weights=str(Path(settings.weights).resolve()),
                        preprocessing=model.preprocessing.to_dict(), threshold=model.threshold,
                        backend=backend, batch=settings.batch, chunk=settings.chunk,
                        prefilter=prefilter.to_dict() if prefilter is not None else None,
                        libdarknet=libdarknet, gpu=gpu, fit=fit, runs=runs)


def write_cxi(settings: DetectSettings, state: RunState, hits, source) -> int:
    """Copy the hits' frames of ``source`` (the inputs, as opened for detection) into write_cxi."""
    from spidarknet.export.cxi import write_selected_cxi
    bar = state.feedback.bar(total=hits.n_hits, desc="write CXI")
    try:
        return write_selected_cxi(hits, source, settings.write_cxi, force=settings.force, on_frames=bar.update)
    finally:
        bar.close()
