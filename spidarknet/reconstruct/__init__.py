"""3D reconstruction of a selection with Dragonfly's EMC (``spidarknet reconstruct``), its
figures and page.

From a hit list (its selected frames are exported here) or an ``export-emc`` folder,
the frames go onto a reduced detector (:class:`spidarknet.export.emc.PixelReduction`: ``B × B``
binning, then the pixels below ``q_max``), Dragonfly's ``dragonfly.emc`` runs as a
subprocess, and its result becomes a plain 3D intensity with figures and a page.

Public API (other modules and engineers rely on these names; all importable from here)
------------------------------------------------------------------------------------
``reconstruct(source, out, *, binning=None, q_max_inv_nm=None, iterations=30, num_div=None,
threads=None, halves=False, resume=False, force=False, dragonfly=None, progress=True, ...)
-> Reconstruction``
    ``Reconstruction`` is a dataclass with ``out`` (the folder), ``frames``, ``seconds``,
    ``iterations``, ``num_div``, ``num_pix``, ``size`` (voxels per side),
    ``q_per_voxel_inv_nm``, ``halves`` (the two half reconstructions or ``None``) and
    ``line()`` (a one-line summary).
``read_intensity(folder_or_h5) -> (volume, q_per_voxel_inv_nm)``
    ``volume`` is float64 ``n × n × n`` with ``q = 0`` at index ``n // 2`` on every axis;
    ``q_per_voxel_inv_nm`` is ``|q|`` of one voxel step in nm⁻¹ (``q = 4π sin θ / λ``).
``read_log(folder) -> dict of arrays`` (the columns of ``log.csv``), ``find_dragonfly(path=None)``.

The output folder
-----------------
``intensity.h5``: ``/intensity`` (float64 ``n³``, Dragonfly's last model; axis ``i`` is
Dragonfly's ``q_x``, ``j`` ``q_y``, ``k`` ``q_z`` in voxels ``index − n // 2``, in an
orientation of EMC's choosing), attributes ``q_per_voxel_inv_nm``, ``frames``,
``iterations``, ``num_div``; ``/likelihood_per_frame``, ``/mutual_info_per_frame`` and
``/scale`` (per frame, photons-file order, when Dragonfly wrote them).  ``log.csv``
(iteration, seconds, rms_change, mutual_info, log_likelihood, num_rot, beta),
``reconstruct.json`` (settings, reduction, frames, timings), ``frames.csv`` (the frames
used, in photons-file order, with their half), ``slices.png``, ``convergence.png``,
``report.html``.  ``dragonfly/`` keeps Dragonfly's own files: ``config.ini``,
``photons.emc``, ``detector.h5``, ``EMC.log`` and the last iteration's
``data/output_NNN.h5`` (earlier ones are deleted as the run goes: ~7 MB each).  With
``halves`` the sub-folders ``half1/`` (selected frames 0, 2, 4, ... of ``frames.csv``) and
``half2/`` (1, 3, 5, ...) hold the same layout; their Dragonfly runs read the parent's
photons file through a ``blacklist.dat``.

While it runs the folder is ``OUT.partial``; it becomes ``OUT`` only when every run and
figure is complete.  An interrupted run (Ctrl-C, kill) leaves ``OUT.partial`` with its
completed iterations; ``resume=True`` continues it (Dragonfly's ``-r``), as it continues a
complete ``OUT`` to more ``iterations``.

Units: q in nm⁻¹ as the rest of the project prints it; Dragonfly's voxel is
``2π / (λ · ewald_rad)`` with ``ewald_rad`` in (binned) pixels, one pixel at the detector
centre.

The package, one job per module (lower ones first; each imports only those above it):

=================  ==========================================================================
``defaults``       :data:`DEFAULTS`, the command's defaults in one table
``page``           the figures and the HTML page of a run
``dragonfly``      finding ``dragonfly.emc``, its config and log, a run of it
``reduction``      the reduced detector and orientation sampling that suit the data
``prepare``        a run's input: frames exported or read, reduced, configs written
``results``        :class:`Reconstruction`, a run folder's products, reading them back
``run``            :func:`reconstruct`, the whole job
=================  ==========================================================================
"""

from __future__ import annotations

from spidarknet.reconstruct.defaults import DEFAULTS
from spidarknet.reconstruct.dragonfly import (DRAGONFLY_ENV, DragonflyError, find_dragonfly, num_rotations,
                                              parse_dragonfly_log, run_dragonfly)
from spidarknet.reconstruct.reduction import choose_reduction, default_num_div
from spidarknet.reconstruct.results import Reconstruction, read_intensity, read_log
from spidarknet.reconstruct.run import reconstruct

__all__ = ["DEFAULTS", "DRAGONFLY_ENV", "DragonflyError", "Reconstruction", "choose_reduction", "default_num_div",
           "find_dragonfly", "num_rotations", "parse_dragonfly_log", "read_intensity", "read_log", "reconstruct",
           "run_dragonfly"]
