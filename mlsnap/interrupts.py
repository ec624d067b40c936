"""How the ``mlsnap`` process meets signals and a closed stdout.

Light on purpose (standard library only, imported lazily where it needs more): the program
installs these before the command line loads, so a Ctrl-C or SIGTERM at any moment ends with
one line, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up path treats both alike. Defined here,
    not in ``mlsnap.errors``: the handler may run while any module is half-imported, so it
    must not import anything."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


def terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def interrupted_line(exc: BaseException) -> tuple[str, int]:
    """What a user reads after Ctrl-C or SIGTERM, and the exit code (130 / 143)."""
    import shlex

    code = int(getattr(exc, "exit_code", 130))
    command = shlex.join(["mlsnap", *sys.argv[1:]])
    line = (f"interrupted: `{command}` stopped before it finished; nothing lost; "
            f"run `{command}` to finish")
    return line, code


def quiet_closed_pipe() -> None:
    """A reader closed our stdout (``mlsnap log | head``): stop quietly, as Git does. Later
    writes, the interpreter's final flush included, go to /dev/null instead of raising."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def quiet_unraisable(unraisable: object) -> None:
    """Drop "Exception ignored in ..." reports: a Ctrl-C that lands inside a library object's
    constructor makes its destructor fail later (DVC's progress bars do), which is noise."""


def ignore_late_signals() -> None:
    """The command is over: a Ctrl-C or SIGTERM now has nothing left to stop, so it must not
    turn a finished command into a failed one (Python restores the default handlers, which
    kill the process, while it shuts down; ignored signals stay ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
