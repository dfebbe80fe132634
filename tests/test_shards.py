"""Many nodes: job-array shards joined by merge, and real 'mpirun -n 2', match one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spidarknet.cli import detect, merge
from spidarknet.detection.shards import mpi_launch
from spidarknet.hits import read_hits

REPO = Path(__file__).resolve().parents[1]
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONPATH=str(REPO))






@pytest.fixture(scope="module")
def single(untrained_weights, small_cxi, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "hits.csv"
    assert detect.main([str(small_cxi), "--weights", str(untrained_weights), "--out", str(out), "--frames", "0:50",
                        "--quiet"]) == 0
    return read_hits(out)


def run_parts(weights, small_cxi, folder, n, extra=()):
    for k in range(1, n + 1):
        assert detect.main([str(small_cxi), "--weights", str(weights), "--out", str(folder / f"p{k}.csv"),
                            "--frames", "0:50", "--shard", f"{k}/{n}", "--quiet", *extra]) == 0
    return [str(folder / f"p{k}.csv") for k in range(1, n + 1)]


def test_shards_merge_into_the_single_process_hit_list(untrained_weights, small_cxi, single, tmp_path):
    parts = run_parts(untrained_weights, small_cxi, tmp_path, 4)
    sizes = [len(read_hits(p)) for p in parts]
    assert sum(sizes) == 50 and max(sizes) - min(sizes) <= 1
    assert merge.main([*reversed(parts), "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    merged = read_hits(tmp_path / "all.csv")
    assert merged.keys == single.keys
    assert np.array_equal(merged.scores, single.scores) and np.array_equal(merged.boxes, single.boxes)


def test_merge_names_missing_parts_and_refuses_mixed_weights(untrained_weights, make_untrained, small_cxi,
                                                             tmp_path, capsys):
    parts = run_parts(untrained_weights, small_cxi, tmp_path, 3)
    assert merge.main([parts[0], parts[2], "--out", str(tmp_path / "m.csv")]) == 1
    assert "1 of 3 parts are missing: 2/3" in capsys.readouterr().err
    other = make_untrained(6)
    assert detect.main([str(small_cxi), "--weights", str(other), "--out", str(tmp_path / "x.csv"),
                        "--frames", "0:50", "--shard", "2/3", "--quiet"]) == 0
    assert merge.main([parts[0], str(tmp_path / "x.csv"), parts[2], "--out", str(tmp_path / "m.csv")]) == 1
    assert "made with other weights" in capsys.readouterr().err
    # a part that lost rows is caught, with the frame named
    lines = Path(parts[1]).read_text().splitlines()
    Path(parts[1]).write_text("\n".join(lines[:-1]) + "\n")
    assert merge.main([*parts, "--out", str(tmp_path / "m.csv")]) == 1
    assert "lacks 1 frames" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_merge_adds_the_windows_counts_and_refuses_other_windows(untrained_weights, small_cxi, tmp_path, capsys):
    """Parts with --size-range: the merged counts are the single run's, another window is refused."""
    window = ("--threshold", "0", "--size-range", "55", "80", "--jobs", "1")
    parts = run_parts(untrained_weights, small_cxi, tmp_path, 2, window)
    one = tmp_path / "one.csv"
    assert detect.main([str(small_cxi), "--weights", str(untrained_weights), "--out", str(one), "--frames", "0:50",
                        "--quiet", *window]) == 0
    assert merge.main([*parts, "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    merged, single = (json.loads(p.with_suffix(".json").read_text()) for p in (tmp_path / "all.csv", one))
    parts_meta = [json.loads(Path(p).with_suffix(".json").read_text()) for p in parts]
    assert merged["size_second_particle"] == single["size_second_particle"] == sum(
        m["size_second_particle"] for m in parts_meta) > parts_meta[0]["size_second_particle"]
    assert merged["size_fit_failed"] == single["size_fit_failed"]
    assert read_hits(tmp_path / "all.csv").hits.tolist() == read_hits(one).hits.tolist()
    other = tmp_path / "other.csv"
    assert detect.main([str(small_cxi), "--weights", str(untrained_weights), "--out", str(other), "--frames", "0:50",
                        "--shard", "2/2", "--quiet", "--threshold", "0", "--size-range", "60", "75", "--jobs", "1"]) == 0
    assert merge.main([parts[0], str(other), "--out", str(tmp_path / "mixed.csv")]) == 1
    assert "made with other --size-range" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["3/2", "0/4", "a/b", "2"])
def test_bad_shard_specs(untrained_weights, small_cxi, tmp_path, spec, capsys):
    assert detect.main([str(small_cxi), "--weights", str(untrained_weights), "--out", str(tmp_path / "h.csv"),
                        "--shard", spec, "--quiet"]) == 1
    assert "--shard" in capsys.readouterr().err


def mpirun():
    path = shutil.which("mpirun")
    assert path, "mpirun not found: apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py"
    return path


def test_mpirun_two_ranks_equal_one_process(untrained_weights, small_cxi, single, tmp_path):
    out = tmp_path / "mpi.csv"
    proc = subprocess.run([mpirun(), "-n", "2", sys.executable, "-m", "spidarknet", "detect", str(small_cxi),
                           "--weights", str(untrained_weights), "--out", str(out), "--frames", "0:50", "--mpi", "--quiet"],
                          env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = read_hits(out)
    assert hits.keys == single.keys and np.array_equal(hits.scores, single.scores)
    assert json.loads(out.with_suffix(".json").read_text())["jobs"] == "2 MPI ranks"


#: rank 1 of a 'detect --mpi' run: it takes its part in rank 0's broadcast of the frames, so the
#: run is under way, then dies as a crashed node would, before it scores anything
DYING_RANK = """
import os, signal
from mpi4py import MPI
MPI.COMM_WORLD.bcast(None, root=0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rank_that_dies_fails_the_run(untrained_weights, small_cxi, tmp_path):
    out = tmp_path / "mpi.csv"
    proc = subprocess.run([mpirun(), "-n", "1", sys.executable, "-m", "spidarknet", "detect", str(small_cxi),
                           "--weights", str(untrained_weights), "--out", str(out), "--mpi", "--quiet", ":",
                           "-n", "1", sys.executable, "-c", DYING_RANK],
                          env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "signal 9" in proc.stderr or "Killed" in proc.stderr or "exited" in proc.stderr, proc.stderr[-1500:]
    assert not out.exists()


def test_mpirun_without_mpi_is_refused_before_any_work(untrained_weights, small_cxi, tmp_path):
    """Without --mpi every rank would score every frame, and the second die on 'already exists'."""
    out = tmp_path / "mpi.csv"
    proc = subprocess.run([mpirun(), "-n", "2", sys.executable, "-m", "spidarknet", "detect", str(small_cxi),
                           "--out", str(out), "--frames", "0:10", "--quiet"],
                          env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    refusals = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert refusals and all("without --mpi" in line and "add --mpi" in line for line in refusals), proc.stderr
    assert "already exists" not in proc.stderr and "built-in model" not in proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("launcher", [{"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"},
                                      {"PMI_SIZE": "4", "PMI_RANK": "1"}], ids=["openmpi", "hydra"])
def test_an_mpi_launch_is_recognised_from_the_environment(launcher, small_cxi, tmp_path, monkeypatch, capsys):
    for name in ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert mpi_launch() is None
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    assert mpi_launch() == (1, int(next(iter(launcher.values()))))
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: started by mpirun/mpiexec as rank 1 of ") and "add --mpi" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_one_rank_or_none_is_no_mpi_launch():
    assert mpi_launch({}) is None
    assert mpi_launch({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}) is None
    assert mpi_launch({"PMI_SIZE": "", "PMI_RANK": "0"}) is None
    assert mpi_launch({"PMI_SIZE": "3", "PMI_RANK": "2"}) == (2, 3)
