"""Frames of files sized in worker processes (:func:`estimate_sizes`) or in this one
(:func:`size_frames`), and the one-line summary of the results."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np

from spidarknet.core.defaults import SIZE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.pool import Pool, Result, Stop, core_count
from spidarknet.frames.source import FileInfo, FrameKey, FrameSource, Geometry
from spidarknet.sizing.background import (BACKGROUND_SAMPLE_FRAMES, FileBackground, RadialBackground,
                                          radial_background)
from spidarknet.sizing.centre_search import centre_search_in_pixels
from spidarknet.sizing.formfactor import subpixels_for
from spidarknet.sizing.frame_fit import SizeResult, fit_roi, r_max_px, size_frame
from spidarknet.sizing.second_particle import ROW_STRIPE_MIN_FITS
from spidarknet.sizing.settings import SizingSettings


def default_jobs() -> int:
    """Processes a size fit uses by default: one per core this process may run on."""
    return core_count()


#: frames per task handed to a sizing worker (small: even shares of a few hundred hits)
_FRAMES_PER_TASK = 4


#: fit regions kept by a worker process from task to task (see :func:`size_frame`)
_worker_regions: dict = {}


#: what the files hold beside their particles (:func:`file_background`), by file, dataset, geometry, read options, mask
#: and settings
_background_cache: dict = {}


def file_background(source: FrameSource, info: FileInfo, settings: SizingSettings) -> FileBackground:
    """What the file ``info`` of ``source`` holds beside its particles (:class:`FileBackground`),
    from :data:`BACKGROUND_SAMPLE_FRAMES` frames spread over all its frames, whatever
    ``source`` selects of it (so every process, shard and selection finds the same), read
    with the fit's region: its background shape (its beamline and injector scatter:
    :func:`~spidarknet.sizing.background.radial_background`; None for a flat background or
    where the settings fit none) and whether its rows carry stripes (the fits of those
    frames: :func:`_row_band_ratio`; only on coarse pixels, where the fit integrates over
    sub-pixels (binned frames, the AGIPD): on fine ones no development file, clean or
    measured-like, came near the stripes' ratio (at most 1.51 against 1.8) and the 64 fits
    cost 0.5-1.1 s of CPU on a pnCCD file, 7-14 s at 0.3 m and 1.2 keV, before any
    worker starts).  Kept per file, geometry, read options, mask and
    settings."""
    mask = b"" if info.mask_shared is None else hashlib.sha1(np.packbits(info.mask_shared).tobytes()).digest()
    # the geometry (the shape's rings are about its centre) and how a run is read (its photons)
    key = (info.path, info.dataset, info.n_frames, info.geometry, repr(getattr(source, "options", None)), mask,
           dataclasses.astuple(settings))
    fit_shape = settings.background and settings.background_shape
    test_stripes = subpixels_for(info.geometry, settings.d_max_nm) > 1
    if not (fit_shape or test_stripes):
        return FileBackground()   # nothing to find: no frame read
    if key not in _background_cache:
        if len(_background_cache) >= 64:
            _background_cache.clear()
        n = info.n_frames
        wanted = np.unique(np.linspace(0, n - 1, min(n, BACKGROUND_SAMPLE_FRAMES)).round().astype(np.int64))
        sample = source.any_frames(info, wanted)
        chunks = list(sample.chunks(len(wanted), roi=lambda found: fit_roi(found, settings)))
        frames = np.concatenate([c.data for c in chunks])
        valid = (chunks[0].valid if all(c.valid.ndim == 2 for c in chunks)
                 else np.concatenate([np.broadcast_to(c.valid, c.data.shape) for c in chunks]))
        shape = None
        if fit_shape:
            reach = centre_search_in_pixels(info.geometry.pixel_size_m[0], settings)[0]
            px, py = info.geometry.pixel_size_m
            shape = radial_background(frames, valid, chunks[0].origin, info.geometry.centre_px,
                                      r_max_px(info.geometry, settings) + reach + 2.0, py / px,
                                      settings.adu_per_photon)
        keys = [k for c in chunks for k in c.keys]
        stripes = (_row_band_ratio(frames, valid, chunks[0].origin, info.geometry, keys, settings, shape)
                   if test_stripes else (float("nan"), 0))
        _background_cache[key] = FileBackground(shape, *stripes)
    return _background_cache[key]


def _row_band_ratio(frames: np.ndarray, valid: np.ndarray, origin: tuple[int, int], geometry: Geometry,
                    keys: Sequence[FrameKey], settings: SizingSettings,
                    shape: RadialBackground | None) -> tuple[float, int]:
    """(the median :func:`~spidarknet.sizing.second_particle.row_band_ratio` of the fits of
    a file's sampled ``frames`` that pass (NaN where fewer than
    :data:`~spidarknet.sizing.second_particle.ROW_STRIPE_MIN_FITS`), how many).  Full fits
    whatever the size window (it would leave out the second-particle maps of the frames it
    drops: the decision would depend on the window)."""
    regions: dict = {}
    ratios = []
    settings = dataclasses.replace(settings, window_nm=None)
    for i, key in enumerate(keys):
        result = size_frame(frames[i], valid if valid.ndim == 2 else valid[i], geometry, key, settings,
                            origin=origin, with_profile=False, regions=regions, background_shape=shape,
                            row_stripes=None)
        if result.ok and np.isfinite(result.fit.row_band_ratio):
            ratios.append(result.fit.row_band_ratio)
    return (float(np.median(ratios)) if len(ratios) >= ROW_STRIPE_MIN_FITS else float("nan")), len(ratios)


def _size_frames(data: np.ndarray, valid: np.ndarray, origin: tuple[int, int], geometry: Geometry,
                 keys: Sequence[FrameKey], settings: SizingSettings, keep_profiles: bool,
                 background: FileBackground | None = None, regions: dict | None = None) -> list[SizeResult]:
    """:func:`size_frame` of consecutive frames of one file (``valid`` (h, w) or (n, h, w));
    ``background``: what the file holds beside its particles (:func:`file_background`; None:
    a flat background and no row stripes)."""
    shape = None if background is None else background.shape
    stripes = background is not None and background.row_stripes
    regions = _worker_regions if regions is None else regions
    results = []
    for i, key in enumerate(keys):
        result = size_frame(data[i], valid if valid.ndim == 2 else valid[i], geometry, key, settings,
                            origin=origin, with_profile=keep_profiles, regions=regions,
                            background_shape=shape, row_stripes=stripes)
        if not keep_profiles:
            result.profile = result.q_inv_m = None
            result.fit = None
        results.append(result)
    return results


def size_frames(data: np.ndarray, valid: np.ndarray, origin: tuple[int, int], geometry: Geometry,
                keys: Sequence[FrameKey], settings: SizingSettings, regions: dict,
                background: FileBackground | None = None) -> list[SizeResult]:
    """The fits of frames already read (a region of ``data`` whose corner is ``origin``), in
    this process; ``regions``, kept from call to call, keeps each mask's fit region;
    ``background``: what the file holds beside its particles (:func:`file_background`)."""
    return _size_frames(data, valid, origin, geometry, keys, settings.check(), False, background, regions=regions)


def _serve(conn) -> None:
    """A sizing worker (run by :class:`~spidarknet.core.pool.Pool`): one :class:`Result` of
    :func:`_size_frames` per task, until :class:`Stop`.  One BLAS thread each (the pool's
    default): the workers already fill the cores."""
    conn.recv()  # its job: nothing beyond the tasks
    while not isinstance(task := conn.recv(), Stop):
        conn.send(Result(_size_frames(*task)))


def _sources_to_size(source: FrameSource | Sequence[FrameSource],
                     keys: Sequence[FrameKey] | None) -> list[FrameSource]:
    """The sources of :func:`estimate_sizes`, their geometry checked, cut down to ``keys``."""
    sources = [source] if isinstance(source, FrameSource) else list(source)
    for src in sources:
        for info in src.files:
            try:
                info.geometry.require_scattering()
            except InputError as exc:
                raise InputError(f"{info.path}: {exc}") from None
    if keys is not None:
        keys = list(keys)
        if len(sources) == 1:
            known = {(info.path, info.dataset) for info in sources[0].files}
            unknown = [k for k in dict.fromkeys((key.file, key.dataset) for key in keys) if k not in known]
            if unknown:
                raise InputError(f"{len(unknown)} files of the frames to size are not among the "
                                 f"inputs, e.g. {unknown[0][0]}")
        sources = [src.select_keys(keys) for src in sources]
    return sources


def estimate_sizes(source: FrameSource | Sequence[FrameSource], keys: Sequence[FrameKey] | None = None,
                   settings: SizingSettings | None = None, *, chunk_frames: int = SIZE_CHUNK_FRAMES,
                   keep_profiles: bool = False,
                   on_frames: Callable[[int], object] | None = None,
                   jobs: int | None = None) -> list[SizeResult]:
    """Size every frame of ``source`` (or only ``keys``, which must be frames of it).

    Returns one :class:`SizeResult` per frame in the source's order; failed fits are
    results with a ``reason``.  Reads only the square around each file's beam centre that
    the fit needs.  ``keep_profiles`` keeps each frame's radial profile and q (for plots).
    ``jobs`` processes fit the frames (default :func:`default_jobs`; 1: in this process):
    this process reads the frames, a few at a time, and the workers fit them, each frame
    exactly as in one process, so the results do not depend on ``jobs``.
    """
    s = (settings or SizingSettings()).check()
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1 process for the size fits")
    sources = _sources_to_size(source, keys)

    def region(info: FileInfo):
        return fit_roi(info, s)

    def tasks():
        for src in sources:
            for chunk in src.chunks(chunk_frames, roi=region):
                background = file_background(src, chunk.info, s)
                for i in range(0, len(chunk), _FRAMES_PER_TASK if jobs > 1 else len(chunk)):
                    part = slice(i, i + _FRAMES_PER_TASK) if jobs > 1 else slice(None)
                    valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[part]
                    yield (chunk.data[part], valid, chunk.origin, chunk.info.geometry, chunk.keys[part],
                           s, keep_profiles, background)

    n_frames = sum(len(src) for src in sources)
    workers = min(jobs, -(-n_frames // _FRAMES_PER_TASK))
    results: list[SizeResult] = []
    if workers <= 1:
        regions: dict = {}
        for task in tasks():
            results.extend(_size_frames(*task, regions=regions))
            if on_frames is not None:
                on_frames(len(task[4]))
        return results
    with Pool("spidarknet.sizing.pool:_serve", [None] * workers, label="size-fit worker {number} of {count}",
              died_hint="; run again with --jobs 1 to see why", quick_exit=True) as pool:
        for part in pool.map(tasks()):  # in the order of the tasks, two in flight per worker
            results.extend(part)
            if on_frames is not None:
                on_frames(len(part))
    return results


def summary_line(results: Sequence[SizeResult]) -> str:
    """``N frames sized: M fitted (median D nm), K failed (reasons)``."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    text = f"{len(results)} frames sized: {len(ok)} fitted"
    if ok:
        d = np.array([r.diameter_nm for r in ok])
        err = np.array([r.diameter_err_nm for r in ok])
        text += (f" (diameter median {np.median(d):.1f} nm, "
                 f"{np.percentile(d, 10):.1f}-{np.percentile(d, 90):.1f} nm for 80 %, "
                 f"median 1σ {np.nanmedian(err) if np.isfinite(err).any() else float('nan'):.2f} nm)")
    if failed:
        kinds = defaultdict(int)
        for r in failed:
            kinds[r.reason.split(":")[0]] += 1
        text += f", {len(failed)} failed (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"
    return text
