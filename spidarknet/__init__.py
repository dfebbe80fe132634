"""spidarknet: find single-particle hits in XFEL diffraction data with Darknet YOLO."""

__version__ = "0.1.0"
