"""The ground floor: errors, atomic outputs, frame-name matching, selection files, metrics, labels;
the scattering geometry, the sphere form factor and the radial profile (:mod:`.scattering`,
:mod:`.radial`) that the simulator, the size fit, the reconstruction and the judge share.

Nothing here reads detector frames or touches the engine; every other layer may import it.
"""
