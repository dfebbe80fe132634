"""How a long job speaks to people while it runs: progress bars and lines for stderr.

A library function that takes a while (a detection, a training, an export) takes a
:class:`Feedback`.  This base class draws nothing: its lines go to the job's logger (warnings
at WARNING, so a notebook sees them; notes at INFO), its bars count silently.  The commands
pass :class:`spidarknet.cli.Console`, which draws tqdm bars on stderr and prints the lines
there, as the commands always have.
"""

from __future__ import annotations

import logging

log = logging.getLogger("spidarknet")


class SilentBar:
    """A progress bar that draws nothing (``update``, ``close``, a context manager, as tqdm's)."""

    def __init__(self, total=None):
        self.total, self.n = total, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **_) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        self.close()


class Feedback:
    """Progress and lines for people; this one logs the lines and draws no bar."""

    #: the person asked for no progress (``--quiet``): notes are left out
    quiet = True

    def bar(self, total: int | None = None, desc: str | None = None, unit: str = "frame"):
        """A progress bar of ``total`` steps (``update(n)``, ``close()``)."""
        return SilentBar(total)

    def say(self, line: str) -> None:
        """A line a person must see (which model, what was moved aside), even with --quiet."""
        log.info("%s", line)

    def note(self, line: str) -> None:
        """A line of news that --quiet leaves out."""
        log.info("%s", line)

    def show(self, line: str) -> None:
        """A line someone waits for while the job runs (a page's address): the commands print
        it on stdout at once."""
        log.info("%s", line)

    def warn(self, line: str) -> None:
        """A warning (the commands print it as ``warning: LINE``)."""
        log.warning("%s", line)

    def hushed(self) -> "Feedback":
        """This feedback without bars and notes (said lines and warnings stay): for the
        processes beside the one that reports, e.g. MPI ranks other than 0."""
        return self


#: the feedback of a job given none
SILENT = Feedback()
