"""The HTML report of a selection: its figures (:mod:`.plot`, matplotlib, PNG with an SVG beside
each, and montages of frame crops) and the folder (:mod:`.page`: ``index.html`` filled from the
Jinja2 template ``spidarknet/templates/report.html``, and ``report.json``).

What the figures show is computed in :mod:`spidarknet.judge`; none of it touches the engine.
"""
