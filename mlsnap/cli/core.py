"""The core loop commands: init, commit, push, pull, status, env, remote, demo."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from mlsnap.errors import EXIT_CHECK_FAILED, CheckFailed


def NAME(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--name NAME``; the old short form ``-n NAME`` still works (hidden, with a note).

    ``-n`` is a count in ``mlsnap log``, as in ``git log -n 3``: one meaning in the help.
    """
    @functools.wraps(f)
    def wrapper(*args: Any, name_n: str | None = None, **kwargs: Any) -> Any:
        if name_n is not None:
            if kwargs.get("name") not in (None, name_n):
                raise click.UsageError("give the snapshot name once (--name NAME)")
            click.echo("note: `-n NAME` is now `--name NAME` (`-n` counts snapshots in "
                       "`mlsnap log`, as in `git log -n`); -n keeps working here", err=True)
            kwargs["name"] = name_n
        return f(*args, **kwargs)

    wrapper = click.option("-n", "name_n", default=None, hidden=True, metavar="NAME",
                           help="Old short form of --name.")(wrapper)
    return click.option("--name", "name", default=None, metavar="NAME",
                        help="Snapshot name (default: the project's default, 'model')."
                        )(wrapper)


def assignments_callback(what: str, other: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Check ``K=V`` values at parse time: a word alone is a usage error (exit 2) that names
    the option meant instead (Git's ``-m MESSAGE`` habit is mlsnap's ``-M MESSAGE``)."""
    def check(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        for value in values:
            key, sep, _ = value.partition("=")
            if not sep or not key.strip():
                raise click.BadParameter(
                    f"{value!r} is not KEY=VALUE; {param.opts[0]} records {what} "
                    f"({param.opts[0]} KEY=VALUE); {other}", ctx=ctx, param=param)
        return values
    return check


PYTHON = click.option("--python", "python", default=None, metavar="PATH",
                      help="Interpreter whose environment to record/compare "
                           "(default: the active virtualenv's).")
JOBS = click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, metavar="N",
                    help="Parallel transfers (DVC's default when omitted).")


ALLOW_UNSAFE_PICKLE = click.option(
    "--allow-unsafe-pickle", is_flag=True,
    help="Restore pickles even when the scan finds imports that run code (never load them).")
REQUIRE_SIGNED = click.option(
    "--require-signed", is_flag=True,
    help="Refuse (exit 3) unless the snapshot's commit or tag has a good, trusted signature.")


def pickle_note(paths: list[str]) -> str:
    """The one line ``pull`` and ``get`` print about the clean pickles they placed."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (f"note: pickles scanned, no import known to run code: {shown}; a scan finds "
            "known dangers, it does not prove a pickle safe: load pickles only from people "
            "you trust (safetensors avoids the risk)")


def say(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Human output: recorded text (messages, names, params, paths) may hold control
    characters; they are shown escaped, never sent raw to the terminal (``textsafe``)."""
    from mlsnap.textsafe import escape_lines

    click.echo(escape_lines(text), err=err, nl=nl)


def echo_json(value: Any) -> None:
    from mlsnap.jsonout import jsonable

    click.echo(json.dumps(jsonable(value), indent=2, allow_nan=False))


@click.command()
@click.option("--remote", "-r", default=None, metavar="DIR_OR_URL",
              help="Default DVC remote: a folder, s3://, ssh://, webdav://... "
                   "(default: ~/.local/share/mlsnap/storage).")
@click.option("--remote-name", default="storage", show_default=True, metavar="NAME",
              help="Name of that remote.")
@click.option("--local", "local_options", multiple=True, metavar="KEY=VALUE",
              help="Remote setting kept in DVC's untracked local config (credentials, endpoint).")
def init(remote: str | None, remote_name: str, local_options: tuple[str, ...]) -> None:
    """Make this Git repository ready: DVC, the default remote, .mlsnap/config.yaml."""
    from mlsnap import initialize
    from mlsnap.errors import BadInput

    local: dict[str, str] = {}
    for item in local_options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--local {key or item!r}", "expected KEY=VALUE")
        local[key] = value
    result = initialize.init(remote, remote_name=remote_name, local_options=local or None)
    say(f"initialized mlsnap in {result.root}"
               + (" (dvc init done)" if result.created_dvc else ""))
    from mlsnap.redaction import redact_text

    say(f"default remote {result.remote_name!r}: {redact_text(result.remote_url)}")
    if result.committed:
        say(f"committed the set-up as {result.committed[:7]}")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--data", "-d", multiple=True, metavar="PATH",
              help="Input data to record (repeatable).")
@click.option("-p", "--param", "param_values", multiple=True, metavar="K=V",
              callback=assignments_callback("a hyperparameter", "a file of them is --params FILE"),
              help="Hyperparameter (YAML scalar; dotted keys nest). Repeatable.")
@click.option("--params", "param_files", multiple=True, metavar="FILE[:KEY]",
              help="YAML/JSON/TOML file of params, optionally one section. Repeatable.")
@click.option("-m", "--metric", "metric_values", multiple=True, metavar="K=V",
              callback=assignments_callback("a metric", "the snapshot's message is -M MESSAGE"),
              help="Metric value, e.g. accuracy=0.93 (the message is -M). Repeatable.")
@click.option("--metrics", "metric_files", multiple=True, metavar="FILE",
              help="YAML/JSON/TOML file of metrics. Repeatable.")
@NAME
@click.option("--message", "-M", default="", help="What this snapshot is.")
@click.option("--tag", default=None, metavar="VERSION",
              help="Also tag the snapshot NAME@vVERSION (SemVer).")
@click.option("--allow-dirty", is_flag=True,
              help="Snapshot despite uncommitted code; the diff is recorded as a patch.")
@click.option("--no-push", is_flag=True, help="Keep the bytes local; `mlsnap push` later.")
@click.option("--forget", is_flag=True,
              help="Reuse nothing from the previous snapshot: record only what is named here.")
@click.option("--sign", is_flag=True,
              help="Sign the snapshot commit (and --tag) with Git's key (gpg.format, "
                   "user.signingkey; SSH keys work).")
@PYTHON
@JOBS
def commit(paths: tuple[str, ...], data: tuple[str, ...], param_values: tuple[str, ...],
           param_files: tuple[str, ...], metric_values: tuple[str, ...],
           metric_files: tuple[str, ...], name: str | None, message: str, tag: str | None,
           allow_dirty: bool, no_push: bool, forget: bool, sign: bool, python: str | None,
           jobs: int | None) -> None:
    """Snapshot PATHS (models, checkpoints) and --data with DVC, in one Git commit.

    Each of PATHS, --data, --params and --metrics that is not given is reused from the
    previous snapshot of that name (its artifacts, its inputs, the files it read); commit
    prints what it reused and which earlier paths left the snapshot. -p/-m values win over
    the files. The params/metrics files read are committed with the snapshot, unless Git
    ignores them or they hold a secret. Files are named from the current folder.
    """
    from mlsnap import snapshot

    result = snapshot.commit(
        paths, data=data, param_values=param_values,
        param_files=param_files or None, metric_values=metric_values,
        metric_files=metric_files or None, name=name, message=message, tag=tag,
        allow_dirty=allow_dirty, push=not no_push, python=python, jobs=jobs, forget=forget,
        sign=sign,
    )
    report_commit(result, signed=sign)


def report_commit(result: Any, signed: bool = False) -> None:
    """What ``commit`` (and ``run``, after its command) prints about the snapshot taken."""
    m = result.manifest
    told = result.told
    if result.unchanged:
        say(f"nothing changed since snapshot {result.commit[:7]} ({m.name}); "
                   "no commit made")
    else:
        say(f"snapshot {m.name}: {result.commit[:7]} {m.message or '(no message)'}"
            + (" (signed)" if signed else ""))
    say(f"  {len(m.artifacts)} artifact(s), {len(m.inputs)} input(s), "
               f"{len(m.params)} param(s), {len(m.metrics)} metric(s)"
               + (", dirty code recorded as a patch" if m.code.dirty else ""))
    for path in result.moved_from_git:
        say(f"  {path} was tracked by Git; it is tracked by DVC now (file kept)")
    for found in m.pickles.dangerous if m.pickles else ():
        say(f"warning: {found.path}: a pickle that imports {', '.join(found.imports)}: loading "
            "it runs that code; `mlsnap pull` and `get` refuse to restore it without "
            "--allow-unsafe-pickle (recorded in the manifest)", err=True)
    if told is not None:
        if told.remembered:
            say(f"  reused from the last snapshot: {', '.join(told.remembered)} "
                       "(--forget reuses nothing)")
        if told.dropped:
            say(f"  left the snapshot: {', '.join(told.dropped)} (name it again to "
                       "keep it in)")
        if told.committed:
            say(f"  committed with the snapshot: {', '.join(told.committed)}")
        for path in told.secret_files:
            say(f"  {path} holds a secret (redacted in the manifest): it is not "
                       "committed; keep it out of Git")
        if told.other_names:
            say(f"  note: recorded as {m.name!r} (the default name); this repository "
                       f"also has {', '.join(told.other_names)}: choose with --name")
    if result.detached:
        say(f"  note: HEAD is detached; the snapshot is bound to {result.commit[:12]} "
                   "and no branch points at it (create one: git switch -c NAME)")
    if result.tag:
        say(f"  tagged {result.tag}")
    if result.pushed is not None:
        say(f"  pushed {result.pushed} object(s) to the default remote")
    else:
        say("  not pushed (--no-push); run `mlsnap push` to share it")


@click.command()
@NAME
@click.option("--remote", "-r", default=None, metavar="NAME",
              help="Remote name (default: the default remote).")
@JOBS
def push(name: str | None, remote: str | None, jobs: int | None) -> None:
    """Send the bytes of the snapshots at HEAD to the remote."""
    from mlsnap import snapshot

    sent = snapshot.push(name, jobs=jobs, remote=remote)
    say(f"pushed {sent} object(s)" if sent else "everything is already on the remote")


@click.command()
@NAME
@click.option("--force", is_flag=True,
              help="Overwrite workspace files even when their content is not in the cache.")
@click.option("--strict-env", is_flag=True, help="Exit 3 when the environment drifts.")
@click.option("--remote", "-r", default=None, metavar="NAME",
              help="Remote name (default: the default remote).")
@ALLOW_UNSAFE_PICKLE
@REQUIRE_SIGNED
@PYTHON
@JOBS
def pull(name: str | None, force: bool, strict_env: bool, remote: str | None,
         allow_unsafe_pickle: bool, require_signed: bool, python: str | None,
         jobs: int | None) -> None:
    """After `git checkout`, restore exactly what the manifests at HEAD record, verified.

    Pickle-based files are scanned first (never loaded): one that imports code-running
    functions (os.system, eval, ...) is refused, exit 3, unless --allow-unsafe-pickle.
    """
    from mlsnap import restore

    result = restore.pull(name, force=force, python=python, jobs=jobs, remote=remote,
                          allow_unsafe_pickle=allow_unsafe_pickle,
                          require_signed=require_signed)
    for m in result.manifests:
        paths = [p for p, _ in m.tracked]
        restored = [p for p in paths if p in result.restored]
        say(f"{m.name}: {len(restored)} restored, {len(paths) - len(restored)} already "
                   f"up to date, all verified against .mlsnap/{m.name}.yaml")
        for p in restored:
            say(f"  restored {p}")
    if name is None:
        from mlsnap import history, workspace

        root = workspace.find_root()
        for left in history.leftovers(root, result.manifests):
            say(f"note: {left.path} is a file of snapshot {left.name} at "
                       f"{left.commit[:7]}, and no snapshot at HEAD names it (left in place)")
    for found in result.unsafe:
        say(f"warning: restored {found.path} although it imports {', '.join(found.imports)} "
            "(--allow-unsafe-pickle): loading it runs that code", err=True)
    clean = [p for p in result.pickles if p not in {f.path for f in result.unsafe}]
    if clean:
        say(pickle_note(clean))
    for name_, drift in result.drift.items():
        if drift:
            prefix = f"{name_}: " if len(result.drift) > 1 else ""
            say(prefix + drift.table())
        else:
            say("environment: matches the snapshot")
    if strict_env and result.drifted:
        raise CheckFailed("the environment differs from the snapshot (--strict-env)")


@click.command()
@NAME
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-remote", is_flag=True, help="Do not ask the remote what it holds.")
@click.option("--strict-env", is_flag=True, help="Count environment drift as not clean.")
@PYTHON
def status(name: str | None, as_json: bool, no_remote: bool, strict_env: bool,
           python: str | None) -> None:
    """Workspace vs manifest; exit 3 when not clean."""
    from mlsnap import restore

    report = restore.status(name, python=python, check_remote=not no_remote)
    problems = report.problems(strict_env)
    clean = not problems
    if as_json:
        echo_json({
            "clean": clean,
            "snapshots": [m.name for m in report.manifests],
            "modified": report.modified, "missing": report.missing,
            "not_on_remote": report.not_on_remote, "nowhere": report.nowhere,
            "remote_error": report.remote_error,
            "leftover": [{"path": x.path, "snapshot": x.name, "commit": x.commit}
                         for x in report.leftover],
            "drift": {k: v.to_dict() for k, v in report.drift.items()},
        })
    else:
        for path in report.modified:
            say(f"modified: {path} (changed since its snapshot; `mlsnap commit` to "
                       "record it or `mlsnap pull --force` to restore it)")
        for path in report.missing:
            if path not in report.nowhere:
                say(f"missing: {path} (run `mlsnap pull`)")
        for path in report.not_on_remote:
            if path in report.nowhere:
                where = "missing here, " if path in report.missing else ""
                say(f"lost here: {path} ({where}not in this cache and not on the remote; "
                           "run `mlsnap push` in a clone that has the bytes)")
            else:
                say(f"not on remote: {path} (run `mlsnap push`)")
        for left in report.leftover:
            say(f"leftover: {left.path} (a file of snapshot {left.name} at "
                       f"{left.commit[:7]}; no snapshot at HEAD names it; it stays until you "
                       "delete it or check out a commit that records it)")
        if report.remote_error:
            say(f"warning: could not check the remote: {report.remote_error}")
        for drift in report.drift.values():
            if drift:
                say(drift.table())
        names = ", ".join(m.name for m in report.manifests)
        if clean:
            say(f"clean: the workspace matches snapshot {names}")
        else:  # always a verdict as the last line, whatever made it not clean
            say(f"not clean: {', '.join(problems)} (snapshot {names})")
    if not clean:
        raise click.exceptions.Exit(EXIT_CHECK_FAILED)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The environment as JSON.")
@click.option("--requirements", is_flag=True, help="A pip requirements file.")
@PYTHON
def env(as_json: bool, requirements: bool, python: str | None) -> None:
    """What `mlsnap commit` would record about the environment now."""
    from mlsnap import environment

    captured = environment.capture(python)
    if requirements:
        say(environment.requirements(captured), nl=False)
    elif as_json:
        echo_json(captured.to_dict())
    else:
        say(f"python {captured.python} ({captured.implementation}) on {captured.os}")
        say(f"machine {captured.machine}; {len(captured.packages)} packages; "
                   f"accelerators: {', '.join(a['name'] for a in captured.accelerators) or 'none'}")


@click.group()
def remote() -> None:
    """Settings of the DVC remote."""


@remote.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--local", is_flag=True,
              help="Keep it in DVC's untracked local config (use for credentials).")
@click.option("--remote", "-r", "remote_name", default=None, metavar="NAME",
              help="Remote (default: the default remote).")
def remote_set(key: str, value: str, local: bool, remote_name: str | None) -> None:
    """Set KEY to VALUE for the default remote (e.g. endpointurl, access_key_id)."""
    from mlsnap import redaction, store, workspace

    root = workspace.find_root()
    name = store.set_remote_option(root, key, value, local=local, remote_name=remote_name)
    shown = redaction.shown_option(key, value)
    say(f"remote {name!r}: {key} = {shown} ({'local, untracked' if local else 'tracked'})")


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary folder and print its path.")
def demo(keep: bool) -> None:
    """Run the whole loop on a toy model in a temporary folder."""
    from mlsnap.demo import run

    raise click.exceptions.Exit(run(keep=keep))


COMMANDS = [init, commit, push, pull, status, env, remote, demo]
