"""Reading detector frames from CXI/HDF5 (:mod:`.source`: keys, sources, geometry, masks) and
the HDF5 compression filters they need (:mod:`.filters`)."""
