"""The defaults of ``spidarknet reconstruct``, one table (see
:func:`spidarknet.reconstruct.reduction.choose_reduction` and
:func:`~spidarknet.reconstruct.reduction.default_num_div`)."""

from __future__ import annotations


#: the defaults, one table (see :func:`choose_reduction` and :func:`default_num_div`)
DEFAULTS = {
    "iterations": 30,          # EMC iterations in all (the log-likelihood levels off well before)
    "max_width_px": 72,        # the reduced detector spans at most this many pixels across
    "pixels_per_fringe": 3.0,  # binning keeps at least this many binned pixels per sphere fringe (2π/d)
    "edge_arc_voxels": 6.0,    # num_div: the step between orientations at the model's edge, in voxels
    "num_div_range": (4, 10),  # ... clamped to this range (num_rot = 10 (5 n³ + n): 3,240 ... 50,100)
    "need_scaling": True,      # fit a scale factor per frame (the fluence varies shot to shot)
    "beta": None,              # Dragonfly's start beta (None: its per-frame 'auto' from the photon count)
    "beta_schedule": (2.0, 10),  # beta x 2.0 every 10 iterations (Dragonfly's own example schedule)
}
