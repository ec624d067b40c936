"""The ``mlsnap`` program: signals and closed pipes first, then the command line.

This module imports nothing heavy at its top, so a Ctrl-C or SIGTERM that arrives while the
command line is still loading ends with one line too, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _terminate(signum: int, frame: FrameType | None) -> None:
    from mlsnap.errors import Terminated

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


def _quiet_unraisable(unraisable: object) -> None:
    """Drop "Exception ignored in ..." reports: a Ctrl-C that lands inside a library object's
    constructor makes its destructor fail later (DVC's progress bars do), which is noise."""


def _ignore_late_signals() -> None:
    """The command is over: a Ctrl-C or SIGTERM now has nothing left to stop, so it must not
    turn a finished command into a failed one (Python restores the default handlers, which
    kill the process, while it shuts down; ignored signals stay ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    if not os.environ.get("MLSNAP_DEBUG"):
        sys.unraisablehook = _quiet_unraisable
    try:
        try:
            from mlsnap.cli import main as cli

            cli()
        finally:
            _ignore_late_signals()
    except KeyboardInterrupt as exc:  # during start-up or parsing; commands handle their own
        line, code = interrupted_line(exc)
        print(line, file=sys.stderr)
        sys.exit(code)
    except BrokenPipeError:
        quiet_closed_pipe()
        sys.exit(141)


if __name__ == "__main__":
    main()
