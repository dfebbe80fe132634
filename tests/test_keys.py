"""The one rule from a file name written in a list to a file (core.keys.FileResolver).

Real path first, then a base name that is unique among the known files; a base name that
several known files share is an error naming them; anything else is unknown.
"""

import os
import shutil

import pytest

from spidarknet.cli import export_dataset
from spidarknet.core.errors import InputError
from spidarknet.core.keys import Canon, FileResolver, describe_keys, match_keys


@pytest.fixture
def two_runs(tmp_path):
    """``a/run.cxi`` and ``b/run.cxi`` (two files, one base name) and ``a/other.cxi``."""
    paths = []
    for rel in ("a/run.cxi", "b/run.cxi", "a/other.cxi"):
        path = tmp_path / rel
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        paths.append(str(path))
    return paths


def test_real_path_then_unique_base_name(two_runs, tmp_path):
    a_run, b_run, other = two_runs
    resolver = FileResolver(two_runs)
    assert resolver.resolve(a_run) == a_run and resolver.resolve(b_run) == b_run
    link = tmp_path / "link.cxi"
    os.symlink(b_run, link)
    assert resolver.resolve(str(link)) == b_run                      # the real path decides
    assert resolver.resolve("other.cxi") == other                    # a unique base name
    assert resolver.resolve("/moved/elsewhere/other.cxi") == other   # ... wherever it was written
    assert resolver.resolve("missing.cxi") is None


def test_ambiguous_base_name_is_an_error_naming_the_candidates(two_runs):
    a_run, b_run, _ = two_runs
    with pytest.raises(InputError, match="ambiguous") as err:
        FileResolver(two_runs).resolve("run.cxi")
    assert a_run in str(err.value) and b_run in str(err.value) and "full path" in str(err.value)
    with pytest.raises(InputError, match="ambiguous"):
        FileResolver(two_runs).resolve("/moved/run.cxi")
    # the same file written two ways is one candidate, not two
    same = os.path.join(os.path.dirname(a_run), "..", "a", "run.cxi")
    assert FileResolver([a_run, same]).resolve("/moved/run.cxi") == a_run


def test_lists_matched_by_the_same_rule(two_runs):
    a_run, b_run, other = two_runs
    canon = Canon([a_run, b_run, "other.cxi", other])
    assert canon(a_run, 1) != canon(b_run, 1)                        # two files, one base name
    assert canon("other.cxi", 2) == canon(other, 2)                  # a bare name, a full path
    with pytest.raises(InputError, match="ambiguous"):
        Canon([a_run, b_run, "run.cxi"])
    found, missing = match_keys([(a_run, 0), ("other.cxi", 5)], {(a_run, 0): "x", (b_run, 5): "y"})
    assert found == ["x", None] and describe_keys(missing) == "other.cxi:5"


def test_selection_with_an_ambiguous_name_is_one_error_line(small_cxi, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(small_cxi, a / "run.cxi")
    shutil.copy(small_cxi, b / "run.cxi")
    sel = tmp_path / "pos.csv"
    sel.write_text("file,index\nrun.cxi,3\n")
    out = tmp_path / "ds"
    assert export_dataset.main([str(a / "run.cxi"), str(b / "run.cxi"), "--positives", str(sel),
                                "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "ambiguous" in err and str(a / "run.cxi") in err and str(b / "run.cxi") in err and str(sel) in err
    assert not out.exists()


def test_one_reader_tells_a_hit_list_from_a_plain_selection(tmp_path):
    import numpy as np

    from spidarknet.frames.source import FrameKey
    from spidarknet.hits import HitList, read_any_selection, read_selected

    keys = [FrameKey("/data/run.cxi", "/entry_1/data_1/data", i) for i in range(4)]
    hits = HitList(keys, [0.9, 0.8, 0.1, 0.7], np.zeros((4, 4)), 0.5, selected=[True, False, False, True])
    hits.write_csv(tmp_path / "hits.csv")                 # narrowed below score >= threshold
    written = read_any_selection(tmp_path / "hits.csv")
    assert written.kind == "hit list" and len(written.hits) == 4
    assert written.frames == [("/data/run.cxi", 0), ("/data/run.cxi", 3)]   # the selection as written
    (tmp_path / "sel.csv").write_text("# picked by hand\nfile,index\nrun.cxi,3\n")
    plain = read_any_selection(tmp_path / "sel.csv")
    assert plain.kind == "selection" and plain.hits is None and plain.frames == [("run.cxi", 3)]
    with pytest.raises(InputError, match="does not exist"):
        read_any_selection(tmp_path / "nope.csv")
    HitList(keys[:2] + keys[:1], [0.9, 0.8, 0.9], np.zeros((3, 4)), 0.5).write_csv(tmp_path / "twice.csv")
    assert len(read_selected(tmp_path / "twice.csv")[0]) == 3
    with pytest.raises(InputError, match="twice"):
        read_selected(tmp_path / "twice.csv", unique=True)
