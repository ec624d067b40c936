"""``mlsnap report``: one self-contained HTML page comparing snapshots.

The snapshots come from history exactly as ``mlsnap log`` reads them (one ``git log`` walk, one
batched ``git cat-file``, the parse cache by blob id): nothing is checked out and DVC is not
imported. Learning curves come from the Checkpointer indexes inside directory artifacts, read
from the local DVC cache by hash (``report.curves``). Everything recorded is untrusted: the data
reaches the page as escaped HTML and as JSON inside a non-executable script element
(``report.page``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import gitrepo, history, pathsafety, workspace, writers
from mlsnap.compare import file_changes, flatten
from mlsnap.errors import BadInput, NoSnapshot
from mlsnap.history import LogEntry
from mlsnap.manifest import Manifest, Output
from mlsnap.params import as_float

DEFAULT_FILE = "mlsnap-report.html"
# The last word of a metric that is better when lower (a loss, an error, a time); every other
# metric is better when higher. The page says which way each metric was ranked.
_LOWER_IS_BETTER = re.compile(
    r"(^|[^a-z])(loss|losses|err|error|errors|mse|rmse|mae|mape|smape|nll|perplexity|ppl|wer|cer|"
    r"fpr|fnr|latency|time|duration|seconds|secs|ms|s|regret|distance|bpd|bpc)$")
MAX_PACKAGE_CHANGES = 8  # package changes named per snapshot; the rest are counted
MAX_FILE_NAMES = 3  # files named per changed directory artifact; the rest are counted


@dataclass(frozen=True)
class ReportResult:
    """What ``report`` wrote."""

    path: Path
    snapshots: int
    names: tuple[str, ...]
    metrics: tuple[str, ...]
    curve_points: int  # learning-curve points drawn from Checkpointer indexes
    size: int  # bytes of the HTML file
    notes: tuple[str, ...]


def report(revs: Sequence[str] = (), name: str | None = None,
           out: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> ReportResult:
    """Write the report of the snapshots at ``revs`` (default: every snapshot reachable from
    HEAD, of ``name`` when given) to ``out`` (default ``mlsnap-report.html``)."""
    from mlsnap import __version__
    from mlsnap.fsutil import atomic_write
    from mlsnap.report import page as report_page

    here = cwd or Path.cwd()
    root = workspace.find_root(here)
    if name is not None:
        workspace.check_name(name)
    dest = Path(os.path.normpath(here / (out if out is not None else DEFAULT_FILE)))
    _check_destination(root, dest, out)
    library = report_page.charting_library()  # before any work: one line if it is missing
    entries, notes = select(root, revs, name)
    if not entries:
        raise NoSnapshot((f"named {name!r} " if name else "") + "reachable from HEAD")
    data = collect(root, entries)
    data["notes"] = notes + data["notes"]
    data["title"] = root.name
    data["version"] = __version__
    page = report_page.render(data, library)
    # A kill while writing leaves a temporary file beside ``dest``: the mark tells the next
    # mlsnap command in this repository to delete it (``writers.mark_writer``).
    mark = writers.mark_writer(root, dest.parent)
    try:
        atomic_write(dest, page.encode(), fault_step="report-written")
    finally:
        mark.unlink(missing_ok=True)
    return ReportResult(dest, len(entries), tuple(data["names"]),
                        tuple(m["key"] for m in data["metrics"]), len(data["curves"]),
                        len(page.encode()), tuple(data["notes"]))


def _check_destination(root: Path, dest: Path, out: str | os.PathLike[str] | None) -> None:
    pathsafety.chosen_destination(root, dest, f"-o {out}" if out is not None else str(dest))
    if dest.is_dir():
        raise BadInput(f"-o {dest}", "is a folder; name the HTML file to write, e.g. "
                                     f"-o {dest / DEFAULT_FILE}")
    if not dest.parent.is_dir():
        raise BadInput(f"-o {dest}", f"the folder {dest.parent} does not exist; create it first")


# --------------------------------------------------------------------------- which snapshots


def select(root: Path, revs: Sequence[str], name: str | None) -> tuple[list[LogEntry], list[str]]:
    """The snapshots to compare, oldest first, and notes about what history could not show."""
    notes: list[str] = []
    if not revs:
        entries, beyond = history.log_and_beyond(root, name)
        note = workspace.shallow_note(root, beyond)
        if note:
            notes.append(note)
        return list(reversed(entries)), notes
    known = {(e.commit, e.name): e for e in history.log_and_beyond(root, name, all_refs=True)[0]}
    tags = history.tags_by_commit(root)
    chosen: dict[tuple[str, str], LogEntry] = {}
    for rev in revs:
        sha = gitrepo.resolve(root, rev)
        if sha is None:
            raise BadInput(rev, "is not a commit, branch or tag in this repository "
                                "(see `mlsnap log --all` or `git tag`)")
        names = sorted(history.manifests_at(root, sha))
        implied = history.name_from_tag(rev, name)
        wanted = names if implied is None and len(names) > 1 else \
            [history.pick_name(names, implied, rev)]
        for snap_name in wanted:
            made = history.snapshots_of(root, snap_name, sha)
            commit = made[0].commit if made else sha
            entry = known.get((commit, snap_name))
            if entry is None:  # not on any branch or tag (a detached commit): read it alone
                snap = history.at(root, sha, snap_name)
                entry = LogEntry(commit, snap.manifest.created, snap_name,
                                 history.tags_for(tags, commit, snap_name), snap.manifest)
            chosen[(commit, snap_name)] = entry
    return sorted(chosen.values(), key=lambda e: (e.date, e.commit)), notes


# --------------------------------------------------------------------------- the page's data


def lower_is_better(metric: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(metric.rsplit(".", 1)[-1].lower()))


def _number(value: Any) -> float | None:
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def collect(root: Path, entries: Sequence[LogEntry]) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values (untrusted text left as it is: the page
    escapes it). Snapshots are numbered 0.. oldest first; every chart row names its number."""
    head = gitrepo.head_or_none(root)
    at_head = _at_head(root, head) if head else set()
    params = [flatten(e.params) for e in entries]
    metrics = [flatten(e.metrics) for e in entries]
    snapshots: list[dict[str, Any]] = []
    previous: dict[str, Manifest] = {}
    for i, (e, p, m) in enumerate(zip(entries, params, metrics)):
        before = previous.get(e.name)
        snapshots.append({
            "i": i, "commit": e.commit, "short": e.short, "date": e.date, "name": e.name,
            "created": e.manifest.created if e.manifest else e.date,
            "message": e.message, "tags": list(e.tags), "head": (e.commit, e.name) in at_head,
            "error": e.error, "collected": e.collected,
            "code": e.manifest.code.commit if e.manifest else None,
            "dirty": e.manifest.code.dirty if e.manifest else False,
            "params": p, "metrics": m,
            "artifacts": [o.to_dict() for o in e.manifest.artifacts] if e.manifest else [],
            "shared": _shared(e.manifest, before),
            "env": _env_changes(e.manifest, before),
            "files": _file_changes(root, e.manifest, before),
        })
        if e.manifest is not None:
            previous[e.name] = e.manifest
    readable = [i for i, e in enumerate(entries) if e.manifest is not None]
    metric_keys = sorted({k for i in readable for k, v in metrics[i].items()
                          if _number(v) is not None})
    metric_info = []
    for key in metric_keys:
        values = [(i, _number(metrics[i].get(key))) for i in readable]
        present = [(i, v) for i, v in values if v is not None]
        lower = lower_is_better(key)
        best = min(v for _, v in present) if lower else max(v for _, v in present)
        metric_info.append({
            "key": key, "lower": lower, "best": best,
            "best_snapshots": [i for i, v in present if v == best],
            "values": [[i, v] for i, v in present],
        })
    from mlsnap.report.curves import curves as learning_curves

    curves, curve_notes = learning_curves(root, entries)
    return {
        "snapshots": snapshots,
        "names": sorted({e.name for e in entries}),
        "params_differ": _differing(entries, params, readable),
        "metrics": metric_info,
        "curves": curves,
        "notes": curve_notes,
    }


def _at_head(root: Path, head: str) -> set[tuple[str, str]]:
    """(snapshot commit, name) of each snapshot the work tree's HEAD holds."""
    found = set()
    for snap_name in history.manifests_at(root, head):
        made = history.snapshots_of(root, snap_name, head)
        if made:
            found.add((made[0].commit, snap_name))
    return found


def _differing(entries: Sequence[LogEntry], params: Sequence[dict[str, Any]],
               readable: Sequence[int]) -> list[str]:
    """Params that tell snapshots of one name apart (a missing value counts), as ``log``
    chooses its columns: a param every snapshot of a name shares is left out."""
    groups: dict[str, list[int]] = {}
    for i in readable:
        groups.setdefault(entries[i].name, []).append(i)
    keys = sorted({k for i in readable for k in params[i]})
    return [k for k in keys
            if any(len({repr(params[i][k]) if k in params[i] else "<missing>" for i in group}) > 1
                   for group in groups.values())]


def _shared(m: Manifest | None, before: Manifest | None) -> dict[str, int] | None:
    """Bytes of this snapshot's outputs (artifacts and inputs) that the previous snapshot of
    the same name recorded with the same hash: stored once, shared by both."""
    if m is None:
        return None
    total = sum(o.size for o in m.outputs)
    if before is None:
        return {"total": total, "shared": 0}
    old = {(o.path, o.md5) for o in before.outputs}
    return {"total": total, "shared": sum(o.size for o in m.outputs if (o.path, o.md5) in old)}


def _env_changes(m: Manifest | None, before: Manifest | None) -> dict[str, Any] | None:
    """What changed in the environment since the previous snapshot of the same name."""
    if m is None or before is None:
        return None
    a, b = before.environment, m.environment
    changes: list[str] = []
    for label, old, new in (("python", a.python, b.python), ("os", a.os, b.os),
                            ("machine", a.machine, b.machine)):
        if old != new:
            changes.append(f"{label} {old} -> {new}")
    packages: list[str] = []
    if a.packages is not b.packages and a.packages != b.packages:
        for pkg in sorted(set(a.packages) | set(b.packages)):
            was, now = a.packages.get(pkg), b.packages.get(pkg)
            if was != now:
                packages.append(f"{pkg} {was or '(none)'} -> {now or '(removed)'}")
    return {"changes": changes + packages[:MAX_PACKAGE_CHANGES],
            "more": max(0, len(packages) - MAX_PACKAGE_CHANGES)}


def _file_changes(root: Path, m: Manifest | None, before: Manifest | None) -> list[dict[str, Any]]:
    """Files added, removed and changed inside each directory artifact since the previous
    snapshot of the same name (from the ``.dir`` listings of the local DVC cache)."""
    if m is None or before is None:
        return []
    old: dict[str, Output] = {o.path: o for o in before.artifacts}
    found: list[dict[str, Any]] = []
    for o in m.artifacts:
        was = old.get(o.path)
        if not o.is_dir or was is None or was.md5 == o.md5:
            continue
        files = file_changes(root, was, o)
        if files is None:
            continue
        if files.error:
            found.append({"path": o.path, "error": files.error})
            continue
        found.append({"path": o.path, "added": _names(files.added),
                      "removed": _names(files.removed), "changed": _names(files.changed)})
    return found


def _names(paths: Sequence[str]) -> dict[str, Any]:
    return {"count": len(paths), "first": list(paths[:MAX_FILE_NAMES])}
