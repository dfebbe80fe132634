"""Scattering physics of the simulator: q geometry, form factors, expected photons.

Units are SI throughout (metres, joules, inverse metres, photons per square metre).

Coordinates
-----------
Pixel-index coordinates: the centre of the pixel in row ``i`` and column ``j`` lies at
``(x, y) = (j, i)``; ``x`` grows with the column index, ``y`` with the row index.  The
detector is flat, normal to the beam, at ``distance_m`` from the interaction point; the beam
hits it at ``centre_xy`` (pixel-index coordinates).  A pixel at transverse distance
``rho = r * pixel_size_m`` from the beam sees the scattering angle ``2θ = atan(rho / D)``,
and the momentum transfer ``q = k_out - k_in`` (``k = 2π/λ``) has

* ``|q| = 4π sin(θ) / λ`` (the Ewald sphere, exactly),
* ``q = k * (x_m / L, y_m / L, D / L - 1)`` with ``L = sqrt(D² + rho²)``.

Scattering model
----------------
Kinematic (first Born) scattering from uniform particles in vacuum: the amplitude of a
particle with ``n_e`` (excess) electrons is ``n_e * A(q)`` with the normalised form factor
``A(0) = 1``; the expected photon count of a pixel is

    fluence * r_e² * |Σ_i n_e,i A_i(q) exp(-i q·r_i)|² * Ω_pixel * P

with the classical electron radius ``r_e``, the pixel's solid angle ``Ω = p² D / L³`` and
the polarisation factor ``P = 1 - (x_m / L)²`` of a beam polarised along ``x`` (LCLS).
Anomalous dispersion and absorption at 1.7 keV are ignored (scattering factor ≈ Z).

* Spheres: the analytic ``A(q) = 3 (sin x − x cos x) / x³`` with ``x = |q| R``, evaluated
  at the exact ``|q|`` of every pixel (through a radial look-up table sampled every 1/16
  pixel, so fringe positions are exact to well below a pixel).
* Icosahedra and aggregates: the projection approximation.  The projected electron
  density is rasterised on a 2D grid (0.8 nm cells, finer for a detector whose largest
  |q| exceeds the grid's range π/Δx), Fourier transformed with zero padding (≥ 4x the icosahedron's
  circumdiameter, ≥ 1.6x an aggregate's extent) and sampled at the transverse vector
  ``|q| (cos φ, sin φ)`` of each pixel (``φ`` the pixel's azimuth).  Using the exact
  ``|q|`` rather than the true transverse component keeps the result exact for spheres;
  what is neglected is the curvature phase ``q_z z`` inside one object, small where the
  signal lies.  The sampling uses Lanczos interpolation on a binned pixel grid followed by
  Lanczos upsampling, as these amplitudes vary over many pixels: icosahedra 4 x 4 while
  their amplitude's zeros (π/R apart) are ≥ 12 pixels apart (all up to 100 nm on the
  pnCCD), 2 x 2 while ≥ 6; aggregates 2 x 2 where a pixel spans no more q than the
  pnCCD's, else unbinned.  Measured on the pnCCD against 5-6x finer references the
  intensity is within ~1-2 % (mean) where the signal is above the background.
* Several separate particles ("multiple") are summed coherently with the full 3D phase
  ``exp(-i q·r_i)`` (Ewald curvature included); their amplitudes come from the two
  recipes above.
* Aggregates: compact random clusters of touching spheres (ballistic aggregation), their
  size given as the diameter of the sphere with the same radius of gyration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from spidarknet.core.errors import ConfigError
from spidarknet.core.scattering import q_from_radius_inv_m, sphere_amplitude

#: Planck constant (J s), speed of light (m/s), elementary charge (C), electron radius (m)
PLANCK_J_S = 6.62607015e-34
SPEED_OF_LIGHT_M_S = 299_792_458.0
ELEMENTARY_CHARGE_C = 1.602176634e-19
ELECTRON_RADIUS_M = 2.8179403262e-15

#: electron densities (electrons per m³) of the materials the simulator knows
ELECTRON_DENSITY_PER_M3 = {
    "protein": 4.3e29,   # proteins / virus capsid + genome, ~0.43 e/Å³
    "water": 3.34e29,    # liquid water, 0.334 e/Å³
}

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0
#: volume of an icosahedron of edge 1
_ICOSAHEDRON_VOLUME_PER_EDGE3 = 5.0 / 12.0 * (3.0 + math.sqrt(5.0))
#: in-radius of an icosahedron of edge 1
_ICOSAHEDRON_INRADIUS_PER_EDGE = GOLDEN_RATIO ** 2 / (2.0 * math.sqrt(3.0))
#: circumradius of an icosahedron of edge 1
_ICOSAHEDRON_CIRCUMRADIUS_PER_EDGE = math.sqrt(GOLDEN_RATIO * math.sqrt(5.0)) / 2.0


def _icosahedron_face_normals() -> np.ndarray:
    """Unit normals of the 20 faces, one per antipodal pair (10 x 3).

    The face normals of an icosahedron point to the vertices of the dual dodecahedron:
    (±1, ±1, ±1) and the cyclic permutations of (0, ±1/φ, ±φ).
    """
    g, h = GOLDEN_RATIO, 1.0 / GOLDEN_RATIO
    normals = [(1, 1, 1), (1, 1, -1), (1, -1, 1), (1, -1, -1),
               (0, h, g), (0, h, -g), (h, g, 0), (h, -g, 0), (g, 0, h), (-g, 0, h)]
    n = np.array(normals, dtype=np.float64)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


ICOSAHEDRON_FACE_NORMALS = _icosahedron_face_normals()


def wavelength_m(photon_energy_J: float) -> float:
    """Photon wavelength λ = h c / E (m) for a photon energy in joules."""
    return PLANCK_J_S * SPEED_OF_LIGHT_M_S / photon_energy_J


def sphere_volume_m3(diameter_m: float) -> float:
    return math.pi / 6.0 * diameter_m ** 3


def icosahedron_edge_m(diameter_m: float) -> float:
    """Edge length of the icosahedron whose volume equals a sphere of ``diameter_m``.

    Icosahedron sizes in this package are volume-equivalent sphere diameters, so the
    scattering power at q = 0 matches a sphere of the same "diameter".
    """
    return (sphere_volume_m3(diameter_m) / _ICOSAHEDRON_VOLUME_PER_EDGE3) ** (1.0 / 3.0)


def icosahedron_circumradius_m(diameter_m: float) -> float:
    return icosahedron_edge_m(diameter_m) * _ICOSAHEDRON_CIRCUMRADIUS_PER_EDGE


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (random unit quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def icosahedron_thickness_m(x_m: np.ndarray, y_m: np.ndarray, diameter_m: float,
                            rotation: np.ndarray | None = None) -> np.ndarray:
    """Projected thickness (m) along z of an icosahedron centred at the origin.

    ``x_m``, ``y_m``: broadcastable transverse coordinates; ``diameter_m``: volume-equivalent
    diameter; ``rotation``: 3x3 matrix applied to the body (None: the standard orientation,
    vertices at the cyclic permutations of (0, ±1, ±φ), two-fold axes along x, y and z).
    Exact for the convex body: each antipodal face pair ``|n·r| ≤ r_in`` bounds z to an interval; the thickness is the length of the intersection.
    """
    normals = ICOSAHEDRON_FACE_NORMALS
    if rotation is not None:
        normals = normals @ np.asarray(rotation).T  # rows: rotated normals R n
    r_in = icosahedron_edge_m(diameter_m) * _ICOSAHEDRON_INRADIUS_PER_EDGE
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    upper = np.full(np.broadcast(x, y).shape, np.inf)
    lower = np.full_like(upper, -np.inf)
    for nx, ny, nz in normals:
        a = nx * x + ny * y
        if abs(nz) < 1e-9:  # face pair parallel to the beam: a slab in x, y only
            inside = np.abs(a) <= r_in
            upper = np.where(inside, upper, -np.inf)
            continue
        z1 = (r_in - a) / nz
        z2 = (-r_in - a) / nz
        np.minimum(upper, np.maximum(z1, z2), out=upper)
        np.maximum(lower, np.minimum(z1, z2), out=lower)
    return np.maximum(upper - lower, 0.0)


@dataclass
class Particle:
    """One particle: ``shape`` "sphere" or "icosahedron", volume-equivalent ``diameter_m``,
    centre ``position_m`` (x, y, z; z along the beam), ``rotation`` (3x3, icosahedra only)
    and ``material`` (a key of :data:`ELECTRON_DENSITY_PER_M3`)."""

    shape: str
    diameter_m: float
    position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: np.ndarray | None = None
    material: str = "protein"

    @property
    def electrons(self) -> float:
        """Number of (excess over vacuum) electrons: density × volume."""
        return ELECTRON_DENSITY_PER_M3[self.material] * sphere_volume_m3(self.diameter_m)


@dataclass
class Cluster:
    """A rigid aggregate of touching spheres rendered as one object (projection
    approximation): ``positions_m`` (n, 3), ``diameters_m`` (n,), one ``material``."""

    positions_m: np.ndarray
    diameters_m: np.ndarray
    material: str = "protein"
    shape: str = field(default="cluster", init=False)

    @property
    def electrons(self) -> float:
        volume = np.sum(math.pi / 6.0 * self.diameters_m ** 3)
        return float(ELECTRON_DENSITY_PER_M3[self.material] * volume)


def cluster_size_m(positions_m: np.ndarray, diameters_m: np.ndarray) -> float:
    """Size of an aggregate as the diameter of the uniform sphere with the same radius of
    gyration, ``2 sqrt(5/3) Rg`` (what a Guinier fit would call its diameter)."""
    r = 0.5 * np.asarray(diameters_m)
    mass = r ** 3
    centre = (mass[:, None] * positions_m).sum(axis=0) / mass.sum()
    d2 = np.sum((positions_m - centre) ** 2, axis=1) + 0.6 * r * r
    return float(2.0 * math.sqrt(5.0 / 3.0 * (mass * d2).sum() / mass.sum()))


def build_cluster(size_m: float, rng: np.random.Generator,
                  sub_diameter_range_m=(50e-9, 80e-9), material: str = "protein",
                  max_particles: int = 400) -> Cluster:
    """A compact random aggregate of touching spheres of :func:`cluster_size_m` ≈ ``size_m``.

    Ballistic aggregation: each new sphere travels along a random line aimed near the
    centroid and sticks where it first touches the cluster (no overlaps by construction);
    spheres are added until the size is reached.
    """
    lo, hi = sub_diameter_range_m
    pos = np.zeros((1, 3))
    rad = np.array([0.5 * rng.uniform(lo, hi)])
    while len(rad) < max_particles and cluster_size_m(pos, 2.0 * rad) < size_m:
        centroid = pos.mean(axis=0)
        envelope = np.max(np.linalg.norm(pos - centroid, axis=1) + rad)
        r_new = 0.5 * rng.uniform(lo, hi)
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        offset = rng.normal(size=3)
        offset -= offset.dot(u) * u
        offset *= 0.5 * envelope * rng.random() / max(np.linalg.norm(offset), 1e-30)
        origin = centroid + offset
        d = origin - pos
        s = rad + r_new
        b = d @ u
        disc = b * b - (np.einsum("ij,ij->i", d, d) - s * s)
        hit = disc >= 0
        if not np.any(hit):
            continue
        t = np.max(-b[hit] + np.sqrt(disc[hit]))  # first contact coming in along -u
        pos = np.vstack([pos, origin + t * u])
        rad = np.append(rad, r_new)
    pos -= pos.mean(axis=0)
    return Cluster(positions_m=pos, diameters_m=2.0 * rad, material=material)


def _dft_size(n: float) -> int:
    return int(cv2.getOptimalDFTSize(max(64, int(math.ceil(n)))))


def _roll2(a: np.ndarray, shift_rows: int, shift_cols: int) -> np.ndarray:
    """np.roll over the first two axes with four block copies (np.roll is slower)."""
    rows, cols = a.shape[:2]
    sr, sc = shift_rows % rows, shift_cols % cols
    out = np.empty_like(a)
    out[sr:, sc:] = a[:rows - sr, :cols - sc]
    out[:sr, sc:] = a[rows - sr:, :cols - sc]
    out[sr:, :sc] = a[:rows - sr, cols - sc:]
    out[:sr, :sc] = a[rows - sr:, cols - sc:]
    return out


class _FrameGeometry:
    """Per-frame pixel geometry for one beam centre (optionally on a b x b-binned grid),
    with lazily computed, cached maps."""

    def __init__(self, renderer: "Renderer", centre_xy, binning: int = 1):
        self.renderer = renderer
        self.centre_xy = (float(centre_xy[0]), float(centre_xy[1]))
        cx, cy = self.centre_xy
        rows, cols = renderer.shape
        if not (-0.5 <= cx <= cols - 0.5 and -0.5 <= cy <= rows - 0.5):
            raise ConfigError(f"a frame's beam centre ({cx:.1f}, {cy:.1f}) px lies outside the {rows}x{cols} "
                              "detector: give a smaller --centre-jitter, or a centre farther from the edge")
        b = self.binning = int(binning)
        if rows % b or cols % b:
            raise ValueError(f"detector shape {renderer.shape} is not divisible by {b}")
        self.shape = (rows // b, cols // b)
        # centres of the (binned) pixels in full-resolution pixel-index coordinates
        col_centres = np.arange(self.shape[1]) * b + 0.5 * (b - 1)
        row_centres = np.arange(self.shape[0]) * b + 0.5 * (b - 1)
        self.dx = (col_centres - cx).astype(np.float32)  # pixels, per column
        self.dy = (row_centres - cy).astype(np.float32)  # pixels, per row
        self._index = None
        self._q_per_px = None
        self._inv_length = None
        self._maps = {}
        self._binned = {}

    @property
    def index(self) -> np.ndarray:
        """Radius of every pixel in look-up-table steps (the map for cv2.remap)."""
        if self._index is None:
            s = np.float32(1.0 / self.renderer.LUT_STEP_PX)
            ddx, ddy = self.dx * s, self.dy * s
            index = np.add.outer(ddy * ddy, ddx * ddx)
            np.sqrt(index, out=index)
            self._index = index
        return self._index

    def binned(self, factor: int) -> "_FrameGeometry":
        """The same beam centre on a factor x factor-binned grid (for smooth patterns)."""
        if factor == 1:
            return self
        if factor not in self._binned:
            self._binned[factor] = _FrameGeometry(self.renderer, self.centre_xy,
                                                  factor * self.binning)
        return self._binned[factor]

    def upsample(self, image: np.ndarray) -> np.ndarray:
        """Lanczos upsampling of a binned image to this grid (bin centres map onto the
        centres of the pixels they cover)."""
        if image.shape[:2] == self.shape:
            return image
        return cv2.resize(image, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LANCZOS4)

    def lookup(self, lut: np.ndarray) -> np.ndarray:
        """Evaluate a radial look-up table (2 x n float32) at every pixel."""
        return cv2.remap(lut, self.index, self.renderer._zeros(self.shape), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def inv_length(self) -> np.ndarray:
        """1 / L (1/m): inverse distance from the interaction point to each pixel."""
        if self._inv_length is None:
            self._inv_length = self.lookup(self.renderer._lut_inv_length)
        return self._inv_length

    def grid_maps(self, dq_inv_m: float, n: int):
        """cv2.remap maps from the pixels to a centred (fftshifted) n x n DFT grid of
        spacing dq: each pixel samples the transverse vector |q| (cos φ, sin φ)."""
        key = (float(dq_inv_m), int(n))
        if key not in self._maps:
            if self._q_per_px is None:
                self._q_per_px = self.lookup(self.renderer._lut_q_per_px)
            scale = np.float32(1.0 / dq_inv_m)
            c = np.float32(n // 2)
            mx = self._q_per_px * (self.dx * scale)[None, :]
            mx += c
            my = self._q_per_px * (self.dy * scale)[:, None]
            my += c
            self._maps[key] = (mx, my)
        return self._maps[key]

    def sample_spectrum(self, spectrum: np.ndarray, dq_inv_m: float, binning: int) -> np.ndarray:
        """Sample a DFT (n x n, 1 or 2 channels, q = 0 at index 0) at every pixel's
        transverse q: Lanczos interpolation on a ``binning``-binned grid, then Lanczos
        upsampling (≈ 1 % mean error in intensity against 6x finer references)."""
        n_rows, n_cols = spectrum.shape[:2]
        spectrum = _roll2(spectrum, n_rows // 2, n_cols // 2)  # fftshift: q = 0 at n // 2
        coarse = self.binned(binning)
        mx, my = coarse.grid_maps(dq_inv_m, spectrum.shape[0])
        values = cv2.remap(spectrum, mx, my, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_CONSTANT)
        return self.upsample(values)


class Renderer:
    """Noise-free expected photons per pixel of a detector, for lists of particles.

    Precomputes, once per geometry, radial look-up tables (versus the radius in pixels,
    every 1/16 pixel) of |q|, ``|q|/r`` and ``1/L``, and the solid-angle × polarisation
    weight of each pixel for the nominal beam centre (the weight moves by < 1e-3 for the
    few-pixel centre jitter; it is recomputed for centres further than 8 px from nominal).
    """

    LUT_STEP_PX = 1.0 / 16.0
    #: real-space sampling of the projection grids (m); the grid's q range π/Δx must cover
    #: the detector's largest |q| (≈ 3.6e9 1/m for the pnCCD at 1.7 keV); detectors that
    #: reach further get a finer grid (``grid_step_m``, larger DFTs)
    GRID_STEP_M = 0.8e-9
    #: q per pixel near the beam of the pnCCD (75 µm, 125 mm, 1.7 keV), 1/m: the scale the
    #: sampling choices below were measured at
    PNCCD_Q_PER_PX_INV_M = (2.0 * math.pi * 1700.0 * ELEMENTARY_CHARGE_C
                            / (PLANCK_J_S * SPEED_OF_LIGHT_M_S) * 75e-6 / 0.125)
    #: icosahedra up to this volume-equivalent diameter share one grid size (fewer maps)
    ICOSAHEDRON_GRID_DIAMETER_M = 80e-9

    def __init__(self, shape: Sequence[int], pixel_size_m: float, distance_m: float,
                 wavelength_m: float, nominal_centre_xy: Sequence[float]):
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_m = float(pixel_size_m)
        self.distance_m = float(distance_m)
        self.wavelength_m = float(wavelength_m)
        self.k_inv_m = 2.0 * math.pi / self.wavelength_m
        self.nominal_centre_xy = (float(nominal_centre_xy[0]), float(nominal_centre_xy[1]))
        rows, cols = self.shape
        self._cols = np.arange(cols, dtype=np.float64)
        self._rows = np.arange(rows, dtype=np.float64)
        # radial look-up tables, covering any beam centre inside the frame
        n_lut = int(math.ceil((math.hypot(rows, cols) + 2.0) / self.LUT_STEP_PX)) + 2
        if n_lut >= 32767:  # cv2.remap source limit
            raise ValueError("detector too large for the radial look-up table")
        self.lut_r_px = np.arange(n_lut) * self.LUT_STEP_PX
        rho = self.lut_r_px * self.pixel_size_m
        self.lut_q_inv_m = q_from_radius_inv_m(rho, self.distance_m, self.wavelength_m)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = self.lut_q_inv_m / self.lut_r_px
        g[0] = self.k_inv_m * self.pixel_size_m / self.distance_m
        self._lut_q_per_px = self._as_lut(g)
        self._lut_inv_length = self._as_lut(1.0 / np.sqrt(self.distance_m ** 2 + rho ** 2))
        # largest |q| for a beam within 16 px of the nominal centre; the projection grids
        # must reach it (beyond their range the amplitude is taken as 0)
        cx, cy = self.nominal_centre_xy
        r_far = math.hypot(max(cx, cols - 1 - cx), max(cy, rows - 1 - cy)) + 16.0
        self.q_max_inv_m = float(q_from_radius_inv_m(r_far * self.pixel_size_m, self.distance_m,
                                                     self.wavelength_m))
        self.grid_step_m = self.GRID_STEP_M
        if math.pi / self.grid_step_m < self.q_max_inv_m:
            self.grid_step_m = 0.99 * math.pi / self.q_max_inv_m
        #: |q| per pixel near the beam (1/m)
        self.q_per_px_inv_m = self.k_inv_m * self.pixel_size_m / self.distance_m
        self._nominal_weight = self.pixel_weight(self.nominal_centre_xy)
        self._zero_maps = {}

    def _zeros(self, shape) -> np.ndarray:
        if shape not in self._zero_maps:
            self._zero_maps[shape] = np.zeros(shape, dtype=np.float32)
        return self._zero_maps[shape]

    @staticmethod
    def _as_lut(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float32)
        return np.ascontiguousarray(np.vstack([v, v]))

    def frame_geometry(self, centre_xy) -> _FrameGeometry:
        return _FrameGeometry(self, centre_xy)

    def pixel_weight(self, centre_xy) -> np.ndarray:
        """Solid angle (sr) × polarisation factor (beam polarised along x) of every pixel."""
        cx, cy = float(centre_xy[0]), float(centre_xy[1])
        p, d = self.pixel_size_m, self.distance_m
        x = (self._cols - cx) * p
        y = (self._rows - cy) * p
        inv_l = 1.0 / np.sqrt(d * d + np.add.outer(y * y, x * x))
        solid_angle = p * p * d * inv_l ** 3
        polarisation = 1.0 - (x[None, :] * inv_l) ** 2
        return (solid_angle * polarisation).astype(np.float32)

    def q_map_inv_m(self, centre_xy) -> np.ndarray:
        """|q| (1/m) of every pixel for a beam at ``centre_xy`` (float32, via the table)."""
        return self.frame_geometry(centre_xy).lookup(self._as_lut(self.lut_q_inv_m))

    # -- amplitudes (electrons) --------------------------------------------------------
    def _sphere_lut(self, particle: Particle, power: int) -> np.ndarray:
        a = sphere_amplitude(self.lut_q_inv_m, particle.diameter_m) * particle.electrons
        return self._as_lut(a ** power)

    def _icosahedron_amplitude(self, particle: Particle, fg: _FrameGeometry) -> np.ndarray:
        """n_e A(q) of an icosahedron (projection approximation, see the module notes)."""
        step = self.grid_step_m
        radius = icosahedron_circumradius_m(particle.diameter_m)
        r_grid = max(radius, icosahedron_circumradius_m(self.ICOSAHEDRON_GRID_DIAMETER_M))
        n = _dft_size(8.0 * r_grid / step)  # ≥ 4x oversampled
        m = int(math.ceil(radius / step)) + 2
        coords = np.arange(-m, m + 1) * step
        thick = icosahedron_thickness_m(coords[None, :], coords[:, None], particle.diameter_m,
                                        particle.rotation)
        thick *= step * step * ELECTRON_DENSITY_PER_M3[particle.material]  # electrons per cell
        grid = np.zeros((n, n), dtype=np.float32)
        idx = np.arange(-m, m + 1) % n  # object centred on grid index 0 (wrapped)
        grid[np.ix_(idx, idx)] = thick
        # a centrosymmetric object centred on the origin has a real transform
        spectrum = cv2.dft(grid, flags=cv2.DFT_COMPLEX_OUTPUT)[..., 0]
        # the amplitude's zeros are π/R apart (≥ ~13 px on the pnCCD): sample it on a grid
        # binned so that they stay ≥ 3 binned pixels apart
        zero_spacing_px = math.pi / (radius * self.q_per_px_inv_m)
        binning = self._sampling_binning(4 if zero_spacing_px >= 12.0
                                         else 2 if zero_spacing_px >= 6.0 else 1)
        return fg.sample_spectrum(spectrum, 2.0 * math.pi / (n * step), binning)

    def _sampling_binning(self, wanted: int) -> int:
        """The largest of ``wanted``, its halves and 1 that divides the detector shape."""
        b = int(wanted)
        while b > 1 and (self.shape[0] % b or self.shape[1] % b):
            b //= 2
        return b

    def _amplitude(self, particle: Particle, fg: _FrameGeometry) -> np.ndarray:
        """n_e A(q) per pixel: spheres from the exact radial table at every pixel,
        icosahedra from their projection's DFT."""
        if particle.shape == "sphere":
            return fg.lookup(self._sphere_lut(particle, 1))
        if particle.shape == "icosahedron":
            return self._icosahedron_amplitude(particle, fg)
        raise ValueError(f"unknown particle shape {particle.shape!r}; use sphere or icosahedron")

    def _cluster_intensity(self, cluster: Cluster, fg: _FrameGeometry) -> np.ndarray:
        """|F|² (electrons²) of an aggregate in the projection approximation."""
        step = self.grid_step_m
        pos = cluster.positions_m
        rad = 0.5 * cluster.diameters_m
        extent = 2.0 * float(np.max(np.hypot(pos[:, 0], pos[:, 1]) + rad))
        # the amplitude needs Δq ≤ 2π/extent (its Nyquist rate); 1.6x that keeps the
        # Lanczos interpolation within ~2 % (measured against 5x oversampled references)
        n = _dft_size(1.6 * extent / step)
        grid = np.zeros((n, n), dtype=np.float32)
        density = step * step * ELECTRON_DENSITY_PER_M3[cluster.material]
        for (x, y, _), r in zip(pos, rad):
            m = int(math.ceil(r / step)) + 1
            ix, iy = int(round(x / step)), int(round(y / step))
            cols = np.arange(ix - m, ix + m + 1)
            rows = np.arange(iy - m, iy + m + 1)
            cx = cols * step - x
            cy = rows * step - y
            thick = np.add.outer(cy * cy, cx * cx)
            np.subtract(r * r, thick, out=thick)
            np.maximum(thick, 0.0, out=thick)
            np.sqrt(thick, out=thick)
            thick *= 2.0 * density
            grid[np.ix_(rows % n, cols % n)] += thick.astype(np.float32)  # origin at index 0
        spectrum = cv2.dft(grid, flags=cv2.DFT_COMPLEX_OUTPUT)
        # speckles cover ≥ 2 px where a pixel spans no more q than the pnCCD's
        coarse = self.q_per_px_inv_m > 1.01 * self.PNCCD_Q_PER_PX_INV_M
        f = fg.sample_spectrum(spectrum, 2.0 * math.pi / (n * step),
                               self._sampling_binning(1 if coarse else 2))
        re, im = f[..., 0], f[..., 1]
        return re * re + im * im

    # -- intensities ----------------------------------------------------------------
    def intensity_electrons2(self, particles: Sequence, centre_xy) -> np.ndarray:
        """|Σ n_e A(q) exp(-i q·r)|² (electrons²) per pixel, float32, before the fluence,
        r_e², solid angle and polarisation."""
        fg = self.frame_geometry(centre_xy)
        if not particles:
            return np.zeros(self.shape, dtype=np.float32)
        if isinstance(particles[0], Cluster):
            if len(particles) > 1:
                raise ValueError("a Cluster must be rendered on its own")
            return self._cluster_intensity(particles[0], fg)
        if len(particles) == 1 and particles[0].shape == "sphere":
            return fg.lookup(self._sphere_lut(particles[0], 2))  # |F|² straight from the table
        amps = [self._amplitude(p, fg) for p in particles]
        total = amps[0] * amps[0]
        for a in amps[1:]:
            total += a * a
        if len(particles) > 1:
            inv_l = fg.inv_length()
            k, p, d = self.k_inv_m, self.pixel_size_m, self.distance_m
            for i in range(len(particles)):
                for j in range(i + 1, len(particles)):
                    sep = np.subtract(particles[i].position_m, particles[j].position_m)
                    # q·(r_i - r_j) = k [(x sx + y sy + D sz) / L - sz], x = p dx, y = p dy
                    row = fg.dx * np.float32(k * p * sep[0]) + np.float32(k * d * sep[2])
                    col = fg.dy * np.float32(k * p * sep[1])
                    phase = np.add.outer(col, row)
                    phase *= inv_l
                    phase -= np.float32(k * sep[2])
                    np.cos(phase, out=phase)
                    phase *= amps[i]
                    phase *= amps[j]
                    phase *= np.float32(2.0)
                    total += phase
        return total

    def expected_photons(self, particles: Sequence, centre_xy,
                         fluence_photons_per_m2: float) -> np.ndarray:
        """Expected photons per pixel (float32) of the particles' signal alone (no
        background, no mask) for a beam at ``centre_xy`` (pixel-index coordinates) and the
        given fluence (photons/m²)."""
        total = self.intensity_electrons2(particles, centre_xy)
        if math.hypot(centre_xy[0] - self.nominal_centre_xy[0],
                      centre_xy[1] - self.nominal_centre_xy[1]) > 8.0:
            weight = self.pixel_weight(centre_xy)
        else:
            weight = self._nominal_weight
        total *= np.float32(fluence_photons_per_m2 * ELECTRON_RADIUS_M ** 2)
        total *= weight
        return total
