#!/usr/bin/env python3
"""CPU time of the sphere fit per frame (issue #19), in this process, stage by stage.

Simulates (or reuses, ``--work``) three files of singles: dim frames on the half pnCCD
(median 1,500 signal photons, beam centre jitter σ = 3 px), bright frames on the full
pnCCD (25,000 photons, fluence spread 0.3) and a hits-only mix of the detect benchmark's
kind (the simulator's defaults), and times :func:`spidarknet.sizing.fit_frame_sphere` on
every frame: process CPU ms per frame (median over ``--repeat`` passes, after a warm-up
pass that compiles), and, where this checkout has them, the shares of the stages (ring
search, pixel fit, assessment, second-particle test).  The frames are read once, before
the clock starts.  It measures whatever ``spidarknet`` is importable, so that an older
checkout can be timed on the same files in the same run::

    python tools/fit_speed.py --work /tmp/fits [--frames 40] [--repeat 3]
    PYTHONPATH=old/tree python tools/fit_speed.py --work /tmp/fits

It also prints each frame's diameter, 1σ and second-particle z to ``--answers CSV``, so
that two checkouts can be compared frame by frame (:func:`compare`, ``--compare A B``).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time

# one BLAS thread, as the fit's worker processes have (spinning BLAS threads would count as
# the fit's CPU time); set before numpy loads its BLAS
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

#: name -> simulate_file options (and seed) of the frames timed
KINDS = {
    "dim": (dict(half_detector=True, photons=1500.0, centre_jitter_px=3.0, fractions={"single": 1.0}), 61),
    "bright": (dict(photons=25000.0, centre_jitter_px=3.0, fluence_sigma=0.3, fractions={"single": 1.0}), 62),
    "hits": (dict(fractions={"single": 1.0}), 63),
}
#: the stages timed, by the function :func:`spidarknet.sizing.fit_frame_sphere` calls for each
STAGES = {"ring search": "_ring_search", "pixel fit": "_fisher_scoring", "assess": "_assess",
          "second particle": "second_particle_z"}


def _internal(name: str):
    """A private name of the sphere fit: from the module of the ``spidarknet.sizing`` package
    that holds it, or from the one module ``sizing.py`` of an older checkout."""
    import importlib
    for module in ("frame_fit", "formfactor", "region", ""):
        try:
            found = importlib.import_module("spidarknet.sizing" + (f".{module}" if module else ""))
        except ImportError:
            continue
        if hasattr(found, name):
            return found
    raise AttributeError(name)


def frames_of(path: str, settings):
    """(pixels, optics, centre) of every frame of ``path``: the fit's inputs, read once."""
    from spidarknet.frames.source import FrameSource
    _Optics, _FitPixels = _internal("_Optics")._Optics, _internal("_FitPixels")._FitPixels
    source = FrameSource([path])
    geometry = source.files[0].geometry
    optics = _Optics.of(geometry, settings.d_max_nm)
    aspect = geometry.pixel_size_m[1] / geometry.pixel_size_m[0]
    r_in, r_out = optics.radius_px(settings.q_min_inv_nm * 1e9), optics.radius_px(settings.q_max_inv_nm * 1e9)
    out, region = [], None
    for chunk in source.chunks(32):
        for i in range(len(chunk)):
            valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[i]
            pixels = _FitPixels(chunk.data[i], valid, chunk.origin, geometry.centre_px, r_in, r_out,
                                       aspect, region=region)
            region = pixels.region
            out.append((pixels, optics, geometry.centre_px, chunk.keys[i].index))
    return out


class _StageClock:
    """Process CPU time spent inside the functions of :data:`STAGES` (wrapped while timed)."""

    def __init__(self, module):
        self.module, self.spent, self.saved = module, {name: 0.0 for name in STAGES}, {}

    def __enter__(self):
        for name, attr in STAGES.items():
            function = getattr(self.module, attr, None)
            if function is None:
                continue
            self.saved[attr] = function

            def timed(*args, _f=function, _name=name, **kwargs):
                c0 = time.process_time()
                try:
                    return _f(*args, **kwargs)
                finally:
                    self.spent[_name] += time.process_time() - c0
            setattr(self.module, attr, timed)
        return self

    def __exit__(self, *exc):
        for attr, function in self.saved.items():
            setattr(self.module, attr, function)


def time_kind(frames, settings, repeat: int) -> tuple[list[float], dict, list]:
    """(CPU ms per frame of each pass, CPU ms per frame of each stage in the last pass,
    the fits of the last pass)."""
    from spidarknet import sizing
    fits = [sizing.fit_frame_sphere(p, o, c, settings) for p, o, c, _ in frames[:4]]   # compile, warm
    passes = []
    for r in range(repeat):
        clock = _StageClock(_internal("fit_frame_sphere")) if r == repeat - 1 else None
        if clock:
            clock.__enter__()
        c0 = time.process_time()
        fits = [sizing.fit_frame_sphere(p, o, c, settings) for p, o, c, _ in frames]
        passes.append((time.process_time() - c0) / len(frames) * 1e3)
        if clock:
            clock.__exit__()
    stages = {name: spent / len(frames) * 1e3 for name, spent in clock.spent.items()}
    if repeat > 1:  # the stage clock's own wrapping costs little; the last pass is left out of the median
        passes = passes[:-1]
    return passes, stages, fits


def compare(a: str, b: str) -> str:
    """Frame-by-frame differences of two ``--answers`` tables."""
    def read(path):
        with open(path, newline="", encoding="utf-8") as handle:
            return {(r["kind"], r["index"]): r for r in csv.DictReader(handle)}
    ra, rb = read(a), read(b)
    lines = []
    for kind in KINDS:
        keys = [k for k in ra if k[0] == kind and k in rb]
        if not keys:
            continue
        same_ok = sum((ra[k]["ok"] == rb[k]["ok"]) for k in keys)
        both = [k for k in keys if ra[k]["ok"] == rb[k]["ok"] == "1"]
        dd = [abs(float(ra[k]["diameter_nm"]) - float(rb[k]["diameter_nm"])) / float(rb[k]["err_nm"]) for k in both]
        dz = [abs(float(ra[k]["z"]) - float(rb[k]["z"])) for k in both
              if math.isfinite(float(ra[k]["z"])) and math.isfinite(float(rb[k]["z"]))]
        de = [abs(float(ra[k]["err_nm"]) / float(rb[k]["err_nm"]) - 1) for k in both]
        lines.append(f"{kind}: {len(keys)} frames, same ok/failed {same_ok}, both sized {len(both)}: max |dd|/σ "
                     f"{max(dd, default=0):.4f}, max |dz| {max(dz, default=0):.4f}, max |d err|/err "
                     f"{max(de, default=0):.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the simulated files (kept, reused)")
    parser.add_argument("--frames", type=int, default=40, help="frames per kind (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (default 3)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--answers", help="CSV of each frame's answers, for --compare")
    parser.add_argument("--compare", nargs=2, metavar="CSV", help="compare two --answers tables and stop")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(*args.compare))
        return 0
    from spidarknet import simulate, sizing
    settings = sizing.SizingSettings()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    print(f"spidarknet from {os.path.dirname(sizing.__file__)}")
    for kind in args.kinds:
        options, seed = KINDS[kind]
        path = os.path.join(args.work, f"{kind}-{seed}-{args.frames}.cxi")
        if not os.path.exists(path):
            simulate.simulate_file(path, args.frames, seed=seed, compression="lzf", **options)
        frames = frames_of(path, settings)
        passes, stages, fits = time_kind(frames, settings, max(args.repeat, 1))
        ok = sum(f.ok for f in fits)
        share = ", ".join(f"{name} {ms:.2f}" for name, ms in stages.items())
        print(f"{kind:7s} {len(frames)} frames ({ok} sized): {statistics.median(passes):.2f} ms CPU per frame "
              f"(passes {' '.join(f'{p:.2f}' for p in passes)}); stages ms: {share}")
        for (_, _, _, index), fit in zip(frames, fits):
            rows.append({"kind": kind, "index": index, "ok": int(fit.ok), "diameter_nm": fit.diameter_nm,
                         "err_nm": fit.diameter_err_nm, "z": fit.second_particle_z, "misfit": fit.misfit})
    if args.answers:
        with open(args.answers, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
