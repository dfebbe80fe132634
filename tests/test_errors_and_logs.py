"""Errors and logs end to end: a bug is one internal-error line with its own exit status,
a user's mistake one ``error:`` line, and ``--verbose`` logs every stage of a run.

Files come from the project's simulator; the one fake is the bug itself (a function made
to raise), since the real code has none to trigger on purpose.
"""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest

from spidarknet import cli
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.simulate import simulate_file


@pytest.fixture(autouse=True)
def quiet_again():
    """--verbose leaves spidarknet's loggers at DEBUG: back to WARNING after each test."""
    yield
    logging.getLogger("spidarknet").setLevel(logging.WARNING)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_an_unexpected_exception_is_one_internal_error_line_and_its_own_status(small_cxi, tmp_path, capsys,
                                                                               monkeypatch, caplog):
    from spidarknet.cli import detect
    from spidarknet.detection import local

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(local, "score_chunk", broken)
    argv = [str(small_cxi), "--frames", "0:8", "--jobs", "1", "--out", str(tmp_path / "hits.csv"), "-q"]
    assert detect.main(argv) == cli.EXIT_INTERNAL != cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert error_lines(err) == ["error: internal error (ValueError: operands could not be broadcast together) - "
                                "please report it; --verbose shows the traceback"], err
    assert "Traceback" not in err and not (tmp_path / "hits.csv").exists()
    # --verbose: the traceback is in the log, naming the function that raised
    assert detect.main(argv + ["--verbose"]) == cli.EXIT_INTERNAL
    record = next(r for r in caplog.records if r.name == "spidarknet.cli" and r.exc_info)
    assert "internal error" in record.getMessage() and record.exc_info[0] is ValueError
    assert "in broken" in caplog.text and "operands could not be broadcast" in caplog.text


def test_a_workers_foreign_exception_is_an_internal_error_its_own_error_a_user_error(capsys, caplog):
    """What a worker process raised comes as the pool's error with ``worker_type``: not one of
    the project's own is a bug (internal error, its traceback under --verbose); one of them,
    or a worker's death, is the user's ``error:`` line."""
    import argparse

    from spidarknet.core.errors import EngineError
    from spidarknet.core.pool import TRACEBACK_HINT

    def parser():
        p = argparse.ArgumentParser()
        cli.add_common_args(p)
        return p

    def failing(worker_type, message):
        def run(args):
            error = EngineError(message)
            if worker_type:
                error.worker_type = worker_type
                error.worker_traceback = "Traceback (most recent call last):\n  in _parse_frame_count\n"
            raise error
        return run

    foreign = failing("ValueError", f"detection worker 1 of 2 failed with ValueError: bad{TRACEBACK_HINT}")
    assert cli.run_main(parser, foreign, ["--verbose"]) == cli.EXIT_INTERNAL
    assert error_lines(capsys.readouterr().err) == [
        "error: internal error (detection worker 1 of 2 failed with ValueError: bad) - please report it; "
        "--verbose shows the traceback"]
    assert "in _parse_frame_count" in caplog.text
    own = failing("spidarknet.core.errors.ConfigError", "the cfg has no [region] layer")
    assert cli.run_main(parser, own, []) == cli.EXIT_ERROR
    assert error_lines(capsys.readouterr().err) == ["error: the cfg has no [region] layer"]
    died = failing(None, "detection worker 1 of 2 was killed by SIGSEGV")
    assert cli.run_main(parser, died, []) == cli.EXIT_ERROR
    assert error_lines(capsys.readouterr().err) == ["error: detection worker 1 of 2 was killed by SIGSEGV"]


def test_verbose_detect_logs_each_stage(small_cxi, tmp_path, caplog):
    from spidarknet.cli import detect
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--frames", "0:16", "--chunk", "8", "--jobs", "1", "--out", str(out),
                        "-q", "--verbose"]) == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    # the file opened: path, frames, shape, geometry
    assert f"{small_cxi}: 60 frames at /entry_1/data_1/data (16 selected), 1024x1024 uint16" in text
    assert "distance 0.125 m, pixels 75x75 µm, wavelength 0.7293 nm" in text
    # the preprocessing plan for its geometry, once
    assert text.count("preprocessing plan for small.cxi") == 1
    assert "crop 256 px (rows 384:640, columns 384:640) = q ≤ 0.66 nm⁻¹ -> 128x128" in text
    # the engine opened, each chunk read and scored, the stage times, the output
    assert "opened the opencv backend (OpenCVDetector)" in text and "batch 16" in text
    for chunk in ("0:8", "8:16"):
        assert f"read small.cxi frames {chunk} (8, rows 384:640, columns 384:640) in" in text
        assert f"chunk small.cxi[{chunk}]: read " in text and "to OpenCVDetector (batch 16)" in text
    assert "detected 16 frames in" in text and "inference" in text
    assert f"wrote the hit list {out}: 16 rows" in text


def test_verbose_detect_logs_its_worker_processes_too(small_cxi, tmp_path, caplog):
    from spidarknet.cli import detect
    assert detect.main([str(small_cxi), "--frames", "0:16", "--chunk", "8", "--jobs", "2",
                        "--out", str(tmp_path / "hits.csv"), "-q", "-v"]) == 0
    text = caplog.text
    assert "detecting 16 frames in 2 worker processes (opencv backend, batch 16, 8 frames per chunk)" in text
    assert "2 worker processes detected 16 frames in" in text
    for worker in ("detection worker 1 of 2", "detection worker 2 of 2"):
        assert f"[{worker}] opened 1 file:\n  {small_cxi}: 60 frames at" in text
        assert f"[{worker}] opened the opencv backend" in text
        assert f"[{worker}] detected 8 frames in" in text
    assert "[detection worker 1 of 2] chunk small.cxi[0:8]" in text
    assert "[detection worker 2 of 2] chunk small.cxi[8:16]" in text


def test_verbose_export_dataset_logs_each_stage(small_cxi, tmp_path, caplog):
    from spidarknet.cli import export_dataset
    out = tmp_path / "ds"
    assert export_dataset.main([str(small_cxi), "--labels-dataset", "/truth/label", "--frames", "0:20",
                                "--chunk", "10", "--out", str(out), "-q", "--verbose"]) == 0
    text = caplog.text
    assert f"{small_cxi}: 60 frames at /entry_1/data_1/data (20 selected)" in text
    assert "preprocessing plan for small.cxi" in text
    assert "read small.cxi frames 0:10" in text and "read small.cxi frames 10:20" in text
    assert "wrote 20 frames as images and labels in" in text
    assert f"wrote the folder {out}" in text


def test_without_verbose_nothing_is_logged_below_warning(small_cxi, tmp_path, caplog):
    from spidarknet.cli import detect
    assert detect.main([str(small_cxi), "--frames", "0:8", "--jobs", "1", "--out", str(tmp_path / "h.csv"),
                        "-q"]) == 0
    assert [r for r in caplog.records if r.name.startswith("spidarknet") and r.levelno < logging.WARNING] == []


def test_a_beam_centre_jittered_off_the_detector_is_an_error_line(tmp_path, capsys):
    from spidarknet.cli import simulate
    assert simulate.main([str(tmp_path / "f.cxi"), "-n", "2", "--shape", "64", "64", "--centre-jitter", "500",
                          "-q"]) == cli.EXIT_ERROR
    [line] = error_lines(capsys.readouterr().err)
    assert "lies outside the 64x64 detector: give a smaller --centre-jitter" in line
    assert not (tmp_path / "f.cxi").exists()


def test_the_size_range_check_is_one_type_and_line_in_detect_and_select(small_cxi, tmp_path, capsys):
    from spidarknet.cli import detect, select
    from spidarknet.jobs.detect_settings import check_size_range
    with pytest.raises(ConfigError, match="give 0 <= MIN <= MAX"):
        check_size_range((80.0, 60.0))
    assert detect.main([str(small_cxi), "--size-range", "80", "60", "--out", str(tmp_path / "h.csv"), "-q"]) == 1
    from_detect = error_lines(capsys.readouterr().err)
    (tmp_path / "h.csv").write_text("file,dataset,index,score,x,y,w,h,hit,status\n")
    assert select.main([str(tmp_path / "h.csv"), "--size-range", "80", "60", "--out", str(tmp_path / "s.csv")]) == 1
    from_select = error_lines(capsys.readouterr().err)
    assert from_detect == from_select == ["error: --size-range 80 60: give 0 <= MIN <= MAX in nm"]


def test_option_mistakes_are_config_errors(capsys, tmp_path, small_cxi):
    from spidarknet.cli import detect
    from spidarknet.detection.shards import parse_shard
    from spidarknet.frames.source import parse_frame_range
    for bad in (lambda: parse_frame_range("a:b"), lambda: parse_shard("9/4")):
        with pytest.raises(ConfigError):
            bad()
    assert detect.main([str(small_cxi), "--jobs", "0", "--out", str(tmp_path / "h.csv"), "-q"]) == 1
    assert error_lines(capsys.readouterr().err) == ["error: --jobs must be at least 1"]
    # the icosahedron refines the fits near a size window's edges: detect and bench --science need one
    assert detect.main([str(small_cxi), "--icosahedron", "--out", str(tmp_path / "h.csv"), "-q"]) == 1
    assert error_lines(capsys.readouterr().err) == [
        "error: --icosahedron refines the sphere fit near the edges of a size window: add --size-range MIN MAX "
        "(e.g. --size-range 60 75 --icosahedron)"]
    assert not (tmp_path / "h.csv").exists()
    import spidarknet as sk
    with pytest.raises(ConfigError, match=r"add --size-range MIN MAX \(e.g. --size-range 60 75 --icosahedron\)"):
        sk.detect(sk.open_frames(str(small_cxi)), icosahedron=True)
    from spidarknet.cli import bench
    assert bench.main(["--science", "--icosahedron", "--no-size-window", "--workdir", str(tmp_path / "w")]) == 1
    assert error_lines(capsys.readouterr().err) == [
        "error: --icosahedron refines the size window's fits near its edges: drop --no-size-window"]
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def tiny_cxi(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "tiny.cxi"
    simulate_file(path, 4, seed=4, shape=(64, 64))
    return path


def test_a_mask_of_text_in_a_file_is_an_error_line_naming_it(tiny_cxi, tmp_path, capsys):
    from spidarknet.cli import detect
    bad = tmp_path / "textmask.cxi"
    shutil.copy(tiny_cxi, bad)
    with h5py.File(bad, "r+") as f:
        group = f["/entry_1/instrument_1/detector_1"]
        del group["mask_shared"]
        group["mask_shared"] = np.full((64, 64), b"ok")
    assert detect.main([str(bad), "--out", str(tmp_path / "h.csv"), "-q"]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: /entry_1/instrument_1/detector_1/mask_shared in {bad} holds |S2, not integer")
    assert "--no-file-mask" in line


def test_a_malformed_truth_in_a_file_is_an_input_error_naming_it(tiny_cxi, tmp_path):
    from spidarknet.judge.structure import truth_from_simulation
    bad = tmp_path / "notruth.cxi"
    shutil.copy(tiny_cxi, bad)
    with h5py.File(bad, "r+") as f:
        del f["/truth/diameter_nm"]
        f["/truth/diameter_nm"] = np.full(4, b"big")  # text, not numbers
    with pytest.raises(InputError, match=rf"^{bad}: cannot read the simulator truth \(ValueError: .*\); give the CXI"):
        truth_from_simulation(bad)


def test_verbose_keeps_its_traceback_when_a_command_runs_jobs(tmp_path, capsys, caplog):
    """An experiment's command runs the commands' jobs (library functions), which leave logging
    alone, so its --verbose still logs the traceback of the bug that follows (seed-questions)."""
    from spidarknet.core.errors import OutputError
    from spidarknet.jobs.train import TrainSettings, train_model

    def build_parser():
        parser = cli.new_parser("experiment", "runs a job, then fails", "experiment -v")
        cli.add_common_args(parser)
        return parser

    def run(args):
        with pytest.raises((InputError, OutputError), match="does not exist"):
            train_model(TrainSettings(str(tmp_path / "no-such-dataset")))
        assert logging.getLogger("spidarknet").isEnabledFor(logging.DEBUG)
        raise ValueError("'run1.cxi' is not in list")

    assert cli.run_main(build_parser, run, ["--verbose"]) == cli.EXIT_INTERNAL
    record = next(r for r in caplog.records if r.name == "spidarknet.cli" and r.exc_info)
    assert record.exc_info[0] is ValueError and "is not in list" in caplog.text
    # after the outer command the next one configures logging afresh
    assert cli.run_main(build_parser, lambda args: 0, ["-q"]) == 0
    assert not logging.getLogger("spidarknet").isEnabledFor(logging.DEBUG)
