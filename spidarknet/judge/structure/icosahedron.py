"""The simulator's icosahedron in the judge's units (nm): its faces and the exact form factor
amplitude of the polyhedron (see :mod:`spidarknet.judge.structure`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from spidarknet.simulate.physics import ICOSAHEDRON_FACE_NORMALS, _ICOSAHEDRON_INRADIUS_PER_EDGE, icosahedron_edge_m


def icosahedron_faces(diameter_nm: float) -> np.ndarray:
    """The 20 triangular faces (20 x 3 x 3, nm) of the simulator's icosahedron, centred at 0.

    Each face's vertices run anticlockwise seen from outside (along its outward normal).
    The body is ``|n·r| ≤ r_in`` for the ten normals ``n`` of
    :data:`~spidarknet.simulate.physics.ICOSAHEDRON_FACE_NORMALS`, ``r_in`` the in-radius of
    the icosahedron whose volume equals a sphere of ``diameter_nm``.
    """
    r_in = icosahedron_edge_m(diameter_nm * 1e-9) * 1e9 * _ICOSAHEDRON_INRADIUS_PER_EDGE
    normals = np.vstack([ICOSAHEDRON_FACE_NORMALS, -ICOSAHEDRON_FACE_NORMALS])
    vertices = []
    for i, j, k in combinations(range(len(normals)), 3):
        m = normals[[i, j, k]]
        if abs(np.linalg.det(m)) < 1e-6:
            continue
        v = np.linalg.solve(m, np.full(3, r_in))
        if np.all(normals @ v <= r_in * (1 + 1e-9)) and not any(np.allclose(v, w) for w in vertices):
            vertices.append(v)
    vertices = np.array(vertices)
    if len(vertices) != 12:
        raise RuntimeError(f"the icosahedron came out with {len(vertices)} vertices, not 12")
    faces = []
    for n in normals:
        on = vertices[np.abs(vertices @ n - r_in) < 1e-9 * r_in]
        centre = on.mean(axis=0)
        u = on[0] - centre
        u /= np.linalg.norm(u)
        w = np.cross(n, u)
        angle = np.arctan2((on - centre) @ w, (on - centre) @ u)
        faces.append(on[np.argsort(angle)])
    return np.array(faces)


def icosahedron_amplitude(q_inv_nm: np.ndarray, diameter_nm: float, *, chunk: int = 1 << 18) -> np.ndarray:
    """Normalised form factor amplitude ``A(q)`` (``A(0) = 1``, real) of the uniform icosahedron
    of volume-equivalent ``diameter_nm`` in the simulator's standard orientation.

    ``q_inv_nm``: (..., 3) scattering vectors (nm⁻¹).  Exact for the polyhedron: with the
    divergence theorem ``∫_V e^{-iq·r} dV = (i/q²) Σ_f (q·n_f) ∫_f e^{-iq·r} dS`` and, inside
    each face, again ``∫_f e^{-iq·r} dS = (i/q_t²) Σ_e (q·m_e) L_e e^{-iq·c_e} sinc(q·(b-a)/2)``
    (``q_t`` the part of q in the face's plane, ``m_e`` the edge's outward in-plane normal,
    ``c_e`` its midpoint, ``a → b`` its ends).  Where ``|q_t| L < 1e-3`` a face's integral is
    taken as ``area · e^{-iq·centroid}`` (error ~1e-7), and ``A = 1`` where ``|q| R < 1e-6``.
    """
    q = np.asarray(q_inv_nm, dtype=np.float64)
    shape = q.shape[:-1]
    q = q.reshape(-1, 3)
    faces = icosahedron_faces(diameter_nm)
    volume = math.pi / 6.0 * diameter_nm ** 3
    radius = float(np.max(np.linalg.norm(faces.reshape(-1, 3), axis=1)))
    tables = _FaceTables.of(faces)
    out = np.empty(len(q))
    for lo in range(0, len(q), chunk):
        qc = q[lo:lo + chunk]
        q2 = np.einsum("ij,ij->i", qc, qc)
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = 2.0 * tables.half_sum(qc, q2) / q2 / volume
        amp[q2 * radius ** 2 < 1e-12] = 1.0
        out[lo:lo + chunk] = amp
    return out.reshape(shape)


@dataclass
class _FaceTables:
    """The faces of a centrosymmetric polyhedron as :func:`icosahedron_amplitude` sums them:
    per face of the first half its unit normal, area, centroid and edge lengths, and one
    (3, 9) matrix giving q·m_e, q·(b-a)/2 and q·c_e of its three edges at once."""

    normals: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    lengths: np.ndarray
    mats: list
    edge_max: float

    @classmethod
    def of(cls, faces: np.ndarray) -> "_FaceTables":
        # per face: normal, area, centroid; per edge: a -> b, midpoint, length, outward normal
        normals = np.cross(faces[:, 1] - faces[:, 0], faces[:, 2] - faces[:, 0])
        areas = 0.5 * np.linalg.norm(normals, axis=1)
        normals /= (2.0 * areas)[:, None]
        centroids = faces.mean(axis=1)
        starts = faces
        ends = np.roll(faces, -1, axis=1)
        half_edges = 0.5 * (ends - starts)                           # (20, 3, 3)
        mids = 0.5 * (ends + starts)
        lengths = np.linalg.norm(ends - starts, axis=2)               # (20, 3)
        edge_normals = np.cross(ends - starts, normals[:, None, :]) / lengths[..., None]
        # the body is centrosymmetric: face f + 10 is face f mirrored, and its term is the complex
        # conjugate of face f's, so the sum over 20 faces is twice the real part over 10
        half = len(faces) // 2
        if not np.allclose(faces[half:].mean(axis=1), -centroids[:half]):
            raise RuntimeError("the icosahedron's faces are not in antipodal pairs")
        mats = [np.concatenate([edge_normals[f].T, half_edges[f].T, mids[f].T], axis=1) for f in range(half)]
        return cls(normals[:half], areas[:half], centroids[:half], lengths[:half], mats, float(lengths.max()))

    def half_sum(self, qc: np.ndarray, q2: np.ndarray) -> np.ndarray:
        """``q² Re[(i/q²) (q·n_f) ∫_f e^{-iq·r} dS]`` summed over the first half of the faces, at
        the (m, 3) vectors ``qc`` with squared lengths ``q2`` (the volume integral is twice this
        over ``q²``)."""
        total = np.zeros(len(qc))
        for f in range(len(self.mats)):
            qn = qc @ self.normals[f]
            qt2 = np.maximum(q2 - qn * qn, 0.0)
            small = qt2 * self.edge_max ** 2 < 1e-6
            p = qc @ self.mats[f]
            qm, x, phase = p[:, 0:3], p[:, 3:6], p[:, 6:9]
            with np.errstate(divide="ignore", invalid="ignore"):
                sinc = np.where(np.abs(x) < 1e-8, 1.0, np.sin(x) / x)
                edges = (qm * self.lengths[f] * sinc * np.cos(phase)).sum(axis=1)
                # Re[(i/q²) qn (i/qt²) Σ_e ...] = -qn Σ_e (q·m) L sinc cos(q·c) / (q² qt²)
                term = -qn * edges / qt2
            # Re[(i/q²) qn · area e^{-iq·c}] = qn area sin(q·c) / q² for q_t → 0
            term[small] = (qn * self.areas[f] * np.sin(qc @ self.centroids[f]))[small]
            total += term
        return total
