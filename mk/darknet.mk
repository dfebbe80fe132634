# mk/darknet.mk -- build the Darknet engine (pjreddie/darknet 61c9d02e) from
# source with our patches (patches/*.patch).  Included by the top-level
# Makefile.
#
#   make darknet [GPU=0|1] [CUDNN=0|1] [OPENMP=0|1] [DEBUG=0|1]
#                [ARCH="-gencode ..."] [CUDA_PATH=/usr/local/cuda] [CUDNN_PATH=...]
#                [DARKNET_OUT=build/darknet]
#   make darknet-source      only fetch and cache the pristine source
#   make clean-darknet       remove builds and the patched tree (keeps the cached source)
#
# Source: the darknet/ submodule when populated (DARKNET_SUBMODULE: another
# folder holding the same source), else Debian's pristine .orig.tar.xz of the
# same commit (tools/darknet-source.sh, cached in build/darknet-orig/, so later
# builds are offline).  The patched tree lives in build/darknet-src/; objects
# and results go to $(DARKNET_OUT) (default build/darknet/: darknet,
# libdarknet.so, libdarknet.a, obj/); the compiler's output goes to
# $(DARKNET_OUT)/build.log, its last lines to the terminal when it fails.
# Changing the build configuration (GPU, CUDNN, ...) rebuilds in place; give
# another DARKNET_OUT (e.g. build/darknet-gpu) to keep several builds side by
# side.  'spidarknet build-engine' runs this file from the installed package
# with DARKNET_OUT, DARKNET_SRC and DARKNET_CACHE in the user's cache.

GPU        ?= 0
CUDNN      ?= 0
OPENMP     ?= 1
OPENCV     ?= 0
DEBUG      ?= 0
CUDA_PATH  ?= /usr/local/cuda
CUDNN_PATH ?= $(CUDA_PATH)
# CUDA 13 supports sm_75 and newer: Turing, Ampere (A100, RTX 30), Ada (L4,
# L40, RTX 40), Hopper (H100), plus compute_90 PTX that newer GPUs JIT-compile.
DARKNET_ARCH_DEFAULT := -gencode arch=compute_75,code=sm_75 \
                        -gencode arch=compute_80,code=sm_80 \
                        -gencode arch=compute_86,code=sm_86 \
                        -gencode arch=compute_89,code=sm_89 \
                        -gencode arch=compute_90,code=[sm_90,compute_90]
ifeq ($(origin ARCH),undefined)
ARCH := $(DARKNET_ARCH_DEFAULT)
else ifeq ($(origin ARCH),environment)
# Some environments export an unrelated ARCH (e.g. x86_64): take ARCH from the
# environment only when it looks like nvcc options.
ifeq ($(findstring arch,$(ARCH)),)
ARCH := $(DARKNET_ARCH_DEFAULT)
endif
endif
DARKNET_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

DARKNET_OUT      ?= build/darknet
DARKNET_CACHE    := build/darknet-orig
DARKNET_SRC      := build/darknet-src
DARKNET_SUBMODULE ?= darknet
DARKNET_LOG      := $(DARKNET_OUT)/build.log
DARKNET_ORIG     := $(DARKNET_CACHE)/darknet_0.0.0+git20180914.61c9d02e.orig.tar.xz
DARKNET_PATCHES  := $(sort $(wildcard patches/*.patch))
DARKNET_BIN      := $(DARKNET_OUT)/darknet
DARKNET_LIB      := $(DARKNET_OUT)/libdarknet.so

ifeq ($(wildcard $(DARKNET_SUBMODULE)/Makefile),)
DARKNET_PRISTINE := $(DARKNET_ORIG)
else
DARKNET_PRISTINE := $(DARKNET_SUBMODULE)
endif

ifeq ($(CUDNN)$(GPU),10)
$(error CUDNN=1 needs GPU=1)
endif
ifneq ($(OPENCV),0)
$(error OPENCV=$(OPENCV): spidarknet builds darknet without OpenCV (its 2018 OpenCV code does not build against OpenCV 4))
endif

# The configuration darknet is compiled with; its file is rewritten only when
# it changes, and then the objects are thrown away (darknet's own Makefile
# does not track flags).
DARKNET_CONFIG := GPU=$(GPU) CUDNN=$(CUDNN) OPENMP=$(OPENMP) OPENCV=$(OPENCV) DEBUG=$(DEBUG) \
                  $(if $(filter 1,$(GPU)),ARCH=$(strip $(ARCH)) CUDA_PATH=$(CUDA_PATH)) \
                  $(if $(filter 1,$(CUDNN)),CUDNN_PATH=$(CUDNN_PATH))

# Sub-make arguments; -j only when not already inside a parallel make.
DARKNET_MAKE_ARGS = \
	$(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(DARKNET_JOBS)) \
	GPU=$(GPU) CUDNN=$(CUDNN) OPENMP=$(OPENMP) OPENCV=0 DEBUG=$(DEBUG) \
	ARCH="$(strip $(ARCH))" \
	CUDA_PATH=$(abspath $(CUDA_PATH)) CUDNN_PATH=$(abspath $(CUDNN_PATH)) \
	OBJDIR=$(abspath $(DARKNET_OUT))/obj/ \
	EXEC=$(abspath $(DARKNET_BIN)) \
	SLIB=$(abspath $(DARKNET_LIB)) \
	ALIB=$(abspath $(DARKNET_OUT))/libdarknet.a

.PHONY: darknet clean-darknet darknet-source FORCE

darknet: $(DARKNET_OUT)/.spidarknet-built

# Pristine source from Debian (only when the submodule is empty).
$(DARKNET_ORIG):
	sh tools/darknet-source.sh $(DARKNET_CACHE)

# Fetch (and cache) the source only, e.g. before going offline.
darknet-source: $(filter-out $(DARKNET_SUBMODULE),$(DARKNET_PRISTINE))

# What the patched tree is made of: source (and submodule commit) and the
# list of patches (their contents are prerequisites below).
$(DARKNET_SRC).inputs: FORCE
	@mkdir -p $(@D)
	@echo '$(DARKNET_PRISTINE) $(notdir $(DARKNET_PATCHES))' \
	    $(if $(filter $(DARKNET_SUBMODULE),$(DARKNET_PRISTINE)),"$$(git -C $(DARKNET_SUBMODULE) rev-parse HEAD 2>/dev/null)") > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

$(DARKNET_SRC)/.spidarknet-patched: $(DARKNET_SRC).inputs $(DARKNET_PATCHES) tools/darknet-prepare.sh \
		$(if $(filter $(DARKNET_SUBMODULE),$(DARKNET_PRISTINE)),$(DARKNET_SUBMODULE)/Makefile,$(DARKNET_ORIG))
	sh tools/darknet-prepare.sh $(DARKNET_PRISTINE) patches $(DARKNET_SRC)
	@touch $@

$(DARKNET_OUT)/.spidarknet-config: FORCE
	@mkdir -p $(@D)
	@echo '$(DARKNET_CONFIG)' > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; \
	 else if [ -f $@ ]; then echo "  CONFIG  changed, rebuilding $(DARKNET_OUT) from scratch"; fi; \
	      rm -rf $(DARKNET_OUT)/obj; mv -f $@.new $@; fi

# Re-run darknet's make when the sources or the configuration changed, or an
# output is missing.
$(DARKNET_OUT)/.spidarknet-built: $(DARKNET_SRC)/.spidarknet-patched $(DARKNET_OUT)/.spidarknet-config \
		$(if $(wildcard $(DARKNET_BIN)),,FORCE) $(if $(wildcard $(DARKNET_LIB)),,FORCE)
ifeq ($(GPU),1)
	@test -x $(CUDA_PATH)/bin/nvcc || { echo "error: GPU=1 needs nvcc: no $(CUDA_PATH)/bin/nvcc (set CUDA_PATH)" >&2; exit 1; }
	@for h in cublas_v2.h curand.h; do test -f $(CUDA_PATH)/include/$$h || { \
	    echo "error: GPU=1 needs $(CUDA_PATH)/include/$$h (cuBLAS/cuRAND development files; see tools/cuda-wheels-sdk.sh)" >&2; exit 1; }; done
endif
ifeq ($(CUDNN),1)
	@test -f $(CUDNN_PATH)/include/cudnn.h || { echo "error: CUDNN=1 needs $(CUDNN_PATH)/include/cudnn.h (set CUDNN_PATH)" >&2; exit 1; }
endif
	@echo "darknet: compiling in $(DARKNET_OUT) (GPU=$(GPU) CUDNN=$(CUDNN) OPENMP=$(OPENMP)); compiler output: $(DARKNET_LOG)"
	@$(MAKE) -C $(DARKNET_SRC) $(DARKNET_MAKE_ARGS) all > $(DARKNET_LOG) 2>&1 || { \
	    tail -n 25 $(DARKNET_LOG) >&2; \
	    echo "error: compiling darknet failed; the compiler's output is in $(DARKNET_LOG)" >&2; exit 1; }
	@touch $@
	@echo "darknet: built $(DARKNET_BIN) and $(DARKNET_LIB) (GPU=$(GPU) CUDNN=$(CUDNN) OPENMP=$(OPENMP))"

clean-darknet:
	rm -rf $(filter-out $(DARKNET_CACHE),$(wildcard build/darknet*)) $(DARKNET_OUT)

FORCE:
