"""History commands: log, show, diff, tag, get. None of them imports DVC except ``get``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any

import click

from mlsnap.cli.core import ALLOW_UNSAFE_PICKLE, NAME, echo_json, say
from mlsnap.textsafe import escape

MIN_CELL = 6


@click.command()
@click.option("--name", "name", default=None, metavar="NAME",
              help="Only snapshots of this name.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), default=None,
              metavar="N", help="Show at most N snapshots.")
@click.option("--all", "all_refs", is_flag=True,
              help="Snapshots reachable from every branch, tag and remote, not only HEAD.")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array, one snapshot object per line.")
@click.option("--plot", "plot", default=None, metavar="METRIC",
              help="After the table, a sparkline of METRIC per name, oldest to newest.")
def log(name: str | None, limit: int | None, all_refs: bool, as_json: bool,
        plot: str | None) -> None:
    """Snapshots in history, newest first: commit, date, name, tags, message, params, metrics.

    The table shows the params that differ between the listed snapshots, and every metric.
    """
    if plot is not None and as_json:
        raise click.UsageError("--plot draws under the table; it does not go with --json")
    from mlsnap import history, workspace

    root = workspace.find_root()
    if name is not None:
        workspace.check_name(name)
    entries, beyond = history.log_and_beyond(root, name, limit, all_refs)
    note = workspace.shallow_note(root, beyond)
    if note:
        say(note, err=True)
    if as_json:
        from mlsnap import signing

        sigs = signing.of_commits(root, [e.commit for e in entries])
        # One object per line: still one valid JSON array, and greppable.
        lines = [_json_line({**e.to_dict(), "signature": sigs[e.commit].to_dict()
                             if e.commit in sigs else None}) for e in entries]
        click.echo("[\n" + ",\n".join(lines) + "\n]" if lines else "[]")
        return
    if not entries:
        say("no snapshots" + (f" named {name!r}" if name else "")
                   + ("" if all_refs else " reachable from HEAD (try --all)"))
        return
    width = shutil.get_terminal_size((120, 24)).columns
    for line in log_table(entries, width):
        say(line)
    if plot is not None:
        for line in plot_lines(entries, plot, width):
            say(line)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, from ▁ (the smallest) to █ (the largest)."""
    low, high = min(values), max(values)
    if high == low:
        return SPARKS[3] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) / (high - low) * top)] for v in values)


def plot_lines(entries: Sequence[Any], metric: str, width: int) -> list[str]:
    """``METRIC name: ▁▃▇█ min .. max (n snapshots)`` per name, oldest to newest; the newest
    values when the terminal is too narrow for all."""
    import math

    from mlsnap.compare import flatten
    from mlsnap.params import as_float

    series: dict[str, list[float]] = {}
    for e in reversed(entries):  # oldest first
        number = as_float(flatten(e.metrics).get(metric))
        if number is not None and math.isfinite(number):
            series.setdefault(e.name, []).append(number)
    if not series:
        return [f"no snapshot here records a number for {_cell(metric)}"]
    lines = []
    for snap_name, values in sorted(series.items()):
        head = f"{_cell(metric)} {_cell(snap_name)}: "
        tail = f"  {_cell(min(values))} .. {_cell(max(values))} ({len(values)} snapshot(s))"
        room = max(8, width - len(head) - len(tail))
        shown = values[-room:]
        lines.append(head + ("…" if len(shown) < len(values) else "") + sparkline(shown) + tail)
    return lines


def _json_line(value: dict[str, Any]) -> str:
    text = json.dumps(value)
    if "NaN" in text or "Infinity" in text:  # rare: redo it with NaN as "nan" (valid JSON)
        from mlsnap.jsonout import jsonable

        text = json.dumps(jsonable(value), allow_nan=False)
    return text


def log_table(entries: Sequence[Any], width: int) -> list[str]:
    """Rows of the ``log`` table, every line at most ``width`` characters."""
    from mlsnap.compare import flatten

    params = [flatten(e.params) for e in entries]
    metrics = [flatten(e.metrics) for e in entries]
    keys = sorted({k for p in params for k in p})
    if len(entries) > 1:  # only what tells snapshots of the same name apart
        groups: dict[str, list[dict[str, Any]]] = {}
        for e, p in zip(entries, params):
            if e.manifest is not None:
                groups.setdefault(e.name, []).append(p)
        keys = [k for k in keys
                if any(len({_cell(p.get(k, "-")) for p in g}) > 1 for g in groups.values())]
    mkeys = sorted({k for m in metrics for k in m})
    header = ["COMMIT", "DATE", "NAME", "TAGS", "MESSAGE", *map(_cell, keys), *map(_cell, mkeys)]
    rows = []
    for e, p, m in zip(entries, params, metrics):
        rows.append([e.short, e.date[:16].replace("T", " "), _cell(e.name),
                     _cell(",".join(e.tags)) or "-",
                     ("[collected] " if e.collected else "") + (_cell(e.message) or "-"),
                     *(_cell(p.get(k, "-")) for k in keys), *(_cell(m.get(k, "-")) for k in mkeys)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths, shown = _fit(widths, width)
    lines = [_join(header, widths, shown)]
    for e, row in zip(entries, rows):
        if e.error:  # one line, untruncated: the reason matters more than the layout
            lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) +
                         f"  error: {escape(e.error)}")
        else:
            lines.append(_join(row, widths, shown))
    if shown < len(header):
        note = f"(+{len(header) - shown} column(s): {', '.join(header[shown:])})"
        lines.append(note if len(note) <= width else f"(+{len(header) - shown} column(s))")
    return lines


def _cell(value: Any) -> str:
    """One table cell: one line, recorded control characters shown escaped (``textsafe``)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bool):
        return str(value).lower()
    return escape(" ".join(str(value).split()))


def _fit(widths: list[int], width: int) -> tuple[list[int], int]:
    """Shrink the widest columns (message, tags, values; never commit/date/name) to fit."""
    widths = list(widths)
    shown = len(widths)

    def total() -> int:
        return sum(widths[:shown]) + 2 * (shown - 1)

    while total() > width:
        shrinkable = [i for i in range(3, shown) if widths[i] > MIN_CELL]
        if shrinkable:
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= min(widths[widest] - MIN_CELL, total() - width)
        elif shown > 3:
            shown -= 1  # drop the last column rather than wrap lines
        else:
            break
    return widths, shown


def _join(cells: Sequence[str], widths: Sequence[int], shown: int) -> str:
    out = []
    for cell, w in zip(cells[:shown], widths[:shown]):
        out.append(cell.ljust(w) if len(cell) <= w else cell[: w - 1] + "…")
    return "  ".join(out).rstrip()


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

        say(reqs(manifest.environment), nl=False)
        return
    from mlsnap import signing, workspace

    vouch = signing.of_snapshot(workspace.find_root(), rev, manifest)
    if as_json:
        echo_json({**manifest.to_dict(), "signature": vouch.to_dict() if vouch else None})
    else:
        say(dump(manifest), nl=False)
        signed = vouch is not None and any(
            s.state != "unsigned" for s in (vouch.commit, *vouch.tags) if s is not None)
        if vouch is not None and signed:  # a YAML comment: the output stays a manifest
            good = vouch.good
            say("# signature: " + (good.describe() if good else str(vouch.problem())))


@click.command()
@click.argument("rev_a", required=False)
@click.argument("rev_b", required=False)
@NAME
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def diff(rev_a: str | None, rev_b: str | None, name: str | None, as_json: bool) -> None:
    """What changed between two snapshots; exit 0 whether or not they differ.

    No REV: HEAD's snapshot vs the previous snapshot of that name. REV_A alone: REV_A vs HEAD.
    Revisions may be commits, branches, tags or NAME@vX.Y.Z.
    """
    from mlsnap import compare, diffview

    result = compare.diff(rev_a, rev_b, name)
    if as_json:
        echo_json(result.to_dict())
    else:
        say(diffview.render(result))


@click.command()
@click.argument("name")
@click.argument("version")
@click.argument("rev", required=False, default="HEAD")
@click.option("--sign", is_flag=True,
              help="A signed tag (git tag -s), with Git's key (gpg.format, user.signingkey).")
def tag(name: str, version: str, rev: str, sign: bool) -> None:
    """Tag the snapshot NAME at REV (default HEAD) as NAME@vVERSION (annotated, strict SemVer)."""
    from mlsnap import history

    result = history.tag(name, version, rev, sign=sign)
    say(f"tagged {result.tag} on {result.commit[:7]}" + (" (signed)" if sign else ""))


@click.command()
@click.argument("rev")
@NAME
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), default=None,
              help="Folder to write into (default: NAME-COMMIT in the current directory).")
@click.option("--remote", "-r", default=None, metavar="NAME",
              help="Remote name (default: the default remote).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Parallel transfers (DVC's default when omitted).")
@ALLOW_UNSAFE_PICKLE
def get(rev: str, name: str | None, out: str | None, remote: str | None,
        jobs: int | None, allow_unsafe_pickle: bool) -> None:
    """Copy the artifacts of the snapshot at REV (commit, tag, NAME@vX.Y.Z) into a folder.

    Verified against the manifest; the workspace, the index and HEAD are left untouched.
    """
    from mlsnap import retrieve

    result = retrieve.get(rev, name, out, jobs=jobs, remote=remote,
                          allow_unsafe_pickle=allow_unsafe_pickle)
    say(f"{result.name} at {result.commit[:7]}: {len(result.files)} file(s) written to "
               f"{result.directory}, all verified"
               + (f" ({result.fetched} object(s) downloaded)" if result.fetched else ""))
    for path in result.files:
        say(f"  {path}")
    for found in result.unsafe:
        say(f"warning: wrote {found.path} although it imports {', '.join(found.imports)} "
            "(--allow-unsafe-pickle): loading it runs that code", err=True)



COMMANDS = [log, show, diff, tag, get]
