"""The settings and result of ``detect`` as a library function, and what its ways of running share:
the model (its card, the screening threshold of a size window or a selector), the prefilter,
the warnings of the frame checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from spidarknet.core.defaults import DETECT_CHUNK_FRAMES, INFERENCE_BATCH, PAGE_HOST, PAGE_PORT
from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import Feedback
from spidarknet.detection.local import PREFILTER_SIGMA, FrameChecks, Prefilter
from spidarknet.detection.shards import file_digest
from spidarknet.engine.model import load_model
from spidarknet.frames.options import FrameOptions
from spidarknet.hits import HitList


@dataclass
class DetectSettings:
    """What ``spidarknet detect`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    out: str
    weights: str | None = None             # None: the built-in model
    force: bool = False
    backend: str = "auto"
    threshold: float | None = None
    expected_hit_rate: float | None = None
    cfg: str | None = None
    preprocess: str | None = None
    batch: int = INFERENCE_BATCH
    jobs: int | None = None
    gpu: int | None = None
    darknet: str | None = None
    libdarknet: str | None = None
    write_cxi: str | None = None
    size_range: Sequence[float] | None = None
    #: with ``size_range``: near the window's edges, refine the sphere fit by an icosahedron
    #: (:attr:`~spidarknet.sizing.SizingSettings.icosahedron`); None: wherever a window is
    #: given, False: never (``--no-icosahedron``), True: asked for (an error without a window)
    icosahedron: bool | None = None
    selector: str | None = None
    mpi: bool = False
    shard: str | None = None
    chunk: int = DETECT_CHUNK_FRAMES
    no_prefilter: bool = False
    prefilter_photons: float | None = None
    prefilter_sigma: float = PREFILTER_SIGMA
    prefilter_litpixels: float | None = None
    follow: bool = False
    idle: float = 30.0
    monitor: bool = False
    host: str = PAGE_HOST
    port: int = PAGE_PORT


@dataclass
class DetectResult:
    """What a detection wrote: the hit list, and how it was scored."""

    out: str
    hits: HitList | None = None            # None: an MPI rank other than 0 (rank 0 wrote the list)
    backend: str = ""
    workers: str = ""                      # "2 processes", "4 MPI ranks"
    frames_per_s: float = 0.0
    prefilter: bool = False
    cxi: str | None = None
    cxi_frames: int | None = None
    # detect --follow
    followed: str | None = None            # the file followed
    rows: int = 0
    selected: int = 0
    threshold: float = 0.0
    interrupted: bool = False


@dataclass
class RunState:
    """What the run learns on the way: the built-in model used, the selector, where the threshold came from."""

    feedback: Feedback
    builtin: bool = False
    selector: object = None
    threshold_from: dict | None = field(default=None)


def prefilter_of(settings: DetectSettings) -> Prefilter | None:
    """The prefilter the settings ask for (None: every frame goes to the network)."""
    if settings.no_prefilter:
        if settings.prefilter_photons is not None or settings.prefilter_litpixels is not None:
            raise ConfigError("--no-prefilter and --prefilter-photons or --prefilter-litpixels exclude each other: "
                              "choose one")
        return None
    return Prefilter(min_photons=settings.prefilter_photons, sigma=settings.prefilter_sigma,
                     lit_k=settings.prefilter_litpixels)


def check_size_range(size_range) -> None:
    """``--size-range MIN MAX`` of ``detect`` and ``select`` (fitted diameters, nm): a
    :class:`~spidarknet.core.errors.ConfigError` unless 0 ≤ MIN ≤ MAX."""
    if size_range and not 0 <= size_range[0] <= size_range[1]:
        raise ConfigError(f"--size-range {size_range[0]:g} {size_range[1]:g}: give 0 <= MIN <= MAX in nm")


def model_of(settings: DetectSettings, state: RunState):
    """The model of the weights (or cfg/preprocess), with the centre put into its preprocessing.
    With a size range and no threshold given, the threshold is the card's screening one
    (a share of the threshold that keeps 98 % of its validation singles: the network screens,
    the size fit decides; see :data:`spidarknet.detection.threshold.SCREENING_MARGIN`)."""
    model = load_model(settings.weights, cfg=settings.cfg, preprocess=settings.preprocess,
                       threshold=settings.threshold)
    if settings.frames.centre_px:
        model.preprocessing.centre_px = tuple(settings.frames.centre_px)
    if settings.selector:
        return _screen_for_selector(settings, state, model)
    screen = model.validation.get("screening_threshold")
    if (settings.size_range and settings.threshold is None and settings.expected_hit_rate is None
            and screen is not None):
        recall = model.validation.get("screening_recall")
        state.feedback.note(f"--size-range: the network screens at threshold {screen:.3g} (it kept {recall:.0%} of "
                            f"its validation singles), the size fit decides; --threshold sets another")
        model.threshold = float(screen)
        state.threshold_from = {"screening_recall": recall}
    return model


def _screen_for_selector(settings: DetectSettings, state: RunState, model):
    """The model screening at the selector's screen (or the threshold given), after checking
    that the selector was learnt with these weights."""
    from spidarknet.selection.selector import Selector
    selector = Selector.load(settings.selector)
    selector.check_weights(settings.weights, file_digest(settings.weights))
    state.selector = selector
    if settings.threshold is None:
        model.threshold = selector.screen
        state.threshold_from = {"selector_screen": settings.selector}
    return model


def say_builtin_model(settings: DetectSettings, state: RunState, comm) -> None:
    """Name the built-in model when no weights were given: after the inputs were checked
    (an input error comes alone), once per run (rank 0 of MPI ranks)."""
    if state.builtin and (comm is None or comm.Get_rank() == 0):
        state.feedback.say(f"using the built-in model {settings.weights} (trained on simulated frames)")


def warn_missing_modules(hits, feedback: Feedback) -> None:
    """One warning line where frames of European XFEL runs were scored with modules missing
    from their train (their pixels masked; the hit list's ``missing_modules`` column)."""
    missing = hits.columns.get("missing_modules")
    if missing is None or not np.any(np.asarray(missing) > 0):
        return
    short = np.asarray(missing) > 0
    trains = np.unique(np.asarray(hits.columns["trainId"])[short])
    feedback.warn(f"{int(np.count_nonzero(short))} frames of {len(trains)} trains (first trainId "
                  f"{int(trains[0])}) lack up to {int(np.max(missing))} modules: scored with those modules masked "
                  "(column missing_modules of the hit list)")


def warn_frame_checks(values: dict, feedback: Feedback) -> None:
    """The run's one warning line per kind of frame the model does not fit."""
    for line in FrameChecks.from_dicts([values]).warnings():
        feedback.warn(line)
