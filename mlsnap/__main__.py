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


def _terminated_early(signum: int, frame: object) -> None:
    """SIGTERM while the command line is still loading: nothing has started, so the same one
    line and 143 at once. ``main`` replaces this handler before any command runs."""
    _stopped_early(_Exit143())


class _Exit143(Exception):
    exit_code = 143


# Installed when the program starts, not when this module is imported by someone else: it is
# the ``mlsnap`` program's entry module, and only the entry point and ``python -m`` import it.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _terminated_early)


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
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, _terminated_early):
        signal.signal(signal.SIGTERM, terminate)
    if not os.environ.get("MLSNAP_DEBUG"):
        sys.unraisablehook = quiet_unraisable
    try:
        try:
            import click

            from mlsnap.cli import main as cli

            try:
                # Not standalone: click would turn a Ctrl-C during parsing into "Aborted!" and
                # exit 1; here it becomes the same `interrupted:` line as everywhere else.
                code = cli.main(standalone_mode=False)
            except click.Abort as exc:
                if isinstance(exc.__cause__, KeyboardInterrupt):
                    raise exc.__cause__ from None
                print("Aborted!", file=sys.stderr)
                code = 1
            except click.ClickException as exc:
                exc.show()
                code = exc.exit_code
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
    if code in (130, 143):  # a command that printed its `interrupted:` line
        _exit_interrupted(code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
