"""A trained model: weights plus the model card that makes them usable on their own.

The card is JSON beside the weights (``X.weights`` -> ``X.json``) holding the network
cfg text, the class names, the preprocessing settings, the selection threshold and the
validation figures, so that ``detect --weights X.weights`` needs nothing else.
Weights without a card are accepted when they sit in an exported data set's
``backup/`` folder (the cfg and preprocess.json are taken from that folder).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from spidarknet.core.version import __version__
from spidarknet.core.defaults import DETECTION_THRESHOLD
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import write_json
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.detector import RegionSpec
from spidarknet.engine.weights import check_weights
from spidarknet.preprocess import Preprocessing

log = logging.getLogger(__name__)

CARD_FORMAT = 1
DEFAULT_THRESHOLD = DETECTION_THRESHOLD
#: the simulation-trained model shipped with spidarknet (rebuilt by 'make model'); its card
#: holds the science benchmark's figures
BUILTIN_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "spi-default.weights"


def builtin_weights() -> Path:
    """The shipped model's weights; a clear error where this installation has none."""
    if not BUILTIN_WEIGHTS.is_file() or not card_path(BUILTIN_WEIGHTS).is_file():
        raise ConfigError(f"this installation has no built-in model ({BUILTIN_WEIGHTS} with its card); "
                          "build it with 'make model' or give --weights")
    return BUILTIN_WEIGHTS


@dataclass
class Model:
    weights: Path
    cfg: DarknetCfg
    preprocessing: Preprocessing
    names: list[str] = field(default_factory=lambda: ["single"])
    threshold: float = DEFAULT_THRESHOLD
    validation: dict = field(default_factory=dict)
    origin: str = ""

    @property
    def card_path(self) -> Path:
        return card_path(self.weights)

    @property
    def spec(self) -> RegionSpec:
        return RegionSpec.from_cfg(self.cfg)

    def check(self) -> None:
        """Cfg, weights and preprocessing agree (raises EngineError/ConfigError otherwise)."""
        check_weights(self.cfg, self.weights)
        w, h, _ = self.cfg.input_size
        if (w, h) != (self.preprocessing.size, self.preprocessing.size):
            raise ConfigError(f"the network takes {w}x{h} inputs but the preprocessing makes "
                              f"{self.preprocessing.size}x{self.preprocessing.size} images")
        if self.cfg.classes != len(self.names):
            raise ConfigError(f"the network has {self.cfg.classes} classes but {len(self.names)} names")

    def write_cfg(self, folder: str | os.PathLike) -> Path:
        """The cfg as a file (darknet and OpenCV read files), in ``folder``."""
        path = Path(folder) / "model.cfg"
        self.cfg.save(path)
        return path

    def save_card(self, extra: dict | None = None) -> Path:
        values = {
            "format": CARD_FORMAT, "spidarknet_version": __version__,
            "weights": self.weights.name, "names": self.names, "threshold": self.threshold,
            "validation": self.validation, "preprocessing": self.preprocessing.to_dict(),
            "cfg": self.cfg.dumps(),
        }
        values.update(extra or {})
        path = self.card_path
        write_json(values, path, True, "model card")
        return path


def card_path(weights: str | os.PathLike) -> Path:
    return Path(weights).with_suffix(".json")


def load_model(weights: str | os.PathLike, *, cfg: str | None = None, preprocess: str | None = None,
               threshold: float | None = None) -> Model:
    """The model for ``weights``: from its card, its data set folder, or explicit files."""
    weights = Path(weights)
    if not weights.is_file():
        raise ConfigError(f"weights {weights} do not exist")
    card = card_path(weights)
    if card.is_file() and cfg is None and preprocess is None:
        try:
            values = json.loads(card.read_text())
            model = Model(weights=weights, cfg=DarknetCfg.parse(values["cfg"], str(card)),
                          preprocessing=Preprocessing.from_dict(values["preprocessing"], str(card)),
                          names=list(values["names"]), threshold=float(values["threshold"]),
                          validation=values.get("validation", {}), origin=f"model card {card}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"model card {card} is damaged ({exc}); train again or give --cfg "
                              "and --preprocess") from None
    else:
        folder = weights.resolve().parent.parent
        if cfg is None and (folder / "obj.data").is_file():
            from spidarknet.engine.data_folder import ExportedDataset
            ds = ExportedDataset.open(folder)
            cfg, preprocess = str(ds.cfg_path), preprocess or str(ds.root / "preprocess.json")
        if cfg is None or preprocess is None:
            raise ConfigError(f"{weights} has no model card ({card.name}) and is not in a data set's backup "
                              "folder: give --cfg and --preprocess, or use weights from 'spidarknet train'")
        model = Model(weights=weights, cfg=DarknetCfg.load(cfg), preprocessing=Preprocessing.load(preprocess),
                      origin=f"{cfg} + {preprocess}")
    if threshold is not None:
        model.threshold = threshold
    if not 0.0 <= model.threshold <= 1.0:
        raise ConfigError(f"threshold {model.threshold} must be between 0 and 1")
    model.check()
    log.debug("model %s (%s): threshold %.3g, preprocessing %s", weights, model.origin, model.threshold,
              model.preprocessing.to_dict())
    return model
