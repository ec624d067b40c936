"""The ``mlsnap`` command line: parse, call the library, print. Nothing else lives here.

Every ``MlsnapError`` becomes one ``Error: ...`` line on stderr and its exit code, in one place
(``_Group.invoke``). Tracebacks only with ``--debug`` or ``MLSNAP_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mlsnap import __version__
from mlsnap.errors import MlsnapError


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        """The workflow's order (init, commit, push, pull, ...), not the alphabet's."""
        from mlsnap.cli.examples import ORDER

        known = [name for name in ORDER if name in self.commands]
        return known + sorted(set(self.commands) - set(known))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlsnapError as exc:
            if _debug(ctx):
                raise
            from mlsnap.textsafe import escape

            click.echo(f"Error: {escape(str(exc))}", err=True)  # one line, no raw controls
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt as exc:  # SIGTERM too (mlsnap.errors.Terminated)
            from mlsnap.interrupts import interrupted_line

            line, code = interrupted_line(exc)
            click.echo(line, err=True)
            ctx.exit(code)
        except BrokenPipeError:
            from mlsnap.interrupts import quiet_closed_pipe

            quiet_closed_pipe()
            ctx.exit(141)
        except Exception as exc:  # the last line of defence: no traceback for users
            if _debug(ctx):
                raise
            from mlsnap.textsafe import escape

            detail = escape(" ".join(str(exc).split())) or "no details"
            click.echo(f"Error: unexpected {type(exc).__name__}: {detail} "
                       "(run with --debug for the traceback)", err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return bool(os.environ.get("MLSNAP_DEBUG")) or bool((ctx.obj or {}).get("debug"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlsnap")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Make every trained model reproducible from Git.

    `mlsnap commit` tracks models and data with DVC, records code, data, environment, params and
    metrics in a YAML manifest and ties it to one Git commit; `git checkout REV && mlsnap pull`
    brings the exact bytes back, verified.
    """
    ctx.obj = {"debug": debug}
    if debug:
        os.environ["MLSNAP_DEBUG"] = "1"


def _register() -> None:
    from mlsnap.cli import core, history, hooks, integrity, report, run, storage
    from mlsnap.cli.examples import epilog

    def with_examples(command: click.Command, path: str) -> None:
        command.epilog = epilog(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                with_examples(sub, f"{path} {name}")

    main.epilog = epilog("mlsnap")
    for module in (core, run, history, hooks, storage, integrity, report):
        for command in module.COMMANDS:
            main.add_command(command)
            with_examples(command, command.name or "")


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
