"""What the tests that start a spidarknet process and press Ctrl-C in it give that process."""

import signal


def sigint_as_ctrl_c():
    """In the child before it starts: SIGINT raises KeyboardInterrupt there, as at a terminal, even
    where the tests run from a shell job that ignores it (Python then keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
