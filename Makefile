# spidarknet -- top-level Makefile.

.DEFAULT_GOAL := darknet

# ---------------------------------------------------------------------------
# The Darknet engine: targets darknet, darknet-source, clean-darknet;
# variables GPU, CUDNN, OPENMP, DEBUG, ARCH, CUDA_PATH, CUDNN_PATH, DARKNET_OUT.
# See mk/darknet.mk and patches/README.md.
include mk/darknet.mk
# ---------------------------------------------------------------------------
