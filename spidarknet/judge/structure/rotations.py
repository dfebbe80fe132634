"""Rotations: evenly spread over SO(3), from quaternions and rotation vectors, the angle
between two, and the icosahedron's symmetry group."""

from __future__ import annotations

import math

import numpy as np

from spidarknet.judge.structure.icosahedron import icosahedron_faces


def uniform_rotations(count: int) -> np.ndarray:
    """``count`` rotation matrices (count x 3 x 3) spread evenly over SO(3): the
    super-Fibonacci spiral of unit quaternions (Alexa, CVPR 2022), deterministic."""
    s = np.arange(count) + 0.5
    phi, psi = math.sqrt(2.0), 1.533751168755204288118041
    r, big = np.sqrt(s / count), np.sqrt(1.0 - s / count)
    alpha, beta = 2 * math.pi * s / phi, 2 * math.pi * s / psi
    quats = np.stack([r * np.sin(alpha), r * np.cos(alpha), big * np.sin(beta), big * np.cos(beta)], axis=1)
    return quaternions_to_matrices(quats)


def quaternions_to_matrices(quats: np.ndarray) -> np.ndarray:
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_from_vector(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``v`` (axis × angle in radians), Rodrigues."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (degrees) of the rotation taking ``b`` to ``a`` (``a bᵀ``)."""
    c = (np.trace(np.asarray(a) @ np.asarray(b).T) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def icosahedral_group() -> np.ndarray:
    """The 60 rotations (60 x 3 x 3) that map the simulator's icosahedron onto itself."""
    vertices = np.unique(np.round(icosahedron_faces(1.0).reshape(-1, 3), 12), axis=0)
    axis = vertices[0] / np.linalg.norm(vertices[0])
    generators = [np.diag([-1.0, -1.0, 1.0]),                      # two-fold about z
                  np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),      # three-fold about (1,1,1)
                  rotation_from_vector(axis * 2 * math.pi / 5)]      # five-fold about a vertex
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        fresh = []
        for g in frontier:
            for h in generators:
                m = h @ g
                if not any(np.allclose(m, k, atol=1e-9) for k in group):
                    group.append(m)
                    fresh.append(m)
        frontier = fresh
    if len(group) != 60:
        raise RuntimeError(f"the icosahedral group came out with {len(group)} elements, not 60")
    return np.array(group)
