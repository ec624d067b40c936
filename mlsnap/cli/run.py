"""``mlsnap run`` (record the training) and ``mlsnap repro`` (prove it reproduces)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from mlsnap.cli.core import JOBS, NAME, assignments_callback, echo_json, report_commit, say


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-o", "--output", "outputs", multiple=True, metavar="PATH",
              help="An artifact CMD writes (model, checkpoint folder). Repeatable.")
@click.option("--data", "-d", multiple=True, metavar="PATH",
              help="Input data CMD reads (repeatable); hashed before it starts.")
@click.option("--params", "param_files", multiple=True, metavar="FILE[:KEY]",
              help="YAML/JSON/TOML file of params CMD reads; hashed before it starts.")
@click.option("--metrics", "metric_files", multiple=True, metavar="FILE",
              help="YAML/JSON/TOML file of metrics CMD writes. Repeatable.")
@click.option("-p", "--param", "param_values", multiple=True, metavar="K=V",
              callback=assignments_callback("a hyperparameter", "a file of them is --params FILE"),
              help="Hyperparameter (YAML scalar; dotted keys nest). Repeatable.")
@click.option("-m", "--metric", "metric_values", multiple=True, metavar="K=V",
              callback=assignments_callback("a metric", "the snapshot's message is -M MESSAGE"),
              help="Metric value (the message is -M). Repeatable.")
@NAME
@click.option("--message", "-M", default="", help="What this snapshot is.")
@click.option("--tag", default=None, metavar="VERSION",
              help="Also tag the snapshot NAME@vVERSION (SemVer).")
@click.option("--allow-dirty", is_flag=True,
              help="Run despite uncommitted code; the diff is recorded as a patch.")
@click.option("--no-push", is_flag=True, help="Keep the bytes local; `mlsnap push` later.")
@JOBS
@click.argument("cmd", nargs=-1, required=True, metavar="-- CMD [ARG]...",
                type=click.UNPROCESSED)
def run(outputs: tuple[str, ...], data: tuple[str, ...], param_files: tuple[str, ...],
        metric_files: tuple[str, ...], param_values: tuple[str, ...],
        metric_values: tuple[str, ...], name: str | None, message: str, tag: str | None,
        allow_dirty: bool, no_push: bool, jobs: int | None, cmd: tuple[str, ...]) -> None:
    """Run CMD in the repository root, then snapshot what it wrote, with the command recorded.

    Inputs (--data) and --params files are hashed before CMD starts; if they change while it
    runs, no snapshot is taken. CMD's output is streamed (its last lines are kept in the
    manifest). CMD failing (non-zero exit) or an -o it did not write makes no snapshot
    (exit 1). Ctrl-C stops CMD and makes no snapshot. What is not given is reused from the
    previous snapshot of that name, as in `mlsnap commit`. `mlsnap repro` re-runs it.
    """
    from mlsnap import runner
    from mlsnap.runproc import shown

    result = runner.run(
        cmd, outputs=outputs, data=data, param_values=param_values,
        param_files=param_files or None, metric_values=metric_values,
        metric_files=metric_files or None, name=name, message=message, tag=tag,
        allow_dirty=allow_dirty, push=not no_push, jobs=jobs)
    say(f"ran `{shown(result.run.cmd)}` in {result.run.duration_s:.1f}s (exit 0)")
    report_commit(result.snapshot)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


_WHY = {
    "reproduced": "every artifact byte-identical",
    "within-tolerance": "artifacts differ, every metric within tolerance",
}


@click.command()
@click.argument("rev", required=False, metavar="[REV]")
@NAME
@click.option("--rtol", type=float, default=0.0, show_default=True, metavar="X",
              help="Relative tolerance for numeric metrics (|a-b| <= atol + rtol*|recorded|).")
@click.option("--atol", type=float, default=0.0, show_default=True, metavar="X",
              help="Absolute tolerance for numeric metrics.")
@click.option("--env", "env_mode", type=click.Choice(["current", "rebuild"]), default="current",
              show_default=True, help="Re-run in the current environment, or in a fresh "
              "virtualenv of the recorded packages (pip; its index settings apply).")
@click.option("--keep", is_flag=True, help="Keep the temporary worktree and print its path.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the certificate as JSON (the command's output goes to stderr).")
def repro(rev: str | None, name: str | None, rtol: float, atol: float, env_mode: str,
          keep: bool, as_json: bool) -> None:
    """Re-run the recorded command of the snapshot at REV (default HEAD) and compare.

    In a temporary worktree at the snapshot's code commit (with its patch when the code was
    dirty) and its inputs restored, verified: HEAD, the branch, the index and the work tree
    are never touched. Verdict: reproduced (every artifact byte-identical, exit 0),
    within-tolerance (artifacts differ, every metric within --rtol/--atol, exit 0), differs
    (exit 3) or failed (no recorded command, or it failed; exit 1). Runs the recorded
    command: repro only snapshots whose code you would run.
    """
    from mlsnap import reproduce as flow

    cert = flow.repro(rev, name=name, rtol=rtol, atol=atol, env=env_mode, keep=keep,
                      stdout=sys.stderr if as_json else sys.stdout, stderr=sys.stderr)
    if as_json:
        echo_json(cert.to_dict())
    else:
        _print(cert)
    code = cert.exit_code_for_verdict
    if code:
        raise click.exceptions.Exit(code)


def _print(cert: Any) -> None:
    from mlsnap.runproc import SHOWN_CHARS, shown

    head = f"repro of {cert.name} at {cert.commit[:7]} ({cert.rev})"
    if cert.command is not None:
        head += f": {shown(cert.command, SHOWN_CHARS)}"
    say(head)
    if cert.artifacts:
        rows: list[tuple[str, ...]] = [("artifact", "recorded", "reproduced", "result")]
        for a in cert.artifacts:
            rows.append((a.path, a.recorded[:8], (a.reproduced or "-")[:8], a.result))
        for line in _table(rows):
            say(f"  {line}")
        for a in cert.artifacts:
            for f in a.files[:20]:
                say(f"    {f}")
    if cert.metrics:
        rows = [("metric", "recorded", "reproduced", "result")]
        rows += [(m.key, _short(m.recorded), _short(m.reproduced), m.result)
                 for m in cert.metrics]
        for line in _table(rows):
            say(f"  {line}")
    if cert.rebuilt is not None:
        r = cert.rebuilt
        say(f"rebuilt environment: {r['installed']} package(s) installed with pip in "
            f"{r['seconds']:.1f}s" + (f"; could not install {len(r['failed'])}:" if r["failed"]
                                      else ""))
        for line in r["failed"]:
            say(f"  {line}")
    if cert.drift_table:
        say(cert.drift_table)
    if cert.worktree:
        say(f"worktree kept at {cert.worktree} (remove it with `git worktree remove --force "
            f"{cert.worktree}`)")
    took = f" in {cert.duration_s:.1f}s"
    if cert.command_s is not None:
        took += f" (command {cert.command_s:.1f}s)"
    if cert.verdict == "failed":
        say(f"verdict: failed: {cert.reason}{took}")
    elif cert.verdict == "differs":
        named = [a.path for a in cert.artifacts if a.result != "identical"]
        named += [m.key for m in cert.metrics if m.result not in ("equal", "within-tolerance")]
        say(f"verdict: differs: {', '.join(named)}{took}")
    else:
        say(f"verdict: {cert.verdict} ({_WHY[cert.verdict]}){took}")


COMMANDS = [run, repro]
