"""The Python face: the walk-through of docs/python.md runs, and the API gives the CLI's results."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import spidarknet as sk
from spidarknet.cli import detect as detect_cmd
from spidarknet.hits import read_hits

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def test_the_face_names_its_functions_and_exceptions():
    for name in ("open_frames", "load_model", "detect", "fit_spheres", "evaluate", "learn", "HitList", "Selector"):
        assert callable(getattr(sk, name)), name
    assert issubclass(sk.InputError, sk.SpidarknetError) and sk.__version__
    with pytest.raises(AttributeError):
        sk.no_such_name  # noqa: B018


@pytest.mark.slow
def test_the_walk_through_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "frames selected" in out and "cross-validated F1" in out and "InputError" in out
    assert (tmp_path / "hits.csv").is_file() and (tmp_path / "selection.json").is_file()


@pytest.mark.slow
def test_the_api_gives_the_commands_hit_list(small_cxi, tmp_path):
    out = tmp_path / "cli.csv"
    assert detect_cmd.main([str(small_cxi), "--size-range", "60", "75", "--out", str(out), "--quiet",
                            "--jobs", "1", "--no-prefilter"]) == 0
    by_cli = read_hits(out)
    by_api = sk.detect(sk.open_frames(str(small_cxi)), size_range=(60, 75), prefilter=False, jobs=1)
    assert [k.index for k in by_api.keys] == [k.index for k in by_cli.keys]
    assert np.allclose(by_api.scores, by_cli.scores, atol=1e-6)
    assert list(by_api.hits) == list(by_cli.hits) and by_api.threshold == pytest.approx(by_cli.threshold)
    assert np.allclose(by_api.columns["diameter_nm"], by_cli.columns["diameter_nm"], atol=0.01, equal_nan=True)


def test_the_detect_job_writes_the_commands_hit_list(small_cxi, tmp_path, capsys):
    """The library function the command calls, given the settings the command builds, writes
    the command's hit list byte for byte, and the command prints what the job returned."""
    from spidarknet.frames.options import FrameOptions
    from spidarknet.jobs.detect import DetectSettings, detect_to_file
    by_cli, by_job = tmp_path / "cli.csv", tmp_path / "job.csv"
    assert detect_cmd.main([str(small_cxi), "--frames", "0:24", "--size-range", "60", "75", "--out", str(by_cli),
                            "--jobs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    settings = DetectSettings(FrameOptions((str(small_cxi),), frames="0:24"), out=str(by_job), size_range=(60, 75),
                              jobs=1)
    result = detect_to_file(settings)
    assert by_job.read_bytes() == by_cli.read_bytes()
    assert result.hits.summary_line() in printed and f"wrote {by_cli}" in printed
    assert read_hits(by_job).meta["size_range_nm"] == [60, 75] and result.workers == "1 process"


def test_settings_options_are_checked_by_name():
    """Experiments set a job's settings by name (a recipe's variant): a misspelt one is an error
    naming the nearest, and a name both frames and preprocessing hold is set in both."""
    from spidarknet.frames.options import FrameOptions
    from spidarknet.jobs import with_options
    from spidarknet.jobs.export_dataset import ExportSettings
    settings = ExportSettings(FrameOptions(("x.cxi",)), out="ds")
    changed = with_options(settings, {"scale": "linear", "max_batches": 300, "centre_px": (1.0, 2.0)})
    assert (changed.preprocessing.scale, changed.max_batches) == ("linear", 300)
    assert changed.frames.centre_px == changed.preprocessing.centre_px == (1.0, 2.0)
    assert settings.preprocessing.scale == "log"  # a copy
    with pytest.raises(sk.ConfigError, match="'max_bathces'.*did you mean 'max_batches'"):
        with_options(settings, {"max_bathces": 3})
