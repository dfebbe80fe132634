"""The fast paths give the same answers as the plain ones; the benchmark runs."""

import json
import logging
import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from spidarknet.cli import bench, detect
from spidarknet.core.errors import ConfigError, EngineError
from spidarknet.detection.local import PartialResult
from spidarknet.detection.parallel import DetectionJob, detect_parallel
from spidarknet.engine.model import load_model
from spidarknet.frames.source import FrameSource
from spidarknet.hits import read_hits




@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
def test_region_reads_match_h5py_for_every_layout(small_cxi, tmp_path, layout):
    path = tmp_path / f"{layout}.cxi"
    with h5py.File(small_cxi) as src, h5py.File(path, "w") as dst:
        data = src["/entry_1/data_1/data"][:10]
        kwargs = {"compression": "gzip"} if layout == "gzip" else {}
        dst.create_dataset("/entry_1/data_1/data", data=data, **kwargs)
    roi = (300, 556, 400, 656)
    for source_path in (small_cxi, path):
        chunks = list(FrameSource([str(source_path)], frames=slice(0, 10)).chunks(4, roi=roi))
        got = np.concatenate([c.data for c in chunks])
        assert np.array_equal(got, data[:, 300:556, 400:656])


def test_one_process_and_several_give_identical_hit_lists(untrained_weights, heldout_cxi, tmp_path):
    lists = []
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"j{jobs}.csv"
        assert detect.main([str(heldout_cxi), "--weights", str(untrained_weights), "--out", str(out), "--jobs", jobs,
                            "--chunk", "16", "--quiet"]) == 0
        lists.append(read_hits(out))
        assert json.loads(out.with_suffix(".json").read_text())["jobs"] == int(jobs)
    for other in lists[1:]:
        assert other.keys == lists[0].keys
        assert np.array_equal(other.scores, lists[0].scores) and np.array_equal(other.boxes, lists[0].boxes)


def test_a_detection_workers_failure_is_its_own_error_with_its_traceback(untrained_weights, small_cxi, caplog):
    """A real detection worker refuses its job: the parent raises the worker's ConfigError,
    carrying the worker's exception type and traceback, and logs that traceback."""
    model = load_model(untrained_weights)
    unknown = dict(model.preprocessing.to_dict(), centre_pixel=[1, 2])  # a setting no spidarknet knows
    job = DetectionJob(cfg=model.cfg.dumps(), weights=str(untrained_weights), preprocessing=unknown,
                       threshold=model.threshold, backend="opencv", batch=8, chunk=16)
    with caplog.at_level(logging.DEBUG, logger="spidarknet.core.pool"):
        with pytest.raises(ConfigError, match="unknown preprocessing setting 'centre_pixel'") as info:
            detect_parallel(FrameSource([str(small_cxi)], frames=slice(0, 32)), job, 2)
    assert info.value.worker_type == "spidarknet.core.errors.ConfigError"
    assert "in from_dict" in info.value.worker_traceback and "in serve" in info.value.worker_traceback
    assert "of 2 failed with spidarknet.core.errors.ConfigError" in caplog.text
    assert "in from_dict" in caplog.text


def _pool_workers(serve: bytes) -> list[int]:
    """Process ids of this process's pool workers running ``serve`` (in their command line)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and serve in (proc_dir / "cmdline").read_bytes():
                if int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(proc_dir.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def test_killed_detection_workers_are_an_engine_error_naming_the_signal(untrained_weights, small_cxi):
    """Both workers are killed when the first chunk is reported (each has 4 chunks to do)."""
    model = load_model(untrained_weights)
    job = DetectionJob(cfg=model.cfg.dumps(), weights=str(untrained_weights),
                       preprocessing=model.preprocessing.to_dict(), threshold=model.threshold,
                       backend="opencv", batch=8, chunk=8)
    killed = []

    def kill_all(n):
        if not killed:
            killed.extend(_pool_workers(b"spidarknet.detection.parallel:serve"))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(EngineError, match=r"detection worker [12] of 2 was killed by SIGKILL") as info:
        detect_parallel(FrameSource([str(small_cxi)], frames=slice(0, 60)), job, 2, on_chunk=kill_all)
    assert len(killed) == 2
    # a worker that had finished its share before the kill would keep its frames: a PartialResult
    if isinstance(info.value, PartialResult):
        assert 0 < len(info.value.hits) < 60


def test_ctrl_c_stops_every_detection_worker(untrained_weights, small_cxi):
    """Ctrl-C (here raised where the progress bar is updated) ends the run and its workers."""
    model = load_model(untrained_weights)
    job = DetectionJob(cfg=model.cfg.dumps(), weights=str(untrained_weights),
                       preprocessing=model.preprocessing.to_dict(), threshold=model.threshold,
                       backend="opencv", batch=8, chunk=8)

    def interrupt(n):
        assert len(_pool_workers(b"spidarknet.detection.parallel:serve")) == 2
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect_parallel(FrameSource([str(small_cxi)], frames=slice(0, 60)), job, 2, on_chunk=interrupt)
    assert _pool_workers(b"spidarknet.detection.parallel:serve") == []


@pytest.mark.slow
def test_bench_reports_every_variant_on_every_mix_and_memory(untrained_weights, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--frames", "40", "--distinct", "8", "--memory-frames", "20", "40",
                       "--backends", "naive", "opencv", "cascade", "window", "--weights", str(untrained_weights),
                       "--workdir", str(tmp_path / "w"), "--out", str(out), "--quiet"]) == 0
    figures = json.loads(out.read_text())
    assert set(figures["mixes"]) == {"realistic", "hits"}
    for mix in figures["mixes"].values():
        runs = mix["runs"]
        window = f"window x{figures['cores']}"
        assert set(runs) == {"naive", "opencv x1", "opencv x2", "cascade x1", "cascade x2", window}
        for timing in runs.values():
            assert timing["frames_per_s"] > 0 and timing["vs_naive"] > 0
            assert 0 <= timing["network_frames"] <= 40
            assert timing["ms_per_frame"]["read"] > 0 and timing["ms_per_frame"]["network"] > 0
        # the cost per frame of every stage, the sphere fit and its second-particle test included
        costs = runs[window]["ms_per_frame"]
        assert {"read", "preprocess", "prefilter", "network", "fit", "second_particle"} <= set(costs)
        # the second-particle test runs only on fits inside the window: on hits only, some
        assert 0 <= costs["second_particle"] < costs["fit"]
        assert costs["second_particle"] > 0 or mix is not figures["mixes"]["hits"]
        assert "fit" not in runs["cascade x1"]["ms_per_frame"]
        assert runs["naive"]["vs_naive"] == pytest.approx(1.0)
        assert runs["opencv x1"]["network_frames"] == 40
    # the prefilter keeps the empty shots of the realistic mix from the network, no single hit
    assert figures["mixes"]["realistic"]["runs"]["cascade x1"]["network_frames"] < 30
    assert figures["mixes"]["hits"]["runs"]["cascade x1"]["network_frames"] == 40
    assert set(figures["memory"]) == {"20", "40"}
    assert all(m["peak_rss_mb"] > 10 for m in figures["memory"].values())
    table = capsys.readouterr().out
    assert "vs naive" in table and "memory growth long/short" in table
    assert "cascade x1 vs opencv x1" in table and "realistic mix" in table
    assert "ms per frame" in table and "2nd cpu" in table
