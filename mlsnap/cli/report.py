"""``mlsnap report``: one offline HTML page comparing snapshots (``mlsnap.report``)."""

from __future__ import annotations

import click

from mlsnap.cli.core import say


@click.command()
@click.argument("revs", nargs=-1, metavar="[REV]...")
@click.option("--name", "name", default=None, metavar="NAME",
              help="Only snapshots of this name.")
@click.option("-o", "--out", "out", type=click.Path(), default=None, metavar="FILE",
              help="The HTML file to write (default: mlsnap-report.html).")
@click.option("--open", "open_it", is_flag=True, help="Open the page in a web browser.")
def report(revs: tuple[str, ...], name: str | None, out: str | None, open_it: bool) -> None:
    """One self-contained HTML page comparing snapshots: metrics, params, learning curves.

    Without REV: every snapshot reachable from HEAD (of NAME with --name). The page loads
    nothing from the network; it needs `pip install 'mlsnap[report]'`.
    """
    from mlsnap.report import report as write_report

    result = write_report(revs, name, out)
    say(f"wrote {result.path}: {result.snapshots} snapshot(s) of {', '.join(result.names)}, "
        f"{len(result.metrics)} metric(s), {result.curve_points} learning-curve point(s), "
        f"{result.size / 1e6:.1f} MB")
    for note in result.notes:
        say(f"  note: {note}", err=True)
    if open_it:
        import webbrowser

        if not webbrowser.open(result.path.as_uri()):
            say(f"  no web browser found here; open {result.path} yourself", err=True)


COMMANDS = [report]
