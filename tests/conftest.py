"""Shared fixtures: simulated CXI files, the real darknet engine, one trained model.

Everything here is real: files come from spidarknet's own simulator, the engine is the
one 'make darknet' builds, training runs darknet itself.  Expensive fixtures are
session-scoped so the whole suite trains once.  Tests that train, need the trained model
(marked here, by their fixtures) or do other long work (marked where they are) carry the
'slow' marker: 'make test-fast' (pytest -m "not slow") leaves them out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spidarknet.simulate import simulate_file

REPO = Path(__file__).resolve().parents[1]


DRAGONFLY_HINT = ("Dragonfly is not installed: make build/dragonfly/.installed (or pip install dragonfly-spi); "
                  "set SPIDARKNET_REQUIRE_DRAGONFLY=1 to make its absence a failure")


@pytest.fixture(scope="session")
def dragonfly_emc():
    """Dragonfly's ``dragonfly.emc`` as ``reconstruct`` finds it; the tests that need it are
    skipped without it, unless SPIDARKNET_REQUIRE_DRAGONFLY=1 (``make test``) makes its
    absence a failure."""
    from spidarknet.reconstruct import DragonflyError, find_dragonfly
    try:
        return find_dragonfly()
    except DragonflyError:
        if os.environ.get("SPIDARKNET_REQUIRE_DRAGONFLY"):
            pytest.fail(DRAGONFLY_HINT)
        pytest.skip(DRAGONFLY_HINT)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="session")
def small_cxi(sim_dir) -> Path:
    """60 frames of every kind (seed 11)."""
    path = sim_dir / "small.cxi"
    simulate_file(path, 60, seed=11)
    return path


@pytest.fixture(scope="session")
def train_cxi(sim_dir) -> Path:
    """The training file of the learning test (seed 1)."""
    path = sim_dir / "train.cxi"
    simulate_file(path, 320, seed=1)
    return path


@pytest.fixture(scope="session")
def heldout_cxi(sim_dir) -> Path:
    """Frames the network never saw (seed 2)."""
    path = sim_dir / "heldout.cxi"
    simulate_file(path, 120, seed=2)
    return path


@pytest.fixture(scope="session")
def darknet_bin():
    """The patched engine from 'make darknet'; its absence is a failure, not a skip."""
    from spidarknet.engine.locate import find_darknet
    found = find_darknet()
    assert found.trains_on_cpu, f"tests need the patched build from 'make darknet', found {found.path}"
    return found


@pytest.fixture(scope="session")
def libdarknet():
    from spidarknet.engine.locate import find_libdarknet
    return find_libdarknet()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, train_cxi, darknet_bin):
    """A quarter-width tiny YOLOv2 trained 500 iterations on train_cxi; returns the data set dir.

    With the default recipe (log scale, no aspect jitter, 4 turned copies per frame) and
    train's default seed 0 the run is reproducible; 500 iterations (the recipe's default is
    1500) keep the suite short."""
    from spidarknet.cli import export_dataset, train
    root = tmp_path_factory.mktemp("trained")
    ds = root / "ds"
    assert export_dataset.main([str(train_cxi), "--labels-dataset", "/truth/label", "--out", str(ds),
                                "--width-scale", "0.25", "--max-batches", "500", "--quiet"]) == 0
    assert train.main([str(ds), "--quiet"]) == 0
    return ds


@pytest.fixture(scope="session")
def heldout_hits(trained, heldout_cxi, tmp_path_factory) -> Path:
    """A real hit list: 'spidarknet detect' with the trained model on the held-out file."""
    from spidarknet.cli import detect
    path = tmp_path_factory.mktemp("heldout_hits") / "hits.csv"
    weights = trained / "backup" / "yolov2-tiny-spi_final.weights"
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(path), "--backend", "opencv",
                        "--quiet"]) == 0
    return path


#: session fixtures that train a network (minutes): every test that needs one is 'slow'
TRAINING_FIXTURES = frozenset({"trained", "heldout_hits"})


def pytest_configure(config):
    # darknet's OpenMP would otherwise take every core of a shared CI machine per process
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    config.addinivalue_line("markers", "slow: trains a network or needs one trained (the session's 'trained', "
                                       "'heldout_hits'), or other long work; 'make test-fast' runs "
                                       "pytest -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    """Mark 'slow' every test whose fixtures, directly or through others, include a trained model."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _write_untrained(folder: Path, seed: int) -> Path:
    """Untrained default CPU network (quarter-width yolov2-tiny-spi, 128) with a model card.

    Its scores mean nothing, but they are deterministic and cost what trained ones cost:
    enough for tests of plumbing, agreement and speed that need no learning.
    """
    from spidarknet.engine.cfg import configure_network, load_template
    from spidarknet.engine.model import Model
    from spidarknet.engine.weights import write_random_weights
    from spidarknet.preprocess import Preprocessing
    cfg = configure_network(load_template("yolov2-tiny-spi"), size=128, width_scale=0.25)
    model = Model(weights=folder / f"untrained-{seed}.weights", cfg=cfg, preprocessing=Preprocessing())
    write_random_weights(cfg, model.weights, seed=seed)
    model.save_card()
    return model.weights


@pytest.fixture(scope="session")
def make_untrained(tmp_path_factory):
    """A function seed -> path of untrained weights with their card."""
    folder = tmp_path_factory.mktemp("untrained")
    return lambda seed=0: _write_untrained(folder, seed)


@pytest.fixture(scope="session")
def untrained_weights(make_untrained) -> Path:
    return make_untrained(0)
