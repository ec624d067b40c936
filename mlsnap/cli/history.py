"""History commands: show (and, built on the same reader, log, diff, tag, get)."""

from __future__ import annotations

import click

from mlsnap.cli.core import NAME, echo_json


@click.command()
@click.argument("rev", required=False)
@NAME
@click.option("--json", "as_json", is_flag=True, help="The manifest as JSON.")
@click.option("--requirements", is_flag=True, help="A pip requirements file of its environment.")
def show(rev: str | None, name: str | None, as_json: bool, requirements: bool) -> None:
    """One manifest: the work tree's, or at REV (commit, branch, tag, NAME@vX.Y.Z)."""
    from mlsnap import history
    from mlsnap.manifest import dump

    manifest = history.show(rev, name)
    if requirements:
        from mlsnap.environment import requirements as reqs

        click.echo(reqs(manifest.environment), nl=False)
    elif as_json:
        echo_json(manifest.to_dict())
    else:
        click.echo(dump(manifest), nl=False)


COMMANDS = [show]
