"""How sizes are estimated: :class:`SizingSettings`, and the constants calibrated once
(what an icosahedron measures, the shape term of the error, the window's misfit limit)."""

from __future__ import annotations

from dataclasses import dataclass

from spidarknet.core.errors import ConfigError


#: fringe-equivalent sphere diameter of a regular icosahedron over its volume-equivalent
#: diameter (the sphere fit's measure of an icosahedron; see the module notes)
ICOSAHEDRON_SPHERE_DIAMETER_RATIO = 0.998


#: the shape term of the diameter error, per diameter and per √misfit (module notes)
SHAPE_ERROR_PER_ROOT_MISFIT = 0.025
#: ... where the file's stray light comes in parts scaled per frame, the misfit it reads is
#: this times the misfit judged with them: the parts' free scales take up part of a
#: non-sphere's departure (icosahedra on paired measured-like development files, the same
#: frames with and without stray light: median misfit 0.132 -> 0.041, 0.082 -> 0.028, 0.110 ->
#: 0.037), and the term would cover their diameter's error less often (docs/recipe.md)
PARTS_MISFIT_FACTOR = 3.0


#: a size window (``select --size-range``) drops fits whose misfit is above this
SIZE_WINDOW_MAX_MISFIT = 0.5


#: with a size window (:attr:`SizingSettings.window_nm`), frames of a file without stray light
#: (no background shape) whose ring search's diameter lies more than this outside it are not
#: fitted further.  On development files the per-pixel
#: fit moved a diameter that a 60-75 nm window then kept (misfit <= 0.5) by at most 1.0 nm
#: on the pnCCD (4,000 simulated frames), 4.2 / 7.5 nm on 4 x 4- / 8 x 8-binned frames (dim
#: 311, 313, bright 314) and 9.9 nm on measured-like frames with stray light (303): 1.5 times that
WINDOW_MARGIN_NM = 15.0


@dataclass
class SizingSettings:
    """How sizes are estimated (defaults suit a pnCCD at 1.7 keV and 125 mm)."""

    d_min_nm: float = 30.0            # smallest diameter searched
    d_max_nm: float = 150.0           # largest diameter searched
    coarse_step_nm: float = 0.5       # grid step of the global search
    q_min_inv_nm: float = 0.0         # fit pixels from this q (the mask usually decides)
    q_max_inv_nm: float = 1.0         # ... up to this q (≈ 195 px on the simulated pnCCD)
    bin_px: float = 1.0               # ring width of the grid search and of the profiles
    min_ring_fraction: float = 0.2    # profiles shown (report): rings at least this usable
    min_signal_photons: float = 100.0  # fitted sphere photons needed in the fit region
    #: ... and the sphere's evidence (σ) over the file's stray light, where the file has a
    #: background shape (measured-like development files: empty shots 0-10, singles from 9;
    #: docs/recipe.md, ninth session)
    min_signal_z: float = 8.0
    background: bool = True           # fit a flat background b (else b = 0)
    background_shape: bool = True     # ... and the file's own shape of it where it has one
    refine_centre: bool = True        # fit the beam centre per frame
    centre_search_px: float = 15.0    # ... at most this far from the file's centre (pixels of
    centre_step_px: float = 5.0       # ... 75 µm: CENTRE_PIXEL_M), starting from a grid this coarse
    adu_per_photon: float | None = None  # detector units per photon (None: data are photons)
    #: a size window (nm, ``detect --size-range``) that alone will judge the fits: a frame whose
    #: ring search puts it more than WINDOW_MARGIN_NM outside gets no per-pixel fit, and only
    #: fits inside it get the second-particle test (None: every fit is made in full)
    window_nm: tuple[float, float] | None = None
    #: near the window's edges, the diameter and centre of an icosahedron where it fits better
    #: (:mod:`spidarknet.sizing.icosahedron`; only with a window and fine pixels).  A few ms of
    #: CPU per frame it refines (fits up to 3 nm below an edge; spheres stop after a ranking on
    #: polar cells); the measured-like dev pool's F1 0.949 -> 0.967 with the first, slow version
    #: (eleventh session), 0.971 with this one (docs/recipe.md)
    icosahedron: bool = True

    def check(self) -> "SizingSettings":
        """Raise :class:`ConfigError` on values that cannot work."""
        if not 0 < self.d_min_nm < self.d_max_nm:
            raise ConfigError(f"the diameter range {self.d_min_nm}-{self.d_max_nm} nm must be "
                              "positive and increasing (e.g. --d-range 30 150)")
        if not 0 < self.coarse_step_nm <= (self.d_max_nm - self.d_min_nm) / 4:
            raise ConfigError(f"the diameter step {self.coarse_step_nm} nm must be positive and "
                              "small against the range")
        if not 0 <= self.q_min_inv_nm < self.q_max_inv_nm:
            raise ConfigError(f"the q range {self.q_min_inv_nm}-{self.q_max_inv_nm} nm⁻¹ must be "
                              "increasing (e.g. --q-range 0 1.0)")
        if not self.bin_px > 0:
            raise ConfigError("the ring width must be positive (pixels)")
        if not 0 < self.min_ring_fraction <= 1:
            raise ConfigError("the usable share of a ring must lie in (0, 1]")
        if not self.min_signal_z >= 0:
            raise ConfigError("the sphere's least evidence over the stray light must be ≥ 0 σ")
        if self.centre_search_px < 0:
            raise ConfigError("the centre search radius must be ≥ 0 pixels")
        if not 0 < self.centre_step_px <= max(self.centre_search_px, 0.1) * 2:
            raise ConfigError("the centre grid step must be positive and at most twice the "
                              "search radius (pixels)")
        if self.adu_per_photon is not None and not self.adu_per_photon > 0:
            raise ConfigError("--adu-per-photon must be positive")
        if self.window_nm is not None and not 0 <= self.window_nm[0] <= self.window_nm[1]:
            raise ConfigError(f"the size window {self.window_nm} nm must be a range MIN MAX, 0 <= MIN <= MAX")
        return self
