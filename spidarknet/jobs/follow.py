"""``detect --follow`` as a library function: one growing file, one process, rows appended as frames arrive."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import check_destination, write_json
from spidarknet.core.version import __version__
from spidarknet.detection.local import FrameChecks, Prefilter, PrefilterGate
from spidarknet.detection.shards import file_digest
from spidarknet.engine.backends import OpenedDetector, resolve_auto
from spidarknet.frames.options import open_source
from spidarknet.jobs.detect_settings import (DetectResult, DetectSettings, RunState, model_of, prefilter_of,
                                             say_builtin_model, warn_frame_checks)


def follow(settings: DetectSettings, state: RunState) -> DetectResult:
    """detect --follow: score the frames of one file as they are written, until none came
    for ``settings.idle`` seconds (or Ctrl-C: the result says ``interrupted``)."""
    from spidarknet.detection.follow import RowAppender, append_scored, follow_chunks
    from spidarknet.preprocess import Preprocessor
    source, model, prefilter, start = _prepare(settings, state)
    info = source.files[0]
    pre = Preprocessor(model.preprocessing)
    gate = PrefilterGate(prefilter, model.preprocessing) if prefilter is not None else None
    checks = FrameChecks()
    rejected = 0
    backend = resolve_auto(settings.libdarknet) if settings.backend == "auto" else settings.backend
    decider, roi = _follow_decision(settings, state, source, pre)
    appender = RowAppender(settings.out, model.threshold, decider.columns if decider is not None else ())
    page = _start_monitor(settings, state, appender) if settings.monitor else None
    started = time.perf_counter()
    interrupted = False
    bar = state.feedback.bar(desc=f"follow ({backend})")
    try:
        with OpenedDetector(model, backend, batch=settings.batch, gpu=settings.gpu, darknet=settings.darknet,
                            libdarknet=settings.libdarknet) as detector:
            for chunk in follow_chunks(info, roi, settings.chunk, start=start, idle_s=settings.idle,
                                       on_pause=_on_pause(decider, appender)):
                rejected += append_scored(chunk, pre, gate, detector, checks, appender, decider)
                bar.update(len(chunk))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        _append_waiting(decider, appender)
        appender.close()
        if page is not None:
            _stop_monitor(page)
    _write_follow_summary(settings, state, model, info, backend, appender, checks, prefilter, rejected, interrupted,
                          time.perf_counter() - started)
    return DetectResult(settings.out, backend=backend, followed=info.path, rows=appender.rows,
                        selected=appender.hits, threshold=model.threshold, interrupted=interrupted)


def _prepare(settings: DetectSettings, state: RunState):
    """The checks of --follow (those of the options are done); the source of the file
    followed, the model, the prefilter and the first frame."""
    from spidarknet.frames.euxfel import is_run_input
    if is_run_input(settings.frames.inputs[0]):
        raise InputError("--follow reads one growing CXI/HDF5 file; a European XFEL run is scored once written "
                         "(detect RUN without --follow)")
    prefilter = prefilter_of(settings)
    model = model_of(settings, state)
    start = _follow_start(settings.frames.frames)
    if os.path.exists(settings.out):
        if not settings.force:
            raise InputError(f"hit list {settings.out} already exists; use --force to replace it")
        os.unlink(settings.out)
    check_destination(settings.out, False, "hit list")
    source = open_source(replace(settings.frames, frames=None))
    say_builtin_model(settings, state, None)
    return source, model, prefilter, start


def _start_monitor(settings: DetectSettings, state: RunState, appender):
    """The monitor page of the hit list being written, in a process of its own (its drawing
    never holds this one up); returns once the page listens, having told its address.
    When it cannot start, the hit list just begun is removed."""
    try:
        return _monitor_process(settings, state)
    except BaseException:
        appender.close()
        os.unlink(settings.out)
        raise


def _monitor_process(settings: DetectSettings, state: RunState):
    import subprocess
    command = [sys.executable, "-m", "spidarknet", "monitor", str(settings.out), "--port", str(settings.port),
               "--host", settings.host, "--title", f"detect --follow {os.path.basename(settings.frames.inputs[0])}"]
    page = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = page.stdout.readline()  # "monitor at URL ...", or nothing when it failed (its error is on stderr)
    if not line:
        page.wait()
        raise ConfigError("the monitor page did not start (its error is above); choose another --port, "
                          "or leave out --monitor")
    state.feedback.show(line.rstrip())
    return page


def _stop_monitor(page) -> None:
    page.terminate()
    try:
        page.wait(timeout=10)
    except Exception:
        page.kill()
        page.wait()
    page.stdout.close()


#: a followed file that pauses this long (seconds without a new frame) before its background
#: shape is final has its waiting rows decided with the background known by then (flat): a
#: live view does not wait for frames that may not come
FOLLOW_MAX_PAUSE_S = 2.0


def _on_pause(decider, appender):
    """What a followed file's pause does: past :data:`FOLLOW_MAX_PAUSE_S`, the rows that wait
    for the background shape are decided and written (None without a decision)."""
    if decider is None:
        return None

    def paused(seconds: float) -> None:
        if seconds >= FOLLOW_MAX_PAUSE_S:
            for hits in decider.release():
                appender.append(hits)
    return paused


def _append_waiting(decider, appender) -> None:
    """The rows the decider still holds (a file that ended, or a run interrupted, before
    the background shape was final), decided now: no scored frame's row is lost."""
    if decider is not None:
        for hits in decider.finish():
            appender.append(hits)


def _follow_decision(settings: DetectSettings, state: RunState, source, pre):
    """(the size range's or the selector's decision applied to each followed chunk, or None;
    the region to read: the network's crop, with the fit's region where there is a decision).
    The fits have the file's background shape, as ``detect`` fits: found once the file holds
    the frames a batch run samples (from the frames written by then), or when the file ends
    before (from all its frames, as ``detect`` samples them), and kept; the rows with frames
    to fit wait until then, or until the file pauses for :data:`FOLLOW_MAX_PAUSE_S` (then
    with a flat background; a shape from a growing file's first few frames is no shape: on
    a clean file's first 15-20 frames the quietest ones may hold particles)."""
    info = source.files[0]
    roi = pre.roi(info)
    if not (settings.size_range or settings.selector):
        return None, roi
    from spidarknet.detection.follow import frames_written
    from spidarknet.selection.decide import ChunkDecider
    from spidarknet.sizing import BACKGROUND_SAMPLE_FRAMES, file_background, fit_roi

    def background(found, finished):
        written = frames_written(found)
        if written < BACKGROUND_SAMPLE_FRAMES and not finished:
            return None, False
        return file_background(source, replace(found, n_frames=written), decider.settings), True

    decider = ChunkDecider(size_range=settings.size_range, selector=state.selector, background=background,
                           icosahedron=settings.icosahedron)
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


def _write_follow_summary(settings: DetectSettings, state: RunState, model, info, backend: str, appender,
                          checks: FrameChecks, prefilter: Prefilter | None, rejected: int, interrupted: bool,
                          seconds: float) -> None:
    """The followed hit list's JSON summary, and the warnings of its frame checks."""
    from spidarknet.hits import summary_path
    summary = {"threshold": model.threshold, "frames": appender.rows, "hits": appender.hits, "backend": backend,
               "weights": os.path.abspath(settings.weights), "model": model.origin, "follow": True,
               "idle_s": settings.idle, "interrupted": interrupted, "preprocessing": model.preprocessing.to_dict(),
               "inputs": [info.path], "seconds": round(seconds, 3), "spidarknet_version": __version__,
               "weights_sha256": file_digest(settings.weights), "frame_checks": checks.to_dict()}
    if prefilter is not None:
        summary["prefilter"] = {**prefilter.to_dict(), "rejected": rejected}
    from spidarknet.selection.decide import check_icosahedron
    if check_icosahedron(settings.icosahedron, settings.size_range):
        summary["icosahedron"] = True
    write_json(summary, summary_path(settings.out), True, "hit list summary")
    warn_frame_checks(summary["frame_checks"], state.feedback)
