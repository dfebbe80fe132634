"""3D reconstruction of a selection with Dragonfly's EMC (:mod:`.run`) and its figures and page
(:mod:`.page`)."""
