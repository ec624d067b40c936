"""Every command and option explains itself; errors are one line with the documented codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from mlsnap.cli import main
from tests.helpers import mlsnap


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path) or "mlsnap", command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def test_every_command_and_option_has_help_text() -> None:
    commands = dict(walk(main))
    assert {"init", "commit", "pull", "push", "status", "show", "log", "diff", "tag", "get",
            "env", "demo", "remote set", "hooks install"} <= set(commands)
    for name, command in commands.items():
        assert command.help or command.short_help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help"
        result = CliRunner().invoke(main, [*name.split(), "--help"] if name != "mlsnap"
                                    else ["--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_usage_errors_exit_2_and_fixable_errors_exit_1(tmp_path: Path) -> None:
    assert mlsnap(tmp_path, "commit", "--no-such-option", check=2).returncode == 2
    proc = mlsnap(tmp_path, "status", check=1)
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = mlsnap(tmp_path, "--debug", "status", check=None)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "Traceback" not in mlsnap(tmp_path, "status", check=1).stderr
