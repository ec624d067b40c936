"""``verify``: a snapshot's record, bytes and signature checked (``mlsnap.verify``)."""

from __future__ import annotations

import click

from mlsnap.cli.core import NAME, REQUIRE_SIGNED, echo_json, say
from mlsnap.errors import EXIT_CHECK_FAILED


@click.command()
@click.argument("rev", required=False)
@NAME
@click.option("--remote", "check_remote", is_flag=True,
              help="Also read every object from the remote and hash it.")
@click.option("-r", "remote_name", default=None, metavar="NAME",
              help="Which remote --remote checks (default: the default remote).")
@REQUIRE_SIGNED
@click.option("--deep", is_flag=True,
              help="Hash every cached byte, even those DVC's state DB proves unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Parallel remote reads (8 when omitted).")
def verify(rev: str | None, name: str | None, check_remote: bool, remote_name: str | None,
           require_signed: bool, deep: bool, as_json: bool, jobs: int | None) -> None:
    """Check snapshots at REV (default: the work tree's): manifest vs .dvc pointers, cached
    (and with --remote the remote's) bytes vs recorded hashes, signature; exit 3 on any failure.
    """
    from mlsnap import verify as flow

    report = flow.verify(rev, name=name, remote=check_remote or remote_name is not None,
                         remote_name=remote_name, require_signed=require_signed, deep=deep,
                         jobs=jobs)
    if as_json:
        echo_json(report.to_dict())
    else:
        for snap in report.snapshots:
            where = f"{snap.objects} object(s) in the cache"
            if not report.deep:
                where += f" ({snap.hashed} hashed, {snap.objects - snap.hashed} unchanged " \
                         "since hashed, by DVC's state)"
            if report.remote:
                where += f", {snap.remote_objects} read from remote {report.remote!r}"
                if snap.remote_only:
                    where += f" ({snap.remote_only} there only)"
            say(f"{snap.name} ({snap.source}): {where}")
            sig = snap.signature
            if snap.edited:
                say(f"  signature: {', '.join(snap.edited)} edited since HEAD's commit")
            elif sig is not None:
                good = sig.good
                say("  signature: " + (good.describe() if good else str(sig.problem())))
            for f in snap.failures:
                say(f"  FAILED {f.kind}: {f.path}: {f.reason}")
        bad = sum(len(s.failures) for s in report.snapshots)
        names = ", ".join(s.name for s in report.snapshots)
        say(f"verified: {names}" if report.ok else
            f"verify failed: {bad} problem(s) (snapshot {names})")
    if not report.ok:
        raise click.exceptions.Exit(EXIT_CHECK_FAILED)


COMMANDS = [verify]
