"""The command dispatcher: a mistyped command name is one error line with the nearest name."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spidarknet import cli

REPO = Path(__file__).resolve().parents[1]


def test_a_mistyped_command_suggests_the_nearest_in_one_line(capsys):
    assert cli.dispatch(["detetc", "run.cxi", "--out", "hits.csv"]) == cli.EXIT_USAGE == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: unknown command 'detetc'") and "did you mean 'detect'" in lines[0]
    # a name like no command gets no guess, still one line
    assert cli.dispatch(["zzzz"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "unknown command 'zzzz'" in lines[0] and "did you mean" not in lines[0]


def test_python_m_spidarknet_exits_2_on_a_typo():
    done = subprocess.run([sys.executable, "-m", "spidarknet", "detetc"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "did you mean 'detect'" in done.stderr, done.stderr


def test_every_command_has_a_help_with_an_example(capsys):
    """``CMD --help`` prints (a stray '%' in a help text once broke argparse) and ends with
    an example of the command."""
    import importlib

    import pytest

    for name, (module, _) in cli.COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        with pytest.raises(SystemExit) as done:
            parser.parse_args(["--help"])
        assert done.value.code == 0, name
        text = capsys.readouterr().out
        assert "example" in text.lower() and f"spidarknet {name}" in text, name


def test_an_operating_system_error_is_one_error_line_naming_the_file(tmp_path, capsys, monkeypatch):
    """Disk full in the middle of writing a simulated file: one ``error:`` line naming the
    file and the reason, no traceback, and no file under the name asked for."""
    import errno

    from spidarknet.cli import simulate
    from spidarknet.simulate import writer

    real_write = writer.CxiWriter.write

    def disk_full(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run.cxi"))

    monkeypatch.setattr(writer.CxiWriter, "write", disk_full)
    assert simulate.main([str(tmp_path / "run.cxi"), "-n", "4", "-q"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: {tmp_path / 'run.cxi'}: No space left on device", err
    assert list(tmp_path.iterdir()) == []          # neither the file nor its temporary


def test_a_mistyped_option_is_one_line_naming_the_nearest(capsys):
    """An unknown option: one line with the option meant, exit status 2 (no 16 lines of usage)."""
    assert cli.dispatch(["detect", "run.cxi", "--out", "hits.csv", "--treshold", "0.5"]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: unknown option --treshold (did you mean --threshold?); "
                            "'spidarknet detect --help' lists the options\n")
    # --opt=value, several at once, and one like no option
    assert cli.dispatch(["select", "hits.csv", "--out", "s.csv", "--treshold=0.5", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--treshold=0.5 (did you mean --threshold?), --zzzzzz;" in err, err


def test_no_command_takes_abbreviated_options(capsys):
    """``--size-rang 60 75`` once passed silently for --size-range; every command refuses it."""
    import importlib

    assert cli.dispatch(["detect", "run.cxi", "--out", "hits.csv", "--size-rang", "60", "75"]) == 2
    assert "unknown option --size-rang (did you mean --size-range?)" in capsys.readouterr().err
    for name, (module, _) in cli.COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        assert parser.allow_abbrev is False, name
        longest = max((o for a in parser._actions for o in a.option_strings), key=len)
        with pytest.raises(SystemExit) as done:
            parser.parse_args(["x", longest[:-1]])
        assert done.value.code == 2, name
        assert f"(did you mean {longest}?)" in capsys.readouterr().err, name


def test_other_usage_errors_are_one_line_too(capsys):
    assert cli.dispatch(["detect"]) == 2
    assert capsys.readouterr().err == ("error: the following arguments are required: INPUT, --out; "
                                       "'spidarknet detect --help' lists the options\n")


def test_train_anew_sets_the_earlier_weights_aside_and_warns_of_few_validation_singles(small_cxi, tmp_path,
                                                                                      capsys):
    """train --force moves the earlier training's weights into backup/previous, so that a
    --resume after Ctrl-C continues the new training, not the finished old one; a data set
    whose validation images hold few singles is said to give uncertain figures."""
    from spidarknet.cli import Console, export_dataset
    from spidarknet.engine.data_folder import ExportedDataset
    from spidarknet.engine.train import final_weights, newest_backup
    from spidarknet.jobs import train
    out = tmp_path / "ds"
    assert export_dataset.main([str(small_cxi), "--out", str(out), "--labels-dataset", "/truth/label",
                                "--frames", "0:30", "--max-batches", "2", "--quiet"]) == 0
    ds = ExportedDataset.open(out)
    final_weights(ds).write_bytes(b"old")
    (ds.backup_dir / f"{ds.weights_base}.backup").write_bytes(b"old")
    settings = train.TrainSettings(str(out))
    with pytest.raises(Exception, match="exists from an earlier training"):
        train._starting_weights(settings, ds, Console())
    settings.force = True
    assert train._starting_weights(settings, ds, Console()) is None
    assert newest_backup(ds) is None and (ds.backup_dir / "previous" / final_weights(ds).name).is_file()
    capsys.readouterr()
    train._warn_small(ds, Console())
    assert "labelled singles" in capsys.readouterr().err
