"""Throughput benchmark: detect end to end per backend, against the naive pipeline.

The benchmark makes its own data: a few hundred simulated pnCCD frames tiled into a file
of the requested length (uncompressed, one frame per chunk, as detectors write them), and
untrained weights for the default CPU network (quarter-width yolov2-tiny-spi at 128×128;
speed does not depend on what the weights learned) unless ``--weights`` names trained ones.
Every variant scores the same frames with the same weights in this process's run:

* ``naive``: what users write by hand today: read whole frames with h5py, crop and bin
  with numpy, write PNGs, run ``darknet detector valid``, parse its text output;
* ``darknet-cli``, ``darknet``, ``opencv``: ``spidarknet detect`` with that backend and
  no prefilter (the network alone), 1 process and one per core;
* ``cascade``: ``spidarknet detect`` as it runs by default, OpenCV behind the prefilter
  that keeps background-like frames from the network, 1 process and one per core.
* ``window``: the cascade with the size window ``--size-range 60 75`` (the sphere fit of
  every frame the network lets through, its second-particle test included), one process
  per core.

Each is timed on the mixes of :data:`MIXES`.

Figures: frames/s per stage and in total, the ratio of each to the naive pipeline, the cost
per frame of each stage (ms: read, preprocess, prefilter and the network per frame that
reached it, the sphere fit and its second-particle test in CPU ms per fitted frame), and
the peak resident memory of detect on two file lengths (memory must stay flat).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from spidarknet.core.errors import EngineError, InputError
from spidarknet.core.defaults import LABEL_RANGE_NM


PROBE = """
import json, resource, sys
from spidarknet.frames.options import FrameOptions
from spidarknet.jobs.detect import DetectSettings, detect_to_file
options = json.loads(sys.argv[1])
detect_to_file(DetectSettings(FrameOptions(tuple(options.pop("inputs"))), **options))
code = 0
# VmHWM, not ru_maxrss: the latter carries over the launching process's peak across exec
own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "peak_rss_mb": max(own, children) / 1024.0,
                  "parent_rss_mb": own / 1024.0, "worker_rss_mb": children / 1024.0}))
"""


#: the frame mixes timed: what is in the beam (simulator kinds and shares)
MIXES = {
    "realistic": {"fractions": {"single": 0.1, "empty": 0.6, "tiny": 0.3},
             "about": "10 % single hits, 60 % empty shots, 30 % weak shots of tiny particles"},
    "hits": {"fractions": {"single": 1.0}, "about": "single hits only"},
    "default": {"fractions": None, "about": "the simulator's default mix of six kinds"},
}


def tile_frames(source: Path, out: Path, count: int) -> None:
    """A CXI file of ``count`` frames cycling through ``source``'s, with its geometry and mask."""
    import h5py
    with h5py.File(source, "r") as src, h5py.File(out, "w") as dst:
        for name in ("cxi_version", "entry_1/instrument_1/source_1"):
            src.copy(src[name], dst, name)
        det_src = src["entry_1/instrument_1/detector_1"]
        det = dst.create_group("entry_1/instrument_1/detector_1")
        for name in det_src:
            if name != "data":
                det_src.copy(det_src[name], det, name)
        frames = det_src["data"]
        n, h, w = frames.shape
        data = det.create_dataset("data", shape=(count, h, w), dtype=frames.dtype, chunks=(1, h, w))
        dst["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        truth = dst.create_group("truth")
        for name in src["truth"]:
            values = src["truth"][name][()]
            truth[name] = np.resize(values, count)
        block = frames[:min(n, 64)] if n else None
        for start in range(0, count, n):
            for j in range(0, min(n, count - start), 64):
                block = frames[j:j + 64]
                stop = min(start + j + len(block), count)
                data[start + j:stop] = block[:stop - start - j]


def naive_pipeline(path: Path, model, darknet: Path, workdir: Path) -> dict:
    """The hand-written way: full-frame reads, numpy crop/bin, PNG files, ``detector valid``."""
    import cv2
    import h5py
    s = model.preprocessing
    f = s.crop // s.size
    times = {"read_s": 0.0, "preprocess_s": 0.0, "write_s": 0.0, "inference_s": 0.0}
    images = workdir / "images"
    images.mkdir(parents=True)
    started = time.perf_counter()
    with h5py.File(path, "r") as handle:
        ds = handle["/entry_1/data_1/data"]
        mask = handle["/entry_1/instrument_1/detector_1/mask_shared"][()] == 0
        corner = handle["/entry_1/instrument_1/detector_1/corner_position"][()]
        pixel = handle["/entry_1/instrument_1/detector_1/x_pixel_size"][()]
        cx, cy = int(round(-corner[0] / pixel - 0.5)), int(round(-corner[1] / pixel - 0.5))
        r0, c0 = cy - s.crop // 2 + 1, cx - s.crop // 2 + 1
        names = []
        for i in range(ds.shape[0]):
            t0 = time.perf_counter()
            frame = ds[i]
            t1 = time.perf_counter()
            crop = (frame * mask)[r0:r0 + s.crop, c0:c0 + s.crop].astype(np.float64)
            binned = crop.reshape(s.size, f, s.size, f).sum(axis=(1, 3))
            vmax = max(np.percentile(binned, s.vmax_percentile), s.vmax_floor)
            grey = (np.clip(binned / vmax, 0, 1) * 255).astype(np.uint8)
            t2 = time.perf_counter()
            name = images / f"{i:07d}.png"
            cv2.imwrite(str(name), cv2.merge([grey, grey, grey]))
            names.append(str(name))
            t3 = time.perf_counter()
            times["read_s"] += t1 - t0
            times["preprocess_s"] += t2 - t1
            times["write_s"] += t3 - t2
    (workdir / "valid.txt").write_text("\n".join(names) + "\n")
    (workdir / "results").mkdir()
    (workdir / "obj.names").write_text("single\n")
    (workdir / "obj.data").write_text("classes = 1\nvalid = valid.txt\nnames = obj.names\nresults = results\n")
    model.cfg.save(workdir / "net.cfg")
    t0 = time.perf_counter()
    subprocess.run([str(darknet), "detector", "valid", "obj.data", "net.cfg", str(model.weights)],
                   cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    scores = {}
    for line in (workdir / "results" / "comp4_det_test_single.txt").read_text().splitlines():
        name, prob = line.split()[:2]
        scores[name] = max(scores.get(name, 0.0), float(prob))
    times["inference_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - started
    return times


def run_detect(inputs: list[str], weights: Path, out: Path, options: dict) -> dict:
    """``spidarknet detect`` (:func:`~spidarknet.jobs.detect.detect_to_file` with ``options``,
    settings names) in a fresh process; its timing summary and peak memory."""
    spec = {"inputs": list(inputs), "weights": str(weights), "out": str(out), "force": True, **options}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(spec)], capture_output=True, text=True)
    try:
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):  # it died before the probe's last line
        probe = {}
    if proc.returncode != 0 or probe.get("code") != 0:
        status = probe.get("code", proc.returncode)
        raise EngineError(f"the benchmark's detect run failed (exit status {status}): detect {json.dumps(spec)}; "
                          f"its last output:\n{proc.stderr.strip()[-2000:]}")
    summary = json.loads(out.with_suffix(".json").read_text())
    timing = dict(summary["timing"])
    if "prefilter" not in summary:
        timing.pop("prefilter_s", None)  # no prefilter ran
    rejected = summary.get("prefilter", {}).get("rejected", 0)
    return {**timing, "peak_rss_mb": round(probe["peak_rss_mb"], 1),
            "parent_rss_mb": round(probe["parent_rss_mb"], 1), "worker_rss_mb": round(probe["worker_rss_mb"], 1),
            "jobs": summary.get("jobs"), "frames": summary["frames"], "network_frames": summary["frames"] - rejected}


# -- the benchmark's steps, as ``spidarknet bench`` runs them ----------------------------------

def bench_model(weights: str | None, work: Path):
    """The model timed: ``weights`` with their card, else untrained weights for the default CPU
    network written into ``work`` (speed is the same)."""
    from spidarknet.engine.cfg import configure_network, load_template
    from spidarknet.engine.model import Model, load_model
    from spidarknet.engine.weights import write_random_weights
    from spidarknet.preprocess import Preprocessing
    if weights:
        return load_model(weights)
    cfg = configure_network(load_template("yolov2-tiny-spi"), size=128, width_scale=0.25)
    path = work / "untrained.weights"
    write_random_weights(cfg, path)
    model = Model(weights=path, cfg=cfg, preprocessing=Preprocessing(size=128))
    model.save_card({"note": "untrained weights for benchmarking"})
    return model


def bench_variants(backends: list[str], cores: int) -> list[tuple[str, dict | None]]:
    """(name, detect settings) of every variant timed; None for the naive pipeline."""
    variants: list[tuple[str, dict | None]] = []
    for backend in backends:
        if backend == "naive":
            variants.append(("naive", None))
        elif backend == "darknet-cli":
            variants.append(("darknet-cli", {"backend": "darknet-cli", "jobs": 1, "no_prefilter": True}))
        elif backend == "cascade":
            for jobs in sorted({1, cores}):
                variants.append((f"cascade x{jobs}", {"backend": "opencv", "jobs": jobs}))
        elif backend == "window":
            variants.append((f"window x{cores}", {"backend": "opencv", "jobs": cores, "size_range": list(LABEL_RANGE_NM)}))
        else:
            for jobs in sorted({1, cores}):
                variants.append((f"{backend} x{jobs}", {"backend": backend, "jobs": jobs, "no_prefilter": True}))
    return variants


def mix_files(work: Path, mix: str, distinct: int, frames: int, say: Callable[[str], None]) -> tuple[Path, Path]:
    """The mix's ``distinct`` simulated frames and the ``frames``-long file tiled from them
    (each made once in ``work``)."""
    from spidarknet.simulate import simulate_file
    distinct_path = work / f"distinct-{mix}.cxi"
    if not distinct_path.exists():
        say(f"simulating {distinct} distinct frames of the {mix} mix ...")
        simulate_file(distinct_path, distinct, seed=0, fractions=MIXES[mix]["fractions"])
    data = work / f"frames-{mix}-{frames}.cxi"
    if not data.exists():
        tile_frames(distinct_path, data, frames)
    return distinct_path, data


def time_variants(data: Path, frames: int, mix: str, variants: list[tuple[str, dict | None]], model,
                  darknet: Path, work: Path, say: Callable[[str], None]) -> dict:
    """Each variant's timing on the ``frames`` frames of ``data``, with its ratio to the naive one."""
    runs = {}
    for name, extra in variants:
        say(f"timing {name} on {frames} frames of the {mix} mix ...")
        if extra is None:
            folder = work / "naive"
            shutil.rmtree(folder, ignore_errors=True)
            timing = naive_pipeline(data, model, darknet, folder)
            shutil.rmtree(folder, ignore_errors=True)
            timing["network_frames"] = frames
        else:
            timing = run_detect([str(data)], model.weights, work / "hits.csv", extra)
        timing["frames_per_s"] = frames / timing["total_s"]
        timing["ms_per_frame"] = stage_costs(timing, frames)
        runs[name] = timing
    naive = runs.get("naive")
    for name, timing in runs.items():
        if naive:
            timing["vs_naive"] = naive["total_s"] / timing["total_s"]
    return runs


def stage_costs(timing: dict, frames: int) -> dict:
    """Milliseconds per frame of each stage of a timed run: read, preprocess and prefilter per
    frame (seconds summed over the processes), the network per frame that reached it, the
    sphere fit and its second-particle test in CPU ms per fitted frame (where fits ran)."""
    costs = {}
    for stage, key in (("read", "read_s"), ("preprocess", "preprocess_s"), ("prefilter", "prefilter_s"),
                       ("write", "write_s")):
        if timing.get(key) is not None:
            costs[stage] = 1e3 * timing[key] / max(frames, 1)
    if timing.get("inference_s") is not None:
        costs["network"] = 1e3 * timing["inference_s"] / max(timing.get("network_frames") or frames, 1)
    if timing.get("fitted_frames"):
        costs["fit"] = 1e3 * timing["fit_cpu_s"] / timing["fitted_frames"]
        costs["second_particle"] = 1e3 * timing["second_particle_cpu_s"] / timing["fitted_frames"]
    return {k: round(v, 4) for k, v in costs.items()}


def peak_memory(base: Path, counts: list[int], model, work: Path, cores: int, say: Callable[[str], None]) -> dict:
    """Peak memory of detect (OpenCV, one process per core) on files of ``counts`` frames tiled from ``base``."""
    memory = {}
    for count in counts:
        path = work / f"memory-{count}.cxi"
        say(f"peak memory of detect (opencv, {cores} processes) on a {count}-frame file ...")
        tile_frames(base, path, count)
        timing = run_detect([str(path)], model.weights, work / "mem.csv", {"backend": "opencv"})
        memory[str(count)] = {k: timing[k] for k in ("peak_rss_mb", "parent_rss_mb",
                                                     "worker_rss_mb", "frames_per_s")}
        path.unlink()
    return memory


# -- the whole benchmark, as ``spidarknet bench`` runs it ---------------------------------------

@dataclass
class ThroughputSettings:
    """What ``spidarknet bench`` (the throughput benchmark) is asked to time (its options)."""

    frames: int = 2000                  # frames in the timed file
    distinct: int = 300                 # distinct simulated frames tiled
    weights: str | None = None          # default: untrained weights of the default CPU network
    backends: Sequence[str] = ("naive", "darknet-cli", "darknet", "opencv", "cascade", "window")
    mixes: Sequence[str] = ("realistic", "hits")
    memory_frames: Sequence[int] = (1000, 10000)
    workdir: str | None = None          # keep the files here (default: a temporary folder, removed)


def run_throughput(settings: ThroughputSettings, say: Callable[[str], None] = print) -> dict:
    """Every variant timed on every mix, and the peak memory of detect: the figures
    (:func:`format_table` writes them for people)."""
    from spidarknet.core.pool import core_count
    from spidarknet.engine.locate import find_darknet
    if settings.frames < 1 or settings.distinct < 1:
        raise InputError("--frames and --distinct must be at least 1")
    cores = core_count()
    work = Path(settings.workdir or tempfile.mkdtemp(prefix="spidarknet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"frames": settings.frames, "cores": cores, "mixes": {}, "memory": {}}
    try:
        model = bench_model(settings.weights, work)
        results["network"] = {"weights": str(model.weights), "input": model.cfg.input_size[0]}
        darknet = find_darknet()
        variants = bench_variants(list(settings.backends), cores)
        base = None
        for mix in settings.mixes:
            distinct, data = mix_files(work, mix, settings.distinct, settings.frames, say)
            base = base or distinct
            runs = time_variants(data, settings.frames, mix, variants, model, darknet.path, work, say)
            results["mixes"][mix] = {"about": MIXES[mix]["about"], "runs": runs}
            if not settings.workdir:
                data.unlink()  # 2 GB per 1,000 frames
        results["memory"].update(peak_memory(base, list(settings.memory_frames), model, work, cores, say))
    finally:
        if not settings.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return results


def format_table(results: dict) -> str:
    lines = [f"{results['frames']} frames of 1024x1024 uint16, {results['cores']} cores, network input "
             f"{results['network']['input']}"]

    def rate(timing, key):
        seconds = timing.get(key)
        return f"{results['frames'] / seconds:9.0f}" if seconds else f"{'-':>9}"

    for mix, figures in results["mixes"].items():
        lines += [f"{mix} mix ({figures['about']}):",
                  f"{'variant':<16}{'total f/s':>10}{'read':>9}{'prep':>9}{'filter':>9}{'write':>9}{'infer':>9}"
                  f"{'to net':>9}{'vs naive':>10}{'peak MB':>9}"]
        for name, t in figures["runs"].items():
            ratio = f"{t['vs_naive']:9.1f}x" if "vs_naive" in t else f"{'-':>10}"
            peak = f"{t['peak_rss_mb']:9.0f}" if "peak_rss_mb" in t else f"{'-':>9}"
            lines.append(f"{name:<16}{t['frames_per_s']:10.0f}{rate(t, 'read_s')}{rate(t, 'preprocess_s')}"
                         f"{rate(t, 'prefilter_s')}{rate(t, 'write_s')}{rate(t, 'inference_s')}"
                         f"{t['network_frames']:9d}{ratio}{peak}")
        lines += stage_cost_lines(figures["runs"])
        for name, t in figures["runs"].items():
            alone = name.replace("cascade", "opencv")
            if name.startswith("cascade") and alone in figures["runs"]:
                ratio = t["frames_per_s"] / figures["runs"][alone]["frames_per_s"]
                lines.append(f"{name} vs {alone}: {ratio:.2f}x the frames/s, {t['network_frames']} of "
                             f"{results['frames']} frames reached the network")
    lines.append("stage columns: frames per second of that stage's own time, summed over processes "
                 "(per core when several run); to net: frames that reached the network")
    for count, m in results["memory"].items():
        lines.append(f"peak memory, {count}-frame file: {m['peak_rss_mb']:.0f} MB (largest process; parent "
                     f"{m['parent_rss_mb']:.0f} MB, worker {m['worker_rss_mb']:.0f} MB), {m['frames_per_s']:.0f} frames/s")
    if len(results["memory"]) >= 2:
        peaks = [m["peak_rss_mb"] for m in results["memory"].values()]
        lines.append(f"memory growth long/short: {100 * (peaks[-1] / peaks[0] - 1):+.1f} %")
    return "\n".join(lines)


def stage_cost_lines(runs: dict) -> list[str]:
    """The cost per frame of each stage of every run (ms; see
    :func:`spidarknet.experiments.benchmark.stage_costs`)."""
    names = ("read", "preprocess", "prefilter", "write", "network", "fit", "second_particle")
    heads = ("read", "prep", "filter", "write", "network", "fit cpu", "2nd cpu")
    lines = [f"  {'ms per frame':<16}" + "".join(f"{h:>9}" for h in heads)
             + "   (network: per frame it saw; fit: per frame fitted)"]
    for name, t in runs.items():
        costs = t.get("ms_per_frame", {})
        cells = "".join(f"{costs[n]:9.3f}" if n in costs else f"{'-':>9}" for n in names)
        fitted = f"   {t['fitted_frames']} fitted" if t.get("fitted_frames") else ""
        lines.append(f"  {name:<16}{cells}{fitted}")
    return lines
