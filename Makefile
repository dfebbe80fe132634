# spidarknet -- top-level Makefile.
#
#   make demo      set everything up, then simulate -> export -> train -> detect (a few minutes, CPU)
#   make test      set everything up, then run the test suite
#   make test-fast the same without the tests marked slow (no training; under a minute)
#   make darknet   build only the engine (GPU=1, CUDNN=1, OPENMP=0|1 ...; see mk/darknet.mk)
#   make install   pip-install spidarknet (editable) with its test tools into build/venv
#   make system-deps  Debian packages the tests drive: OpenMPI, Chromium, Dragonfly's build deps (root)
#   make bench     throughput benchmark: detect per backend vs the naive pipeline
#   make science   science benchmark: train the default recipe, judge it on held-out regimes and geometries (~35 min)
#   make science-measured  the measured-like regime alone, judged with the built-in model (~5 min)
#   make science-agipd  the AGIPD regime (European XFEL runs) and the lit-pixel hit finder, built-in model (~13 min, 4 GB)
#   make model     rebuild the built-in model (spidarknet/models/) with its figures at each geometry (~35 min)
#   make seed-questions  the seed's three questions on a simulated beamtime, EMC included (~18 min)
#
#   Python: a virtual environment of the project's own, build/venv (made from BASE_PYTHON,
#   default python3, whose packages it sees); PYTHON=/path/to/python uses that interpreter
#   instead (no venv: spidarknet is pip-installed into it).

.DEFAULT_GOAL := help
BASE_PYTHON ?= python3
VENV := build/venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
PYTHON_SETUP := $(VENV)/bin/python
else
PYTHON_SETUP :=
endif
# one marker per interpreter: switching PYTHON installs into the new one
INSTALLED := build/.installed-$(subst /,_,$(subst ~,_,$(PYTHON)))

.PHONY: help install test test-fast demo bench science science-measured science-agipd model seed-questions system-deps
SYSTEM_DEPS := openmpi-bin libopenmpi-dev chromium libgsl-dev libhdf5-dev pkg-config
help:
	@sed -n '3,19p' Makefile | sed 's/^#//'

# ---------------------------------------------------------------------------
# The Darknet engine: targets darknet, darknet-source, clean-darknet;
# variables GPU, CUDNN, OPENMP, DEBUG, ARCH, CUDA_PATH, CUDNN_PATH, DARKNET_OUT.
# See mk/darknet.mk and patches/README.md.
include mk/darknet.mk
# ---------------------------------------------------------------------------

# The project's venv sees BASE_PYTHON's packages: pip adds only what is missing there.
$(VENV)/bin/python:
	$(BASE_PYTHON) -m venv --system-site-packages $(VENV)

$(INSTALLED): setup.py | $(PYTHON_SETUP)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@mkdir -p build && touch $@
	@echo "spidarknet installed for $(PYTHON)"

install: $(INSTALLED)

system-deps:
	@if dpkg -s $(SYSTEM_DEPS) >/dev/null 2>&1; then echo "system packages present"; \
	else apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SYSTEM_DEPS); fi

# Dragonfly (the EMC reconstruction package) reads our photons.emc back in the tests. It is
# heavy (C extensions, PyQt5, matplotlib), so it lives in its own virtual environment that
# sees the project's packages (a .pth file adds $(PYTHON)'s site-packages, whichever
# interpreter that is); the whole suite runs there, Dragonfly's check included.
DRAGONFLY_VENV := build/dragonfly
PURELIB := -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
$(DRAGONFLY_VENV)/.installed: $(INSTALLED) | system-deps
	$(PYTHON) -m venv --system-site-packages $(DRAGONFLY_VENV)
	project=$$($(PYTHON) $(PURELIB)) && own=$$($(DRAGONFLY_VENV)/bin/python $(PURELIB)) && \
	    echo "import site; site.addsitedir('$$project')" > "$$own/spidarknet-project.pth"
	CFLAGS="$$(pkg-config --cflags hdf5-serial) $$(pkg-config --cflags ompi)" \
	LDFLAGS="$$(pkg-config --libs-only-L hdf5-serial)" \
	$(DRAGONFLY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check dragonfly-spi
	touch $@

test: system-deps $(INSTALLED) darknet $(DRAGONFLY_VENV)/.installed
	SPIDARKNET_REQUIRE_DRAGONFLY=1 $(DRAGONFLY_VENV)/bin/python -m pytest -q tests

# the tests that train no network and need no trained one (pytest -m 'not slow'; see tests/conftest.py)
test-fast: system-deps $(INSTALLED) darknet $(DRAGONFLY_VENV)/.installed
	SPIDARKNET_REQUIRE_DRAGONFLY=1 $(DRAGONFLY_VENV)/bin/python -m pytest -q -m "not slow" tests

demo: $(INSTALLED) darknet
	PYTHON=$(PYTHON) bash tools/demo.sh

bench: $(INSTALLED) darknet
	$(PYTHON) -m spidarknet bench

# The science benchmark keeps its simulated files in build/science and reuses them.
SCIENCE_DIR := build/science
science: $(INSTALLED) darknet
	$(PYTHON) -m spidarknet bench --science --workdir $(SCIENCE_DIR) --out $(SCIENCE_DIR)/science.json

# The measured-like regime alone (simulate --measured-like: readout noise, common mode, bad and
# saturated pixels, stray light, a drifting beam), judged with the built-in model: no training.
science-measured: $(INSTALLED)
	$(PYTHON) -m spidarknet bench --science --regimes measured --weights spidarknet/models/spi-default.weights \
		--workdir $(SCIENCE_DIR) --out $(SCIENCE_DIR)/science-measured.json

# The AGIPD regime alone (simulate --detector agipd1m --compression gzip-1 runs, 4 GB, each beside its pnCCD twin, and
# the facility's lit-pixel hit finder beside spidarknet's selection), judged with the built-in model.
science-agipd: $(INSTALLED)
	$(PYTHON) -m spidarknet bench --science --regimes agipd agipd-sparse --weights spidarknet/models/spi-default.weights \
		--workdir $(SCIENCE_DIR) --out $(SCIENCE_DIR)/science-agipd.json

# The built-in model: the default recipe trained by the science benchmark (seeded, so the
# same build gives the same weights), its figures in the card.
model: $(INSTALLED) darknet
	$(PYTHON) -m spidarknet bench --science --workdir $(SCIENCE_DIR) --out $(SCIENCE_DIR)/science.json \
		--save-model spidarknet/models/spi-default.weights --train-geometries

# The seed's three questions: a simulated beamtime, four recipes, EMC reconstructions of each
# selection judged against the particle's true intensity; files kept in build/seed-questions.
seed-questions: $(INSTALLED) darknet $(DRAGONFLY_VENV)/.installed
	$(PYTHON) -m spidarknet seed-questions --workdir build/seed-questions
