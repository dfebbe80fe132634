"""``detect`` as a library function: frames + trained weights -> hit list (CSV + JSON), optionally a CXI.

:func:`detect_to_file` does what ``spidarknet detect`` does: the option checks, the model
(its card, the built-in one, the screening threshold of a size window or a selector), the
scoring in one process or several (or one MPI rank's share, or one --shard:
:mod:`~spidarknet.jobs.detect_local`), or as the file is written (--follow:
:mod:`~spidarknet.jobs.follow`), the decision of a size window or a selector, the hit list
written, and the selected frames copied into a CXI file.
"""

from __future__ import annotations

from dataclasses import replace

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.detection.shards import mpi_launch
from spidarknet.engine.model import builtin_weights
from spidarknet.jobs.detect_local import run_local, run_mpi, shard_job, threshold_for_rate
from spidarknet.jobs.detect_settings import DetectResult, DetectSettings, RunState
from spidarknet.jobs.follow import follow

__all__ = ["DetectResult", "DetectSettings", "detect_to_file", "shard_job", "threshold_for_rate"]


def detect_to_file(settings: DetectSettings, feedback: Feedback = SILENT) -> DetectResult:
    """Run ``spidarknet detect``: check the options, score, decide, write; see the module."""
    _check_mpi_launch(settings)
    _check_rate_options(settings)
    if settings.icosahedron:
        from spidarknet.selection.decide import check_icosahedron
        check_icosahedron(settings.icosahedron, settings.size_range)
    state = RunState(feedback)
    if settings.weights is None:
        if settings.cfg or settings.preprocess:
            raise ConfigError("--cfg and --preprocess describe weights you give: add --weights")
        settings = replace(settings, weights=str(builtin_weights()))
        state.builtin = True  # said once the inputs are found (say_builtin_model)
    if settings.monitor and not settings.follow:
        raise ConfigError("--monitor shows a hit list as it is written: add --follow (for a finished hit "
                          "list, 'spidarknet report' draws a page)")
    if settings.follow:
        _check_follow_options(settings)
        return follow(settings, state)
    if not settings.mpi:
        return run_local(settings, state)
    return run_mpi(settings, state)


def _check_rate_options(settings: DetectSettings) -> None:
    if settings.expected_hit_rate is not None:
        if not 0 < settings.expected_hit_rate < 1:
            raise ConfigError(f"--expected-hit-rate {settings.expected_hit_rate:g} must lie between 0 and 1")
        if settings.threshold is not None:
            raise ConfigError("--threshold and --expected-hit-rate exclude each other: choose one")
        if settings.follow or settings.shard:
            raise ConfigError("--expected-hit-rate needs every frame's score at once: it cannot be used with "
                              "--follow or --shard (set --threshold instead)")


def _check_mpi_launch(settings: DetectSettings) -> None:
    """Refuse to run as one of several MPI ranks without --mpi: each would score every frame."""
    launch = mpi_launch()
    if launch is not None and not settings.mpi:
        rank, size = launch
        raise ConfigError(f"started by mpirun/mpiexec as rank {rank} of {size} without --mpi: every rank would score "
                          f"every frame and write {settings.out}; add --mpi to share the frames among the ranks "
                          "(rank 0 writes the hit list), or run one process without mpirun")


def _check_follow_options(settings: DetectSettings) -> None:
    """The option checks of detect --follow."""
    if len(settings.frames.inputs) != 1 or settings.mpi or settings.shard or settings.write_cxi:
        raise ConfigError("--follow takes exactly one input file, without --mpi, --shard or --write-cxi")
    if settings.idle <= 0:
        raise ConfigError("--idle must be positive")
