"""The pages in the browser: the monitor of a run being recorded and the labelling page."""
