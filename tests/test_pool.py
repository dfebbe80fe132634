"""The one process pool (spidarknet.core.pool): real worker processes running this module's
``serve_*`` functions, which the workers import from this folder."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from spidarknet.core.errors import ConfigError, EngineError, WorkerError
from spidarknet.core.pool import Died, Failed, Pool, Progress, Ready, Result, Stop, core_count

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def workers_see_this_module(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p))


def _parse_frame_count(text: str) -> int:
    return int(text)  # ValueError for "many": a bug in the worker's own code


def serve_square(conn) -> None:
    """Squares each task's number until Stop; a job of "fail" raises a foreign exception, a job
    of "refuse" one of the project's own."""
    job = conn.recv()
    if job == "refuse":
        raise ConfigError("the cfg has no [region] layer; use a YOLOv2 cfg")
    conn.send(Ready(os.getpid()))
    while not isinstance(task := conn.recv(), Stop):
        conn.send(Result(_parse_frame_count(task) ** 2))


def serve_count(conn) -> None:
    """Reports progress of its job (a number of items), then its total."""
    n = conn.recv()
    for _ in range(n):
        conn.send(Progress(1))
    conn.send(Result(n))


def serve_and_wait(conn) -> None:
    conn.recv()
    print("loaded the network: 3 layers", flush=True)  # into the pool's log
    conn.send(Ready())
    conn.recv()  # until killed


def test_a_workers_exception_arrives_as_the_projects_error_with_its_type_and_traceback(caplog):
    with Pool("test_pool:serve_square", ["go"], label="the square worker") as pool:
        assert isinstance(pool.recv(0), Ready)
        pool.send(0, "7")
        assert pool.recv(0) == Result(49)
        pool.send(0, "many")
        with caplog.at_level(logging.DEBUG, logger="spidarknet.core.pool"):
            with pytest.raises(WorkerError, match="the square worker failed with ValueError: invalid literal") as info:
                pool.recv(0)
    error = info.value
    assert error.worker_type == "ValueError"
    # the traceback is the worker's: it names the worker's own function and line
    assert "in _parse_frame_count" in error.worker_traceback and "ValueError: invalid literal" in error.worker_traceback
    assert "in _parse_frame_count" in caplog.text


def test_a_workers_own_error_keeps_its_type_and_message():
    with Pool("test_pool:serve_square", ["refuse"], error=EngineError) as pool:
        with pytest.raises(ConfigError, match=r"^the cfg has no \[region\] layer; use a YOLOv2 cfg$") as info:
            pool.recv(0)
    assert info.value.worker_type == "spidarknet.core.errors.ConfigError"
    assert "in serve_square" in info.value.worker_traceback


def test_a_killed_worker_is_the_chosen_error_with_the_signal_and_its_output():
    with Pool("test_pool:serve_and_wait", [None], label="the darknet worker process", error=EngineError,
              died_hint=" (darknet crashed)") as pool:
        assert isinstance(pool.recv(0), Ready)
        os.kill(pool.workers[0].proc.pid, signal.SIGKILL)
        with pytest.raises(EngineError) as info:
            pool.recv(0)
    message = str(info.value)
    assert message.startswith("the darknet worker process was killed by SIGKILL (darknet crashed); its last output:")
    assert "loaded the network: 3 layers" in message


def test_replies_give_every_workers_messages_until_its_last_word():
    with Pool("test_pool:serve_count", [2, 3, 0]) as pool:
        got = list(pool.replies())
    assert sorted(m.value for _, m in got if isinstance(m, Result)) == [0, 2, 3]
    assert sum(m.count for _, m in got if isinstance(m, Progress)) == 5
    last = {}
    for index, message in got:
        assert index not in last, "a message after the worker's last word"
        if isinstance(message, (Result, Failed, Died)):
            last[index] = message
    assert sorted(last) == [0, 1, 2]


def test_a_worker_failing_among_others_is_one_reply():
    with Pool("test_pool:serve_square", ["refuse", "go"]) as pool:
        assert isinstance(pool.recv(1), Ready)
        pool.send(1, "3")
        replies = dict(pool.replies())
        assert isinstance(replies[0], Failed) and replies[0].type == "spidarknet.core.errors.ConfigError"
        assert replies[1] == Result(9)
        assert isinstance(pool.error(0, replies[0]), ConfigError)


def test_close_stops_the_workers_and_removes_the_log():
    pool = Pool("test_pool:serve_and_wait", [None, None])
    procs = [w.proc for w in pool.workers]
    assert all(isinstance(pool.recv(i), Ready) for i in range(2))
    pool.close(grace_s=2)
    assert all(p.poll() is not None for p in procs)
    assert not pool.log_path.parent.exists()


def serve_temporary(conn) -> None:
    """Makes a temporary file, says where, and waits (to be killed)."""
    import tempfile
    conn.recv()
    handle, path = tempfile.mkstemp(prefix="worker-")
    conn.send(Ready(path))
    conn.recv()


def test_keep_kills_the_workers_beyond_the_first_and_their_temporary_files_go_with_the_pool():
    pool = Pool("test_pool:serve_square", [None, None, None])
    procs = [w.proc for w in pool.workers]
    pool.keep(1)
    assert len(pool) == 1 and procs[1].poll() == procs[2].poll() == -signal.SIGKILL
    pool.send(0, "7")
    assert pool.recv(0) == Ready(procs[0].pid) and pool.recv(0) == Result(49)
    pool.close(grace_s=2)
    assert procs[0].poll() == 0
    pool = Pool("test_pool:serve_temporary", [None, None])
    left = [pool.recv(i).info for i in range(2)]
    assert all(Path(p).exists() and Path(p).parent == pool.log_path.parent for p in left)
    pool.keep(1)
    pool.close(grace_s=2)
    assert not any(Path(p).exists() for p in left)


def test_one_core_count():
    assert core_count() == len(os.sched_getaffinity(0)) >= 1


def test_map_answers_in_task_order_and_raises_a_workers_failure():
    with Pool("test_pool:serve_square", ["go", "go", "go"]) as pool:
        assert list(pool.map(str(n) for n in range(40))) == [n * n for n in range(40)]
        with pytest.raises(WorkerError, match="failed with ValueError"):
            list(pool.map(["1", "2", "many", "4"]))
