"""Reader and writer of darknet's ``.cfg`` section format, and the network templates.

Darknet reads a cfg line by line after deleting every blank character: a line starting
with ``[`` opens a section, ``#``/``;`` start comments, anything else is ``key=value``.
Keys may repeat across sections but not within one (darknet keeps the last).  This
module keeps the sections as an ordered list so that layer indices (used by ``[route]``)
stay meaningful.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spidarknet.core.defaults import TRAIN_BATCH
from spidarknet.core.errors import ConfigError

NET_SECTIONS = ("net", "network")
#: the built-in templates, in the repository's (or the installed share's) cfg folder
TEMPLATES = ("yolov2-tiny-spi", "yolov2-spi")


@dataclass
class Section:
    """One ``[name]`` block with its options in file order (values kept as text)."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def _get_number(self, key: str, default, convert, kind: str):
        value = self.options.get(key)
        if value is None:
            if default is None:
                raise ConfigError(f"[{self.name}] (line {self.line}) has no {key}=")
            return default
        try:
            return convert(value)
        except ValueError:
            raise ConfigError(f"[{self.name}] (line {self.line}): {key}={value} is not {kind}") from None

    def get_int(self, key: str, default: int | None = None) -> int:
        return self._get_number(key, default, int, "an integer")

    def get_float(self, key: str, default: float | None = None) -> float:
        return self._get_number(key, default, float, "a number")

    def get_floats(self, key: str) -> list[float]:
        value = self.options.get(key, "")
        try:
            return [float(v) for v in value.split(",") if v != ""]
        except ValueError:
            raise ConfigError(f"[{self.name}] (line {self.line}): {key}={value} is not a list of numbers") from None


@dataclass
class DarknetCfg:
    """A parsed network definition: ``sections[0]`` is ``[net]``, the rest are layers."""

    sections: list[Section]
    source: str = "<cfg>"

    # -- reading ---------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, source: str = "<cfg>") -> "DarknetCfg":
        sections: list[Section] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = "".join(raw.split())  # darknet deletes all blanks
            if not line or line[0] in "#;":
                continue
            if line[0] == "[":
                if not line.endswith("]") or len(line) < 3:
                    raise ConfigError(f"{source}:{number}: malformed section header {raw.strip()!r}")
                sections.append(Section(line[1:-1], {}, number))
                continue
            if not sections:
                raise ConfigError(f"{source}:{number}: option {raw.strip()!r} before the first [section]")
            key, sep, value = line.partition("=")
            if not sep or not key:
                raise ConfigError(f"{source}:{number}: expected key=value, found {raw.strip()!r}")
            sections[-1].options[key] = value
        cfg = cls(sections, source)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DarknetCfg":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"network cfg {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read network cfg {path}: {exc}") from None
        return cls.parse(text, str(path))

    def validate(self) -> None:
        if not self.sections or self.sections[0].name not in NET_SECTIONS:
            raise ConfigError(f"{self.source}: the first section must be [net]")
        if len(self.sections) < 2:
            raise ConfigError(f"{self.source}: no layers after [net]")

    # -- access ----------------------------------------------------------------------
    @property
    def net(self) -> Section:
        return self.sections[0]

    @property
    def layers(self) -> list[Section]:
        return self.sections[1:]

    def layers_named(self, name: str) -> list[tuple[int, Section]]:
        """(layer index, section) of every layer of one kind; indices as darknet counts them."""
        return [(i, s) for i, s in enumerate(self.layers) if s.name == name]

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(width, height, channels) of the network input."""
        return (self.net.get_int("width"), self.net.get_int("height"), self.net.get_int("channels", 3))

    def detection_layer(self) -> tuple[int, Section]:
        found = self.layers_named("region")
        if len(found) != 1:
            raise ConfigError(f"{self.source}: expected exactly one [region] layer, found {len(found)}")
        return found[0]

    @property
    def classes(self) -> int:
        return self.detection_layer()[1].get_int("classes")

    # -- writing ---------------------------------------------------------------------
    def dumps(self) -> str:
        out = []
        for section in self.sections:
            out.append(f"[{section.name}]")
            out.extend(f"{k}={v}" for k, v in section.options.items())
            out.append("")
        return "\n".join(out)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(self.dumps())
        os.replace(tmp, path)

    def copy(self) -> "DarknetCfg":
        return DarknetCfg([Section(s.name, dict(s.options), s.line) for s in self.sections], self.source)


# -- templates -----------------------------------------------------------------------------

def template_dirs() -> list[Path]:
    """Where the network templates live: $SPIDARKNET_CFG_DIR, the repository, the install."""
    dirs = []
    env = os.environ.get("SPIDARKNET_CFG_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parents[2] / "cfg")
    dirs.append(Path(sys.prefix) / "share" / "spidarknet" / "cfg")
    return dirs


def load_template(name_or_path: str) -> DarknetCfg:
    """A built-in template by name (``yolov2-tiny-spi``) or any .cfg file by path."""
    if name_or_path.endswith(".cfg") or os.sep in name_or_path:
        return DarknetCfg.load(name_or_path)
    for folder in template_dirs():
        candidate = folder / f"{name_or_path}.cfg"
        if candidate.is_file():
            return DarknetCfg.load(candidate)
    import difflib
    close = difflib.get_close_matches(name_or_path, TEMPLATES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown network {name_or_path!r} (built in: {', '.join(TEMPLATES)}, "
                      f"or give a path to a .cfg file){hint}")


def _scaled_filters(filters: int, scale: float) -> int:
    return max(8, int(round(filters * scale / 8.0)) * 8)


def set_iterations(net, max_batches: int) -> None:
    """The ``[net]`` section's ``max_batches`` and its step schedule: the learning rate falls
    tenfold at 80 % and again at 90 % of the iterations."""
    net.options["max_batches"] = str(max_batches)
    steps = sorted({max(1, int(max_batches * 0.8)), max(1, int(max_batches * 0.9))})
    net.options["steps"] = ",".join(str(s) for s in steps)
    net.options["scales"] = ",".join(".1" for _ in steps)


def configure_network(template: DarknetCfg, *, size: int, classes: int = 1, batch: int = TRAIN_BATCH,
                      subdivisions: int = 1, max_batches: int = 500,
                      learning_rate: float | None = None, burn_in: int | None = None,
                      width_scale: float = 1.0, jitter: float | None = None) -> DarknetCfg:
    """A training-ready copy of ``template`` for ``size``×``size`` inputs and ``classes``.

    Sets the input size and batch, the step schedule (80 % and 90 % of ``max_batches``),
    ``random=0`` (darknet would otherwise resize inputs to 320–608 during training),
    the class count and the head's filters (num × (coords + 1 + classes)); scales every
    other convolution's filters by ``width_scale``; rescales anchors, which darknet reads
    in grid cells, from the template's input size to ``size``.
    """
    if size <= 0 or size % 32:
        raise ConfigError(f"network input size {size} must be a positive multiple of 32 "
                          "(YOLOv2 downsamples by 32)")
    if not 0 < width_scale <= 4:
        raise ConfigError(f"--width-scale {width_scale} must be in (0, 4]")
    if batch < 1 or subdivisions < 1 or batch % subdivisions:
        raise ConfigError(f"batch {batch} must be a positive multiple of subdivisions {subdivisions}")
    if max_batches < 1:
        raise ConfigError("max_batches must be at least 1")
    if jitter is not None and not 0 <= jitter < 0.5:
        raise ConfigError(f"jitter {jitter} must be in [0, 0.5)")
    cfg = template.copy()
    net = cfg.net
    old_w, _, _ = cfg.input_size
    net.options.update(width=str(size), height=str(size), channels="3", batch=str(batch),
                       subdivisions=str(subdivisions))
    set_iterations(net, max_batches)
    if learning_rate is not None:
        net.options["learning_rate"] = repr(float(learning_rate))
    if burn_in is not None:
        net.options["burn_in"] = str(int(burn_in))

    region_index, region = cfg.detection_layer()
    num = region.get_int("num")
    coords = region.get_int("coords", 4)
    region.options.update(classes=str(classes), random="0")
    if jitter is not None:
        region.options["jitter"] = repr(float(jitter))
    anchors = region.get_floats("anchors")
    if len(anchors) != 2 * num:
        raise ConfigError(f"{cfg.source}: [region] has {len(anchors) // 2} anchors but num={num}")
    ratio = size / old_w
    region.options["anchors"] = ", ".join(f"{a * ratio:.4g}" for a in anchors)

    head_index = region_index - 1
    head = cfg.layers[head_index]
    if head.name != "convolutional":
        raise ConfigError(f"{cfg.source}: the layer before [region] must be the 1x1 convolutional head")
    for index, section in cfg.layers_named("convolutional"):
        if index == head_index:
            section.options["filters"] = str(num * (coords + 1 + classes))
        elif width_scale != 1.0:
            section.options["filters"] = str(_scaled_filters(section.get_int("filters"), width_scale))
    return cfg
