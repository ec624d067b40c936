"""The ``mlsnap`` program: signals and closed pipes first, then the command line.

This module imports nothing heavy at its top, so a Ctrl-C or SIGTERM that arrives while the
command line is still loading ends with one line too, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys

from mlsnap.interrupts import (
    ignore_late_signals,
    interrupted_line,
    quiet_closed_pipe,
    quiet_unraisable,
    terminate,
)


def main() -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)
    if not os.environ.get("MLSNAP_DEBUG"):
        sys.unraisablehook = quiet_unraisable
    try:
        try:
            from mlsnap.cli import main as cli

            cli()
        finally:
            ignore_late_signals()
    except KeyboardInterrupt as exc:  # during start-up or parsing; commands handle their own
        line, code = interrupted_line(exc)
        print(line, file=sys.stderr)
        sys.exit(code)
    except BrokenPipeError:
        quiet_closed_pipe()
        sys.exit(141)


if __name__ == "__main__":
    main()
