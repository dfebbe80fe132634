"""Outputs are never half-written: an interrupted write leaves nothing, an old output survives."""

import json
import math

import pytest

from spidarknet.core.errors import OutputError
from spidarknet.core.outputs import atomic_path, staged_dir, write_json


def test_interrupted_folder_leaves_nothing_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(out, force=True) as stage:
            (stage / "new.txt").write_text("half")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    assert (out / "old.txt").read_text() == "earlier run"
    with staged_dir(out, force=True) as stage:
        (stage / "new.txt").write_text("done")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_interrupted_file_leaves_nothing_and_existing_files_need_force(tmp_path):
    out = tmp_path / "hits.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("engine died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(out) as tmp:
        tmp.write_text("complete")
    with pytest.raises(OutputError, match="already exists; use --force"):
        with atomic_path(out):
            pass
    assert out.read_text() == "complete"


def test_json_is_strict(tmp_path):
    write_json({"f1": float("nan"), "auc": math.inf, "n": 3}, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == {"f1": None, "auc": None, "n": 3}


def test_missing_output_folder_is_named(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "hits.csv"):
            pass
