"""``compare`` as a library function: selections side by side, and the structures they give."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import check_destination
from spidarknet.judge.compare import (compare, compare_structures, read_selection_like, write_comparison,
                                      write_structure)


@dataclass
class CompareSettings:
    """What ``spidarknet compare`` is asked to do (its options, by the same names)."""

    inputs: Sequence[str]                 # hit lists or file,index CSVs
    names: Sequence[str] | None = None    # one per input
    out: str | None = None                # .csv or .json
    recon: Sequence[str] | None = None    # one reconstruction folder per input
    truth: str | None = None              # the simulator's CXI file: the true structure
    shell_method: str = "pearson"
    threshold: float = 0.5                # the shell correlation's resolution criterion
    structure_out: str | None = None
    force: bool = False


def compare_to_files(settings: CompareSettings):
    """Run ``spidarknet compare``: (the comparison of the selections, that of their structures
    or None), both written where asked."""
    _check(settings)
    names = settings.names or [None] * len(settings.inputs)
    selections = [read_selection_like(path, name) for path, name in zip(settings.inputs, names)]
    result = compare(selections)
    structure = None
    if settings.recon is not None:
        structure = compare_structures(selections, list(settings.recon), settings.truth,
                                       method=settings.shell_method, threshold=settings.threshold)
    if settings.out:
        write_comparison(result, settings.out, force=settings.force, structure=structure)
    if settings.structure_out:
        write_structure(structure, settings.structure_out, force=settings.force)
    return result, structure


def _check(settings: CompareSettings) -> None:
    s = settings
    if len(s.inputs) < 2:
        raise ConfigError("compare needs at least two selections (hit lists or file,index CSVs)")
    if s.names is not None and len(s.names) != len(s.inputs):
        raise ConfigError(f"--names gives {len(s.names)} names for {len(s.inputs)} inputs; "
                          "give one name per input")
    if s.out:
        if not s.out.lower().endswith((".csv", ".json")):
            raise ConfigError(f"--out {s.out}: give a .csv or .json file name")
        check_destination(s.out, s.force, "comparison table")
    if s.recon is None and (s.truth or s.structure_out):
        raise ConfigError("--truth and --structure-out judge reconstructions: give --recon with one folder per input")
    if not 0 < s.threshold < 1:
        raise ConfigError(f"--threshold {s.threshold}: give a correlation between 0 and 1 (e.g. 0.5)")
    if s.recon is not None:
        if len(s.recon) != len(s.inputs):
            raise ConfigError(f"--recon gives {len(s.recon)} folders for {len(s.inputs)} inputs; "
                              "give one reconstruction folder per input, in the same order")
        for folder in s.recon:
            if not os.path.isdir(folder):
                raise InputError(f"--recon {folder} is not a folder; give the folder 'spidarknet reconstruct' wrote")
        if s.truth is not None and not os.path.isfile(s.truth):
            raise InputError(f"--truth {s.truth} does not exist; give the CXI file 'spidarknet simulate' wrote")
        if s.structure_out:
            check_destination(s.structure_out, s.force, "structure folder")
