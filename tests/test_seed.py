"""Seeded training: the same seed gives byte-identical weights, another seed other weights.

Upstream darknet seeds from the clock and its 64 loading threads share one rand()
state; patches/0004-reproducible-random-numbers.patch makes both follow $SPIDARKNET_SEED.
"""

import argparse
import json
import shutil

import pytest

from spidarknet.cli import export_dataset, train
from spidarknet.core.errors import EngineError
from spidarknet.engine import train as engine_train
from spidarknet.engine.data_folder import ExportedDataset
from spidarknet.engine.locate import Found
from spidarknet.jobs import train as train_job

ITERATIONS = 30


@pytest.fixture(scope="module")
def exported(small_cxi, tmp_path_factory):
    """A quarter-width tiny net on the 60 small frames, 30 iterations."""
    ds = tmp_path_factory.mktemp("seed") / "ds"
    assert export_dataset.main([str(small_cxi), "--labels-dataset", "/truth/label", "--out", str(ds),
                                "--width-scale", "0.25", "--max-batches", str(ITERATIONS), "--quiet"]) == 0
    return ds


def _copy(exported, tmp_path, name):
    return shutil.copytree(exported, tmp_path / name)


@pytest.mark.slow
def test_same_seed_same_weights_whatever_the_threads(exported, darknet_bin, tmp_path, monkeypatch):
    assert engine_train.takes_seed(darknet_bin), f"{darknet_bin.path} lacks the seed patch: run 'make darknet'"
    # the command line, with its default seed, on two OpenMP threads ...
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    first = _copy(exported, tmp_path, "first")
    assert train.main([str(first), "--quiet"]) == 0
    card = json.loads((first / "backup" / "yolov2-tiny-spi_final.json").read_text())
    assert card["seed"] == 0 and card["iterations"] == ITERATIONS
    # ... and the engine directly, seed 0 given, on one thread: the same bytes
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(engine_train.SEED_ENV, "7")  # an inherited variable must not apply
    again = ExportedDataset.open(_copy(exported, tmp_path, "again"))
    result = engine_train.train(again, darknet_bin, seed=0)
    assert result.iterations == ITERATIONS
    weights = (first / "backup" / "yolov2-tiny-spi_final.weights").read_bytes()
    assert result.weights.read_bytes() == weights
    # 'random' draws a seed (here 1), records it, and training follows it
    monkeypatch.setattr(train_job.secrets, "randbelow", lambda n: 1)
    other = _copy(exported, tmp_path, "other")
    assert train.main([str(other), "--seed", "random", "--quiet"]) == 0
    card = json.loads((other / "backup" / "yolov2-tiny-spi_final.json").read_text())
    assert card["seed"] == 1
    assert (other / "backup" / "yolov2-tiny-spi_final.weights").read_bytes() != weights


def test_seed_values_are_checked(capsys):
    assert train.seed_arg("0") == 0 and train.seed_arg("4294967294") == 4294967294
    assert train.seed_arg("random") == "random"
    for bad in ("-1", "4294967295", "clock", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            train.seed_arg(bad)
    assert train.main(["nowhere", "--seed", "clock"]) == 2
    assert "--seed" in capsys.readouterr().err


def test_an_engine_without_the_seed_patch_is_refused_before_it_starts(exported, tmp_path):
    old = tmp_path / "darknet"
    old.write_text("#!/bin/sh\ntouch started\n")
    old.chmod(0o755)
    ds = ExportedDataset.open(exported)
    assert not engine_train.takes_seed(Found(old, "argument"))
    with pytest.raises(EngineError, match="make darknet"):
        engine_train.train(ds, Found(old, "argument"), seed=0)
    assert not (exported / "started").exists()
