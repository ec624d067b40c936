"""The index of a checkpoint folder: its entries, read and validated, written atomically.

``index.yaml`` is the only truth about a folder (``checkpoint.py`` says why). An index may come
with a clone, so reading it checks every entry before anything trusts a name or a hash; writing
it is one atomic replace; ``recover`` finishes what a killed save left behind.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlsnap import pathsafety
from mlsnap.checkpoint_files import walk_files, writer_alive
from mlsnap.errors import BadInput, CheckpointIndexInvalid
from mlsnap.fsutil import TMP_PREFIX, atomic_write, remove_path

INDEX_NAME = "index.yaml"
INDEX_SCHEMA = 1
_NAME_RE = re.compile(r"^step-\d{6,}-\d{8}T\d{6}Z(-\d+)?(\.[A-Za-z0-9_-]+)*$")
RNG_SUFFIX = ".rng.json"  # beside a checkpoint saved with rng=True: every rank's RNG states


@dataclass(frozen=True)
class Checkpoint:
    """One kept checkpoint: ``path`` is the file or folder ``save_fn`` wrote."""

    name: str
    step: int
    time: str  # UTC, ISO 8601
    metrics: dict[str, Any] = field(compare=False)
    md5: str  # DVC's hash: md5 of the bytes, or "<md5>.dir" for a folder
    size: int
    nfiles: int
    path: Path = field(compare=False)
    rng: bool = field(default=False, compare=False)  # RNG states saved beside it (rng_path)

    @property
    def rng_path(self) -> Path:
        return self.path.with_name(self.name + RNG_SUFFIX)

    def files(self) -> list[str]:
        return [self.name, self.name + RNG_SUFFIX] if self.rng else [self.name]

    def to_dict(self) -> dict[str, Any]:
        doc = {"name": self.name, "step": self.step, "time": self.time,
               "metrics": dict(self.metrics), "md5": self.md5, "size": self.size,
               "nfiles": self.nfiles}
        return {**doc, "rng": True} if self.rng else doc


@dataclass
class Index:
    entries: list[Checkpoint]  # in save order: the last one is the newest
    pending: list[str]  # names that may exist on disk but must not be trusted


def read_index(directory: Path) -> Index:
    """The index of ``directory`` (empty when there is none yet), validated."""
    path = directory / INDEX_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return Index([], [])
    from mlsnap.safeyaml import YamlRefused, parse_yaml

    try:  # the limits of manifests: a cloned index is untrusted too (aliases, depth, size)
        doc = parse_yaml(text, str(path))
    except YamlRefused as exc:
        raise CheckpointIndexInvalid(path, exc.reason) from None
    if not isinstance(doc, dict) or doc.get("mlsnap-checkpoints") != INDEX_SCHEMA:
        raise CheckpointIndexInvalid(path, f"expected 'mlsnap-checkpoints: {INDEX_SCHEMA}' "
                                     "(written by a newer mlsnap?)")
    raw, pending = doc.get("checkpoints") or [], doc.get("pending") or []
    if not isinstance(raw, list) or not isinstance(pending, list):
        raise CheckpointIndexInvalid(path, "'checkpoints' and 'pending' must be lists")
    entries = [entry_from(path, directory, i, e) for i, e in enumerate(raw)]
    for name in pending:
        if not isinstance(name, str) or not _NAME_RE.match(name) or _unsafe(name):
            raise CheckpointIndexInvalid(path, f"pending name {name!r} is not a checkpoint name")
    return Index(entries, list(pending))


def entry_from(path: Path, directory: Path, i: int, e: Any) -> Checkpoint:
    """Entry ``i`` of the index at ``path`` (or one sent by another rank), checked."""
    where = f"checkpoints[{i}]"
    if not isinstance(e, dict):
        raise CheckpointIndexInvalid(path, f"{where} is not a mapping")
    types = {"name": str, "step": int, "time": str, "metrics": dict, "md5": str, "size": int,
             "nfiles": int}
    for key, kind in types.items():
        if not isinstance(e.get(key), kind) or isinstance(e.get(key), bool):
            raise CheckpointIndexInvalid(path, f"{where}.{key} is missing or not a {kind.__name__}")
    if not _NAME_RE.match(e["name"]) or _unsafe(e["name"]):
        raise CheckpointIndexInvalid(path, f"{where}.name {e['name']!r} is not a checkpoint name")
    if not pathsafety.MD5_RE.match(e["md5"]):
        raise CheckpointIndexInvalid(path, f"{where}.md5 {e['md5']!r} is not an md5 hash")
    if not isinstance(e.get("rng", False), bool):
        raise CheckpointIndexInvalid(path, f"{where}.rng is not true or false")
    return Checkpoint(e["name"], e["step"], e["time"], e["metrics"], e["md5"], e["size"],
                      e["nfiles"], directory / e["name"], rng=e.get("rng", False))


def _unsafe(name: str) -> bool:
    """A name the index gives that is not one plain file name in the folder (pathsafety)."""
    return "/" in name or pathsafety.problem(name) is not None


def write_index(directory: Path, index: Index, fault_step: str | None = None) -> None:
    doc = {"mlsnap-checkpoints": INDEX_SCHEMA,
           "checkpoints": [c.to_dict() for c in index.entries],
           "pending": list(index.pending)}
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    atomic_write(directory / INDEX_NAME, text.encode(), fault_step=fault_step)


def recover(directory: Path) -> None:
    """Finish what a killed run (or a failed save) left: temporaries, names marked pending.

    Only a save (and a snapshot) calls this: readers never delete, so they can watch a running
    training.
    """
    for entry in directory.iterdir():
        if entry.name.startswith(TMP_PREFIX) and not writer_alive(entry.name):
            remove_path(entry)
    index = read_index(directory)
    if index.pending:
        listed = {c.name for c in index.entries}
        for name in index.pending:
            if name not in listed:
                remove_path(directory / name)
        write_index(directory, Index(index.entries, []))


def free_name(directory: Path, step: int, stamp: time.struct_time, index: Index,
              suffix: str) -> str:
    """``step-<step>-<UTC time><suffix>``, numbered when the index or the folder has it."""
    base = f"step-{step:06d}-{time.strftime('%Y%m%dT%H%M%SZ', stamp)}"
    taken = {c.name for c in index.entries} | set(index.pending)
    name, n = base + suffix, 0
    while name in taken or os.path.lexists(directory / name):
        n += 1
        name = f"{base}-{n}{suffix}"
    return name


def newest(found: list[Checkpoint]) -> Checkpoint | None:
    return found[-1] if found else None


def looks_intact(ckpt: Checkpoint) -> bool:
    """Present with the recorded size (and file count): cheap, no hashing."""
    try:
        if ckpt.rng and not ckpt.rng_path.is_file():
            return False
        if ckpt.md5.endswith(".dir"):
            if not ckpt.path.is_dir():
                return False
            sizes = [full.stat().st_size for _, full in walk_files(ckpt.path)]
            return sum(sizes) == ckpt.size and len(sizes) == ckpt.nfiles
        return ckpt.path.is_file() and ckpt.path.stat().st_size == ckpt.size
    except OSError:
        return False


def plain_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as YAML-safe scalars: tensors and numpy numbers become Python numbers."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and callable(value.item):
            value = value.item()  # torch / numpy scalars
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise BadInput(f"metrics[{key!r}]", f"{type(value).__name__} is not a number "
                               "or a string") from None
        out[str(key)] = value
    return out
