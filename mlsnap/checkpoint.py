"""Checkpoints during training: every N steps, keep the last K and the best B, resume after a crash.

Framework-neutral: ``save_fn(path)`` is whatever writes the model (``torch.save``, ``pickle.dump``,
``model.save``), a file or a directory. Each checkpoint is written under a temporary name, fsynced
and renamed; ``index.yaml`` in the same folder lists the kept checkpoints (step, UTC time,
metrics, DVC-compatible md5). The index is the only truth: ``latest()`` returns an entry of the
index whose file exists with the recorded size, so a kill -9 at any moment never hands back a
half-written checkpoint.

Every save updates the index twice. First the new name is recorded as *pending*, then the file is
renamed into place, then the index lists it (and marks what retention drops as pending). A crash
between those steps leaves pending names behind, which the next ``Checkpointer`` on the folder
deletes; files the index never named are left alone, so nothing of the user's is ever removed.
"""

from __future__ import annotations

import math
import operator
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from mlsnap import pathsafety
from mlsnap.checkpoint_files import (
    _existing,
    _fsync_tree,
    _remove,
    _walk_files,
    _writer_alive,
    tree_hash,
)
from mlsnap.errors import BadInput, CheckpointFailed, CheckpointIndexInvalid, MlsnapError
from mlsnap.fsutil import TMP_PREFIX, atomic_write, fault_point, fsync_dir
from mlsnap.params import is_number

if TYPE_CHECKING:
    from mlsnap.snapshot import CommitResult

INDEX_NAME = "index.yaml"
INDEX_SCHEMA = 1
_NAME_RE = re.compile(r"^step-\d{6,}-\d{8}T\d{6}Z(-\d+)?(\.[A-Za-z0-9_-]+)*$")
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")

SaveFn = Callable[[Path], Any]
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
class _Index:
    entries: list[Checkpoint]  # in save order: the last one is the newest
    pending: list[str]  # names that may exist on disk but must not be trusted


class _Slot(NamedTuple):
    """Where one save writes: chosen by the one process that writes the index (rank 0)."""

    name: str
    tmp: Path
    listing: _Index
    stamp: time.struct_time


class Checkpointer:
    """Save checkpoints every ``every`` steps; keep the last ``keep_last`` and the best ``keep_best``.

    ``keep_last=None`` keeps every checkpoint. ``monitor``/``mode`` rank checkpoints for
    ``keep_best`` and ``best()`` ("min" for a loss, "max" for an accuracy). ``suffix`` (".pt",
    ".keras") ends every checkpoint name, for save functions that insist on one.

    ``snapshot=True`` records the folder with ``mlsnap.commit`` when the ``with`` block (or
    ``close()``) ends, and every ``snapshot_every`` checkpoints if given; ``commit()`` does it
    whenever you choose. Saving alone never makes a Git commit.

    Under ``torchrun`` every rank may call it (``mlsnap.distributed``): rank 0 writes replicated
    state; ``sharded=True`` has every rank write its part (DCP); ``rng=True`` records the RNG
    states; ``timeout`` (seconds) bounds each wait for the other ranks.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every: int = 1,
        keep_last: int | None = 3,
        keep_best: int = 0,
        monitor: str = "val_loss",
        mode: str = "min",
        suffix: str = "",
        snapshot: bool = False,
        snapshot_every: int | None = None,
        name: str | None = None,
        message: str = "",
        push: bool = True,
        allow_dirty: bool = False,
        sharded: bool = False,
        rng: bool = False,
        timeout: float = 1800.0,
    ) -> None:
        _check_config(every, keep_last, keep_best, mode, suffix, snapshot_every)
        from mlsnap import distributed

        distributed.check_config(sharded, timeout)
        self.directory = Path(directory).resolve()
        self.every = every
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.monitor = monitor
        self.mode = mode
        self.suffix = suffix
        self.snapshot = snapshot
        self.snapshot_every = snapshot_every
        self.name = name
        self.message = message
        self.push = push
        self.allow_dirty = allow_dirty
        self.sharded = sharded
        self.rng = rng
        self.timeout = float(timeout)
        self._saved_since_commit = 0
        self._mark: Path | None = None
        self._channel: distributed.Channel | None = None
        if snapshot and distributed.world().leader:  # fail now, not after hours of training
            from mlsnap import workspace

            here = next(p for p in self.directory.parents if p.is_dir())
            workspace.require_ready(workspace.find_root(here))
        self.directory.mkdir(parents=True, exist_ok=True)

    def _mark_writer(self) -> None:
        """Tell the repository's next mlsnap command where this process writes partial files,
        so that it clears them if this process is killed (``writers.mark_writer``)."""
        from mlsnap import gitrepo, writers
        from mlsnap.errors import NotAGitRepo

        if self._mark is not None and self._mark.is_file():
            return
        try:
            root = gitrepo.toplevel(self.directory)
            self._mark = writers.mark_writer(root, self.directory)
        except (NotAGitRepo, OSError):
            self._mark = None  # outside a repository nothing else would look

    # --- reading ---------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_NAME

    def checkpoints(self) -> list[Checkpoint]:
        """Kept checkpoints whose files are present with the recorded size, oldest first."""
        return [c for c in self._read().entries if _looks_intact(c)]

    def latest(self) -> Checkpoint | None:
        """The newest intact checkpoint, or None (under torch.distributed: rank 0's, on every rank)."""
        from mlsnap import distributed

        return distributed.agree(self, "latest()", lambda: _newest(self.checkpoints()))

    def best(self) -> Checkpoint | None:
        """The intact checkpoint with the best ``monitor`` value, or None."""
        ranked = self._ranked(self.checkpoints())
        return ranked[0] if ranked else None

    def resume(self, which: str = "latest", *, verify: bool = True,
               restore_rng: bool = True) -> Checkpoint | None:
        """The checkpoint to resume from ("latest" or "best"), its bytes checked against the index.

        A checkpoint whose content no longer matches its recorded hash is skipped for the next
        one; None means no usable checkpoint (start from scratch). Under torch.distributed rank 0
        decides and every rank gets its answer; RNG states saved with it are restored.
        """
        from mlsnap import distributed

        if which not in ("latest", "best"):
            raise BadInput(f"resume({which!r})", "choose 'latest' or 'best'")
        found = distributed.agree(self, "resume()", lambda: self._resume_here(which, verify))
        if found is not None and found.rng and restore_rng:
            distributed.restore_rng(self, found)
        return found

    def load(self, state: Mapping[str, Any], checkpoint: Checkpoint | None = None) -> Checkpoint:
        """Load a sharded checkpoint (default: ``resume()``'s) into ``state`` in place with
        ``torch.distributed.checkpoint.load``, resharded to this world size; return it."""
        from mlsnap import distributed

        return distributed.load(self, state, checkpoint)

    def _resume_here(self, which: str, verify: bool) -> Checkpoint | None:
        found = self.checkpoints()
        order = self._ranked(found) if which == "best" else list(reversed(found))
        for ckpt in order:
            if not verify or tree_hash(ckpt.path)[0] == ckpt.md5:
                return ckpt
        return None

    # --- writing ---------------------------------------------------------------------------

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, save_fn: SaveFn | Mapping[str, Any],
             metrics: Mapping[str, Any] | None = None, *, force: bool = False,
             rng: bool | None = None) -> Checkpoint | None:
        """Call ``save_fn(path)`` when ``step`` is due (or ``force``); return the checkpoint.

        Returns None when the step is not due (or when ``keep_last=0`` and it is not among the
        best). The checkpoint is complete on disk and listed in the index when this returns;
        retention has removed what it no longer keeps. Each save first clears what a killed run
        (or a failed save) left behind: temporary names, names the index marks pending.
        With ``sharded=True``, ``save_fn`` may be a state dict for DCP; ``rng`` overrides the
        Checkpointer's ``rng``.
        """
        step = _step(step)
        if not force and not self.due(step):
            return None
        from mlsnap import distributed

        return distributed.save(self, step, save_fn, metrics or {},
                                self.rng if rng is None else rng)

    def _values(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        values = _plain_metrics(metrics)
        if self.keep_best and not is_number(values.get(self.monitor)):
            raise BadInput(f"save(step={step})", f"metrics lack a number for {self.monitor!r}, "
                           f"which keep_best={self.keep_best} ranks by; pass it in metrics")
        return values

    def _begin(self, step: int) -> _Slot:
        """Clear what a killed run left, then choose the new checkpoint's name."""
        self._mark_writer()
        self._recover()
        index = self._read()
        stamp = time.gmtime()
        name = self._free_name(step, stamp, index)
        return _Slot(name, self.directory / f"{TMP_PREFIX}{os.getpid()}-{name}", index, stamp)

    def _end(self, slot: _Slot, step: int, values: dict[str, Any],
             written: tuple[str, int, int], rng_doc: bytes | None = None) -> Checkpoint | None:
        """Put the written checkpoint (at ``slot.tmp``) in place and in the index; retention."""
        name, tmp, index, stamp = slot
        md5, size, nfiles = written
        fault_point("checkpoint-written")
        ckpt = Checkpoint(name, step, time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp), values,
                          md5, size, nfiles, self.directory / name, rng=rng_doc is not None)

        # Same step saved again (a resumed run repeating its last steps): the new one replaces it.
        kept = self._retain([c for c in index.entries if c.step != step] + [ckpt])
        if ckpt not in kept:  # keep_last=0 and not among the best: nothing changes
            _remove(tmp)
            return None
        dropped = [n for c in index.entries if c not in kept for n in c.files()]
        try:
            self._write_index(_Index(index.entries, ckpt.files()))
            if rng_doc is not None:
                atomic_write(ckpt.rng_path, rng_doc)
            fault_point("checkpoint-before-rename")
            os.replace(tmp, ckpt.path)
        except BaseException:
            _remove(tmp)
            raise
        fsync_dir(self.directory)
        fault_point("checkpoint-after-rename")
        self._write_index(_Index(kept, _existing(self.directory, dropped)),
                          fault_step="checkpoint-index-temp")
        fault_point("checkpoint-before-delete")
        for dead in dropped:
            _remove(self.directory / dead)
        if dropped:  # leave a clean index behind (it is what a snapshot records)
            self._write_index(_Index(kept, []))
        self._saved_since_commit += 1
        if self.snapshot and self.snapshot_every and self._saved_since_commit >= self.snapshot_every:
            self._snapshot_during_training()
        return ckpt

    def _snapshot_during_training(self) -> None:
        """A snapshot that cannot be taken (code edited mid-run, remote down) must not end the
        training: warn, keep the checkpoint, try again at the next one and at the end."""
        try:
            self.commit()
        except MlsnapError as exc:
            warnings.warn(f"mlsnap: snapshot of {self.directory} not taken, training goes on: "
                          f"{exc}", RuntimeWarning, stacklevel=3)

    def commit(self, *, message: str | None = None, params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None, tag: str | None = None,
               push: bool | None = None) -> CommitResult | None:
        """Record the folder (index and kept checkpoints) as one snapshot with ``mlsnap.commit``.

        The manifest's metrics are the latest checkpoint's, updated with ``metrics``; the
        environment is this training process's own. Only rank 0 commits (others get None).
        """
        from mlsnap import api, distributed

        if not distributed.world().leader:
            return None  # only rank 0 takes snapshots
        # The snapshot records the index: it must name no pending (half-removed) checkpoint.
        self._recover()
        latest = _newest(self.checkpoints())
        recorded = {**(latest.metrics if latest else {}), **_plain_metrics(metrics or {})}
        if latest is not None:
            recorded.setdefault("step", latest.step)
        result = api.commit(
            [self.directory], name=self.name or _default_name(self.directory),
            message=self.message if message is None else message, params=params,
            metrics=recorded, tag=tag, push=self.push if push is None else push,
            allow_dirty=self.allow_dirty, repo=self.directory,
        )
        self._saved_since_commit = 0
        return result

    def close(self) -> None:
        """End of training: with ``snapshot=True``, commit what was saved since the last commit."""
        if self.snapshot and self._saved_since_commit:
            self.commit()
        if self._mark is not None:
            self._mark.unlink(missing_ok=True)
            self._mark = None

    def __enter__(self) -> Checkpointer:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:  # a failed run is not a result to record; its checkpoints stay
            self.close()

    # --- internals -------------------------------------------------------------------------

    def _ranked(self, entries: list[Checkpoint]) -> list[Checkpoint]:
        """Entries with a numeric ``monitor`` value, best first; ties go to the earlier save."""
        sign = 1.0 if self.mode == "min" else -1.0
        scored = [(sign * float(c.metrics[self.monitor]), i, c) for i, c in enumerate(entries)
                  if is_number(c.metrics.get(self.monitor))
                  and not math.isnan(float(c.metrics[self.monitor]))]
        return [c for _, _, c in sorted(scored, key=lambda t: (t[0], t[1]))]

    def _retain(self, entries: list[Checkpoint]) -> list[Checkpoint]:
        if self.keep_last is None:
            return entries
        keep = {c.name for c in (entries[-self.keep_last:] if self.keep_last else [])}
        keep |= {c.name for c in self._ranked(entries)[:self.keep_best]}
        return [c for c in entries if c.name in keep]

    def _free_name(self, step: int, stamp: time.struct_time, index: _Index) -> str:
        base = f"step-{step:06d}-{time.strftime('%Y%m%dT%H%M%SZ', stamp)}"
        taken = {c.name for c in index.entries} | set(index.pending)
        name, n = base + self.suffix, 0
        while name in taken or os.path.lexists(self.directory / name):
            n += 1
            name = f"{base}-{n}{self.suffix}"
        return name

    def _write(self, tmp: Path, save_fn: SaveFn) -> tuple[str, int, int]:
        """Run ``save_fn`` on the temporary name, make its bytes durable, hash them."""
        try:
            save_fn(tmp)
            if not tmp.exists():
                raise CheckpointFailed(tmp, "save_fn wrote nothing at the path it was given "
                                       "(does it add an extension? pass suffix='.ext')")
            _fsync_tree(tmp)
            return tree_hash(tmp)
        except BaseException:
            _remove(tmp)
            raise

    def _read(self) -> _Index:
        return _read_index(self.directory)

    def _write_index(self, index: _Index, fault_step: str | None = None) -> None:
        doc = {"mlsnap-checkpoints": INDEX_SCHEMA,
               "checkpoints": [c.to_dict() for c in index.entries],
               "pending": list(index.pending)}
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        atomic_write(self.index_path, text.encode(), fault_step=fault_step)

    def _recover(self) -> None:
        """Finish what a killed run (or a failed save) left: temporaries, names marked pending.

        Only ``save`` calls this: readers never delete, so they can watch a running training.
        """
        for entry in self.directory.iterdir():
            if entry.name.startswith(TMP_PREFIX) and not _writer_alive(entry.name):
                _remove(entry)
        index = self._read()
        if index.pending:
            listed = {c.name for c in index.entries}
            for name in index.pending:
                if name not in listed:
                    _remove(self.directory / name)
            self._write_index(_Index(index.entries, []))


def _newest(found: list[Checkpoint]) -> Checkpoint | None:
    return found[-1] if found else None


def _read_index(directory: Path) -> _Index:
    """The index of ``directory`` (empty when there is none yet), validated."""
    path = directory / INDEX_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return _Index([], [])
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
    entries = [_entry(path, directory, i, e) for i, e in enumerate(raw)]
    for name in pending:
        if not isinstance(name, str) or not _NAME_RE.match(name) or _unsafe(name):
            raise CheckpointIndexInvalid(path, f"pending name {name!r} is not a checkpoint name")
    return _Index(entries, list(pending))


def _entry(path: Path, directory: Path, i: int, e: Any) -> Checkpoint:
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


def _check_config(every: int, keep_last: int | None, keep_best: int, mode: str, suffix: str,
                  snapshot_every: int | None) -> None:
    def positive(label: str, value: Any, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BadInput(f"Checkpointer({label}={value!r})", f"must be an integer >= {minimum}")

    positive("every", every, 1)
    if keep_last is not None:
        positive("keep_last", keep_last, 0)
    positive("keep_best", keep_best, 0)
    if snapshot_every is not None:
        positive("snapshot_every", snapshot_every, 1)
    if keep_last == 0 and keep_best == 0:
        raise BadInput("Checkpointer(keep_last=0, keep_best=0)",
                       "would keep nothing; keep the last K, the best K, or keep_last=None for all")
    if mode not in ("min", "max"):
        raise BadInput(f"Checkpointer(mode={mode!r})", "choose 'min' (a loss) or 'max' (accuracy)")
    if not _SUFFIX_RE.match(suffix):
        raise BadInput(f"Checkpointer(suffix={suffix!r})", "use an extension such as '.pt'")


def _default_name(directory: Path) -> str:
    from mlsnap.manifest import is_valid_name

    return directory.name if is_valid_name(directory.name) else "checkpoints"


def _step(step: Any) -> int:
    """Steps are integers: Python's, or anything that converts exactly (numpy, 0-d tensors)."""
    try:
        value = operator.index(step) if not isinstance(step, bool) else -1
    except TypeError:
        value = -1
    if value < 0:
        raise BadInput(f"save(step={step!r})", "the step must be a non-negative integer")
    return value


def _plain_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
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


def _looks_intact(ckpt: Checkpoint) -> bool:
    """Present with the recorded size (and file count): cheap, no hashing."""
    try:
        if ckpt.rng and not ckpt.rng_path.is_file():
            return False
        if ckpt.md5.endswith(".dir"):
            if not ckpt.path.is_dir():
                return False
            sizes = [full.stat().st_size for _, full in _walk_files(ckpt.path)]
            return sum(sizes) == ckpt.size and len(sizes) == ckpt.nfiles
        return ckpt.path.is_file() and ckpt.path.stat().st_size == ckpt.size
    except OSError:
        return False


__all__ = ["Checkpoint", "CheckpointFailed", "CheckpointIndexInvalid", "Checkpointer",
           "tree_hash"]
