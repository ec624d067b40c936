"""The ``mlsnap`` program: signals and closed pipes first, then the command line.

This module imports nothing heavy at its top, so a Ctrl-C or SIGTERM that arrives while the
command line is still loading ends with one line too, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys


def _exit_interrupted(code: int) -> None:
    """End with ``code`` (130 / 143) once the interrupted command has cleaned up.

    ``os._exit``, not ``sys.exit``: when the KeyboardInterrupt crossed code that Python runs
    through ``exec`` (dataclasses and typing do while modules load), ``python -m`` would
    otherwise end the process by SIGINT after the clean exit (-2 instead of 130). Everything
    mlsnap had to undo is undone by now; the output is flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _stopped_early(exc: BaseException) -> None:
    """A Ctrl-C before the handlers below exist: the same one line, nothing has started."""
    import shlex

    command = shlex.join(["mlsnap", *sys.argv[1:]])
    print(f"interrupted: `{command}` stopped before it finished; nothing lost; "
          f"run `{command}` to finish", file=sys.stderr)
    _exit_interrupted(int(getattr(exc, "exit_code", 130)))


def main() -> None:
    try:
        from mlsnap.interrupts import (
            ignore_late_signals,
            interrupted_line,
            quiet_closed_pipe,
            quiet_unraisable,
            terminate,
        )
    except KeyboardInterrupt as exc:
        _stopped_early(exc)
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
        _exit_interrupted(code)
    except SystemExit as exc:
        if exc.code in (130, 143):  # a command that printed its `interrupted:` line
            _exit_interrupted(exc.code)
        raise
    except BrokenPipeError:
        quiet_closed_pipe()
        sys.exit(141)


if __name__ == "__main__":
    main()
