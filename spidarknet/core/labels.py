"""Per-frame label values read as 0/1: the one rule shared by training labels and the truth."""

from __future__ import annotations

import numpy as np

from spidarknet.core.errors import InputError


def positive_labels(values, where: str) -> np.ndarray:
    """The one rule for per-frame label values: > 0 is a single hit (1), else not (0, -1).

    Used for training labels and for the truth that judges a selection alike.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise InputError(f"{where} holds {values.dtype} values, not 0/1 labels; name the label dataset "
                         "(e.g. /truth/label)")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise InputError(f"{where} holds NaN or infinite labels; labels must be 0 or 1")
    return values > 0
