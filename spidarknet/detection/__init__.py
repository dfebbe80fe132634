"""Frames to a hit list: in this process (:mod:`.local`), on all cores (:mod:`.parallel`), over a
job array (:mod:`.shards`), on a file still being written (:mod:`.follow`), and the threshold
picked on a data set's validation images (:mod:`.threshold`)."""
