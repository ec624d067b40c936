"""Storage commands: gc (retention, and the space each snapshot takes)."""

from __future__ import annotations

from typing import Any

import click

from mlsnap.cli.core import echo_json


def size(n: int) -> str:
    """Bytes in IEC units (KiB = 1024 B), as `du -h` and the hook limits count them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


@click.command()
@click.option("--name", "name", default=None, metavar="NAME",
              help="Only snapshots of this name (the others are all kept).")
@click.option("--keep-last", type=int, default=None, metavar="N",
              help="Keep the N newest snapshots of each name along each branch.")
@click.option("--keep-best", nargs=2, type=(str, int), default=None,
              metavar="METRIC[:max|min] K",
              help="Keep the K snapshots with the best METRIC (max by default).")
@click.option("--keep-within", "keep_within", type=float, default=None, metavar="DAYS",
              help="Keep snapshots committed in the last DAYS days.")
@click.option("--remote", "remote", is_flag=True,
              help="Delete from the default remote too (its refs are checked first).")
@click.option("--allow-stale-refs", is_flag=True,
              help="With --remote: collect even when the Git remotes' branches and tags cannot "
                   "be checked against this clone's.")
@click.option("--yes", is_flag=True, help="Delete; without it gc only says what it would do.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Parallel remote requests (DVC's default when omitted).")
def gc(name: str | None, keep_last: int | None, keep_best: tuple[str, int] | None,
       keep_within: float | None, remote: bool, allow_stale_refs: bool, yes: bool,
       as_json: bool, jobs: int | None) -> None:
    """Delete the bytes of snapshots no retention rule keeps (a dry run without --yes).

    Always kept: tagged snapshots, the newest of each name on every local and
    remote-tracking branch, HEAD, worktree HEADs, stashes, snapshots not pushed to Git, and
    snapshots whose bytes are not all on the remote. Without policy options the `retention:`
    of .mlsnap/config.yaml applies; with none at all every snapshot is kept and gc shows the
    space each takes (unique to it, shared with others).
    """
    from mlsnap.retention import gc as run_gc
    from mlsnap.retention import parse_best

    best = parse_best(*keep_best) if keep_best else None
    result = run_gc(name=name, keep_last=keep_last, keep_best=best,
                      keep_within_days=keep_within, remote=remote, yes=yes,
                      allow_stale_refs=allow_stale_refs, jobs=jobs)
    if as_json:
        echo_json(result.to_dict())
        return
    for line in render(result):
        click.echo(line)


def render(result: Any) -> list[str]:
    lines = ["dry run: nothing deleted (--yes deletes)"] if result.dry_run else []
    rows = [["", "COMMIT", "DATE", "NAME", "UNIQUE", "SHARED", "WHY"]]
    for v in result.snapshots:
        rows.append(["keep" if v.keep else "collect", v.short, v.date[:16].replace("T", " "),
                     v.name,
                     size(v.unique_bytes), size(v.shared_bytes), ", ".join(v.reasons) or "-"])
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                  for r in rows]
    kept = sum(v.keep for v in result.snapshots)
    lines.append(f"snapshots: {kept} kept, {len(result.snapshots) - kept} collected")
    for space in (result.local, result.remote):
        if space is None:
            continue
        verb = "would free" if result.dry_run else f"deleted {space.deleted} object(s),"
        text = f"{space.where}: {verb} {space.objects} object(s), {size(space.bytes)}" \
            if result.dry_run else f"{space.where}: {verb} {size(space.bytes)}"
        if space.skipped_new:
            text += f"; {space.skipped_new} object(s) written since gc started are kept"
        lines.append(text)
    if result.remote is None:
        lines.append("remote: untouched (--remote collects there too)")
    lines += [f"note: {n}" for n in result.notes]
    return lines


COMMANDS = [gc]
