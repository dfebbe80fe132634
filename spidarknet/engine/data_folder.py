"""An exported training folder read back the way darknet will use it.

:func:`darknet_label_path` is darknet's own rule for finding an image's label; :func:`read_data_file`
reads a ``.data`` file; :class:`ExportedDataset` checks a folder written by
:mod:`spidarknet.dataset` (obj.data, names, cfg, preprocess.json, image and label lists) before
darknet is started on it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from spidarknet.core.errors import InputError
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.preprocess import Preprocessing


def darknet_label_path(image_path: str) -> str:
    """The label path darknet derives from an image path (first-occurrence replacements)."""
    out = image_path
    for old, new in (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                     (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt")):
        out = out.replace(old, new, 1)
    return out


def read_data_file(path: Path) -> dict[str, str]:
    """``key = value`` lines of a darknet ``.data`` file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: is {path.parent} a folder made by export-dataset?") from None
    values = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InputError(f"{path}:{number}: expected key = value, found {raw.strip()!r}")
        values[key] = value
    return values


@dataclass
class ExportedDataset:
    """A folder written by export-dataset, checked the way darknet will use it."""

    root: Path
    data: dict[str, str]
    cfg_path: Path
    preprocessing: object
    train_images: list[str]
    valid_images: list[str]

    @property
    def backup_dir(self) -> Path:
        return self.root / self.data.get("backup", "backup")

    @property
    def weights_base(self) -> str:
        """The name darknet gives backups: the cfg file name up to its first dot."""
        return self.cfg_path.name.split(".")[0]

    @classmethod
    def open(cls, root: str | os.PathLike, cfg: str | os.PathLike | None = None) -> "ExportedDataset":
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"data set folder {root} does not exist; make it with 'spidarknet export-dataset'")
        data = read_data_file(root / "obj.data")
        for key in ("classes", "train", "names", "backup"):
            if key not in data:
                raise InputError(f"{root / 'obj.data'} has no '{key} =' line")
        for key in ("train", "names"):
            if not (root / data[key]).is_file():
                raise InputError(f"{root / 'obj.data'} names {key} = {data[key]}, which does not exist")
        if cfg is None:
            summary = root / "export.json"
            name = json.loads(summary.read_text()).get("cfg") if summary.exists() else None
            candidates = [root / name] if name else sorted(root.glob("*.cfg"))
            if len(candidates) != 1:
                raise InputError(f"cannot tell which .cfg in {root} to train; name it with --cfg")
            cfg_path = candidates[0]
        else:
            cfg_path = Path(cfg)
        net = DarknetCfg.load(cfg_path)
        if net.classes != int(data["classes"]):
            raise InputError(f"{cfg_path.name} has classes={net.classes} but obj.data says {data['classes']}: "
                             "the cfg belongs to another data set")
        names = (root / data["names"]).read_text().split()
        if len(names) != int(data["classes"]):
            raise InputError(f"{data['names']} lists {len(names)} names for {data['classes']} classes")
        preprocessing = Preprocessing.load(root / "preprocess.json")
        w, h, _ = net.input_size
        if (w, h) != (preprocessing.size, preprocessing.size):
            raise InputError(f"{cfg_path.name} expects {w}x{h} inputs but the images are "
                             f"{preprocessing.size}x{preprocessing.size}: the cfg belongs to another data set")
        lists = {}
        for key in ("train", "valid"):
            rel = data.get(key)
            lists[key] = [] if not rel or not (root / rel).is_file() else \
                [line.strip() for line in (root / rel).read_text().splitlines() if line.strip()]
        if not lists["train"]:
            raise InputError(f"{root / data['train']} lists no images")
        for image in lists["train"] + lists["valid"]:
            if not (root / image).is_file():
                raise InputError(f"{image} is listed in {root.name} but missing; export the data set again")
            label = darknet_label_path(image)
            if label == image or not (root / label).is_file():
                raise InputError(f"label {label} for {image} is missing (darknet would crash on it); "
                                 "export the data set again")
        return cls(root=root, data=data, cfg_path=cfg_path, preprocessing=preprocessing,
                   train_images=lists["train"], valid_images=lists["valid"])
