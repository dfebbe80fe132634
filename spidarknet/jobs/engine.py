"""``build-engine`` as a library function, and the engine ``train`` runs (built on first need)."""

from __future__ import annotations

import time
from pathlib import Path

from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.engine.build import build_engine, pristine_source, trainable_darknet
from spidarknet.engine.locate import Found, describe, user_build_dir


def build_user_engine(gpu: bool = False, feedback: Feedback = SILENT) -> tuple[Found, Path]:
    """Build darknet with spidarknet's patches into the user's cache (a CUDA build with
    ``gpu``); the engine and its build folder (``build.log`` there holds the compiler output)."""
    out = user_build_dir(gpu)
    _announce(out, feedback)
    return build_engine(gpu=gpu, on_progress=_progress_bar(feedback)), out


def _announce(out: Path, feedback: Feedback) -> None:
    source = pristine_source()
    where = source if source is not None else "Debian's source package (apt-get source darknet)"
    feedback.say(f"building the darknet engine from {where} with spidarknet's patches into {out} "
                 f"(compiler output: {out / 'build.log'}) ...")


def _progress_bar(feedback: Feedback):
    """A bar of the files compiled (drawn from the first report on); on_progress for
    :func:`build_engine`."""
    bars = []

    def on_progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(feedback.bar(total=total, desc="compile darknet", unit="file"))
        bar = bars[0]
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()
        if total and done >= total:
            bar.close()
    return on_progress


def engine_for_training(explicit: str | None, feedback: Feedback = SILENT) -> Found:
    """The darknet binary ``train`` runs: a patched build found, else one built now into the
    user's cache, with a line saying so and a bar of the files compiled."""
    started = time.perf_counter()
    built = []
    found = trainable_darknet(explicit, on_build=lambda out: (built.append(out), _announce(out, feedback)),
                              on_progress=_progress_bar(feedback))
    if built:
        feedback.say(f"darknet engine built in {time.perf_counter() - started:.0f} s: {describe(found)}")
    return found
