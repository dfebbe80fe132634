"""The grid search of beam centre and diameter on ring sums that starts the per-pixel fit."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spidarknet.sizing.formfactor import _Optics
from spidarknet.sizing.region import _FitPixels, _kernels
from spidarknet.sizing.settings import SizingSettings


#: the centre search (``centre_search_px``, ``centre_step_px``) counts pixels of this size,
#: the pnCCD's own: a distance on the detector, so that frames of binned (coarser) pixels
#: search the same millimetres, on a grid as fine against their fringes (a 5-pixel step on
#: 2 x 2-binned frames is 0.75 mm, and lost a seventh of the dim singles to a wrong start)
CENTRE_PIXEL_M = 75e-6


def centre_search_in_pixels(pixel_m: float, s: SizingSettings) -> tuple[float, float]:
    """(search radius, coarse grid step) of the beam-centre search in pixels of ``pixel_m``."""
    scale = CENTRE_PIXEL_M / float(pixel_m)
    return s.centre_search_px * scale, s.centre_step_px * scale


#: the grids of :func:`_centre_candidates`, by their arguments (read-only arrays)
_centre_grid_cache: dict = {}


def _centre_candidates(centre_xy: Sequence[float], search_px: float, step_px: float) -> np.ndarray:
    """Grid points (x, y) every ``step_px`` within ``search_px`` of ``centre_xy`` (kept: a
    file's frames search the same grids; read-only)."""
    key = (float(centre_xy[0]), float(centre_xy[1]), float(search_px), float(step_px))
    grid = _centre_grid_cache.get(key)
    if grid is None:
        m = int(math.floor(search_px / step_px + 1e-9))
        offsets = np.arange(-m, m + 1) * step_px
        dx, dy = np.meshgrid(offsets, offsets)
        inside = np.hypot(dx, dy) <= search_px + 1e-9
        grid = np.column_stack([dx[inside] + centre_xy[0], dy[inside] + centre_xy[1]])
        grid.setflags(write=False)
        if len(_centre_grid_cache) >= 4096:
            _centre_grid_cache.clear()
        _centre_grid_cache[key] = grid
    return grid


#: ring tables (diameters x rings) of :func:`_ring_table`: the same for every frame of a file
_ring_table_cache: dict = {}


#: ... and their rows, by (optics, width, rings) and diameter (the fine search's diameters
#: change from frame to frame, around each one's best)
_ring_row_cache: dict = {}


def _ring_table(optics: _Optics, width: float, n_rings: int, diameters: np.ndarray) -> np.ndarray:
    """:meth:`_Optics.ring_shape` of rings ``width`` wide (at their middles), kept (each
    diameter's row is worked out once: the model of one diameter does not depend on the others)."""
    diameters = np.asarray(diameters, dtype=np.float64).reshape(-1)
    key = (optics, float(width), int(n_rings), diameters.tobytes())
    table = _ring_table_cache.get(key)
    if table is None:
        if len(_ring_table_cache) >= 16:
            _ring_table_cache.clear()
        if len(_ring_row_cache) >= 16:
            _ring_row_cache.clear()
        rows = _ring_row_cache.setdefault(key[:3], {})
        missing = [d for d in diameters.tolist() if d not in rows]
        if missing:
            rows.update(zip(missing, optics.ring_shape((np.arange(n_rings) + 0.5) * width, np.array(missing))))
        table = np.ascontiguousarray(np.stack([rows[d] for d in diameters.tolist()]))
        _ring_table_cache[key] = table
    return table


#: the ring search solves (a, b) exactly only in this many of its (centre, diameter) cells
#: (those :func:`_promising_cells` ranks first)
RING_SEARCH_CELLS = 48
#: ... where it has more than this many: a search of fewer cells solves every one (the
#: fine search's 10 centres x 7 diameters: solving all 70 costs less than ranking them)
RING_SEARCH_ALL_CELLS = 2 * RING_SEARCH_CELLS


def _promising_cells(counts: np.ndarray, table: np.ndarray, shape_sums: np.ndarray, n_pixels: float,
                     background: bool, anchor: int, top: int) -> np.ndarray:
    """The ``top`` (centre, diameter) cells of the ring search with the least negative
    log-likelihood by a quick estimate: the scale ``a`` profiled out exactly (``a = ΣC /
    (S + t N)`` for ``t = b/a``), ``t`` tried at ¼, 1 and 4 times the best one of each
    diameter at the centre ``anchor`` (a parabola in log t between), so that the ring sums
    of all centres meet each table of logarithms in one matrix product.  (m, 2) indices;
    all cells where there are at most :data:`RING_SEARCH_ALL_CELLS`."""
    n_centres, n_diameters = shape_sums.shape
    if n_centres * n_diameters <= max(top, RING_SEARCH_ALL_CELLS):
        return np.argwhere(np.ones((n_centres, n_diameters), dtype=bool))
    total = counts.sum(axis=1)[:, None]
    if background:
        cells = np.column_stack([np.full(n_diameters, anchor), np.arange(n_diameters)])
        fit = _kernels().ring_cells(counts, table, shape_sums, cells, n_pixels, True, 3, with_nll=False)
        t = np.clip(fit[:, 1] / np.maximum(fit[:, 0], 1e-300), 1e-300, 1e300)
        m = np.array([0.25, 1.0, 4.0])[:, None, None]   # the three tables in one product
        logs = np.log(np.maximum(table + m * t[:, None], 1e-300)).reshape(-1, table.shape[1])
        f0, f1, f2 = (total * np.log(np.maximum(shape_sums + (m * n_pixels) * t, 1e-300))
                      - (counts @ logs.T).reshape(n_centres, 3, n_diameters).transpose(1, 0, 2))
        curvature = f0 - 2.0 * f1 + f2
        inner = (f1 <= f0) & (f1 <= f2) & (curvature > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = np.where(inner, f1 - (f2 - f0) ** 2 / (8.0 * curvature), np.minimum(f0, f2))
    else:
        estimate = total * np.log(np.maximum(shape_sums, 1e-300)) - counts @ np.log(np.maximum(table, 1e-300)).T
    estimate = estimate.ravel()
    estimate[np.isnan(estimate)] = np.inf   # last (numpy's nan_to_num costs several times this)
    best = np.argpartition(estimate, top)[:top]
    return np.column_stack(np.unravel_index(best, (n_centres, n_diameters)))


def _ring_search(pixels: _FitPixels, optics: _Optics, s: SizingSettings, centres, diameters: np.ndarray,
                 width: float, newton_steps: int, ring_limit_px: float, *, anchor_xy: Sequence[float],
                 top: int = RING_SEARCH_CELLS):
    """The best (centre, diameter, a, b) of ``centres`` x ``diameters`` by the Poisson
    likelihood of the photons summed in rings ``width`` wide (out to ``ring_limit_px``)
    about each centre, with the best scale and background of each: solved exactly
    (:func:`spidarknet.sizing_kernels.ring_cells`) in the ``top`` cells that a quick
    estimate ranks first (:func:`_promising_cells`, anchored at the centre nearest
    ``anchor_xy``); ties go to the first centre, then the first diameter."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    n_rings = int(math.ceil(ring_limit_px / width)) + 1
    table = _ring_table(optics, width, n_rings, diameters)
    counts = pixels.ring_photons(centres, width, n_rings)
    shape_sums = pixels.ring_model_sums(centres, width, table, (optics, n_rings, table.shape[0], diameters.tobytes()))
    anchor = int(np.argmin(np.hypot(centres[:, 0] - anchor_xy[0], centres[:, 1] - anchor_xy[1])))
    cells = _promising_cells(counts, table, shape_sums, pixels.n_pixels, s.background, anchor, top)
    fit = _kernels().ring_cells(counts, table, shape_sums, cells, pixels.n_pixels, s.background, newton_steps)
    best = np.lexsort((cells[:, 1], cells[:, 0], fit[:, 2]))[0]
    i, k = cells[best]
    return tuple(float(v) for v in centres[i]), float(diameters[k]), float(fit[best, 0]), float(fit[best, 1])
