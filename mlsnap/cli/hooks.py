"""Hook commands: `mlsnap hook ID` (pre-commit framework entry points), `mlsnap hooks install`."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
