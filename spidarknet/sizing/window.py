"""The size window: the diameters of frames (from a size table or fitted now) and the
verdicts that keep one round particle of the sizes asked for."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.sizing.pool import estimate_sizes
from spidarknet.sizing.second_particle import window_cuts
from spidarknet.sizing.settings import SIZE_WINDOW_MAX_MISFIT, SizingSettings
from spidarknet.sizing.table import read_sizes


def sizes_for(keys: Sequence[FrameKey], sizes_path: str | None = None, *, on_frames=None,
              jobs: int | None = None, source: FrameSource | None = None) -> tuple[np.ndarray, ...]:
    """Diameters (nm, NaN for failed fits), misfits, second-particle z and the z above
    which the window drops each (:func:`~spidarknet.sizing.second_particle.window_cuts`) of
    ``keys``: from a size table that must hold them, or fitted now
    from the frame files the keys name (in ``jobs`` processes, see :func:`estimate_sizes`):
    those of ``source`` when given (files opened once, with its geometry and mask options),
    else opened again from the keys."""
    if sizes_path:
        from spidarknet.core.keys import describe_keys, match_keys
        table = {(r.file, r.index): (r.diameter_nm, r.misfit, r.second_particle_z,
                                     window_cuts(r.second_particle_cut, r.signal_photons))
                 for r in read_sizes(sizes_path)}
        found, missing = match_keys([(k.file, k.index) for k in keys], table)
        if missing:
            raise InputError(f"the size table {sizes_path} lacks {len(missing)} of the {len(keys)} frames "
                             f"above the threshold ({describe_keys(missing)}); size them with 'spidarknet "
                             "size ... --hits' or leave out --sizes to fit them now")
        return tuple(np.array(found, dtype=np.float64).reshape(len(keys), 4).T)
    if not keys:
        return (np.zeros(0, dtype=np.float64),) * 4
    frames = source.select_keys(keys) if source is not None else FrameSource.from_keys(keys)
    results = estimate_sizes(frames, settings=SizingSettings(), on_frames=on_frames,
                             jobs=jobs)
    by_key = {(r.key.file, r.key.index): (r.diameter_nm, r.misfit, r.second_particle_z,
                                          window_cuts(r.second_particle_cut, r.signal_photons))
              for r in results}
    return tuple(np.array([by_key[(os.path.abspath(k.file), k.index)] for k in keys], dtype=np.float64).T)


def window_verdicts(diameters, misfits, second, cuts, size_range: Sequence[float],
                    max_misfit: float = SIZE_WINDOW_MAX_MISFIT) -> tuple[np.ndarray, ...]:
    """The size window's verdicts on fitted frames: (inside, poor misfit, second particle
    (``second`` z above ``cuts``), fitted as one round particle), each a bool array; a NaN
    misfit or z (an older size table) is no verdict."""
    lo, hi = size_range
    diameters = np.asarray(diameters, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        poor = np.isfinite(diameters) & (np.asarray(misfits) > max_misfit)
        several = np.isfinite(diameters) & ~poor & (np.asarray(second) > np.asarray(cuts))
        fitted = np.isfinite(diameters) & ~poor & ~several
        inside = fitted & (diameters >= lo) & (diameters <= hi)
    return inside, poor, several, fitted


def select_size_window(hits, flags: np.ndarray, size_range: Sequence[float], sizes_path: str | None = None, *,
                       on_frames=None, max_misfit: float = SIZE_WINDOW_MAX_MISFIT,
                       jobs: int | None = None, source: FrameSource | None = None) -> tuple[np.ndarray, dict]:
    """``flags`` narrowed to the frames whose diameter lies in ``size_range`` (nm).

    Only flagged frames are sized (from ``sizes_path`` or fitted now).  Failed fits leave
    the selection, and so do frames whose sphere fit has a misfit above ``max_misfit``
    (the pattern is not that of one round particle: several particles, clusters; single
    icosahedra stay below 0.4), or whose pixels show the fringes of a second particle
    (``second_particle_z`` above the fit's ``second_particle_cut``: multiples whose ring profile a
    sphere still explains).  ``jobs`` processes fit them (default: one per core; the
    selection does not depend on it).  Returns the new flags and counts: inside, outside,
    failed (no size, misfit above ``max_misfit`` or a second particle; of these ``misfit``
    and ``second_particle``).
    """
    flags = np.asarray(flags, dtype=bool).copy()
    index = np.flatnonzero(flags)
    diameters, misfits, second, cuts = sizes_for([hits.keys[i] for i in index], sizes_path,
                                                   on_frames=on_frames, jobs=jobs, source=source)
    inside, poor, several, fitted = window_verdicts(diameters, misfits, second, cuts, size_range, max_misfit)
    flags[index[~inside]] = False
    return flags, {"inside": int(inside.sum()), "outside": int((fitted & ~inside).sum()),
                   "failed": int((~fitted).sum()), "misfit": int(poor.sum()),
                   "second_particle": int(several.sum())}
