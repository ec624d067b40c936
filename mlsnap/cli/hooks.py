"""Hook commands: `mlsnap hook ID` (pre-commit framework entry points), `mlsnap hooks install`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlsnap.cli.core import say

if TYPE_CHECKING:
    from mlsnap.hooks import Finding

EXIT_FOUND = 3  # a check failed (DESIGN: exit codes)
FILES = click.argument("files", nargs=-1, type=click.Path())


def _root() -> Path:
    from mlsnap import workspace

    return workspace.find_root()


def _report(hook_id: str, findings: Sequence[Finding], advice: str) -> None:
    """Print the findings and fail the hook, or return quietly when there are none."""
    if not findings:
        return
    say(f"{hook_id}: {len(findings)} problem(s)", err=True)
    for finding in findings:
        say(f"  {finding}", err=True)
    say(advice, err=True)
    raise click.exceptions.Exit(EXIT_FOUND)


@click.group("hook")
def hook() -> None:
    """Run one hook check (entry points of .pre-commit-hooks.yaml and the plain git hooks)."""


@hook.command("mlsnap-no-large-files")
@click.option("--max-kb", type=click.IntRange(min=1), default=None, metavar="KB",
              help="Largest file allowed in Git, in KiB (default 5120 = 5 MiB).")
@FILES
def no_large_files(max_kb: int | None, files: tuple[str, ...]) -> None:
    """Block model files (.pt .pkl .onnx ...) and files over the limit from entering Git.

    FILES default to the staged files.
    """
    from mlsnap import hooks

    root = _root()
    paths = hooks.repo_paths(root, files) if files else None
    findings = hooks.large_files(root, paths, max_kb=max_kb or hooks.DEFAULT_MAX_KB,
                                 index=hooks.index_file())
    _report("mlsnap-no-large-files", findings,
            "Model and data bytes belong in DVC: snapshot them with `mlsnap commit PATH`.")


@hook.command("mlsnap-check-manifest")
@FILES
def check_manifest(files: tuple[str, ...]) -> None:
    """Staged manifests are valid and agree with their .dvc files (hash, size).

    FILES default to the staged files.
    """
    from mlsnap import hooks

    root = _root()
    paths = hooks.repo_paths(root, files) if files else None
    findings = hooks.check_manifests(root, paths, index=hooks.index_file())
    _report("mlsnap-check-manifest", findings,
            "A snapshot must describe its bytes exactly; fix the files named above.")


@hook.command("mlsnap-status")
@click.argument("files", nargs=-1, type=click.Path(), required=False)
def status(files: tuple[str, ...]) -> None:
    """Block while a tracked artifact differs from its snapshot (FILES are ignored)."""
    from mlsnap import hooks

    _report("mlsnap-status", hooks.modified_artifacts(_root()),
            "The snapshot at HEAD would no longer describe the workspace.")


@hook.command("mlsnap-push")
@click.argument("remote_name", required=False)
@click.argument("remote_url", required=False)
@click.option("--remote", "-r", "dvc_remote", default=None, metavar="NAME",
              help="DVC remote (default: the default remote).")
def push(remote_name: str | None, remote_url: str | None, dvc_remote: str | None) -> None:
    """Pre-push: the bytes of every snapshot in the pushed commits are on the DVC remote.

    Reads Git's pre-push input on stdin (or the pre-commit framework's PRE_COMMIT_* variables);
    run by hand, it checks the snapshots at HEAD. What only the local cache holds is pushed.
    """
    from mlsnap import hookpush

    root = _root()
    stdin = sys.stdin.read() if remote_name is not None and not sys.stdin.isatty() else None
    snapshots = hookpush.pushed_snapshots(root, remote_name, os.environ, stdin)
    report = hookpush.push_snapshots(root, snapshots, remote=dvc_remote)
    if report.pushed:
        say(f"mlsnap-push: uploaded {report.pushed} object(s) for the "
                   f"{len(report.snapshots)} snapshot(s) being pushed")
    _report("mlsnap-push", report.problems,
            "Push blocked: others could not pull these snapshots.")


@hook.command("mlsnap-pull")
@click.argument("prev", required=False)
@click.argument("new", required=False)
@click.argument("flag", required=False)
def pull(prev: str | None, new: str | None, flag: str | None) -> None:
    """Post-checkout: restore the snapshot's bytes after a branch checkout (not in a rebase).

    Takes Git's post-checkout arguments PREV NEW FLAG (or the pre-commit framework's variables).
    """
    from mlsnap import hooks, restore, workspace

    env = os.environ
    prev = prev or env.get("PRE_COMMIT_FROM_REF")
    new = new or env.get("PRE_COMMIT_TO_REF")
    flag = flag or env.get("PRE_COMMIT_CHECKOUT_TYPE")
    root = _root()
    if hooks.skip_pull_reason(root, prev, new, flag):
        return
    # Under the pre-commit framework the interpreter is the hook's own venv, not the one that
    # trains: comparing it with the snapshot would report drift that is not there, so don't.
    framework = env.get("PRE_COMMIT") == "1"
    recorded = workspace.load_all(root)[0].environment if framework else None
    result = restore.pull(cwd=root, env=recorded)
    # Short on purpose: this prints on every checkout (`mlsnap pull` shows the full report).
    for path in result.restored:
        say(f"mlsnap: restored {path}")
    names = ", ".join(f".mlsnap/{m.name}.yaml" for m in result.manifests)
    say(f"mlsnap: the workspace matches {names} (verified)")
    if result.pickles:
        say("mlsnap: restored pickles scanned, no import known to run code (which does not "
            "prove them safe); load pickles only from people you trust")
    for name, drift in result.drift.items():
        if drift and not framework:
            summary = drift.table().splitlines()[0]
            say(f"mlsnap: {name}: {summary}; `mlsnap status` shows the table")


@click.group("hooks")
def hooks_group() -> None:
    """Plain git hooks (post-checkout pulls, pre-commit checks, pre-push pushes)."""


@hooks_group.command("install")
@click.option("--uninstall", is_flag=True,
              help="Remove mlsnap's hooks and put back the hooks they chained.")
def install(uninstall: bool) -> None:
    """Install the hooks with this interpreter; an existing hook is kept and runs first."""
    from mlsnap import hookscripts

    root = _root()
    changes = hookscripts.uninstall(root) if uninstall else hookscripts.install(root)
    for change in changes:
        shown = os.path.relpath(change.path, root) if root in change.path.parents else change.path
        say(f"{change.hook}: {change.action} ({shown})")
    if not uninstall:
        say(f"the hooks run {os.path.abspath(sys.executable)} -m mlsnap "
                   "(no virtualenv needs to be active)")


COMMANDS: list[click.Command] = [hook, hooks_group]
