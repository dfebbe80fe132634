"""Judging a selection: truth (:mod:`.truth`), P/R/F1 and curves (:mod:`.evaluation`), per category
and photon count (:mod:`.breakdown`), selections side by side (:mod:`.compare`), and the 3D
structure a selection gives (:mod:`.structure`)."""
