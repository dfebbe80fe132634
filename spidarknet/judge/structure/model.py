"""The model particle a simulated selection should give (:class:`TruthModel`) and its true
intensity, at given q vectors or on a reconstruction's voxel grid."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.scattering import sphere_intensity
from spidarknet.judge.structure.icosahedron import icosahedron_amplitude

#: the particle shapes with a truth structure
SHAPES = ("sphere", "icosahedron")
#: at most this many representative sizes for an icosahedron's size average
MAX_SIZE_SAMPLES = 4


def _size_samples(diameter_nm: float, sizes_nm, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Representative sizes and weights (∝ D⁶, normalised): all sizes, or ``limit`` quantile
    bins of them (each at its D⁶-weighted mean size)."""
    if sizes_nm is None:
        return np.array([float(diameter_nm)]), np.array([1.0])
    sizes = np.sort(np.asarray(sizes_nm, dtype=np.float64).ravel())
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if sizes.size == 0:
        raise InputError("sizes_nm holds no positive size; give the selection's particle diameters in nm")
    weights = sizes ** 6
    if limit is not None and sizes.size > limit:
        parts = np.array_split(np.arange(sizes.size), limit)
        reps = np.array([np.sum(sizes[p] * weights[p]) / np.sum(weights[p]) for p in parts])
        weights = np.array([np.sum(weights[p]) for p in parts])
        sizes = reps
    return sizes, weights / weights.sum()


def truth_values(shape: str, diameter_nm: float, q_inv_nm: np.ndarray, *,
                 sizes_nm: Sequence[float] | None = None) -> np.ndarray:
    """The model particle's normalised intensity ``|A(q)|²`` at the (..., 3) vectors
    ``q_inv_nm`` (nm⁻¹), standard orientation; sizes as in :func:`truth_intensity`."""
    if shape not in SHAPES:
        raise ConfigError(f"unknown particle shape {shape!r}; use one of {', '.join(SHAPES)}")
    q = np.asarray(q_inv_nm, dtype=np.float64)
    out = np.zeros(q.shape[:-1])
    if shape == "sphere":
        qm = np.linalg.norm(q, axis=-1) * 1e9
        for d, w in zip(*_size_samples(diameter_nm, sizes_nm, None)):
            out += w * sphere_intensity(qm, d * 1e-9)
        return out
    for d, w in zip(*_size_samples(diameter_nm, sizes_nm, MAX_SIZE_SAMPLES)):
        out += w * icosahedron_amplitude(q, d) ** 2
    return out


def truth_intensity(shape: str, diameter_nm: float, n: int, q_per_voxel_inv_nm: float, *,
                    sizes_nm: Sequence[float] | None = None, rotation: np.ndarray | None = None,
                    r_max_voxels: float | None = None) -> np.ndarray:
    """The model particle's normalised intensity ``|A(q)|²`` (float64, n × n × n, 1 at q = 0).

    ``shape``: "sphere" or "icosahedron" (volume-equivalent ``diameter_nm``, the simulator's
    standard orientation); ``n`` voxels a side, q = 0 at index ``n // 2``, axes (q_x, q_y,
    q_z); ``q_per_voxel_inv_nm``: |q| of one voxel step (nm⁻¹).  ``sizes_nm``: the true
    diameters of the selection's particles; the intensity is then averaged over them, each
    weighted by ``D⁶`` (spheres exactly, icosahedra over at most :data:`MAX_SIZE_SAMPLES`
    quantile bins).  ``rotation`` (3x3): the intensity of the body rotated by it,
    ``I(Rᵀq)`` — the truth in the frame of a volume :func:`align` found rotated by ``R``.
    ``r_max_voxels``: only voxels within this radius are computed, the rest are 0 (the
    icosahedron costs ~1 s per 100,000 voxels and size; Friedel's law halves that).
    """
    if shape not in SHAPES:
        raise ConfigError(f"unknown particle shape {shape!r}; use one of {', '.join(SHAPES)}")
    if not (diameter_nm > 0 and q_per_voxel_inv_nm > 0 and int(n) >= 3):
        raise ConfigError("truth_intensity needs diameter_nm > 0, q_per_voxel_inv_nm > 0 and n ≥ 3")
    n = int(n)
    c = n // 2
    axis = np.arange(n) - c
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    if shape == "sphere":
        # exact: |q|² = Δq² (i² + j² + k²) takes at most 3 (n/2)² + 1 values, evaluated once each
        table_q = np.sqrt(np.arange(int(r2.max()) + 1)) * float(q_per_voxel_inv_nm)
        table = truth_values("sphere", diameter_nm, np.stack([table_q, 0 * table_q, 0 * table_q], -1),
                             sizes_nm=sizes_nm)
        out = table[r2]
        if r_max_voxels is not None:
            out[r2 > r_max_voxels ** 2] = 0.0
        return out
    inside = np.ones(r2.shape, dtype=bool) if r_max_voxels is None else r2 <= r_max_voxels ** 2
    offsets = np.argwhere(inside) - c                        # (m, 3) voxel offsets from q = 0
    mirror = c - offsets                                     # index of -offset
    has_mirror = np.all((mirror >= 0) & (mirror < n), axis=1)
    key = offsets[:, 2] * (4 * n * n) + offsets[:, 1] * (2 * n) + offsets[:, 0]
    primary = (key >= 0) | ~has_mirror                       # I(q) = I(-q): one of each pair
    q = offsets[primary] * float(q_per_voxel_inv_nm)
    if rotation is not None:
        q = q @ np.asarray(rotation, dtype=np.float64)      # rows Rᵀ q
    values = truth_values("icosahedron", diameter_nm, q, sizes_nm=sizes_nm)
    out = np.zeros((n, n, n))
    p = offsets[primary] + c
    out[p[:, 0], p[:, 1], p[:, 2]] = values
    both = has_mirror[primary]
    m = mirror[primary][both]
    out[m[:, 0], m[:, 1], m[:, 2]] = values[both]
    return out


@dataclass
class TruthModel:
    """The particle a simulated selection should give: ``shape``, nominal ``diameter_nm``
    and, when known, the true diameters of the selection's particles (``sizes_nm``)."""

    shape: str
    diameter_nm: float
    sizes_nm: np.ndarray | None = None
    source: str = ""

    def intensity(self, n: int, q_per_voxel_inv_nm: float, rotation: np.ndarray | None = None,
                  r_max_voxels: float | None = None) -> np.ndarray:
        return truth_intensity(self.shape, self.diameter_nm, n, q_per_voxel_inv_nm,
                               sizes_nm=self.sizes_nm, rotation=rotation, r_max_voxels=r_max_voxels)

    def values(self, q_inv_nm: np.ndarray) -> np.ndarray:
        """The intensity at (..., 3) vectors (nm⁻¹), standard orientation."""
        return truth_values(self.shape, self.diameter_nm, q_inv_nm, sizes_nm=self.sizes_nm)

    def text(self) -> str:
        if self.sizes_nm is not None and len(self.sizes_nm):
            s = np.asarray(self.sizes_nm)
            return (f"{self.shape} {s.min():.1f}-{s.max():.1f} nm ({len(s)} sizes"
                    f"{', ' + self.source if self.source else ''})")
        return f"{self.shape} {self.diameter_nm:.1f} nm"


def truth_from_simulation(path: str | os.PathLike, indices: Sequence[int] | None = None) -> TruthModel:
    """The model particle of a file written by ``spidarknet simulate --particle-shape
    sphere|icosahedron``: its shape from ``/truth``'s settings and the true diameters of the
    single hits among ``indices`` (frames of that file; None: the size range's spread,
    sampled evenly)."""
    from spidarknet.frames.source import open_h5, reading

    with open_h5(str(path)) as f:
        if "truth" not in f or "settings_json" not in f["truth"].attrs:
            raise InputError(f"{path} holds no simulator truth (/truth with settings_json); give the "
                             "CXI file 'spidarknet simulate' wrote")
        with reading(path, "the simulator truth", "give the CXI file 'spidarknet simulate' wrote"):
            settings = json.loads(f["truth"].attrs["settings_json"])
            t = f["truth"]
            kind = np.array([k.decode() if isinstance(k, bytes) else str(k) for k in t["kind"][()]])
            diameters = t["diameter_nm"][()].astype(np.float64)
    shape = settings.get("particle_shape", "mixed")
    if shape not in SHAPES:
        raise InputError(f"{path} is a {shape!r} sample (spheres and icosahedra): it has no single "
                         "truth structure; simulate with --particle-shape sphere or icosahedron")
    lo, hi = settings.get("size_range_nm", (55.0, 80.0))
    if indices is None:
        sizes = np.linspace(lo, hi, 16)
        return TruthModel(shape, float(0.5 * (lo + hi)), sizes, "the size range")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(kind)):
        raise InputError(f"frame indices outside {path}'s {len(kind)} frames")
    singles = idx[kind[idx] == "single"]
    if singles.size == 0:
        sizes = np.linspace(lo, hi, 16)
        return TruthModel(shape, float(0.5 * (lo + hi)), sizes, "no single hit selected: the size range")
    sizes = diameters[singles]
    return TruthModel(shape, float(np.mean(sizes)), sizes, "the selection's single hits")
