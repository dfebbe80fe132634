"""The voxel grid of a reconstruction: its q vectors, its valid voxels, the radius of each
voxel, and reading a volume from a ``spidarknet reconstruct`` folder."""

from __future__ import annotations

import os

import numpy as np

from spidarknet.core.errors import InputError


def voxel_q(n: int, q_per_voxel_inv_nm: float) -> np.ndarray:
    """The (n, n, n, 3) q vectors (nm⁻¹) of the voxels, q = 0 at index ``n // 2``."""
    axis = (np.arange(n) - n // 2) * float(q_per_voxel_inv_nm)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def valid_voxels(volume: np.ndarray) -> np.ndarray:
    """Voxels that hold a measurement: finite and > 0 (Dragonfly leaves voxels no pixel
    reached at 0; some tools write -1; a NaN marks voxels :func:`align` rotated in from
    outside the measured volume)."""
    v = np.asarray(volume)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > 0)


def _check_cube(volume: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(volume, dtype=np.float64)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise InputError(f"{what} must be a cubic n x n x n volume, got shape {v.shape}")
    return v


def _radius_voxels(n: int) -> np.ndarray:
    axis = np.arange(n) - n // 2
    return np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(intensity, q_per_voxel_inv_nm) of a reconstruction folder or its ``intensity.h5``
    (:func:`spidarknet.reconstruct.read_intensity`), the intensity checked to be a cube."""
    from spidarknet.reconstruct.results import read_intensity
    volume, dq = read_intensity(path)
    return _check_cube(volume, str(path)), dq
