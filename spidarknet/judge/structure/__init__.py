"""Judge a selection by the 3D structure it gives: truth intensities, alignment, shell correlations.

A reconstruction (Dragonfly's EMC, see :mod:`spidarknet.reconstruct`) is a 3D intensity on a
cubic voxel grid ``n × n × n`` with q = 0 at index ``n // 2`` and one voxel step worth
``q_per_voxel_inv_nm`` (nm⁻¹).  Volume axes ``(0, 1, 2)`` are ``(q_x, q_y, q_z)``, the
simulator's convention: ``x`` along the detector's columns, ``y`` along its rows, ``z`` along
the beam.  Everything in q here is in nm⁻¹ (``q = 4π sin θ / λ``), sizes in nm.

The three steps of judging
--------------------------
* :func:`truth_intensity` — the model particle's normalised ``|A(q)|²`` (``A(0) = 1``) on
  the reconstruction's grid.  Spheres analytically; icosahedra by the exact (analytic)
  form factor of a polyhedron (:func:`icosahedron_amplitude`, divergence theorem twice:
  a sum over the 60 edges of the 20 faces), in the simulator's standard orientation
  (face normals :data:`spidarknet.simulate.physics.ICOSAHEDRON_FACE_NORMALS`, sizes as
  volume-equivalent sphere diameters).  A size spread (``sizes_nm``) averages the intensity
  over the sizes, each weighted by its scattering power ``n_e² ∝ D⁶`` (what EMC's
  photon-weighted average of the frames gives).
* :func:`align` — EMC leaves the orientation of its volume arbitrary: a coarse search over
  a uniform sample of rotations on a few shells, then a local refinement, maximising the
  mean per-shell Pearson correlation with the reference; returns the rotated volume.
* :func:`shell_correlation` and :func:`resolution` — per shell of ``shell_width`` voxels,
  the Pearson correlation of the two intensities over the voxels valid in both (valid:
  finite and > 0; Dragonfly leaves voxels no pixel reached at exactly 0, and some tools
  write -1), and the first q where it falls below a threshold.  Beside it the per-shell
  *contrast* (the share of the truth's anisotropy the reconstruction reproduces): a Pearson
  correlation is blind to what adds the same to every orientation — exactly what 30 %
  multiples do to an EMC average — and the contrast is not, so selections judged against
  the truth are ranked by it (:func:`rank`).

Conventions (stated once, used everywhere)
------------------------------------------
* Shell ``k`` holds the voxels with ``(k - 1/2) w ≤ |q|/Δq < (k + 1/2) w`` (``w`` =
  ``shell_width`` in voxels, ``Δq`` = ``q_per_voxel``); its q is ``k w Δq``.
* Resolution: the q (nm⁻¹) where the per-shell figure first drops below the threshold
  (default 0.5), linearly interpolated between the last shell above and the first below,
  scanning outwards from the first well-measured shell that reaches the threshold (shells
  at the beam stop's edge are often poorly measured); quoted as the full period
  ``d = 2π / q`` (nm; the Bragg spacing; the half-period is ``π / q``).  When it never
  drops, the resolution is the last shell's (a bound: ``reached_edge``).
* Spheres: a sphere's intensity is constant on a shell, so a per-shell Pearson correlation
  over the shell's voxels is undefined.  For spheres the per-shell figure is the Pearson
  correlation of the two *radial profiles* (``log`` of the shell means on quarter-voxel
  bins) over a band of ``± band`` shells around the shell (``method = "radial-band"``): it
  is 1 where the fringes sit at the same q with the same depth, whatever the scale.
* Half sets (measured data): the selection split into even and odd frames, each half
  reconstructed, half 2 aligned to half 1; the figure is their shell correlation, the
  resolution quoted at 0.5.  It measures the consistency of half the data; the full set's
  correlation with the (unknown) truth is not this number (for a noise-limited shell
  ``CC_full ≈ sqrt(2 CC_half / (1 + CC_half))``, not applied here).

The package, one job per module (lower ones first; each imports only those above it):

=================  ==========================================================================
``icosahedron``    the simulator's icosahedron: faces and exact form factor amplitude
``grid``           the voxel grid: q of each voxel, valid voxels, radii, reading a volume
``model``          :class:`TruthModel` and the true intensity, at q vectors or on the grid
``shells``         per-shell figures of two volumes and the resolution they give
``rotations``      rotations spread over SO(3), conversions, the icosahedral group
``alignment``      :func:`align` a reconstruction onto a reference, :func:`rotate`
``judging``        :func:`judge_selection`, :func:`judge_halves`, :func:`rank`
=================  ==========================================================================

Their public names are importable from here.
"""

from __future__ import annotations

from spidarknet.judge.structure.alignment import Alignment, align, rotate
from spidarknet.judge.structure.grid import read_volume, valid_voxels, voxel_q
from spidarknet.judge.structure.icosahedron import icosahedron_amplitude, icosahedron_faces
from spidarknet.judge.structure.judging import (MIN_SHELL, StructureJudgement, common_range,
                                                default_alignment_range, judge_halves, judge_selection,
                                                measured_range, rank)
from spidarknet.judge.structure.model import (MAX_SIZE_SAMPLES, SHAPES, TruthModel, truth_from_simulation,
                                              truth_intensity, truth_values)
from spidarknet.judge.structure.rotations import (icosahedral_group, quaternions_to_matrices, rotation_angle_deg,
                                                  rotation_from_vector, uniform_rotations)
from spidarknet.judge.structure.shells import (DEFAULT_THRESHOLD, Resolution, ShellCorrelation, resolution,
                                               shell_correlation)

__all__ = [
    "Alignment", "DEFAULT_THRESHOLD", "MAX_SIZE_SAMPLES", "MIN_SHELL", "Resolution", "SHAPES", "ShellCorrelation",
    "StructureJudgement", "TruthModel", "align", "common_range", "default_alignment_range", "icosahedral_group",
    "icosahedron_amplitude", "icosahedron_faces", "judge_halves", "judge_selection", "measured_range",
    "quaternions_to_matrices", "rank", "read_volume", "resolution", "rotate", "rotation_angle_deg",
    "rotation_from_vector", "shell_correlation", "truth_from_simulation", "truth_intensity", "truth_values",
    "uniform_rotations", "valid_voxels", "voxel_q",
]
