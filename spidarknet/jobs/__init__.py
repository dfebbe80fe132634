"""What each command does, as a library function: typed settings in, a result out.

A command of :mod:`spidarknet.cli` parses its options into the settings dataclass of its job
here, calls the job's one function with a :class:`~spidarknet.core.feedback.Feedback` (its
progress bars and stderr lines), and prints the result.  The experiments and scripts call the
same functions; nothing here sees an ``argparse.Namespace`` or prints.
"""
