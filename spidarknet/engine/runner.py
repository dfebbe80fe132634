"""Running the darknet binary as a subprocess and judging its outcome.

Darknet writes its progress with ``printf`` (block-buffered into a pipe), reports many
errors on stderr and then calls ``exit(0)``, and segfaults on some bad inputs.  The
runner gives it a pseudo-terminal so lines arrive as they are printed, copies every line
to a log file, hands each line to a callback, and raises :class:`EngineError` with the
command line, the exit status and the tail of the output when darknet failed, whatever
its exit status said.
"""

from __future__ import annotations

import collections
import errno
import os
import pty
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from spidarknet.core.errors import EngineError

#: lines by which darknet announces a failure even when it exits with status 0
FAILURE_PATTERNS = (
    re.compile(r"Couldn't open file"),
    re.compile(r"Cannot load image"),
    re.compile(r"Couldn't find (?:class|layer|option)"),
    re.compile(r"Unknown layer type|Type not recognized"),
    re.compile(r"Last layer must produce detections"),
    re.compile(r"CUDA Error|CUDA status Error|cuDNN status Error", re.I),
    re.compile(r"Malloc error|Calloc error|Realloc error"),
    re.compile(r"\bnot found\b.*\.so"),
)


@dataclass
class RunResult:
    args: list[str]
    returncode: int
    tail: list[str]
    log_path: Path | None


def run_darknet(args: Sequence[str], *, cwd: str | os.PathLike, log_path: str | os.PathLike | None = None,
                on_line: Callable[[str], None] | None = None, what: str = "darknet",
                env: dict | None = None) -> RunResult:
    """Run ``args`` (an argument list, never a shell) and stream its output.

    Raises :class:`EngineError` on a non-zero exit, a signal, or a failure line; on
    ``KeyboardInterrupt`` darknet gets SIGINT, is waited for, and the interrupt goes on.
    """
    args = [str(a) for a in args]
    tail: collections.deque[str] = collections.deque(maxlen=25)
    failure: str | None = None
    master, slave = pty.openpty()
    log = open(log_path, "a", buffering=1) if log_path else None
    try:
        try:
            proc = subprocess.Popen(args, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=slave,
                                    stderr=slave, env=env, start_new_session=True)
        except OSError as exc:
            raise EngineError(f"cannot start {args[0]}: {exc}") from None
        finally:
            os.close(slave)
        if log:
            log.write("$ " + " ".join(args) + f"   (in {cwd})\n")
        try:
            for line, complete in _read_lines(master):
                tail.append(line)
                if log:
                    log.write(line + "\n")
                if not complete:
                    continue
                if failure is None and any(p.search(line) for p in FAILURE_PATTERNS):
                    failure = line
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    finally:
        os.close(master)
        if log:
            log.close()
    result = RunResult(args, returncode, list(tail), Path(log_path) if log_path else None)
    if returncode != 0 or failure is not None:
        raise EngineError(describe_failure(what, result, failure))
    return result


def _read_lines(fd: int) -> Iterator[tuple[str, bool]]:
    """The non-empty lines of the terminal ``fd`` as they come, until the child closes it;
    the flag is False for a last line that ended without a line break."""
    pending = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno == errno.EIO:
                break
            raise
        if not data:
            break
        pending += data
        *lines, pending = re.split(rb"\r?\n|\r", pending)
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line:
                yield line, True
    if pending:
        yield pending.decode("utf-8", "replace"), False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def describe_failure(what: str, result: RunResult, failure: str | None) -> str:
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        status = f"crashed ({name})"
    elif result.returncode:
        status = f"exited with status {result.returncode}"
    else:
        status = "reported a failure (and exited with status 0, as darknet does)"
    lines = [f"{what} {status}: {failure or 'see the output below'}",
             "  command: " + " ".join(result.args)]
    if result.log_path:
        lines.append(f"  full log: {result.log_path}")
    lines.append("  last lines:")
    lines.extend("    " + line for line in result.tail[-8:])
    return "\n".join(lines)
