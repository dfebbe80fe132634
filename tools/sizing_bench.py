#!/usr/bin/env python3
"""Sizing benchmark on simulated dim, half-detector single hits.

Simulates single spheres and icosahedra (``fractions={"single": 1}``) on the half pnCCD
(one half dead, as in the 2018 PR772 run) with the beam centre jittering by σ = 5 px from
shot to shot, at three photon levels (median signal photons of a single 700, 2,000 and
6,000), sizes every frame with :func:`spidarknet.sizing.estimate_sizes` and writes a
Markdown table per kind and photon bin:

* **sized**: share of frames with a diameter;
* **p90 |err|**: 90th percentile of |fitted − true| (nm) over the sized frames;
* **covered**: share of sized frames whose |error| ≤ the stated 1σ uncertainty.

Photons are the visible signal photons of a frame: ``/truth/photons`` less the expected
background (0.002 photons per usable pixel).  The truth of a sphere is its diameter; that
of an icosahedron its volume-equivalent diameter times the sizing module's
``ICOSAHEDRON_SPHERE_DIAMETER_RATIO`` (the fringe-equivalent sphere, see the README;
1 if the module does not define it).

Seeds 9001-9003 (evaluation); the tests use others.  It measures whatever ``spidarknet``
is importable, so an older checkout can be benchmarked with ``PYTHONPATH=old/tree``::

    python tools/sizing_bench.py --out sizing_bench.md [--frames 150] [--work DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import h5py
import numpy as np

from spidarknet import sizing
from spidarknet.frames.source import FrameSource
import spidarknet.simulate as simulate

#: (median photons of a single, seed) of the three levels
LEVELS = ((700, 9001), (2000, 9002), (6000, 9003))
JITTER_PX = 5.0
BINS = ((0.0, 1000.0, "< 1,000"), (1000.0, 5000.0, "1,000-5,000"), (5000.0, math.inf, "> 5,000"))


def simulate_level(path: str, count: int, photons: float, seed: int) -> None:
    """Half-detector singles, median ``photons``, σ = 5 px centre jitter (LZF frames)."""
    simulate.simulate_file(path, count, seed=seed, half_detector=True, fractions={"single": 1.0},
                           compression="lzf", photons=photons, centre_jitter_px=JITTER_PX)


def truth_of(path: str) -> dict:
    with h5py.File(path, "r") as f:
        truth = {name: f["truth"][name][()] for name in ("shape", "diameter_nm", "photons")}
        mask = f["/entry_1/instrument_1/detector_1/mask_shared"][()]
    background = simulate.BACKGROUND_PHOTONS_PER_PIXEL * np.count_nonzero(mask == 0)
    truth["signal_photons"] = truth["photons"] - background
    return truth


def rows_for(path: str) -> list[dict]:
    """One dict per frame: kind, photons, true and fitted diameter, uncertainty."""
    truth = truth_of(path)
    ratio = getattr(sizing, "ICOSAHEDRON_SPHERE_DIAMETER_RATIO", 1.0)
    results = sizing.estimate_sizes(FrameSource([path]))
    rows = []
    for r in results:
        i = r.key.index
        kind = truth["shape"][i].decode()
        true = float(truth["diameter_nm"][i]) * (ratio if kind == "icosahedron" else 1.0)
        rows.append({"kind": kind, "photons": float(truth["signal_photons"][i]), "true_nm": true,
                     "fit_nm": r.diameter_nm, "sigma_nm": getattr(r, "diameter_err_nm", float("nan")),
                     "reason": r.reason})
    return rows


def calibrate(work: str, frames: int) -> str:
    """The two constants of :mod:`spidarknet.sizing` measured on icosahedra (seeds 5001-5004):
    the ratio of the fitted to the volume-equivalent diameter (median) and the shape term
    that makes ±1σ cover the error of 68 % of them."""
    fit, true, stat, misfit, kinds = [], [], [], [], []
    for (photons, _), seed in zip(LEVELS + LEVELS[1:2], (5001, 5002, 5003, 5004)):
        path = os.path.join(work, f"calibration-{seed}-{frames}.cxi")
        if not os.path.exists(path):
            simulate_level(path, frames, photons, seed)
        truth = truth_of(path)
        for r in sizing.estimate_sizes(FrameSource([path]), keep_profiles=True):
            i = r.key.index
            if r.ok and truth["signal_photons"][i] >= 500:
                kinds.append(truth["shape"][i].decode())
                fit.append(r.diameter_nm)
                true.append(float(truth["diameter_nm"][i]))
                stat.append(r.fit.diameter_stat_err_m * 1e9)
                misfit.append(max(r.misfit, 0.0))
    fit, true, stat, misfit = (np.array(v) for v in (fit, true, stat, misfit))
    ico = np.array(kinds) == "icosahedron"
    ratio = float(np.median(fit[ico] / true[ico]))
    truth_nm = np.where(ico, ratio * true, true)
    err = np.abs(fit - truth_nm)

    def coverage(kappa, select):
        sigma = np.hypot(stat, kappa * truth_nm * np.sqrt(misfit))
        return float(np.mean(err[select] <= sigma[select]))

    lo, hi = 0.0, 0.2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if coverage(mid, ico) < 0.68 else (lo, mid)
    kappa = 0.5 * (lo + hi)
    return (f"ICOSAHEDRON_SPHERE_DIAMETER_RATIO = {ratio:.4f}   # {int(ico.sum())} icosahedra\n"
            f"SHAPE_ERROR_PER_ROOT_MISFIT = {kappa:.4f}\n"
            f"coverage with it: icosahedra {coverage(kappa, ico):.2f}, spheres {coverage(kappa, ~ico):.2f} "
            f"(without: {coverage(0.0, ico):.2f}, {coverage(0.0, ~ico):.2f})\n")


def table(rows: list[dict]) -> str:
    lines = ["| kind | photons | frames | sized | p90 abs err (nm) | covered by ±1σ |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for kind in ("sphere", "icosahedron"):
        for lo, hi, name in BINS:
            group = [r for r in rows if r["kind"] == kind and lo <= r["photons"] < hi]
            if not group:
                continue
            sized = [r for r in group if math.isfinite(r["fit_nm"])]
            err = np.array([abs(r["fit_nm"] - r["true_nm"]) for r in sized])
            sigma = np.array([r["sigma_nm"] for r in sized])
            p90 = f"{np.percentile(err, 90):.2f}" if len(err) else "–"
            covered = (f"{100.0 * np.mean(err <= sigma):.0f} %"
                       if len(err) and np.all(np.isfinite(sigma)) else "–")
            lines.append(f"| {kind} | {name} | {len(group)} | {100.0 * len(sized) / len(group):.0f} % "
                         f"| {p90} | {covered} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Markdown table to write")
    parser.add_argument("--frames", type=int, default=150, help="frames per fluence level (default 150)")
    parser.add_argument("--work", help="folder for the simulated files (default: a temporary one)")
    parser.add_argument("--label", default="", help="a line naming what was measured")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure the icosahedron ratio and the shape term instead (seeds 5001-5004)")
    args = parser.parse_args(argv)
    if args.calibrate:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or tmp
            os.makedirs(work, exist_ok=True)
            text = calibrate(work, args.frames)
        with open(args.out + ".part", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(args.out + ".part", args.out)
        print(text, end="")
        return 0
    if os.path.exists(args.out):
        print(f"error: {args.out} exists; choose another --out", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp
        os.makedirs(work, exist_ok=True)
        rows, t_fit, t_cpu = [], 0.0, 0.0
        for photons, seed in LEVELS:
            path = os.path.join(work, f"singles-half-{seed}-{args.frames}.cxi")
            if not os.path.exists(path):
                simulate_level(path, args.frames, photons, seed)
            t0, c0 = time.perf_counter(), time.process_time()
            rows += rows_for(path)
            t_fit += time.perf_counter() - t0
            t_cpu += time.process_time() - c0
    failures: dict[str, int] = {}
    for r in rows:
        if not math.isfinite(r["fit_nm"]):
            key = r["reason"].split(":")[0]
            failures[key] = failures.get(key, 0) + 1
    text = "\n".join([f"# Sizing benchmark {args.label}".rstrip(), "",
                      f"Half pnCCD, singles only, centre jitter σ = {JITTER_PX:g} px, "
                      f"{len(rows)} frames (seeds {', '.join(str(s) for _, s in LEVELS)}), "
                      f"{t_fit / max(len(rows), 1) * 1e3:.0f} ms per frame ({t_cpu / max(len(rows), 1) * 1e3:.0f} "
                      "ms of CPU).", "",
                      table(rows), "",
                      "Failures: " + (", ".join(f"{k}: {v}" for k, v in failures.items()) or "none"), ""])
    tmp_out = args.out + ".part"
    with open(tmp_out, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp_out, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
