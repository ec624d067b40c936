"""Learning curves for ``mlsnap report``: the Checkpointer indexes recorded in snapshots.

A folder the ``Checkpointer`` writes holds ``index.yaml`` (``mlsnap.checkpoint``): one entry per
kept checkpoint with its step and metrics. A snapshot of that folder records it as one DVC
directory; its ``.dir`` listing names the index's md5. Both are read from the repository's own
DVC cache by hash and checked against it (nothing is checked out, DVC is not imported, nothing is
fetched); a listing or index the cache lacks is named in a note. The index arrived with the clone's
bytes and is untrusted: it is parsed with the manifests' limits and only numbers are kept.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlsnap.compare import dir_listing
from mlsnap.history import LogEntry
from mlsnap.params import as_float
from mlsnap.pathsafety import MD5_RE
from mlsnap.safeyaml import YamlRefused, parse_yaml

INDEX_NAME = "index.yaml"  # mlsnap.checkpoint.INDEX_NAME (not imported: it imports PyYAML's dumper)
INDEX_SCHEMA = 1
MAX_ENTRIES = 100_000  # checkpoints read from one index


def cached_file(root: Path, md5: str) -> bytes | None:
    """The bytes of one file object in the repository's DVC cache, when they match ``md5``."""
    if not MD5_RE.match(md5) or md5.endswith(".dir"):
        return None
    cache = root / ".dvc" / "cache"
    for path in (cache / "files" / "md5" / md5[:2] / md5[2:],  # DVC 3
                 cache / md5[:2] / md5[2:]):  # DVC 2
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        return raw if hashlib.md5(raw).hexdigest() == md5 else None
    return None


def index_points(raw: bytes, source: str) -> tuple[list[dict[str, Any]], str | None]:
    """(step, metric, value) of every checkpoint an index lists, or why it cannot be read."""
    try:
        doc = parse_yaml(raw, source)
    except YamlRefused as exc:
        return [], exc.reason
    if not isinstance(doc, dict) or doc.get("mlsnap-checkpoints") != INDEX_SCHEMA:
        return [], f"expected 'mlsnap-checkpoints: {INDEX_SCHEMA}'"
    entries = doc.get("checkpoints") or []
    if not isinstance(entries, list):
        return [], "'checkpoints' is not a list"
    points = []
    for e in entries[:MAX_ENTRIES]:
        if not isinstance(e, dict):
            continue
        step, metrics = e.get("step"), e.get("metrics")
        if not isinstance(step, int) or isinstance(step, bool) or not isinstance(metrics, dict):
            continue
        when = e.get("time") if isinstance(e.get("time"), str) else None
        for key, value in metrics.items():
            number = as_float(value)
            if isinstance(key, str) and number is not None and math.isfinite(number):
                points.append({"step": step, "metric": key, "value": number,
                               "time": when})
    return points, None


def curves(root: Path, entries: Sequence[LogEntry]) -> tuple[list[dict[str, Any]], list[str]]:
    """Learning-curve points of every snapshot (``s``: its number, oldest first), and notes."""
    parsed: dict[str, tuple[list[dict[str, Any]], str | None]] = {}  # by index md5
    points: list[dict[str, Any]] = []
    not_cached: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    for i, e in enumerate(entries):
        for o in e.manifest.artifacts if e.manifest else ():
            if not o.is_dir:
                continue
            listing = dir_listing(root, o.md5)
            if listing is None:
                not_cached[o.path] = not_cached.get(o.path, 0) + 1
                continue
            md5 = listing.get(INDEX_NAME)
            if md5 is None:
                continue  # a folder, but not one a Checkpointer writes
            if md5 not in parsed:
                raw = cached_file(root, md5)
                source = f"{e.short}:{o.path}/{INDEX_NAME}"
                parsed[md5] = ([], "not in the local DVC cache") if raw is None \
                    else index_points(raw, source)
            found, error = parsed[md5]
            if error:
                unreadable.setdefault(f"{e.short}:{o.path}/{INDEX_NAME}", error)
            points += [{"s": i, "path": o.path, **p} for p in found]
    notes = [f"{path}: the file list of {n} snapshot(s) is not in the local DVC cache, so any "
             "learning curve it holds is not drawn; `mlsnap pull` (or `dvc fetch`) brings it"
             for path, n in sorted(not_cached.items())]
    notes += [f"{where}: not drawn: {why}" for where, why in sorted(unreadable.items())]
    return points, notes
