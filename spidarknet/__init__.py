"""spidarknet: find single-particle hits in XFEL diffraction data with Darknet YOLO.

The Python face (see ``docs/python.md``)::

    import spidarknet as sk
    frames = sk.open_frames("run7.cxi")
    hits = sk.detect(frames, size_range=(60, 75))
    hits.to_pandas()

The names below are imported on first use, so ``import spidarknet`` stays light.
"""

from spidarknet.core.errors import ConfigError, EngineError, InputError, OutputError, SpidarknetError
from spidarknet.core.version import __version__

#: public name -> module that defines it
_FACE = {
    "open_frames": "spidarknet.api", "load_model": "spidarknet.api", "detect": "spidarknet.api",
    "fit_spheres": "spidarknet.api", "evaluate": "spidarknet.api", "learn": "spidarknet.api",
    "FrameSource": "spidarknet.frames.source", "FrameKey": "spidarknet.frames.source",
    "HitList": "spidarknet.hits", "read_hits": "spidarknet.hits",
    "Model": "spidarknet.engine.model", "SizeResult": "spidarknet.sizing",
    "Selector": "spidarknet.selection.selector",
}

__all__ = sorted(_FACE) + ["ConfigError", "EngineError", "InputError", "OutputError", "SpidarknetError",
                           "__version__"]


def __getattr__(name: str):
    module = _FACE.get(name)
    if module == "spidarknet.api":
        from spidarknet import api as found
    elif module == "spidarknet.frames.source":
        from spidarknet.frames import source as found
    elif module == "spidarknet.hits":
        from spidarknet import hits as found
    elif module == "spidarknet.engine.model":
        from spidarknet.engine import model as found
    elif module == "spidarknet.sizing":
        from spidarknet import sizing as found
    elif module == "spidarknet.selection.selector":
        from spidarknet.selection import selector as found
    else:
        raise AttributeError(f"module 'spidarknet' has no attribute {name!r}")
    return getattr(found, name)


def __dir__():
    return __all__
