"""A small data set trains fewer iterations than the default, and says so; a set whose
iterations the user chose, or a large one, keeps them.  No training: the cfg train would
hand darknet is read back."""

from __future__ import annotations

import pytest

from spidarknet.cli import export_dataset
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.data_folder import ExportedDataset
from spidarknet.engine.train import MAX_PASSES, MIN_ITERATIONS, fit_iterations_to_set
from spidarknet.simulate import simulate_file


@pytest.fixture(scope="module")
def fifty(tmp_path_factory):
    path = tmp_path_factory.mktemp("fifty") / "fifty.cxi"
    simulate_file(path, 50, seed=5)
    return path


def _export(cxi, out, *extra):
    assert export_dataset.main([str(cxi), "--labels-dataset", "/truth/label", "--out", str(out), "-q",
                                *extra]) == 0
    return ExportedDataset.open(out)


def _schedule(ds):
    net = DarknetCfg.load(ds.cfg_path).net
    return net.get_int("max_batches"), net.get("steps")


def test_a_fifty_frame_set_trains_a_few_hundred_iterations(fifty, tmp_path):
    ds = _export(fifty, tmp_path / "ds")
    assert _schedule(ds)[0] == 1500
    images = len(ds.train_images)                  # 40 frames x 4 orientations
    assert images * MAX_PASSES / 16 < 1500
    before, after = fit_iterations_to_set(ds)
    assert before == 1500 and after == max(MIN_ITERATIONS, -(-MAX_PASSES * images // 16)) < 1500
    assert _schedule(ds) == (after, f"{int(after * 0.8)},{int(after * 0.9)}")
    assert fit_iterations_to_set(ds) is None      # done once; a second call changes nothing


def test_a_chosen_count_is_kept(fifty, tmp_path):
    ds = _export(fifty, tmp_path / "ds", "--max-batches", "1500")
    assert fit_iterations_to_set(ds) is None and _schedule(ds)[0] == 1500


def test_train_says_it_shortened_a_small_set(fifty, tmp_path, capsys, darknet_bin, monkeypatch):
    """The message and the cfg as train leaves them; the training itself is replaced by a
    Ctrl-C (the one fake: 200 real iterations take a minute)."""
    from spidarknet.cli import train
    from spidarknet.jobs import train as train_job
    ds = _export(fifty, tmp_path / "ds")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_job, "train", stop)
    assert train.main([str(ds.root), "-q"]) == 130
    err = capsys.readouterr().err
    after = _schedule(ds)[0]
    assert after < 1500
    assert f"training {after} iterations instead of 1500" in err and f"{len(ds.train_images)} training" in err
