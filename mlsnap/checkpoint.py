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
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlsnap.checkpoint_files import existing_names, fsync_tree, tree_hash
from mlsnap.checkpoint_index import (
    INDEX_NAME,
    Checkpoint,
    Index,
    free_name,
    looks_intact,
    newest,
    plain_metrics,
    read_index,
    recover,
    write_index,
)
from mlsnap.errors import BadInput, CheckpointFailed, CheckpointIndexInvalid, MlsnapError
from mlsnap.fsutil import TMP_PREFIX, atomic_write, fault_point, fsync_dir, remove_path
from mlsnap.params import is_number

if TYPE_CHECKING:
    from mlsnap.snapshot import CommitResult

_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")

SaveFn = Callable[[Path], Any]



class Slot(NamedTuple):
    """Where one save writes: chosen by the one process that writes the index (rank 0)."""

    name: str
    tmp: Path
    listing: Index
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
        return [c for c in self._read().entries if looks_intact(c)]

    def latest(self) -> Checkpoint | None:
        """The newest intact checkpoint, or None (under torch.distributed: rank 0's, on every rank)."""
        from mlsnap import distributed

        return distributed.agree(self, "latest()", lambda: newest(self.checkpoints()))

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
        values = plain_metrics(metrics)
        if self.keep_best and not is_number(values.get(self.monitor)):
            raise BadInput(f"save(step={step})", f"metrics lack a number for {self.monitor!r}, "
                           f"which keep_best={self.keep_best} ranks by; pass it in metrics")
        return values

    def _begin(self, step: int) -> Slot:
        """Clear what a killed run left, then choose the new checkpoint's name."""
        self._mark_writer()
        recover(self.directory)
        index = self._read()
        stamp = time.gmtime()
        name = free_name(self.directory, step, stamp, index, self.suffix)
        return Slot(name, self.directory / f"{TMP_PREFIX}{os.getpid()}-{name}", index, stamp)

    def _end(self, slot: Slot, step: int, values: dict[str, Any],
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
            remove_path(tmp)
            return None
        dropped = [n for c in index.entries if c not in kept for n in c.files()]
        try:
            self._write_index(Index(index.entries, ckpt.files()))
            if rng_doc is not None:
                atomic_write(ckpt.rng_path, rng_doc)
            fault_point("checkpoint-before-rename")
            os.replace(tmp, ckpt.path)
        except BaseException:
            remove_path(tmp)
            raise
        fsync_dir(self.directory)
        fault_point("checkpoint-after-rename")
        self._write_index(Index(kept, existing_names(self.directory, dropped)),
                          fault_step="checkpoint-index-temp")
        fault_point("checkpoint-before-delete")
        for dead in dropped:
            remove_path(self.directory / dead)
        if dropped:  # leave a clean index behind (it is what a snapshot records)
            self._write_index(Index(kept, []))
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
        recover(self.directory)
        latest = newest(self.checkpoints())
        recorded = {**(latest.metrics if latest else {}), **plain_metrics(metrics or {})}
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

    def _write(self, tmp: Path, save_fn: SaveFn) -> tuple[str, int, int]:
        """Run ``save_fn`` on the temporary name, make its bytes durable, hash them."""
        try:
            save_fn(tmp)
            if not tmp.exists():
                raise CheckpointFailed(tmp, "save_fn wrote nothing at the path it was given "
                                       "(does it add an extension? pass suffix='.ext')")
            fsync_tree(tmp)
            return tree_hash(tmp)
        except BaseException:
            remove_path(tmp)
            raise

    def _read(self) -> Index:
        return read_index(self.directory)

    def _write_index(self, index: Index, fault_step: str | None = None) -> None:
        write_index(self.directory, index, fault_step)



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


__all__ = ["Checkpoint", "CheckpointFailed", "CheckpointIndexInvalid", "Checkpointer",
           "tree_hash"]
