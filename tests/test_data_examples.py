"""The example files shipped in data/ parse with the readers the commands use."""

from pathlib import Path

from spidarknet.core.selection import read_selection
from spidarknet.judge.truth import read_truth_csv

DATA = Path(__file__).resolve().parents[1] / "data"


def test_example_selection_and_truth_parse():
    positives = read_selection(str(DATA / "example-positives.csv"))
    assert [(e.file, e.index) for e in positives] == [("run0042.cxi", 17), ("run0042.cxi", 211),
                                                      ("run0043.cxi", 5)]
    truth = read_truth_csv(str(DATA / "example-truth.csv"))
    assert sorted(truth.values()) == [False, True, True]


def test_class_names_match_the_exported_data_sets():
    from spidarknet.dataset import CLASS_NAMES
    assert (DATA / "obj.names").read_text().split() == list(CLASS_NAMES)
