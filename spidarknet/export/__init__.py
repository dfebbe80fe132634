"""Handing a selection on: frames copied into CXI (:mod:`.cxi`), CrystFEL/OM event lists and
score sidecars (:mod:`.interchange`), Dragonfly EMC input (:mod:`.emc`)."""
