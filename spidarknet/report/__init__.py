"""Judging a selection: truth, evaluation, comparisons and the HTML report.

Modules, in the direction the data flow:

* :mod:`~spidarknet.report.keys`: matching frames named in different lists (file
  basename or absolute path, index);
* :mod:`~spidarknet.report.truth`: 0/1 truth for the frames of a hit list, from a dataset
  in the frame files or a CSV, with coverage checks;
* :mod:`~spidarknet.report.evaluation`: P/R/F1/Fβ, confusion matrix, PR and ROC curves,
  suggested thresholds, as one JSON-ready dict;
* :mod:`~spidarknet.report.breakdown`: the same selection per category of frame (``--by``)
  and per photon-count bin;
* :mod:`~spidarknet.report.compare`: selections side by side (counts, intersections,
  Jaccard);
* :mod:`~spidarknet.report.plot`: the figures, drawn with matplotlib (PR and ROC curves,
  histograms, profile maps; PNG with an SVG beside each) and the montages of frame crops;
* :mod:`~spidarknet.report.page`: the report folder: ``index.html`` filled from the Jinja2
  template ``spidarknet/templates/report.html``, and the figures.

None of them touches the engine; frames are read again from the files a hit list names.
"""
