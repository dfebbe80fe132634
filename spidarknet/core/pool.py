"""Worker processes: fresh interpreters on a socket, typed messages, failures raised here.

One pool serves every job that runs in processes of its own: libdarknet inference behind
the engine's crash barrier (:mod:`spidarknet.engine.workers`) and detection on all cores
(:mod:`spidarknet.detection.parallel`).  A worker is a fresh interpreter, not a
``multiprocessing`` fork or spawn: nothing of the caller's ``__main__`` is re-imported, a
process that holds darknet, OpenCV threads or open HDF5 files is never forked, and a crash
(a segfault, darknet's ``exit()``) ends only its worker.  Each worker runs one function,
named ``"module:function"`` when the pool starts and called with the worker's end of the
socket; the first thing it reads there is its job.  Its output (darknet prints its layer
table and more) goes to the pool's log file, whose last lines a death is reported with.

The messages, pickled over the socket (a task and a job are the caller's own dataclasses):

========================  ==================  ===============================================
message                   direction           meaning
========================  ==================  ===============================================
the job                   parent -> worker    first message: what this worker is to do
a task                    parent -> worker    one piece of work (a batch of images)
:class:`Stop`             parent -> worker    no more tasks: clean up and leave
:class:`Ready`            worker -> parent    set up (``info``: what the parent should check)
:class:`Progress`         worker -> parent    ``count`` more items done (frames of a chunk)
:class:`Result`           worker -> parent    the answer to a task, or to the whole job
:class:`Failed`           worker -> parent    the worker raised: its exception, as text too
:class:`LogLine`          worker -> parent    a log record, while the parent logs below WARNING
                                              (``--verbose``): logged by the parent, never
                                              handed to the caller
:class:`Died`             (made by the parent) the worker ended without a last word
========================  ==================  ===============================================

A worker's exception is caught by the pool's worker loop (never by the worker function)
and sent as :class:`Failed`; the parent raises it as the project's own error: the worker's
exception itself when it is a :class:`SpidarknetError`, else the pool's ``error`` type
(:class:`WorkerError` unless the caller chose another) naming the worker's exception type.
Either carries ``worker_type`` (``module.Class``) and ``worker_traceback`` (text), and the
traceback goes to this module's log at debug level (``--verbose`` shows it).  Workers
ignore Ctrl-C: the parent stops them (:meth:`Pool.close`).
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from spidarknet.core.errors import SpidarknetError, WorkerError

log = logging.getLogger(__name__)

#: lines of the pool's log quoted when a worker dies
LOG_TAIL_LINES = 6
#: gives a worker the parent's log level when that is below WARNING (``--verbose``)
_LOG_LEVEL_ENV = "SPIDARKNET_WORKER_LOG_LEVEL"
#: ends the message of a worker's exception that is not one of the project's own
TRACEBACK_HINT = " (the worker's traceback is in the debug log: --verbose)"
_END = object()  # the end of a map's tasks


def core_count() -> int:
    """The cores this process may run on: its CPU affinity (narrowed by ``taskset``, a cgroup
    cpuset, an MPI or batch-system binding), else every core of the machine; at least 1.
    Every default that fills the machine (worker processes, OpenMP threads, Dragonfly's
    threads) starts from this number."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS)
        return max(1, os.cpu_count() or 1)


# -- the messages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Stop:
    """Parent -> worker: no more tasks; clean up and leave."""


@dataclass(frozen=True)
class Ready:
    """Worker -> parent: set up; ``info`` is what the parent should check (a network's size)."""

    info: object = None


@dataclass(frozen=True)
class Progress:
    """Worker -> parent: ``count`` more items done."""

    count: int


@dataclass(frozen=True)
class Result:
    """Worker -> parent: the answer to a task, or to the whole job."""

    value: object


@dataclass(frozen=True)
class Failed:
    """Worker -> parent: the worker raised.  ``error`` is the exception itself when it is one
    of spidarknet's own and survives pickling, else None; the rest is text."""

    type: str                   # module.Class of the exception (builtins left out)
    message: str
    traceback: str
    error: SpidarknetError | None = None

    @classmethod
    def of(cls, exc: BaseException) -> "Failed":
        kind = type(exc).__qualname__ if type(exc).__module__ == "builtins" else \
            f"{type(exc).__module__}.{type(exc).__qualname__}"
        error = exc if isinstance(exc, SpidarknetError) and _survives_pickling(exc) else None
        return cls(kind, str(exc), "".join(traceback.format_exception(exc)), error)


@dataclass(frozen=True)
class LogLine:
    """Worker -> parent: one record of a ``spidarknet`` logger, logged again by the parent
    under the worker's name."""

    name: str                   # the logger's name
    level: int
    text: str


class _ForwardHandler(logging.Handler):
    """A worker's log records sent to the parent as :class:`LogLine` messages."""

    def __init__(self, conn: Connection):
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.conn.send(LogLine(record.name, record.levelno, record.getMessage()))
        except Exception:
            self.handleError(record)


@dataclass(frozen=True)
class Died:
    """Made by the parent: the worker ended without a last word (killed, crashed, exited)."""

    exit_status: int | None     # None: still running after its socket closed

    def how(self) -> str:
        code = self.exit_status
        if code is None:
            return "stopped answering"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"


def _survives_pickling(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


# -- the parent's side ----------------------------------------------------------------------

@dataclass
class Worker:
    """One worker process and the parent's end of its socket."""

    proc: subprocess.Popen
    conn: Connection


class Pool:
    """One worker process per job in ``jobs``, each running ``serve`` (``"module:function"``).

    ``label`` names a worker in errors (``{number}`` and ``{count}`` are filled in);
    ``died_hint`` is added to the message when a worker dies; ``error`` is the project's
    error type for a death or a foreign exception; ``threads`` the OpenMP/BLAS threads of
    each worker; ``new_session`` puts each worker in a session of its own; ``quick_exit``
    ends each worker without tearing its interpreter down once its function returns (its
    output flushed; for functions that close what they open: an interpreter that loaded
    numba spends ~0.2 s of CPU on its teardown, which :meth:`close` waits for).  Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, serve: str, jobs: Sequence[object], *, label: str = "worker {number} of {count}",
                 died_hint: str = "", error: type[SpidarknetError] = WorkerError, threads: int = 1,
                 new_session: bool = False, quick_exit: bool = False):
        self.label, self.died_hint, self.error_type = label, died_hint, error
        self.started = time.perf_counter()   # when the workers were started
        self._tmp = tempfile.TemporaryDirectory(prefix="spidarknet-pool-")
        self.log_path = Path(self._tmp.name) / "workers.log"
        self.workers: list[Worker] = []
        package_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        # TMPDIR: what a worker leaves in its temporary files when it is killed goes with the pool's
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONPATH=python_path, TMPDIR=self._tmp.name)
        env.pop(_LOG_LEVEL_ENV, None)
        level = logging.getLogger("spidarknet").getEffectiveLevel()
        if level < logging.WARNING:  # --verbose: the workers' log records come here
            env[_LOG_LEVEL_ENV] = str(level)
        try:
            for job in jobs:
                parent, child = socket.socketpair()
                proc = subprocess.Popen(
                    [sys.executable, "-c", "import sys; from spidarknet.core.pool import _worker_main; "
                     "_worker_main(*sys.argv[1:])", serve, str(child.fileno()), str(self.log_path),
                     str(int(quick_exit))],
                    pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL, start_new_session=new_session)
                child.close()
                worker = Worker(proc, Connection(parent.detach()))
                self.workers.append(worker)
                self.send(len(self.workers) - 1, job)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.workers)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def name(self, index: int) -> str:
        return self.label.format(number=index + 1, count=len(self.workers))

    def send(self, index: int, message: object) -> None:
        """``message`` to worker ``index``; raises why when the worker is gone."""
        try:
            self.workers[index].conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            reply = self._receive(index)  # its last word, or its death
            raise self.error(index, reply if isinstance(reply, (Failed, Died)) else self._died(index)) from None

    def recv(self, index: int) -> object:
        """The next message of worker ``index``; a failure or death is raised (:meth:`error`)."""
        message = self._receive(index)
        if isinstance(message, (Failed, Died)):
            raise self.error(index, message)
        return message

    def map(self, tasks: Iterable[object], in_flight: int = 2) -> Iterator[object]:
        """The :class:`Result` value of each of ``tasks``, in the order of ``tasks``.  Each task
        goes to a worker with room, at most ``in_flight`` per worker (so that no worker waits
        for the parent, and memory stays flat); a failure or death is raised (:meth:`recv`)."""
        tasks = iter(tasks)
        room = list(range(len(self.workers))) * in_flight
        queued: dict[int, collections.deque] = {i: collections.deque() for i in range(len(self.workers))}
        done: dict[int, object] = {}
        sent = delivered = 0
        exhausted = False
        while True:
            while room and not exhausted:
                task = next(tasks, _END)
                if task is _END:
                    exhausted = True
                    break
                index = room.pop()
                self.send(index, task)
                queued[index].append(sent)
                sent += 1
            while delivered in done:
                yield done.pop(delivered)
                delivered += 1
            if exhausted and delivered == sent:
                return
            busy = {self.workers[i].conn: i for i, numbers in queued.items() if numbers}
            for conn in wait(list(busy)):
                index = busy[conn]
                message = self.recv(index)
                if isinstance(message, Result):
                    done[queued[index].popleft()] = message.value
                    room.append(index)

    def replies(self) -> Iterator[tuple[int, object]]:
        """``(index, message)`` of every worker as they come, until each has given its last
        word: a :class:`Result`, a :class:`Failed`, or a :class:`Died` made here.  Nothing is
        raised: the caller decides what a failure means (see :meth:`error`)."""
        live = {worker.conn: index for index, worker in enumerate(self.workers)}
        while live:
            for conn in wait(list(live)):
                index = live[conn]
                message = self._receive(index)
                if isinstance(message, (Result, Failed, Died)):
                    del live[conn]
                yield index, message

    def error(self, index: int, message: Failed | Died) -> SpidarknetError:
        """The project's error for worker ``index``'s :class:`Failed` or :class:`Died`."""
        who = self.name(index)
        if isinstance(message, Died):
            tail = self.log_tail()
            return self.error_type(f"{who} {message.how()}{self.died_hint}"
                                   + (f"; its last output:\n{tail}" if tail else ""))
        log.debug("%s failed with %s; its traceback:\n%s", who, message.type, message.traceback)
        error = message.error
        if error is None:
            error = self.error_type(f"{who} failed with {message.type}: {message.message}{TRACEBACK_HINT}")
        error.worker_type = message.type
        error.worker_traceback = message.traceback
        return error

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` of what the workers printed, indented."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def _receive(self, index: int) -> object:
        """The next message of worker ``index`` that is not a :class:`LogLine` (those are
        logged here), or its :class:`Died`."""
        try:
            while isinstance(message := self.workers[index].conn.recv(), LogLine):
                logging.getLogger(message.name).log(message.level, "[%s] %s", self.name(index), message.text)
            return message
        except (EOFError, OSError):
            return self._died(index)

    def _died(self, index: int) -> Died:
        try:
            return Died(self.workers[index].proc.wait(timeout=5))
        except subprocess.TimeoutExpired:
            return Died(None)

    def keep(self, count: int) -> None:
        """Only the first ``count`` workers kept; the others (started before their number was
        known, given nothing but their job) killed at once."""
        extra, self.workers = self.workers[count:], self.workers[:count]
        for worker in extra:
            worker.conn.close()
            worker.proc.kill()
            worker.proc.wait()

    def close(self, grace_s: float = 5.0) -> None:
        """Every worker stopped: :class:`Stop` sent, its socket closed (a busy worker leaves at
        its next message), then killed if it is still running after ``grace_s`` seconds."""
        for worker in self.workers:
            try:
                worker.conn.send(Stop())
            except OSError:
                pass
            worker.conn.close()
        deadline = time.monotonic() + grace_s
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self.workers = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- the worker's side ----------------------------------------------------------------------

def _worker_main(serve: str, fd: str, log_path: str, quick_exit: str = "0") -> None:
    """A worker process: ``serve`` (``module:function``) called with the socket ``fd``; what
    it raises goes back as :class:`Failed`; with ``quick_exit`` "1", the process ends there
    (:func:`_leave_now`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    conn = Connection(int(fd))
    level = os.environ.get(_LOG_LEVEL_ENV)
    if level:  # the parent logs below WARNING: send it our records
        logger = logging.getLogger("spidarknet")
        logger.setLevel(int(level))
        logger.addHandler(_ForwardHandler(conn))
        logger.propagate = False
    module, _, function = serve.partition(":")
    try:
        getattr(importlib.import_module(module), function)(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped (Ctrl-C, or another worker failed)
    except BaseException as exc:
        traceback.print_exc()  # into the log as well
        try:
            conn.send(Failed.of(exc))
        except OSError:
            pass
    if quick_exit == "1":
        _leave_now()


def _leave_now() -> None:
    """End this process at once, its Python and C output flushed, without the interpreter's
    teardown (atexit handlers, module and extension finalisers)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        ctypes.CDLL(None).fflush(None)   # C stdio: what a loaded library printed
    except (OSError, AttributeError):
        pass
    os._exit(0)
