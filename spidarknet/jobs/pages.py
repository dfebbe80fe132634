"""The pages as library functions: ``monitor`` (a hit list as detect --follow writes it) and
``label`` (the frames propose ranks, one at a time, learn inside), each served until Ctrl-C."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import check_destination
from spidarknet.frames.options import FrameOptions, open_source
from spidarknet.serve.server import DEFAULT_HOST, DEFAULT_PORT


@dataclass
class PageSettings:
    """Where a page listens (port 0: a free one)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT


@dataclass
class MonitorSettings:
    """What ``spidarknet monitor`` is asked to show (its options, by the same names)."""

    hits: str                          # the hit list detect --follow writes
    title: str | None = None
    poll: float = 1.0                  # seconds between reads of the hit list (as --poll and Monitor)
    page: PageSettings = field(default_factory=PageSettings)


@dataclass
class LabelSettings:
    """What ``spidarknet label`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    positives: str                     # the label files the page appends to
    negatives: str
    selection: str = "selection.json"  # the selection learnt every ``every`` labels
    n: int = 40
    every: int = 10
    weights: str | None = None
    selector: str | None = None
    pool: int = 2000
    folds: int = 5
    seed: int = 0
    jobs: int | None = None
    force: bool = False
    page: PageSettings = field(default_factory=PageSettings)


def serve(app, page: PageSettings, what: str, feedback: Feedback = SILENT) -> int:
    """Listen on the page's host and port (warning for an address other machines reach) and
    serve ``app`` until Ctrl-C; the address is shown once the page is up."""
    from spidarknet.serve.server import bind, host_warning, run_server
    warning = host_warning(page.host)
    if warning:
        feedback.warn(warning)
    sock = bind(page.host, page.port)
    try:
        run_server(app, sock, lambda url: feedback.show(f"{what} at {url} (Ctrl-C stops it)"))
    finally:
        sock.close()
    return 0


def monitor_page(settings: MonitorSettings, feedback: Feedback = SILENT) -> int:
    """Run ``spidarknet monitor``: the page of the hit list, served until Ctrl-C."""
    from spidarknet.serve.monitor import HitListTail, Monitor, monitor_app
    if not settings.poll > 0:
        raise ConfigError("--poll must be positive")
    if os.path.isdir(settings.hits):
        raise ConfigError(f"{settings.hits} is a folder: give the hit list CSV that detect --follow writes")
    if os.path.exists(settings.hits):
        HitListTail(settings.hits).read()  # a file that is not a hit list is refused before the page starts
    monitor = Monitor(settings.hits, poll_s=settings.poll)
    title = settings.title or f"monitor of {os.path.basename(settings.hits)}"
    return serve(monitor_app(monitor, title), settings.page, "monitor", feedback)


def label_page(settings: LabelSettings, feedback: Feedback = SILENT) -> int:
    """Run ``spidarknet label``: score and fit the frames, rank those to label, and serve the
    page until Ctrl-C (the labels and the selection are written as they come)."""
    from spidarknet.engine.model import builtin_weights, load_model
    from spidarknet.selection.selector import Selector
    from spidarknet.serve.label import LabelFiles, label_app, start_session
    _check_label(settings)
    selector = Selector.load(settings.selector) if settings.selector else None
    weights = settings.weights or (selector.weights.get("path") if selector else None) or str(builtin_weights())
    model = load_model(weights)
    source = open_source(settings.frames)
    bars = []

    def progress(stage: str, total):
        bars.append(feedback.bar(total=total, desc=stage))
        return bars[-1].update
    try:
        session = start_session(source, model, LabelFiles(settings.positives, settings.negatives), n=settings.n,
                                every=settings.every, pool_size=settings.pool, selection_out=settings.selection,
                                seed=settings.seed, jobs=settings.jobs, folds=settings.folds, selector=selector,
                                progress=progress)
    finally:
        for bar in bars:
            bar.close()
    names = ", ".join(os.path.basename(f.path) for f in source.files[:3]) + (" ..." if len(source.files) > 3 else "")
    return serve(label_app(session, f"label {names}"), settings.page, "labelling page", feedback)


def _check_label(settings: LabelSettings) -> None:
    if settings.n < 1 or settings.every < 1 or settings.pool < 1:
        raise ConfigError("--n, --every and --pool must be at least 1")
    if settings.folds < 2:
        raise ConfigError(f"--folds {settings.folds}: give at least 2")
    if os.path.abspath(settings.positives) == os.path.abspath(settings.negatives):
        raise ConfigError("--positives and --negatives must be two files")
    for path, what in ((settings.positives, "positives"), (settings.negatives, "negatives")):
        check_destination(path, True, f"--{what} file")
    check_destination(settings.selection, settings.force, "selection")
