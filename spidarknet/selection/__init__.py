"""Selections learnt from the user's labels: the features, the selector, the frames to label."""
