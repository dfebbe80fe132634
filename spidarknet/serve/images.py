"""The pictures both pages show: a frame (log scale, mask shaded, the network's box) and a
frame's radial profile with its sphere fit.  Both are drawn on the server (Pillow, matplotlib)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spidarknet.frames.source import FileInfo
from spidarknet.report import plot

#: masked pixels are painted this colour, so what the detector lacks is never read as "dark"
MASKED_RGB = (70, 110, 150)
BOX_RGB = (0, 230, 118)


def read_frame(info: FileInfo, index: int, region: tuple[slice, slice] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(photons as float, usable pixels) of frame ``index`` of ``info``, or of its ``region``
    (rows, columns: only that part is read); the file may still be being written (it is opened
    for SWMR reading where it allows)."""
    import h5py
    rows, columns = region if region is not None else (slice(None), slice(None))
    try:
        handle = h5py.File(info.path, "r", swmr=True)
    except (OSError, ValueError):
        handle = h5py.File(info.path, "r")
    with handle:
        frame = np.asarray(handle[info.dataset][index, rows, columns], dtype=np.float64)
        valid = (np.ones(frame.shape, dtype=bool) if info.mask_shared is None
                 else info.mask_shared[rows, columns].copy())
        if info.mask_dataset:
            valid &= np.asarray(handle[info.mask_dataset][index, rows, columns]) == 0
    return frame, valid & np.isfinite(frame)


def frame_picture(photons: np.ndarray, valid: np.ndarray, box: Sequence[float] | None = None,
                  side_px: int = 384, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(side, side·w/h, 3) uint8: ``photons`` on a log scale (to the 99.8th percentile of the
    usable pixels), pixels of the mask shaded, the network's ``box`` (x, y, w, h: top-left
    corner and size in frame pixels; ``origin`` is the (row, column) of ``photons[0, 0]``
    in the frame) drawn."""
    import cv2
    from PIL import Image, ImageDraw
    image = np.log10(1.0 + np.clip(np.nan_to_num(photons), 0.0, None))
    shown = image[valid]
    top = max(float(np.percentile(shown, 99.8)) if shown.size else 1.0, math.log10(2.0))
    scaled = np.where(valid, np.clip(image / top, 0.0, 1.0), 0.0).astype(np.float32)
    h, w = photons.shape
    size = (max(1, round(side_px * w / max(h, w))), max(1, round(side_px * h / max(h, w))))
    small = cv2.resize(scaled, size, interpolation=cv2.INTER_AREA)
    masked = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA) < 0.5
    rgb = plot.colormap(small, "inferno")
    rgb[masked] = MASKED_RGB
    picture = Image.fromarray(rgb, "RGB")
    if box is not None and all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
        sx, sy = size[0] / w, size[1] / h
        x0, y0 = box[0] - origin[1], box[1] - origin[0]
        ImageDraw.Draw(picture).rectangle([x0 * sx, y0 * sy, (x0 + box[2]) * sx, (y0 + box[3]) * sy],
                                          outline=BOX_RGB, width=2)
    return np.asarray(picture)


def region_around(shape: tuple[int, int], centre_xy: Sequence[float], half_px: float) -> tuple[slice, slice]:
    """(rows, columns) of the square of half-side ``half_px`` around ``centre_xy`` (column, row),
    clipped to a frame of ``shape``: what a pattern shows, without the empty detector."""
    half = int(math.ceil(half_px))
    r0, c0 = max(int(round(centre_xy[1])) - half, 0), max(int(round(centre_xy[0])) - half, 0)
    return slice(r0, min(r0 + 2 * half, shape[0])), slice(c0, min(c0 + 2 * half, shape[1]))


def around_centre(photons: np.ndarray, valid: np.ndarray, centre_xy: Sequence[float],
                  half_px: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(photons, valid, origin) of :func:`region_around` the centre."""
    rows, columns = region_around(photons.shape, centre_xy, half_px)
    return photons[rows, columns], valid[rows, columns], (rows.start, columns.start)


def profile_figure(result, geometry, width_px: int = 460, height_px: int = 300):
    """The radial profile (photons per pixel against q) of a :class:`~spidarknet.sizing.SizeResult`
    with the fitted sphere's model over it (when the fit gave a size; ``geometry`` is the
    frame's file's); a matplotlib figure."""
    from spidarknet.core.scattering import radius_for_q_m, sphere_intensity
    from spidarknet.sizing import pixel_weight
    with plot.figure(width_px, height_px) as (fig, ax):
        profile = result.profile
        if profile is None or result.q_inv_m is None:
            ax.text(0.5, 0.5, "no profile", ha="center", transform=ax.transAxes)
            return fig
        q_nm = result.q_inv_m * 1e-9
        mean = profile.mean
        use = np.isfinite(mean) & (profile.n_pixels > 0) & (q_nm > 0)
        ax.semilogy(q_nm[use], np.maximum(mean[use], 1e-3), ".", ms=3, color=plot.DARK, label="frame")
        fit = result.fit
        if fit is not None and result.ok and np.isfinite(fit.diameter_m):
            q = np.linspace(q_nm[use].min(), q_nm[use].max(), 600) * 1e9
            distance, wavelength = geometry.distance_m, geometry.wavelength_m
            rho = np.array([radius_for_q_m(v, distance, wavelength) for v in q])
            model = fit.scale * pixel_weight(rho, distance) * sphere_intensity(q, fit.diameter_m) + fit.background
            ax.semilogy(q * 1e-9, np.maximum(model, 1e-3), "-", color=plot.ORANGE, lw=1.4,
                        label=f"sphere {result.diameter_nm:.1f} ± {result.diameter_err_nm:.1f} nm")
        ax.set_xlabel("q (nm⁻¹)")
        ax.set_ylabel("photons per pixel")
        ax.set_title("radial profile and sphere fit" if result.ok else "radial profile (no size)")
        ax.legend(loc="upper right")
    return fig

