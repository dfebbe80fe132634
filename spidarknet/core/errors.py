"""Exceptions raised by spidarknet.

Library code raises these; only the command-line layer turns them into a single
``error: ...`` line.  Every message should tell the user what to do next.
"""


class SpidarknetError(Exception):
    """Base class of every error spidarknet raises on purpose."""


class InputError(SpidarknetError):
    """An input file, dataset, frame range or selection is missing or unusable, or does not
    fit the settings (a file's geometry, a frame range beyond its end)."""


class OutputError(SpidarknetError):
    """An output cannot be written (exists without --force, not writable, ...)."""


class ConfigError(SpidarknetError):
    """Settings are wrong or inconsistent: a command-line option's value or combination (every
    such mistake is this type, whichever command finds it), a library argument that stands for
    one, a network .cfg or a .data file."""


class EngineError(SpidarknetError):
    """The darknet engine is missing, failed, or produced something unusable."""


class WorkerError(SpidarknetError):
    """A worker process raised an exception that is not one of spidarknet's own (a bug, most
    likely), or died.  ``worker_type`` and ``worker_traceback`` (set by
    :mod:`spidarknet.core.pool` on every error that comes from a worker) say what it raised
    and where."""
